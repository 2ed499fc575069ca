package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/provision"
)

const salesYAML = `slug: sales
title: Sales
time: {from: now-6h, to: now}
variables:
  - {name: region, kind: query, sql: "SELECT DISTINCT region FROM orders ORDER BY 1", multi: true}
panels:
  - slug: revenue
    title: Revenue
    kind: stat
    sql: |
      SELECT sum(amount) FROM orders
      WHERE region = ANY(:region) AND created_at >= :from
    options: {prefix: "$", decimals: 0}
  - slug: latest
    title: Latest orders
    kind: feed
    sql: SELECT id, amount FROM orders ORDER BY id DESC
    grid: {width: 2, height: 2}
`

const shopTables = `CREATE TABLE orders (id int, amount numeric, region text, created_at timestamptz);
INSERT INTO orders VALUES (1, 10, 'eu', now())`

func writeDir(t *testing.T, dir string, files map[string]string) string {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// runErr runs the program and returns its error, stdout and stderr.
func runErr(t *testing.T, args ...string) (error, string, string) {
	t.Helper()
	var out, errOut bytes.Buffer
	err := run(context.Background(), args, &out, &errOut)
	return err, out.String(), errOut.String()
}

func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	return 1
}

// dashboardRows is every dashboard and panel row with its xmin: equal
// values mean nothing was written.
func dashboardRows(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), `
		SELECT coalesce((SELECT string_agg(xmin::text || d::text, ',' ORDER BY id) FROM dashboard.dashboards d), '') || '|' ||
		       coalesce((SELECT string_agg(xmin::text || p::text, ',' ORDER BY id) FROM dashboard.panels p), '')`).Scan(&s); err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFileCommands(t *testing.T) {
	url := pgtest.NewDB(t)
	t.Setenv("DATABASE_URL", url)
	ctx := context.Background()
	runOK(t, "migrate")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, shopTables); err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, "", map[string]string{"sales.yaml": salesYAML})

	// lint, online and offline.
	if out := runOK(t, "lint", dir); !strings.Contains(out, ": 1 dashboards, 2 panels: ok\n") {
		t.Errorf("lint printed %q", out)
	}
	broken := writeDir(t, "", map[string]string{"sales.yaml": strings.Replace(salesYAML, "SELECT id, amount FROM", "SELECT id, amont FROM", 1)})
	err, _, stderr := runErr(t, "lint", broken)
	if err == nil || err.Error() != "1 problem in "+broken+"; nothing was changed" {
		t.Errorf("lint of broken SQL: got %v", err)
	}
	if want := `sales.yaml:17: panel latest: ERROR: column "amont" does not exist (SQLSTATE 42703)`; !strings.HasPrefix(stderr, want) {
		t.Errorf("lint of broken SQL printed %q, want it to start with %q", stderr, want)
	}
	if out := runOK(t, "lint", "--offline", broken); !strings.Contains(out, "ok (offline: SQL not checked against a database)") {
		t.Errorf("lint --offline of broken SQL printed %q, want ok", out)
	}
	unknown := writeDir(t, "", map[string]string{"sales.yaml": strings.Replace(salesYAML, "title: Sales", "title: Sales\ncolour: red", 1)})
	if err, _, stderr := runErr(t, "lint", "--offline", unknown); err == nil || !strings.HasPrefix(stderr, "sales.yaml:3: colour: unknown key") {
		t.Errorf("lint --offline of an unknown key: got %v, %q", err, stderr)
	}

	// diff, apply, diff again.
	out := runOK(t, "diff", dir)
	if !strings.Contains(out, "+ dashboard sales (sales.yaml)\n  + panel revenue\n  + panel latest\n") {
		t.Errorf("diff before apply printed %q", out)
	}
	if err, _, _ := runErr(t, "diff", "--exit-code", dir); exitCode(err) != 1 || err.(*exitError).err != nil {
		t.Errorf("diff --exit-code with differences: got %v, want exit status 1 and no message", err)
	}
	out = runOK(t, "apply", dir)
	if !strings.Contains(out, "+ dashboard sales") || !strings.Contains(out, "applied "+dir+": 1 dashboards, 2 panels\n") {
		t.Errorf("apply printed %q", out)
	}
	applied := dashboardRows(t, conn)
	if out := runOK(t, "apply", dir); !strings.Contains(out, "up to date") || dashboardRows(t, conn) != applied {
		t.Errorf("a second apply printed %q or wrote rows", out)
	}
	if out := runOK(t, "diff", "--exit-code", dir); !strings.HasPrefix(out, "no differences") {
		t.Errorf("diff after apply printed %q", out)
	}

	// A refused apply changes nothing and says where.
	if err, _, stderr := runErr(t, "apply", broken); err == nil || !strings.Contains(stderr, "sales.yaml:17: panel latest: ERROR") {
		t.Errorf("apply of broken SQL: got %v, %q", err, stderr)
	}
	if dashboardRows(t, conn) != applied {
		t.Errorf("a refused apply wrote rows")
	}

	// Drift: an edit in SQL shows in diff, and --exit-code fails CI.
	if _, err := conn.Exec(ctx, "UPDATE dashboard.panels SET title = 'Edited' WHERE slug = 'latest'"); err != nil {
		t.Fatal(err)
	}
	err, out, _ = runErr(t, "diff", "--exit-code", dir)
	if exitCode(err) != 1 {
		t.Errorf("diff --exit-code after an edit in SQL: got %v, want status 1", err)
	}
	for _, want := range []string{"! dashboard sales: drift: its rows were edited since they were applied from sales.yaml\n", "  ~ panel latest\n      title: Edited -> Latest orders\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("diff after an edit in SQL printed %q, want %q", out, want)
		}
	}
	if err, _, _ := runErr(t, "diff", "--exit-code", unknown); exitCode(err) != 2 {
		t.Errorf("diff --exit-code of a broken folder: got %v, want status 2", err)
	}

	// export -> apply -> export gives the same bytes.
	exported := t.TempDir()
	if out := runOK(t, "export", "sales", "-o", exported); !strings.Contains(out, "sales.yaml\n") || !strings.Contains(out, "dashboard.schema.json\n") {
		t.Errorf("export printed %q", out)
	}
	first, _ := os.ReadFile(filepath.Join(exported, "sales.yaml"))
	runOK(t, "apply", exported)
	again := t.TempDir()
	runOK(t, "export", "-o", again)
	second, _ := os.ReadFile(filepath.Join(again, "sales.yaml"))
	if !bytes.Equal(first, second) {
		t.Errorf("export -> apply -> export differs:\n%s\nwant\n%s", second, first)
	}
	if err, _, _ := runErr(t, "export", "nosuch", "-o", t.TempDir()); err == nil || !strings.Contains(err.Error(), "no dashboard or playlist nosuch") {
		t.Errorf("export of an unknown slug: got %v", err)
	}

	// --prune removes what the folder lacks.
	if _, err := conn.Exec(ctx, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('by-hand', 'By hand')"); err != nil {
		t.Fatal(err)
	}
	if out := runOK(t, "apply", dir); !strings.Contains(out, "dashboard by-hand: not in the folder; kept") {
		t.Errorf("apply without --prune printed %q", out)
	}
	if out := runOK(t, "apply", "--prune", dir); !strings.Contains(out, "- dashboard by-hand: not in the folder\n") {
		t.Errorf("apply --prune printed %q", out)
	}

	for _, args := range [][]string{{"lint"}, {"lint", dir, dir}, {"apply"}, {"diff"}, {"export", "sales"}, {"apply", "--nope", dir}, {"schema", "x"}} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("dashboard %s: got no error, want one", strings.Join(args, " "))
		}
	}
}

func TestSchemaCommand(t *testing.T) {
	want, err := os.ReadFile("../../docs/dashboard.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	// No configuration needed, even a broken one.
	t.Setenv("DASHBOARD_ADDR", "nonsense")
	if out := runOK(t, "schema"); out != string(want) {
		t.Errorf("dashboard schema is not docs/dashboard.schema.json")
	}
}

func TestHelpListsFileCommands(t *testing.T) {
	out := runOK(t, "help")
	for _, want := range []string{"dashboard export [SLUG...] -o DIR", "dashboard lint [--offline] DIR",
		"dashboard diff [--prune] [--exit-code] DIR", "dashboard apply [--prune] DIR", "dashboard schema",
		"DASHBOARD_PROVISION_DIR", "DASHBOARD_PROVISION_PRUNE"} {
		if !strings.Contains(out, want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

// waitProvision waits until the server's provisioning state satisfies ok.
func waitProvision(t *testing.T, w *provision.Watcher, what string, ok func(provision.WatchState) bool) provision.WatchState {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		st, changed := w.State()
		if ok(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("waiting for %s: state %+v", what, st)
		}
	}
}

// TestServeProvisionDir: serve applies DASHBOARD_PROVISION_DIR before it
// serves, again when a file changes, never a broken edit (logged with its
// file and line), and a restart on unchanged files writes nothing.
func TestServeProvisionDir(t *testing.T) {
	cfg := testConfig(t)
	conn, err := pgx.Connect(context.Background(), cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(context.Background(), shopTables); err != nil {
		t.Fatal(err)
	}
	dir := writeDir(t, "", map[string]string{"sales.yaml": salesYAML})
	cfg.ProvisionDir = dir

	// A broken folder stops the start, with the file and line.
	writeDir(t, dir, map[string]string{"bad.yaml": "slug: bad\ntitle: Bad\nrefresh: 2d\n"})
	err = serve(context.Background(), cfg, newLogger(cfg, io.Discard), serveOptions{})
	if err == nil || !strings.Contains(err.Error(), "DASHBOARD_PROVISION_DIR="+dir+": nothing applied:\nbad.yaml:3: refresh:") {
		t.Fatalf("serve with a broken folder: got %v, want it refused with bad.yaml:3", err)
	}
	os.Remove(filepath.Join(dir, "bad.yaml"))

	s, stop := startStoppable(t, cfg, false, func(o *serveOptions) { o.provisionPoll = 20 * time.Millisecond })
	if resp, body := s.get(t, "/d/sales"); resp.StatusCode != 200 || !strings.Contains(body, "Latest orders") {
		t.Fatalf("/d/sales right after the start: %d", resp.StatusCode)
	}
	st, _ := s.provision.State()
	if st.Applied != 1 {
		t.Errorf("after the start: %+v, want one apply", st)
	}

	// An edit is applied.
	writeDir(t, dir, map[string]string{"sales.yaml": strings.Replace(salesYAML, "title: Latest orders", "title: Newest orders", 1)})
	waitProvision(t, s.provision, "the edit", func(st provision.WatchState) bool { return st.Applied == 2 })
	var title string
	conn.QueryRow(context.Background(), "SELECT title FROM dashboard.panels WHERE slug = 'latest'").Scan(&title)
	if title != "Newest orders" {
		t.Errorf("after the edit: panel title %q", title)
	}

	// A broken edit is logged with its file and line and changes nothing.
	before := dashboardRows(t, conn)
	writeDir(t, dir, map[string]string{"sales.yaml": strings.Replace(salesYAML, "kind: feed", "kind: feed\n    colour: red", 1)})
	st = waitProvision(t, s.provision, "the broken edit", func(st provision.WatchState) bool { return st.Err != nil })
	if !strings.Contains(s.logs.String(), `problem="sales.yaml:17: panels[1].colour: unknown key`) {
		t.Errorf("the log lacks the problem at sales.yaml:17:\n%s", s.logs.String())
	}
	if dashboardRows(t, conn) != before {
		t.Errorf("a broken edit changed the database")
	}
	writeDir(t, dir, map[string]string{"sales.yaml": salesYAML})
	waitProvision(t, s.provision, "the fix", func(st provision.WatchState) bool { return st.Applied == 3 && st.Err == nil })
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	// A restart on the same files writes nothing.
	applied := dashboardRows(t, conn)
	s2 := startServer(t, cfg, false)
	if st, _ := s2.provision.State(); st.Applied != 0 || st.Err != nil {
		t.Errorf("restart: %+v, want nothing applied", st)
	}
	if dashboardRows(t, conn) != applied {
		t.Errorf("a restart on unchanged files wrote rows")
	}
}
