package provision

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
)

func salesFile(t *testing.T) string {
	t.Helper()
	return readText(t, "testdata/sales.yaml")
}

// opsFile is a second, smaller dashboard.
const opsFile = `slug: ops
title: Operations
visibility: private
panels:
  - slug: open
    title: Open orders
    kind: stat
    sql: SELECT count(*) FROM orders WHERE status = 'open'
  - slug: latest
    title: Latest
    kind: feed
    sql: |
      SELECT id, created_at
      FROM orders
      ORDER BY created_at DESC
    grid: {width: 2, height: 2}
    options: {limit: 5}
`

// TestExportApplyExport: a dashboard made in SQL, exported, applied (to
// the same database and to a fresh one) and exported again gives the
// same bytes; applying the same files again writes nothing.
func TestExportApplyExport(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	exec(t, pool, `
		INSERT INTO dashboard.dashboards (slug, title, description, visibility, max_refresh_hz, position, time_zone,
			refresh_seconds, variables, time_from, time_to)
		VALUES ('made-in-sql', 'Made in SQL', E'two\nlines', 'private', 0.5, 7, 'Asia/Tokyo', 300,
			'[{"name": "region", "kind": "query", "sql": "SELECT DISTINCT region FROM orders", "multi": true},
			  {"name": "q", "kind": "text", "label": "Search"}]', 'now-1d', 'now');
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, width, height, options, depends_on)
		SELECT id, 'b', 'Second', 'table', E'SELECT id\nFROM orders\nWHERE region = ANY(:region)\n', 20, 3, 2, '{"unit": "ms", "decimals": 1}', '{public.audit}'
		FROM dashboard.dashboards;
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position)
		SELECT id, 'a', 'First', 'stat', 'SELECT count(*) FROM orders WHERE created_at >= :from', 10 FROM dashboard.dashboards;`)
	ctx := t.Context()
	first := t.TempDir()
	written, err := Export(ctx, pool, nil, first)
	if err != nil {
		t.Fatalf("Export: %v", err)
	}
	if strings.Join(written, " ") != "made-in-sql.yaml dashboard.schema.json" {
		t.Errorf("Export wrote %q", written)
	}
	exported := readDir(t, first)
	contains(t, "the exported file", exported["made-in-sql.yaml"],
		"# yaml-language-server: $schema=dashboard.schema.json\nslug: made-in-sql\n",
		"    sql: |\n      SELECT id\n      FROM orders\n      WHERE region = ANY(:region)\n")
	schema, _ := Schema()
	if exported[SchemaFile] != string(schema) {
		t.Errorf("Export did not write the schema beside the files")
	}

	// Applied over the rows it came from: positions are renumbered and the
	// source recorded, nothing else.
	if res := apply(t, pool, first, false); !res.Applied {
		t.Fatalf("the first apply wrote nothing; plan %+v", res.Plan)
	}
	second := t.TempDir()
	if _, err := Export(ctx, pool, nil, second); err != nil {
		t.Fatal(err)
	}
	if got := readDir(t, second); !maps.Equal(got, exported) {
		t.Errorf("export -> apply -> export differs:\n%s\nwant\n%s", got["made-in-sql.yaml"], exported["made-in-sql.yaml"])
	}

	// Applied to a fresh database.
	fresh := newDB(t)
	apply(t, fresh, first, false)
	third := t.TempDir()
	if _, err := Export(ctx, fresh, []string{"made-in-sql"}, third); err != nil {
		t.Fatal(err)
	}
	if got := readDir(t, third); !maps.Equal(got, exported) {
		t.Errorf("export -> apply on a fresh database -> export differs:\n%s", got["made-in-sql.yaml"])
	}

	// Nothing to do: nothing written.
	before := rows(t, pool)
	if res := apply(t, pool, first, false); res.Applied || !res.Plan.Empty() {
		t.Errorf("applying the same files again: Applied %v, plan %+v", res.Applied, res.Plan)
	}
	if after := rows(t, pool); after != before {
		t.Errorf("applying the same files again wrote rows:\n%s\nwas\n%s", after, before)
	}

	if _, err := Export(ctx, pool, []string{"made-in-sql", "nosuch", "nope"}, t.TempDir()); err == nil || err.Error() != "no dashboard or playlist nosuch, nope" {
		t.Errorf("Export of unknown slugs: got %v", err)
	}
}

// applyDir is what `dashboard apply` does: read the folder, then apply.
func applyDir(t *testing.T, pool *pgxpool.Pool, dir string, opts ApplyOptions) error {
	set, err := LoadDir(dir)
	if err != nil {
		return err
	}
	_, err = Apply(t.Context(), pool, set, opts)
	return err
}

// TestApplyAllOrNothing: a folder with any problem is refused whole, with
// the problem at its file and line, and the database stays as it was
// (the other, valid, changes of the same folder are not applied either).
func TestApplyAllOrNothing(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	good := map[string]string{"sales.yaml": salesFile(t), "ops.yaml": opsFile}
	apply(t, pool, dir(t, good), false)
	before := rows(t, pool)
	// Every case also renames the ops dashboard, a valid change.
	renamed := strings.Replace(opsFile, "title: Operations", "title: Ops (renamed)", 1)
	panelWith := func(sql string) string {
		return "slug: bad\ntitle: Bad\ntime: {from: now-1h, to: now}\npanels:\n  - slug: ok\n    title: OK\n    kind: stat\n    sql: SELECT 1\n" +
			"  - slug: p\n    title: P\n    kind: table\n    sql: |\n      " + strings.ReplaceAll(sql, "\n", "\n      ") + "\n"
	}
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"a query that writes", map[string]string{"bad.yaml": panelWith("DELETE FROM audit RETURNING id")},
			[]string{"bad.yaml:12: panel p: the query writes (ModifyTable (Delete on public.audit)); queries may only read"}},
		{"a data-modifying CTE", map[string]string{"bad.yaml": panelWith("WITH d AS (DELETE FROM orders RETURNING *)\nSELECT count(*) FROM d")},
			[]string{"bad.yaml:12: panel p: the query writes (ModifyTable (Delete on public.orders)); queries may only read"}},
		{"SELECT FOR UPDATE", map[string]string{"bad.yaml": panelWith("SELECT * FROM orders FOR UPDATE")},
			[]string{"bad.yaml:12: panel p: the query writes (LockRows); queries may only read"}},
		{"broken SQL, at the line of the error", map[string]string{"bad.yaml": panelWith("SELECT id,\n  amont\nFROM orders\nWHERE created_at > :from")},
			[]string{`bad.yaml:14: panel p: ERROR: column "amont" does not exist (SQLSTATE 42703); HINT: Perhaps you meant to reference the column "orders.amount".`}},
		{"not a query", map[string]string{"bad.yaml": panelWith("SHOW work_mem")},
			[]string{"bad.yaml:12: panel p: not a query: a utility statement; only SELECT, VALUES, TABLE and WITH ... SELECT are queries"}},
		{"a variable query that writes", map[string]string{"bad.yaml": "slug: bad\ntitle: Bad\nvariables:\n  - name: v\n    kind: query\n    sql: UPDATE orders SET amount = 0 RETURNING region\n"},
			[]string{"bad.yaml:6: variable v: the query writes (ModifyTable (Update on public.orders)); queries may only read"}},
		{"a dependency that is no table", map[string]string{"bad.yaml": "slug: bad\ntitle: Bad\npanels:\n  - slug: p\n    title: P\n    kind: stat\n    sql: SELECT 1\n    depends_on: [public.orders, public.nosuch]\n"},
			[]string{"bad.yaml:8: panel p: depends_on: no table public.nosuch"}},
		{"an unknown key", map[string]string{"bad.yaml": "slug: bad\ntitle: Bad\npanels:\n  - slug: p\n    title: P\n    kind: stat\n    sql: SELECT 1\n    colour: red\n"},
			[]string{"bad.yaml:8: panels[0].colour: unknown key; known keys here: slug, title, kind, sql, grid, options, depends_on"}},
		{"a dashboard slug twice", map[string]string{"bad.yaml": "slug: sales\ntitle: Bad\n"},
			[]string{"sales.yaml:2: slug: dashboard sales is also defined in bad.yaml:1"}},
		{"a panel slug twice", map[string]string{"bad.yaml": "slug: bad\ntitle: Bad\npanels:\n  - {slug: p, title: P, kind: stat, sql: SELECT 1}\n  - {slug: p, title: Q, kind: stat, sql: SELECT 2}\n"},
			[]string{"bad.yaml:5: panels[1].slug: panel p is defined twice, at lines 4 and 5"}},
		{"a YAML syntax error", map[string]string{"bad.yaml": "slug: bad\ntitle: [Bad\n"},
			[]string{"bad.yaml:1: did not find expected ',' or ']'"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			files := maps.Clone(good)
			files["ops.yaml"] = renamed
			maps.Copy(files, tt.files)
			err := applyDir(t, pool, dir(t, files), testOptions())
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("Apply: got %v, want Problems", err)
			}
			if got := strings.Split(probs.Error(), "\n"); strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("problems:\n got %q\nwant %q", got, tt.want)
			}
			if after := rows(t, pool); after != before {
				t.Errorf("the refused apply changed the database:\n%s\nwas\n%s", after, before)
			}
		})
	}
	// And the same folder without the bad file applies.
	files := maps.Clone(good)
	files["ops.yaml"] = renamed
	apply(t, pool, dir(t, files), false)
}

type panelRow struct {
	id        int64
	xmin      string
	updatedAt time.Time
	position  int
}

func panelRows(t *testing.T, pool *pgxpool.Pool) map[string]panelRow {
	t.Helper()
	rs, err := pool.Query(t.Context(), "SELECT slug, id, xmin::text, updated_at, position FROM dashboard.panels")
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]panelRow)
	for rs.Next() {
		var slug string
		var r panelRow
		if err := rs.Scan(&slug, &r.id, &r.xmin, &r.updatedAt, &r.position); err != nil {
			t.Fatal(err)
		}
		out[slug] = r
	}
	if err := rs.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

func dashboardXmin(t *testing.T, pool *pgxpool.Pool, slug string) string {
	t.Helper()
	var x string
	if err := pool.QueryRow(t.Context(), "SELECT xmin::text FROM dashboard.dashboards WHERE slug = $1", slug).Scan(&x); err != nil {
		t.Fatal(err)
	}
	return x
}

// TestApplyInPlace: panels are matched by slug and updated in place; an
// unchanged panel, and an unchanged dashboard row, are not written at all.
func TestApplyInPlace(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	p := func(slug, sql string) string {
		return fmt.Sprintf("  - {slug: %s, title: %s, kind: stat, sql: %q}\n", slug, strings.ToUpper(slug), sql)
	}
	head := "slug: d\ntitle: D\npanels:\n"
	other := "slug: e\ntitle: E\npanels:\n" + p("e", "SELECT 5")
	folder := dir(t, map[string]string{"d.yaml": head + p("a", "SELECT 1") + p("b", "SELECT 2") + p("c", "SELECT 3"), "e.yaml": other})
	apply(t, pool, folder, false)
	v1 := panelRows(t, pool)
	ex := dashboardXmin(t, pool, "e")

	writeFiles(t, folder, map[string]string{"d.yaml": head + p("a", "SELECT 1") + p("b", "SELECT 22") + p("d", "SELECT 4")})
	res := apply(t, pool, folder, false)
	v2 := panelRows(t, pool)
	if v2["a"] != v1["a"] {
		t.Errorf("unchanged panel a was written: %+v, was %+v", v2["a"], v1["a"])
	}
	if v2["b"].id != v1["b"].id || v2["b"].xmin == v1["b"].xmin {
		t.Errorf("changed panel b: got %+v, was %+v; want the same id, updated", v2["b"], v1["b"])
	}
	if _, ok := v2["c"]; ok {
		t.Errorf("panel c, gone from the file, is still there")
	}
	if d, ok := v2["d"]; !ok || d.position != 2 {
		t.Errorf("new panel d: got %+v, want it at position 2", d)
	}
	if got := dashboardXmin(t, pool, "e"); got != ex || v2["e"] != v1["e"] {
		t.Errorf("dashboard e, unchanged, was written")
	}
	var buf bytes.Buffer
	if err := res.Plan.Write(&buf); err != nil {
		t.Fatal(err)
	}
	want := "~ dashboard d (d.yaml)\n  ~ panel b\n      sql: SELECT 2 -> SELECT 22\n  + panel d\n  - panel c\n"
	if buf.String() != want {
		t.Errorf("plan:\n%s\nwant\n%s", buf.String(), want)
	}

	// Reordering changes positions only.
	writeFiles(t, folder, map[string]string{"d.yaml": head + p("b", "SELECT 22") + p("a", "SELECT 1") + p("d", "SELECT 4")})
	apply(t, pool, folder, false)
	v3 := panelRows(t, pool)
	if v3["a"].id != v1["a"].id || v3["a"].position != 1 || v3["b"].position != 0 || v3["d"] != v2["d"] {
		t.Errorf("after reordering: got %+v", v3)
	}
}

func TestApplyPrune(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	exec(t, pool, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('by-hand', 'By hand')")
	folder := dir(t, map[string]string{"ops.yaml": opsFile})
	res := apply(t, pool, folder, false)
	var buf bytes.Buffer
	res.Plan.Write(&buf)
	contains(t, "the plan", buf.String(), "+ dashboard ops (ops.yaml)\n", "  dashboard by-hand: not in the folder; kept (--prune would remove it)\n")
	var n int
	pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.dashboards").Scan(&n)
	if n != 2 {
		t.Fatalf("without prune: %d dashboards, want 2", n)
	}
	res = apply(t, pool, folder, true)
	buf.Reset()
	res.Plan.Write(&buf)
	if buf.String() != "- dashboard by-hand: not in the folder\n" {
		t.Errorf("prune plan: %q", buf.String())
	}
	var slugs []string
	rs, _ := pool.Query(t.Context(), "SELECT slug FROM dashboard.dashboards")
	for rs.Next() {
		var s string
		rs.Scan(&s)
		slugs = append(slugs, s)
	}
	if strings.Join(slugs, ",") != "ops" {
		t.Errorf("after prune: %q, want ops", slugs)
	}

	// An empty folder is not "delete everything".
	before := rows(t, pool)
	empty := t.TempDir()
	opts := testOptions()
	opts.Prune = true
	if _, err := Apply(t.Context(), pool, load(t, empty), opts); err == nil || !strings.Contains(err.Error(), "holds no dashboard file; refusing to prune every dashboard") {
		t.Errorf("prune with an empty folder: got %v", err)
	}
	if rows(t, pool) != before {
		t.Errorf("prune with an empty folder changed the database")
	}
}

func isWatched(t *testing.T, pool *pgxpool.Pool, table string) bool {
	t.Helper()
	var ok bool
	if err := pool.QueryRow(t.Context(), "SELECT dashboard.is_watched($1::regclass)", table).Scan(&ok); err != nil {
		t.Fatal(err)
	}
	return ok
}

func TestApplyWatchesTables(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	apply(t, pool, dir(t, map[string]string{"sales.yaml": salesFile(t)}), false)
	if !isWatched(t, pool, "orders") {
		t.Errorf("orders, read by the panels, is not watched")
	}
	if isWatched(t, pool, "audit") || isWatched(t, pool, "customers") {
		t.Errorf("a table no panel reads was watched")
	}

	// A relation that cannot be watched does not fail the apply: it is
	// reported, and its panels live on the safety net.
	exec(t, pool, "CREATE MATERIALIZED VIEW totals AS SELECT region, sum(amount) AS total FROM orders GROUP BY region")
	res := apply(t, pool, dir(t, map[string]string{"totals.yaml": "slug: totals\ntitle: Totals\npanels:\n  - {slug: t, title: T, kind: table, sql: SELECT * FROM totals}\n"}), false)
	if !res.Applied || len(res.Unwatched) != 1 || res.Unwatched[0].Table != "public.totals" ||
		!strings.Contains(res.Unwatched[0].Reason, "only tables and partitioned tables can be watched") {
		t.Errorf("a panel over a materialized view: applied %v, unwatched %+v", res.Applied, res.Unwatched)
	}
}

// lockOrders holds a lock on orders that CREATE TRIGGER waits for, and
// returns the holder's pid and a function that releases it.
func lockOrders(t *testing.T, pool *pgxpool.Pool) (int, func()) {
	t.Helper()
	tx, err := pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var pid int
	if err := tx.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "LOCK TABLE orders IN ROW EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	release := func() { once.Do(func() { tx.Rollback(context.Background()) }) }
	t.Cleanup(release)
	return pid, release
}

// TestApplyWaitsForTableLock: watching a table waits for its writers; the
// apply retries, and succeeds once the lock is released, or fails whole,
// naming the table and the session in the way.
func TestApplyWaitsForTableLock(t *testing.T) {
	t.Parallel()
	t.Run("released", func(t *testing.T) {
		pool := newDB(t)
		_, release := lockOrders(t, pool)
		opts := testOptions()
		retries := 0
		opts.Watch.OnRetry = func(attempt int, holders []string) {
			retries++
			release()
		}
		if err := applyDir(t, pool, dir(t, map[string]string{"sales.yaml": salesFile(t)}), opts); err != nil {
			t.Fatalf("Apply: %v", err)
		}
		if retries != 1 || !isWatched(t, pool, "orders") {
			t.Errorf("got %d retries and orders watched %v, want 1 and true", retries, isWatched(t, pool, "orders"))
		}
	})
	t.Run("held past the retries", func(t *testing.T) {
		pool := newDB(t)
		before := rows(t, pool)
		pid, _ := lockOrders(t, pool)
		err := applyDir(t, pool, dir(t, map[string]string{"sales.yaml": salesFile(t)}), testOptions())
		var locked *catalog.LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("Apply: got %v, want a *catalog.LockedError", err)
		}
		contains(t, "the error", err.Error(), "watching public.orders: its lock was not granted within 100ms in 3 attempts (held by pid "+fmt.Sprint(pid)+" (RowExclusiveLock",
			"LOCK TABLE orders IN ROW EXCLUSIVE MODE", "; nothing was applied")
		if after := rows(t, pool); after != before {
			t.Errorf("the failed apply wrote rows:\n%s", after)
		}
	})
}

// TestConcurrentApplies: two applies at once take turns on the apply lock,
// and the second decides what to write only once it holds it: it updates
// the first one's rows in place instead of inserting them again.
func TestConcurrentApplies(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	first := dir(t, map[string]string{"ops.yaml": opsFile})
	second := dir(t, map[string]string{"ops.yaml": strings.Replace(opsFile, "title: Open orders", "title: Open", 1)})
	locked, release := make(chan struct{}), make(chan struct{})
	optsA := testOptions()
	optsA.afterLock = func() {
		close(locked)
		<-release
	}
	errA := make(chan error, 1)
	go func() { errA <- applyDir(t, pool, first, optsA) }()
	select {
	case <-locked:
	case err := <-errA:
		t.Fatalf("the first apply ended early: %v", err)
	}
	errB := make(chan error, 1)
	go func() { errB <- applyDir(t, pool, second, testOptions()) }()
	// The second waits for the lock (as pg_locks shows) and nothing else.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var waiting int
		err := pool.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid = $1 AND objid = $2`, int64(catalog.ApplyLockKey>>32), int64(catalog.ApplyLockKey&0xffffffff)).Scan(&waiting)
		if err != nil {
			t.Fatal(err)
		}
		if waiting == 1 {
			break
		}
		select {
		case err := <-errB:
			t.Fatalf("the second apply did not wait for the first: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the second apply never waited for the apply lock")
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(release)
	if err := <-errA; err != nil {
		t.Fatalf("first apply: %v", err)
	}
	afterA := panelRows(t, pool)
	if err := <-errB; err != nil {
		t.Fatalf("second apply: %v", err)
	}
	afterB := panelRows(t, pool)
	if afterB["open"].id != afterA["open"].id || afterB["latest"] != afterA["latest"] {
		t.Errorf("the second apply did not update the first one's rows in place: %+v, then %+v", afterA, afterB)
	}
	var title string
	pool.QueryRow(t.Context(), "SELECT title FROM dashboard.panels WHERE slug = 'open'").Scan(&title)
	if title != "Open" {
		t.Errorf("panel title: got %q, want the second apply's", title)
	}
}

// TestDiffDrift: rows edited in SQL after an apply show as drift, with
// what changed field by field; files changed since show as changes.
func TestDiffDrift(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	folder := dir(t, map[string]string{"sales.yaml": salesFile(t), "ops.yaml": opsFile})
	apply(t, pool, folder, false)
	plan, err := Compare(t.Context(), pool, load(t, folder), false)
	if err != nil {
		t.Fatal(err)
	}
	if !plan.Empty() || len(plan.Drifted()) != 0 {
		t.Fatalf("right after apply: plan %+v", plan)
	}

	exec(t, pool, "UPDATE dashboard.panels SET sql = 'SELECT 42' WHERE slug = 'orders'")
	exec(t, pool, "UPDATE dashboard.dashboards SET max_refresh_hz = 5 WHERE slug = 'ops'")
	writeFiles(t, folder, map[string]string{"ops.yaml": strings.Replace(opsFile, "title: Operations", "title: Ops", 1), "new.yaml": "slug: new\ntitle: New\n"})
	exec(t, pool, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('by-hand', 'By hand')")
	plan, err = Compare(t.Context(), pool, load(t, folder), false)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(plan.Drifted(), ","); got != "ops,sales" {
		t.Errorf("drifted: got %q, want ops,sales", got)
	}
	var buf bytes.Buffer
	plan.Write(&buf)
	want := `  dashboard by-hand: not in the folder; kept (--prune would remove it)
+ dashboard new (new.yaml)
~ dashboard ops (ops.yaml)
! dashboard ops: drift: its rows were edited since they were applied from ops.yaml
    title: Operations -> Ops
    max_refresh_hz: 5 -> (server's)
~ dashboard sales (sales.yaml)
! dashboard sales: drift: its rows were edited since they were applied from sales.yaml
  ~ panel orders
      sql:
        - SELECT 42
        + SELECT id, amount
        + FROM orders
        + WHERE status = ANY(:status)
        + 
`
	if buf.String() != want {
		t.Errorf("plan:\n%s\nwant\n%s", buf.String(), want)
	}
	apply(t, pool, folder, false)
	plan, _ = Compare(t.Context(), pool, load(t, folder), false)
	if !plan.Empty() || len(plan.Drifted()) != 0 {
		t.Errorf("after apply: plan %+v", plan)
	}
}

// TestLintVariables: panel and variable queries with :name placeholders
// prepare once rewritten; a variable may use only those before it.
func TestLintVariables(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	tables, err := Lint(t.Context(), pool, load(t, dir(t, map[string]string{"sales.yaml": salesFile(t)})), 0)
	if err != nil {
		t.Fatalf("Lint: %v", err)
	}
	if got := fmt.Sprint(tables["sales"]); got != "map[orders:[public.orders] revenue:[public.orders]]" {
		t.Errorf("tables: got %s", got)
	}
	// A variable used before it is declared is found without a database.
	early := strings.Replace(salesFile(t), "kind: query, sql: \"SELECT DISTINCT region FROM orders ORDER BY 1\"",
		"kind: query, sql: \"SELECT DISTINCT region FROM orders WHERE status = ANY(:status) ORDER BY 1\"", 1)
	_, err = LoadDir(dir(t, map[string]string{"sales.yaml": early}))
	if fmt.Sprint(err) != "sales.yaml:12: variable region: sql uses :status, but variable status is declared after region" {
		t.Errorf("a variable used before its declaration: got %v", err)
	}
	// A variable's broken SQL, at its line.
	broken := strings.Replace(salesFile(t), "SELECT name FROM customers", "SELECT nom FROM customers", 1)
	_, err = Lint(t.Context(), pool, load(t, dir(t, map[string]string{"sales.yaml": broken})), 0)
	if want := `sales.yaml:13: variable customer: ERROR: column "nom" does not exist (SQLSTATE 42703)`; !strings.HasPrefix(fmt.Sprint(err), want) {
		t.Errorf("a variable's broken SQL: got %v, want %s", err, want)
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitState waits for the watcher's state to satisfy ok.
func waitState(t *testing.T, w *Watcher, what string, ok func(WatchState) bool) WatchState {
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

func TestWatcher(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	folder := dir(t, map[string]string{"sales.yaml": salesFile(t), "ops.yaml": opsFile})
	logs := &syncBuffer{}
	newWatcher := func() *Watcher {
		return &Watcher{Dir: folder, DB: pool, Interval: 10 * time.Millisecond, Options: testOptions(),
			Logger: slogText(logs)}
	}
	w := newWatcher()
	if err := w.Start(t.Context()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if st, _ := w.State(); st.Applied != 1 || st.Err != nil {
		t.Fatalf("after Start: %+v", st)
	}
	applied := rows(t, pool)

	// A restart (or a second server) on the same files writes nothing.
	again := newWatcher()
	if err := again.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	if st, _ := again.State(); st.Applied != 0 || rows(t, pool) != applied {
		t.Errorf("a second Start on the same files wrote: %+v", st)
	}

	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})

	// An edit is applied; the other file, rewritten with the same bytes,
	// is not written.
	salesXmin := dashboardXmin(t, pool, "sales")
	salesPanels := panelRows(t, pool)
	st0, _ := w.State()
	writeFiles(t, folder, map[string]string{"sales.yaml": salesFile(t), "ops.yaml": strings.Replace(opsFile, "title: Operations", "title: Ops", 1)})
	waitState(t, w, "the edit applied", func(s WatchState) bool { return s.Applied > st0.Applied })
	var title string
	pool.QueryRow(t.Context(), "SELECT title FROM dashboard.dashboards WHERE slug = 'ops'").Scan(&title)
	if title != "Ops" {
		t.Errorf("after the edit: title %q, want Ops", title)
	}
	if dashboardXmin(t, pool, "sales") != salesXmin || panelRows(t, pool)["revenue"] != salesPanels["revenue"] {
		t.Errorf("the unchanged sales dashboard was written")
	}

	// A broken edit is logged with its file and line, and changes nothing.
	before := rows(t, pool)
	st1, _ := w.State()
	writeFiles(t, folder, map[string]string{"ops.yaml": strings.Replace(opsFile, "kind: feed", "kind: feeed", 1)})
	st := waitState(t, w, "the broken edit refused", func(s WatchState) bool { return s.Attempts > st1.Attempts })
	var probs Problems
	if !errors.As(st.Err, &probs) {
		t.Errorf("state after a broken edit: %+v, want Problems", st)
	}
	contains(t, "the log", logs.String(), `problem="ops.yaml:11: panels[1].kind: \"feeed\" is not one of stat, table, timeseries, bar, feed"`)
	if rows(t, pool) != before {
		t.Errorf("a broken edit changed the database")
	}
	// It is logged once, not at every poll: the next change is a fix.
	writeFiles(t, folder, map[string]string{"ops.yaml": opsFile})
	waitState(t, w, "the fix applied", func(s WatchState) bool { return s.Attempts > st.Attempts && s.Err == nil })
	if n := strings.Count(logs.String(), "feeed"); n != 1 {
		t.Errorf("the broken file was logged %d times, want once", n)
	}
	pool.QueryRow(t.Context(), "SELECT title FROM dashboard.dashboards WHERE slug = 'ops'").Scan(&title)
	if title != "Operations" {
		t.Errorf("after the fix: title %q, want Operations", title)
	}

	// A folder that cannot be read stops the start.
	gone := &Watcher{Dir: filepath.Join(folder, "nosuch"), DB: pool}
	if err := gone.Start(t.Context()); err == nil || !os.IsNotExist(errors.Unwrap(err)) && !strings.Contains(err.Error(), "no such file") {
		t.Errorf("Start on a missing folder: got %v", err)
	}
	broken := &Watcher{Dir: dir(t, map[string]string{"x.yaml": "slug: x\ntitle: [\n"}), DB: pool}
	if err := broken.Start(t.Context()); err == nil || !strings.HasPrefix(err.Error(), "x.yaml:2: ") {
		t.Errorf("Start on a broken folder: got %v, want x.yaml:2: ...", err)
	}
}

// TestDocsExample: the example of docs/files.md is a valid dashboard, its
// queries lint on a database with the tables it reads, and the problems
// it shows are what the checks print.
func TestDocsExample(t *testing.T) {
	t.Parallel()
	doc := readText(t, "../../docs/files.md")
	start := strings.Index(doc, "```yaml\n")
	if start < 0 {
		t.Fatal("docs/files.md has no yaml example")
	}
	example := doc[start+len("```yaml\n"):]
	example = example[:strings.Index(example, "```")]
	pool := newDB(t)
	set := load(t, dir(t, map[string]string{"sales.yaml": example}))
	if _, err := Lint(t.Context(), pool, set, 0); err != nil {
		t.Errorf("the example of docs/files.md: %v", err)
	}
	broken := strings.Replace(example, "grid: {width: 2, height: 1}", "grid: {width: 5, height: 1}", 1)
	broken = strings.Replace(broken, "  - slug: orders\n    title: Orders\n", "  - slug: orders\n    title: Orders\n    widht: 2\n", 1)
	_, err := LoadDir(dir(t, map[string]string{"sales.yaml": broken}))
	_, dup := LoadDir(dir(t, map[string]string{"sales.yaml": example, "ops.yaml": "slug: sales\ntitle: Ops\n"}))
	for _, line := range strings.Split(fmt.Sprint(err)+"\n"+fmt.Sprint(dup), "\n") {
		if !strings.Contains(doc, "\n"+line+"\n") {
			t.Errorf("docs/files.md does not show the problem as printed: %s", line)
		}
	}
}
