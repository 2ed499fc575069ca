package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

// logicalDB returns a fresh migrated database switched to logical mode, as
// an operator prepares one with 'dashboard feed logical'.
func logicalDB(t *testing.T) string {
	t.Helper()
	pgtest.RequireLogical(t)
	url := pgtest.NewDB(t)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	if _, err := conn.Exec(ctx, "SELECT dashboard.set_feed_mode('logical')"); err != nil {
		t.Fatal(err)
	}
	return url
}

func logicalConfig(url string) config.Config {
	cfg := configFor(url)
	cfg.Feed = config.FeedLogical
	return cfg
}

// feedSlots lists the logical feed's replication slots on the database.
func feedSlots(t *testing.T, s *testServer) []string {
	t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT slot_name FROM pg_replication_slots
		WHERE database = current_database() AND starts_with(slot_name, $1)`, listen.SlotPrefix)
	if err != nil {
		t.Fatal(err)
	}
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return slots
}

// TestServeLogical runs the real program with DASHBOARD_FEED=logical: an
// open stream follows writes and catalog edits with no LISTEN connection
// and no Arms, from one temporary slot that is gone once the server
// stopped.
func TestServeLogical(t *testing.T) {
	t.Parallel()
	url := logicalDB(t)
	s, stop := startStoppable(t, logicalConfig(url), false)
	if s.arms == nil || s.listener != nil || s.logical == nil {
		t.Fatalf("logical mode: got arms %v, listener %v, logical %v; want the logical feed and the arms", s.arms, s.listener, s.logical)
	}
	// The catalog edits of the fixture reach the server as messages too.
	f := &contractFixture{testServer: s}
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	createDashboard(t, s.pool, "ops", true, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	awaitDashboard(t, f.testServer, "ops", "t")

	c := openSSE(t, nil, s.URL+"/d/ops/events")
	c.hello(t)
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	insertRow(t, s)
	m := c.nextUpdate(t)
	wantUpdate(t, m, "#panel-p1")
	if got := statValue(m.body()); got != "1" {
		t.Errorf("panel after one insert: got %q, want 1", got)
	}
	c.close()

	if resp, body := s.get(t, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Errorf("/readyz: got %d %q, want 200", resp.StatusCode, trim(body))
	}
	var listeners int
	if err := s.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query = 'LISTEN dashboard'").Scan(&listeners); err != nil {
		t.Fatal(err)
	}
	if listeners != 0 {
		t.Errorf("LISTEN connections in logical mode: got %d, want 0", listeners)
	}
	st, _ := s.logical.State()
	if got := feedSlots(t, s); len(got) != 1 || got[0] != st.Slot {
		t.Errorf("slots while serving: got %q, want [%s]", got, st.Slot)
	}

	if err := stop(); err != nil {
		t.Fatalf("serve returned %v", err)
	}
	// The slot is gone by the time serve returned.
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_replication_slots
		WHERE database = current_database() AND starts_with(slot_name, $1)`, listen.SlotPrefix).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("slots after serve returned: got %d, want 0", n)
	}
}

// serveErr runs serve with cfg and returns its error, which must come
// before it starts serving.
func serveErr(t *testing.T, cfg config.Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	return serve(ctx, cfg, slog.New(slog.DiscardHandler), serveOptions{started: func(*running) {
		t.Errorf("serve started, want it to refuse")
		cancel()
	}})
}

// TestServeRefusesFeedMismatch: a server whose DASHBOARD_FEED differs from
// the database's triggers would see no change; it refuses to start and
// names the command that fixes it. So does a logical server whose role may
// not replicate.
func TestServeRefusesFeedMismatch(t *testing.T) {
	t.Parallel()
	pgtest.RequireLogical(t)
	t.Run("logical server, notify database", func(t *testing.T) {
		t.Parallel()
		err := serveErr(t, logicalConfig(pgtest.NewDB(t)))
		if err == nil || !strings.Contains(err.Error(), "dashboard feed logical") {
			t.Errorf("got %v, want an error naming 'dashboard feed logical'", err)
		}
	})
	t.Run("notify server, logical database", func(t *testing.T) {
		t.Parallel()
		err := serveErr(t, configFor(logicalDB(t)))
		if err == nil || !strings.Contains(err.Error(), "dashboard feed notify") || !strings.Contains(err.Error(), "DASHBOARD_FEED=logical") {
			t.Errorf("got %v, want an error naming 'dashboard feed notify' and DASHBOARD_FEED=logical", err)
		}
	})
	t.Run("role without REPLICATION", func(t *testing.T) {
		t.Parallel()
		if testing.Short() || pgtestExternal() {
			t.Skip("creates a role on the package's own server")
		}
		url := logicalDB(t)
		role := fmt.Sprintf("dash_norepl_%d", time.Now().UnixNano())
		conn, err := pgx.Connect(context.Background(), url)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close(context.Background())
		if _, err := conn.Exec(context.Background(), "CREATE ROLE "+role+" LOGIN NOREPLICATION; GRANT USAGE ON SCHEMA dashboard TO "+role+
			"; GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+role); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role) })
		cfg := logicalConfig(url + " user=" + role)
		cfg.Migrate = false
		err = serveErr(t, cfg)
		if err == nil || !strings.Contains(err.Error(), "ALTER ROLE") || !strings.Contains(err.Error(), "REPLICATION") {
			t.Errorf("got %v, want an error naming ALTER ROLE ... REPLICATION", err)
		}
	})
}

func pgtestExternal() bool { return os.Getenv("TEST_DATABASE_URL") != "" }

// TestServeLogicalWaitsForSlot: while creating the slot waits for an open
// transaction, /readyz says so, the log too, and the server keeps
// refreshing open screens by re-querying; once the transaction ends it
// streams. Not parallel: the open transaction would hold up every other
// test's slot.
func TestServeLogicalWaitsForSlot(t *testing.T) {
	url := logicalDB(t)
	ctx := context.Background()
	open, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer open.Close(ctx)
	// The open transaction writes elsewhere: the server's watch of t must
	// not wait for it.
	if _, err := open.Exec(ctx, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '');
		CREATE TABLE busy (id int)`); err != nil {
		t.Fatal(err)
	}
	if _, err := open.Exec(ctx, "BEGIN; INSERT INTO busy VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	srvCtx, cancel := context.WithCancel(ctx)
	logs := &syncBuffer{}
	started := make(chan *running, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(srvCtx, logicalConfig(url), slog.New(slog.NewTextHandler(logs, nil)), serveOptions{
			slotWait: 200 * time.Millisecond, started: func(r *running) { started <- r }})
	}()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve returned %v", err)
		}
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	}()
	var r *running
	select {
	case r = <-started:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	case <-time.After(time.Minute):
		t.Fatal("serve did not start")
	}
	s := &testServer{running: r, URL: "http://" + r.addr, logs: logs}
	createDashboard(t, s.pool, "ops", true, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	eventually(t, "/readyz to say why it is not ready", func() bool {
		resp, body := s.get(t, "/readyz")
		return resp.StatusCode == http.StatusServiceUnavailable &&
			strings.Contains(body, "creating replication slot: waiting for open transactions")
	})
	if !strings.Contains(logs.String(), "creating replication slot: waiting for open transactions") {
		t.Errorf("log lacks the wait; logs:\n%s", logs.String())
	}
	// The dashboard, created meanwhile, is found by the periodic resync,
	// and so is a write.
	eventually(t, "dashboard ops in the catalog", func() bool {
		snap := s.engine.Snapshot()
		return snap != nil && snap.Dashboard("ops") != nil
	})
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	defer c.close()
	c.hello(t)
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	insertRow(t, s)
	if m := c.nextUpdate(t); statValue(m.body()) != "1" {
		t.Errorf("panel after a write while the slot waits: got %q, want 1", statValue(m.body()))
	}

	if _, err := open.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "/readyz to turn ready", func() bool {
		resp, _ := s.get(t, "/readyz")
		return resp.StatusCode == http.StatusOK
	})
}

// TestFeedCommand switches a database's feed mode back and forth, and
// refuses a role that does not own the schema, with what to do.
func TestFeedCommand(t *testing.T) {
	pgtest.RequireLogical(t)
	url := pgtest.NewDB(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	t.Setenv("DASHBOARD_FEED", "")
	ctx := context.Background()

	if out := runOK(t, "feed"); out != "feed mode: notify\n" {
		t.Errorf("feed on a new database: printed %q, want notify", out)
	}
	if out := runOK(t, "feed", "logical"); !strings.Contains(out, "feed mode is now logical") || !strings.Contains(out, "DASHBOARD_FEED=logical") {
		t.Errorf("feed logical: printed %q", out)
	}
	if out := runOK(t, "feed"); out != "feed mode: logical\n" {
		t.Errorf("feed after the switch: printed %q, want logical", out)
	}
	if out := runOK(t, "feed", "logical"); !strings.Contains(out, "already logical") {
		t.Errorf("feed logical again: printed %q, want 'already logical'", out)
	}
	for _, args := range [][]string{{"feed", "wal"}, {"feed", "notify", "logical"}} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "notify or logical") {
			t.Errorf("dashboard %s: got %v, want an error naming notify or logical", strings.Join(args, " "), err)
		}
	}

	// A transaction open across the switch: the command waits for it, and
	// past its bound says which one and what that means.
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE TABLE w (id int); BEGIN; INSERT INTO w VALUES (1)"); err != nil {
		t.Fatal(err)
	}
	defer func(d time.Duration) { feedSwitchWait = d }(feedSwitchWait)
	feedSwitchWait = 300 * time.Millisecond
	out := runOK(t, "feed", "notify")
	if pid := fmt.Sprint(conn.PgConn().PID()); !strings.Contains(out, "gave up") || !strings.Contains(out, pid) {
		t.Errorf("feed notify with a transaction open: printed %q, want it to give up naming pid %s", out, pid)
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		t.Fatal(err)
	}

	// Only the schema's owner may switch.
	role := fmt.Sprintf("dash_feeder_%d", time.Now().UnixNano())
	if _, err := conn.Exec(ctx, "CREATE ROLE "+role+" LOGIN; GRANT USAGE ON SCHEMA dashboard TO "+role+
		"; GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+role); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = conn.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role) })
	t.Setenv("DATABASE_URL", url+" user="+role)
	var buf bytes.Buffer
	err = run(ctx, []string{"feed", "logical"}, &buf, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "owner of schema dashboard") {
		t.Errorf("feed logical by %s: got %v, want an error naming the owner of schema dashboard", role, err)
	}
}
