package refresh

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/pgtest"
)

// A nudge flushes WAL that nothing else would flush soon: the rows of a
// transaction left open. Once the nudge has ended, the primary's flush
// position is past the insert position read before it.
func TestNudgeFlushesOpenTransaction(t *testing.T) {
	url := pgtest.NewDB(t)
	pool, err := pgxpool.New(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	open, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Close(context.Background()) })
	for _, sql := range []string{"CREATE TABLE other (n int)", "BEGIN", "INSERT INTO other SELECT generate_series(1, 3)"} {
		if _, err := open.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	var insertText string
	if err := pool.QueryRow(t.Context(), "SELECT pg_current_wal_insert_lsn()::text").Scan(&insertText); err != nil {
		t.Fatal(err)
	}
	insert, err := pglogrepl.ParseLSN(insertText)
	if err != nil {
		t.Fatal(err)
	}
	logs := &lockedBuffer{}
	n := &nudger{pool: pool, logger: slog.New(slog.NewTextHandler(logs, nil))}
	n.nudge(t.Context(), time.Hour)
	n.wait()
	var flushText string
	if err := pool.QueryRow(t.Context(), "SELECT pg_current_wal_flush_lsn()::text").Scan(&flushText); err != nil {
		t.Fatal(err)
	}
	flush, err := pglogrepl.ParseLSN(flushText)
	if err != nil {
		t.Fatal(err)
	}
	if flush < insert {
		t.Errorf("after the nudge the primary has flushed up to %s, want at least %s", flush, insert)
	}
	if got := logs.count("level="); got != 0 {
		t.Errorf("a nudge that worked logged %d lines, want none", got)
	}
	// At most one per bound: the next one within the hour does nothing.
	n.nudge(t.Context(), time.Hour)
	n.mu.Lock()
	running := n.running
	n.mu.Unlock()
	if running != nil {
		t.Errorf("a second nudge within the bound started")
	}
}

// A nudge that fails is logged once per new message, and nothing else
// happens: the next nudge is tried again.
func TestNudgeFailureLoggedOnce(t *testing.T) {
	pool, err := pgxpool.New(t.Context(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	pool.Close() // every nudge fails: the pool is closed
	logs := &lockedBuffer{}
	n := &nudger{pool: pool, logger: slog.New(slog.NewTextHandler(logs, nil))}
	for range 3 {
		n.nudge(t.Context(), 0)
		n.wait()
	}
	if c := logs.count("could not make the primary flush"); c != 1 {
		t.Errorf("three failed nudges with one message logged %d times, want once", c)
	}
	if logs.count("closed pool") != 1 {
		t.Errorf("the log does not say why the nudge failed (closed pool)")
	}
}
