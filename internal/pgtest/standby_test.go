package pgtest_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgtest"
)

// TestStandby follows a row through a real standby: it arrives by streaming, stays out while
// replay is paused and arrives on resume, arrives after a stop and start, and a promoted standby
// takes writes of its own.
func TestStandby(t *testing.T) {
	primary := pgtest.Server(t)
	url := pgtest.NewDB(t)
	exec(t, url, "CREATE TABLE t (n int)")
	s := pgtest.NewStandby(t, primary)
	name := scalar(t, url, "SELECT current_database()")
	onStandby := s.ConnString(name)

	add := func(n string) {
		t.Helper()
		exec(t, url, "INSERT INTO t VALUES ("+n+")")
	}
	count := func() string {
		t.Helper()
		return scalar(t, onStandby, "SELECT count(*)::text FROM t")
	}
	await := func(want string) {
		t.Helper()
		deadline := time.Now().Add(time.Minute)
		for got := count(); got != want; got = count() {
			if time.Now().After(deadline) {
				t.Fatalf("rows on the standby: got %s, want %s", got, want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if got := scalar(t, onStandby, "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Fatalf("pg_is_in_recovery on the standby: got %s, want true", got)
	}
	add("1")
	await("1")

	s.PauseReplay(t)
	add("2")
	// The commit has reached the standby (flushed there) but is not applied.
	lsn := scalar(t, url, "SELECT pg_current_wal_lsn()::text")
	awaitTrue(t, onStandby, "pg_last_wal_receive_lsn() >= '"+lsn+"'::pg_lsn")
	if got := count(); got != "1" {
		t.Errorf("rows on the standby with replay paused: got %s, want 1", got)
	}
	s.ResumeReplay(t)
	await("2")

	s.Stop(t)
	if _, err := pgx.Connect(t.Context(), onStandby); err == nil {
		t.Errorf("connecting to a stopped standby: got no error")
	}
	add("3")
	s.Start(t)
	await("3")

	s.Promote(t)
	if got := scalar(t, onStandby, "SELECT pg_is_in_recovery()::text"); got != "false" {
		t.Fatalf("pg_is_in_recovery after promotion: got %s, want false", got)
	}
	exec(t, onStandby, "INSERT INTO t VALUES (100)")
	add("4")
	if got := count(); got != "4" {
		t.Errorf("rows on the promoted standby: got %s, want 4 (its own, not the primary's)", got)
	}
}

func exec(t *testing.T, url, sql string) {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func scalar(t *testing.T, url, sql string) string {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(t.Context(), sql).Scan(&v); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func awaitTrue(t *testing.T, url, sql string) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for scalar(t, url, "SELECT ("+sql+")::text") != "true" {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after a minute", sql)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
