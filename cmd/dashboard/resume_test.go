package main

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/internal/pgtest"
)

// This file tests the resume contract of docs/architecture.md ("Versions and resume")
// where the database itself moves backwards under a client: a database
// restored from an older dump, and a standby promoted without the last
// commits. A client that resumes with the version it last saw, which the
// new server never issued, must get the full current state at once, never
// silence.

// forgedVersion is the old-format id of issue 12 with the largest position:
// servers that compared positions answered it with nothing, forever.
const forgedVersion = "ffffffffffffffff-0000000000000000"

// walPosition is the query for a cluster's current WAL position, for the log.
const walPosition = "SELECT pg_current_wal_lsn()::text"

// TestResumeAfterRestoreFromDump: server S shows dashboard ops on database A;
// a client has seen 5 rows. The database is then restored from a dump taken
// at 2 rows into a fresh cluster, and a new server S2 runs on it. The client
// resumes on S2 with its version, on SSE and long-poll: it gets the full
// state of the restored database (2 rows, S2's current version).
func TestResumeAfterRestoreFromDump(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := newContractFixture(t, cfg)
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	for range 2 {
		insertRow(t, s.testServer)
	}
	showsUntil(t, c, "2")
	dump := filepath.Join(t.TempDir(), "a.dump")
	runPG(t, nil, "pg_dump", "--format=custom", "--file="+dump, "--dbname="+cfg.DatabaseURL)
	for range 3 {
		insertRow(t, s.testServer)
	}
	v := showsUntil(t, c, "5")
	if cur := currentVersion(t, s.testServer, "ops"); cur != v {
		t.Fatalf("the client's version %s is not the server's current %s", v, cur)
	}
	c.close()
	walA := queryText(t, cfg.DatabaseURL, walPosition)

	// The operator restores the dump into a fresh cluster and points the
	// service at it.
	restored := startPostgres(t, pgserver.Options{Dir: newDataDir(t)})
	url := restored.ConnString("postgres")
	runPG(t, nil, "pg_restore", "--exit-on-error", "--dbname="+url, dump)
	s2 := startServer(t, configFor(url), false)
	awaitDashboard(t, s2, "ops", "t")
	t.Logf("WAL position: database A %s when the client saw %s, restored cluster %s", walA, v, queryText(t, url, walPosition))

	for _, have := range []string{v.String(), forgedVersion} {
		resumeGetsFullState(t, s2, have, "2")
	}
}

// TestResumeAfterStandbyPromotion: server S runs on primary P with a
// streaming standby; a client has seen 2 rows. The standby is cut off from
// P, P commits 100 more rows (the client sees them), P stops and the standby
// is promoted: new timeline, a lower WAL position, 2 rows. A new server S2
// runs on it, and the client resumes there with the version of 102 rows: it
// gets the full state of the promoted database (2 rows, S2's current
// version).
func TestResumeAfterStandbyPromotion(t *testing.T) {
	t.Parallel()
	primary := startPostgres(t, pgserver.Options{Dir: newDataDir(t)})
	cfg := configFor(primary.ConnString("postgres"))
	s := newContractFixture(t, cfg)
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	for range 2 {
		insertRow(t, s.testServer)
	}
	showsUntil(t, c, "2")

	// A standby of P as pg_basebackup -R makes it, streaming from P.
	standby := pgtest.NewStandby(t, primary)
	standbyURL := standby.ConnString("postgres")

	// The standby loses P: no WAL written from now on reaches it. Pausing
	// replay (pg_wal_replay_pause) would not do: the receiver goes on
	// receiving, and promotion replays all it has, last commits included.
	execSQL(t, standbyURL, `ALTER SYSTEM SET primary_conninfo = ''`)
	execSQL(t, standbyURL, `SELECT pg_reload_conf()`)
	awaitText(t, standbyURL, `SELECT count(*)::text FROM pg_stat_wal_receiver`, "0")
	awaitText(t, cfg.DatabaseURL, `SELECT count(*)::text FROM pg_stat_replication`, "0")

	// P commits more (about 100 kB of WAL); the client sees it.
	s.exec(t, `INSERT INTO t (v) SELECT repeat('x', 1000) FROM generate_series(1, 100)`)
	v := showsUntil(t, c, "102")
	if cur := currentVersion(t, s.testServer, "ops"); cur != v {
		t.Fatalf("the client's version %s is not the server's current %s", v, cur)
	}
	c.close()
	walP := queryText(t, cfg.DatabaseURL, walPosition)

	// P goes away; the standby is promoted and the service points at it.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := primary.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	standby.Promote(t)
	s2 := startServer(t, configFor(standbyURL), false)
	awaitDashboard(t, s2, "ops", "t")
	t.Logf("WAL position: primary %s when the client saw %s, promoted standby %s on timeline %s",
		walP, v, queryText(t, standbyURL, walPosition),
		queryText(t, standbyURL, `SELECT substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8)`))

	for _, have := range []string{v.String(), forgedVersion} {
		resumeGetsFullState(t, s2, have, "2")
	}
}

// resumeGetsFullState resumes on s's dashboard ops from version have, with
// Last-Event-ID on SSE and with If-None-Match on a long-poll. Both must
// answer with the full state (heading and grid) at s's current version,
// showing rows; a long-poll that times out (304) is the frozen screen.
func resumeGetsFullState(t *testing.T, s *testServer, have, rows string) {
	t.Helper()
	c := openSSE(t, nil, s.URL+"/d/ops/events", "Last-Event-ID", have)
	if c.resp.StatusCode != http.StatusOK {
		t.Fatalf("SSE resuming from %s: got %d, want 200", have, c.resp.StatusCode)
	}
	c.hello(t)
	m := c.nextUpdate(t)
	got := wantUpdate(t, m, "#heading", "#grid")
	if n := statValue(m.body()); n != rows {
		t.Errorf("SSE resuming from %s: shows %q rows, want %s", have, n, rows)
	}
	if cur := currentVersion(t, s, "ops"); got != cur {
		t.Errorf("SSE resuming from %s: got version %s, want the current %s", have, got, cur)
	}
	c.close()

	resp, body := s.get(t, "/d/ops/poll?wait=10", "If-None-Match", `"`+have+`"`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("long-poll with If-None-Match %q: got %d, want 200 with the full state", have, resp.StatusCode)
	}
	if got := targets(body); strings.Join(got, " ") != "#heading #grid" {
		t.Errorf("long-poll with If-None-Match %q: got partials %v, want the heading and the grid", have, got)
	}
	if n := statValue(body); n != rows {
		t.Errorf("long-poll with If-None-Match %q: shows %q rows, want %s", have, n, rows)
	}
	etag, _ := hub.ParseVersion(strings.Trim(resp.Header.Get("ETag"), `"`))
	if cur := currentVersion(t, s, "ops"); etag != cur {
		t.Errorf("long-poll with If-None-Match %q: got ETag %s, want the current %s", have, resp.Header.Get("ETag"), cur)
	}
}

// showsUntil reads c's updates until panel p1 shows rows and returns the
// version of that update.
func showsUntil(t *testing.T, c *sseClient, rows string) hub.Version {
	t.Helper()
	for {
		m := c.nextUpdate(t)
		if statValue(m.body()) == rows {
			v, ok := hub.ParseVersion(m.id)
			if !ok {
				t.Fatalf("got id %q, want a version", m.id)
			}
			return v
		}
	}
}

// newDataDir returns a fresh, short folder under os.TempDir for one
// PostgreSQL cluster, removed when the test ends (after the cluster stops:
// clean-ups run last in, first out). t.TempDir is closed to the postgres
// user and too long for the socket path.
func newDataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// runPG runs a PostgreSQL client program found next to the server's
// binaries (as cred, when not nil) and fails the test with its output when
// it fails.
func runPG(t *testing.T, cred *syscall.Credential, name string, args ...string) {
	t.Helper()
	bin, err := pgserver.Find()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Dir = os.TempDir()
	cmd.Env = append(os.Environ(), "LC_MESSAGES=C")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
}

// execSQL runs statement on its own connection to the database at url.
func execSQL(t *testing.T, url, statement string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), contractWait)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting for %q: %v", statement, err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(ctx, statement); err != nil {
		t.Fatalf("%s: %v", statement, err)
	}
}

// queryText returns the one text value query gives on the database at url.
func queryText(t *testing.T, url, query string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), contractWait)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatalf("connecting for %q: %v", query, err)
	}
	defer conn.Close(context.Background())
	var v string
	if err := conn.QueryRow(ctx, query).Scan(&v); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return v
}

// awaitText waits until query gives want on the database at url.
func awaitText(t *testing.T, url, query, want string) {
	t.Helper()
	eventually(t, query+" = "+want, func() bool { return queryText(t, url, query) == want })
}
