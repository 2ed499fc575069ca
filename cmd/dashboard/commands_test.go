package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgtest"
)

// runOK runs the program with args and returns what it printed.
func runOK(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	if err := run(context.Background(), args, &out, io.Discard); err != nil {
		t.Fatalf("dashboard %s: %v", strings.Join(args, " "), err)
	}
	return out.String()
}

func TestCommandsAgainstDatabase(t *testing.T) {
	url := pgtest.NewDB(t)
	t.Setenv("DATABASE_URL", url)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	ctx := context.Background()

	if out := runOK(t, "migrate"); !strings.Contains(out, "applied migration 0001") {
		t.Errorf("first migrate printed %q, want the applied migrations", out)
	}
	if out := runOK(t, "migrate"); !strings.Contains(out, "up to date") {
		t.Errorf("second migrate printed %q, want 'up to date'", out)
	}
	// psql on DATABASE_URL, its arguments passed on; its failure is ours.
	if out := runOK(t, "psql", "-XAtc", "SELECT count(*) FROM dashboard.schema_migrations WHERE version = 1"); strings.TrimSpace(out) != "1" {
		t.Errorf("psql -c printed %q, want 1", out)
	}
	if err := run(ctx, []string{"psql", "-X", "-v", "ON_ERROR_STOP=1", "-c", "SELECT no_such_column"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "psql exited with status") {
		t.Errorf("psql with a failing statement: got %v, want its exit status", err)
	}

	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE items (id int); INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('secret', 'Secret', 'private')`); err != nil {
		t.Fatal(err)
	}
	watched := func() bool {
		var ok bool
		if err := conn.QueryRow(ctx, "SELECT dashboard.is_watched('items')").Scan(&ok); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	runOK(t, "watch", "items")
	if !watched() {
		t.Errorf("after watch: items is not watched")
	}
	runOK(t, "unwatch", "items")
	if watched() {
		t.Errorf("after unwatch: items is still watched")
	}
	if err := run(ctx, []string{"watch", "no_such_table"}, io.Discard, io.Discard); err == nil ||
		!strings.Contains(err.Error(), "no_such_table") {
		t.Errorf("watch of a missing table: got %v, want an error naming it", err)
	}

	out := runOK(t, "token", "create", "secret", "--label", "lobby TV", "--ttl", "1h")
	link := regexp.MustCompile(`http://127\.0\.0\.1:8080/d/secret\?token=dbt_\S+`).FindString(out)
	if link == "" {
		t.Fatalf("token create printed %q, want a kiosk link on DASHBOARD_ADDR", out)
	}
	list := runOK(t, "token", "list")
	if !strings.Contains(list, "lobby TV") || !strings.Contains(list, "secret") {
		t.Errorf("token list printed %q, want the new token", list)
	}
	if strings.Contains(list, "dbt_") {
		t.Errorf("token list shows a secret: %q", list)
	}
	id := regexp.MustCompile(`(?m)^(\d+)\s+secret`).FindStringSubmatch(list)
	if id == nil {
		t.Fatalf("no token id in %q", list)
	}
	runOK(t, "token", "revoke", id[1])
	if list := runOK(t, "token", "list"); strings.Contains(list, "lobby TV") {
		t.Errorf("after revoke, token list still shows it: %q", list)
	}
	for _, args := range [][]string{
		{"token"}, {"token", "create"}, {"token", "create", "nosuch", "--label", "x"},
		{"token", "create", "secret"}, {"token", "revoke", "abc"}, {"token", "frob"},
	} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("dashboard %s: got no error, want one", strings.Join(args, " "))
		}
	}
	// A label over the schema's limit is refused with a message that says
	// so, not with the database's constraint error.
	err = run(ctx, []string{"token", "create", "secret", "--label", strings.Repeat("é", 201)}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "at most 200 characters") {
		t.Errorf("token create with a 201-character label: got %v, want an error naming the 200-character limit", err)
	}
	if err := run(ctx, []string{"token", "create", "secret", "--label", strings.Repeat("é", 200)}, io.Discard, io.Discard); err != nil {
		t.Errorf("token create with a 200-character label: got %v, want it created", err)
	}
	// The address people use, when it is not the one the server binds.
	t.Setenv("DASHBOARD_PUBLIC_URL", "https://dash.example.com/")
	if out := runOK(t, "token", "create", "secret", "--label", "wall"); !regexp.MustCompile(`(?m)^  https://dash\.example\.com/d/secret\?token=dbt_\S+$`).MatchString(out) {
		t.Errorf("token create with DASHBOARD_PUBLIC_URL printed %q, want a link on it", out)
	}
}

// TestDemoOnEmbeddedDatabase runs the demo the way a user does, with no
// DATABASE_URL: a private PostgreSQL is started in the data folder,
// stopped on cancel (no server process or lock left), and a second run
// starts on the same data without duplicating the dashboards.
func TestDemoOnEmbeddedDatabase(t *testing.T) {
	if testing.Short() {
		t.Skip("starts its own PostgreSQL")
	}
	// Short, traversable path: the socket lives in the data folder, and the
	// postgres user must reach it when the test runs as root.
	dir, err := os.MkdirTemp("", "dd")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(dir, 0o755)
	t.Cleanup(func() { os.RemoveAll(dir) })
	t.Setenv("DATABASE_URL", "")
	os.Unsetenv("DATABASE_URL")
	t.Setenv("DASHBOARD_DATA_DIR", dir)
	t.Setenv("DASHBOARD_DEMO_RATE", "20")

	for round := 1; round <= 2; round++ {
		cfg := testConfig(t)
		cfg.DatabaseURL = ""
		cfg.DataDir = dir
		cfg.DemoRate = 20
		ctx, cancel := context.WithCancel(context.Background())
		started := make(chan *running, 1)
		done := make(chan error, 1)
		go func() {
			done <- serve(ctx, cfg, newLogger(cfg, io.Discard), serveOptions{demo: true, stdout: io.Discard,
				started: func(r *running) { started <- r }})
		}()
		var r *running
		select {
		case r = <-started:
		case err := <-done:
			cancel()
			t.Fatalf("round %d: demo: %v", round, err)
		case <-time.After(90 * time.Second):
			cancel()
			t.Fatalf("round %d: demo did not start", round)
		}
		resp, err := http.Get("http://" + r.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if n := strings.Count(string(body), `href="/d/`); resp.StatusCode != 200 || n != 2 {
			t.Errorf("round %d: index: got %d with %d dashboards, want 200 with 2", round, resp.StatusCode, n)
		}
		pidFile := filepath.Join(dir, "postgres", "postmaster.pid")
		pid := postmasterPID(t, pidFile)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: demo returned %v", round, err)
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("round %d: demo did not stop", round)
		}
		if _, err := os.Stat(pidFile); !os.IsNotExist(err) {
			t.Errorf("round %d: postmaster.pid left after stop (err %v)", round, err)
		}
		if alive(pid) {
			t.Errorf("round %d: postgres pid %d still running after stop", round, pid)
		}
	}

	// psql on the embedded database: started for the session, stopped after.
	if out := runOK(t, "psql", "-XAtc", "SELECT count(*) FROM dashboard.dashboards"); strings.TrimSpace(out) != "2" {
		t.Errorf("psql on the embedded database printed %q, want 2 (the demo's dashboards)", out)
	}
	if _, err := os.Stat(filepath.Join(dir, "postgres", "postmaster.pid")); !os.IsNotExist(err) {
		t.Errorf("postmaster.pid left after dashboard psql (err %v)", err)
	}
}

// alive reports whether pid runs. A zombie does not count: PID 1 of some
// containers never reaps the orphaned postmaster, so kill(pid, 0) alone
// would call a stopped server alive.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func postmasterPID(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	var pid int
	for _, c := range strings.SplitN(string(b), "\n", 2)[0] {
		if c < '0' || c > '9' {
			break
		}
		pid = pid*10 + int(c-'0')
	}
	if pid == 0 {
		t.Fatalf("no pid in %s", path)
	}
	return pid
}
