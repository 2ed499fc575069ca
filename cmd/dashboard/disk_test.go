package main

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/internal/pgtest"
)

// TestDatabaseDiskFull: the database's disk fills up for real (a small
// tmpfs). PostgreSQL panics when it needs a new WAL segment, and its
// restart fails for want of space. Meanwhile the server stays up, says it is
// not ready, and keeps its viewers on their open streams with the last data.
// Once space is freed and PostgreSQL runs again, the same stream shows every
// committed row, without a restart of the server.
func TestDatabaseDiskFull(t *testing.T) {
	disk := pgtest.SmallDisk(t, 96)
	opts := pgserver.Options{Dir: filepath.Join(disk, "pg")}
	pg := startPostgres(t, opts)
	cfg := configFor(pg.ConnString("postgres"))
	s := startServer(t, cfg, false)
	setupCounts(t, s, "disk", 1, "a")
	viewer := openSSE(t, nil, s.URL+"/d/disk/events")
	if viewer.resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /d/disk/events: got %d, want 200", viewer.resp.StatusCode)
	}
	viewer.hello(t)
	var shown int64 // what the stream shows now
	insert(t, s, "a")
	waitShown(t, viewer, &shown, 2)

	ballast := filepath.Join(disk, "ballast")
	pgtest.Fill(t, ballast)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	writer, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	// Rows fit in the pages and the WAL segment PostgreSQL already has; a
	// WAL switch needs a new segment, and writing it panics the server.
	var werr error
	for i := 0; i < 20 && werr == nil; i++ {
		if _, werr = writer.Exec(ctx, "INSERT INTO items_a (v) VALUES ('x')"); werr == nil {
			_, werr = writer.Exec(ctx, "SELECT pg_switch_wal()")
		}
	}
	writer.Close(context.Background())
	if werr == nil {
		t.Fatal("20 writes and WAL switches on a full disk: got no error")
	}
	eventually(t, "PostgreSQL to shut down after its failed recovery", func() bool {
		_, err := os.Stat(filepath.Join(opts.Dir, "postmaster.pid"))
		return errors.Is(err, fs.ErrNotExist)
	})

	// The server is alive, not ready, and still shows the last data: 2,
	// or 3 when the insert before the panic committed and was shown.
	if resp, body := s.get(t, "/readyz"); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "database unreachable") {
		t.Errorf("/readyz with the database down: got %d %q, want 503 naming the database", resp.StatusCode, trim(body))
	}
	if resp, _ := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/healthz with the database down: got %d, want 200", resp.StatusCode)
	}
	resp, body := s.get(t, "/d/disk")
	page, err := strconv.ParseInt(statValue(body), 10, 64)
	if resp.StatusCode != http.StatusOK || err != nil || page < 2 {
		t.Errorf("GET /d/disk with the database down: got %d showing %q, want 200 showing at least 2", resp.StatusCode, statValue(body))
	}
	select {
	case <-viewer.done:
		t.Fatalf("the stream ended while the database was down: %v", viewer.err)
	default:
	}

	// Starting PostgreSQL on the full disk fails with the reason.
	if again, err := pgserver.Start(ctx, opts); err == nil {
		again.Stop(context.Background())
		t.Fatal("PostgreSQL started on the full disk")
	} else if !strings.Contains(err.Error(), "No space left on device") {
		t.Errorf("starting PostgreSQL on the full disk: got %v, want it to say \"No space left on device\"", err)
	}

	// Space again: PostgreSQL recovers, and the server finds it by itself.
	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	startPostgres(t, opts)
	eventually(t, "/readyz to turn ready", func() bool {
		resp, _ := s.get(t, "/readyz")
		return resp.StatusCode == http.StatusOK
	})
	committed := countRows(t, cfg.DatabaseURL, "items_a")
	if committed < page {
		t.Fatalf("rows after recovery: got %d, want at least the %d shown before", committed, page)
	}
	waitShown(t, viewer, &shown, committed)
	insert(t, s, "a")
	waitShown(t, viewer, &shown, committed+1)
}

// startPostgres starts PostgreSQL with opts and stops it when the test ends.
func startPostgres(t *testing.T, opts pgserver.Options) *pgserver.Server {
	t.Helper()
	pg, err := pgserver.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() { pg.Stop(context.Background()) })
	return pg
}

// waitShown reads the stream's updates until panel a shows want, keeping
// the value shown in *shown. A value above want fails the test: nothing may
// be shown that was not committed.
func waitShown(t *testing.T, c *sseClient, shown *int64, want int64) {
	t.Helper()
	for *shown != want {
		v := statValue(c.nextUpdate(t).body())
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n > want {
			t.Fatalf("the stream showed %q, want values up to %d", v, want)
		}
		*shown = n
	}
}

// statValue is the text of the first stat value in an HTML fragment.
func statValue(html string) string {
	const open = `class="stat-value">`
	i := strings.Index(html, open)
	if i < 0 {
		return ""
	}
	v := html[i+len(open):]
	if j := strings.IndexByte(v, '<'); j >= 0 {
		v = v[:j]
	}
	return v
}

// countRows counts the rows of table on a connection of its own.
func countRows(t *testing.T, url, table string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), contractWait)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}
