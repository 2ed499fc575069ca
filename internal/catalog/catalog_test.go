package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// slugs lists the slugs of dashboards, in order.
func slugs(ds []*panel.Dashboard) []string {
	out := []string{}
	for _, d := range ds {
		out = append(out, d.Slug)
	}
	return out
}

// panelSlugs lists the slugs of panels, in order.
func panelSlugs(ps []*panel.Def) []string {
	out := []string{}
	for _, p := range ps {
		out = append(out, p.Slug)
	}
	return out
}

// sorted returns a sorted copy: the order of Dependencies follows the
// database's collation, which is no contract.
func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	if s == nil {
		s = []string{}
	}
	return s
}

func TestLoadOrder(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	// Inserted out of order, with ties on position broken by slug.
	ops := db.dashboard(t, dash{slug: "ops", position: 2})
	db.dashboard(t, dash{slug: "zeta", position: 1})
	db.dashboard(t, dash{slug: "alpha", position: 1})
	db.dashboard(t, dash{slug: "first", position: -5})
	db.panel(t, ops, pnl{slug: "p-late", position: 9})
	db.panel(t, ops, pnl{slug: "p-b", position: 3})
	db.panel(t, ops, pnl{slug: "p-a", position: 3})
	db.panel(t, ops, pnl{slug: "p-first", position: 0})

	s := load(t, loader(db.pool))

	if got, want := slugs(s.Dashboards), []string{"first", "alpha", "zeta", "ops"}; !slices.Equal(got, want) {
		t.Errorf("dashboards: got %v, want %v", got, want)
	}
	if got, want := panelSlugs(s.Dashboard("ops").Panels), []string{"p-first", "p-a", "p-b", "p-late"}; !slices.Equal(got, want) {
		t.Errorf("panels of ops: got %v, want %v", got, want)
	}
	if got := s.Dashboard("alpha").Panels; len(got) != 0 {
		t.Errorf("panels of alpha: got %v, want none", panelSlugs(got))
	}
}

func TestLoadFields(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	pubID := db.dashboard(t, dash{slug: "pub", title: "Public board", description: "for everyone", maxRefreshHz: 2.5, position: 7})
	privID := db.dashboard(t, dash{slug: "priv", title: "Private board", private: true})
	statID := db.panel(t, pubID, pnl{slug: "orders", kind: "bar", sql: "SELECT 42 AS answer", position: 1, width: 3, height: 2,
		dependsOn: []string{"dashboard.dashboards"}})

	s := load(t, loader(db.pool))

	pub, priv := s.Dashboard("pub"), s.Dashboard("priv")
	if pub == nil || priv == nil {
		t.Fatalf("Dashboard(pub), Dashboard(priv): got %v, %v, want both", pub, priv)
	}
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"pub.ID", pub.ID, pubID},
		{"pub.Title", pub.Title, "Public board"},
		{"pub.Description", pub.Description, "for everyone"},
		{"pub.Public", pub.Public, true},
		{"pub.MaxRefreshHz", pub.MaxRefreshHz, 2.5},
		{"pub.Position", pub.Position, 7},
		{"priv.ID", priv.ID, privID},
		{"priv.Public", priv.Public, false},
		{"priv.MaxRefreshHz (NULL)", priv.MaxRefreshHz, 0.0},
		{"priv.Description (default)", priv.Description, ""},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}

	if len(pub.Panels) != 1 {
		t.Fatalf("panels of pub: got %v, want [orders]", panelSlugs(pub.Panels))
	}
	p := pub.Panels[0]
	for _, c := range []struct {
		name      string
		got, want any
	}{
		{"ID", p.ID, statID},
		{"DashboardID", p.DashboardID, pubID},
		{"Slug", p.Slug, "orders"},
		{"Title", p.Title, "orders"},
		{"Kind", p.Kind, panel.Bar},
		{"SQL", p.SQL, "SELECT 42 AS answer"},
		{"Position", p.Position, 1},
		{"Width", p.Width, 3},
		{"Height", p.Height, 2},
		{"DependsOn", fmt.Sprint(p.DependsOn), "[dashboard.dashboards]"},
	} {
		if c.got != c.want {
			t.Errorf("panel %s: got %v, want %v", c.name, c.got, c.want)
		}
	}
}

func TestSnapshotLookups(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	aID := db.dashboard(t, dash{slug: "a"})
	bID := db.dashboard(t, dash{slug: "b", private: true})
	a1 := db.panel(t, aID, pnl{slug: "one"})
	b1 := db.panel(t, bID, pnl{slug: "one"}) // same slug on another dashboard
	s := load(t, loader(db.pool))

	dashboards := []struct {
		name string
		got  *panel.Dashboard
		want int64 // 0: nil
	}{
		{`Dashboard("a")`, s.Dashboard("a"), aID},
		{`Dashboard("b")`, s.Dashboard("b"), bID},
		{`Dashboard("c")`, s.Dashboard("c"), 0},
		{`Dashboard("")`, s.Dashboard(""), 0},
		{"DashboardByID(a)", s.DashboardByID(aID), aID},
		{"DashboardByID(b)", s.DashboardByID(bID), bID},
		{"DashboardByID(unknown)", s.DashboardByID(bID + 100), 0},
	}
	for _, c := range dashboards {
		switch {
		case c.want == 0 && c.got != nil:
			t.Errorf("%s: got %q, want nil", c.name, c.got.Slug)
		case c.want != 0 && (c.got == nil || c.got.ID != c.want):
			t.Errorf("%s: got %+v, want id %d", c.name, c.got, c.want)
		}
	}
	panels := []struct {
		name          string
		got           *panel.Def
		wantDashboard int64 // 0: nil
	}{
		{"Panel(a/one)", s.Panel(a1), aID},
		{"Panel(b/one)", s.Panel(b1), bID},
		{"Panel(unknown)", s.Panel(b1 + 100), 0},
	}
	for _, c := range panels {
		switch {
		case c.wantDashboard == 0 && c.got != nil:
			t.Errorf("%s: got %q, want nil", c.name, c.got.Slug)
		case c.wantDashboard != 0 && (c.got == nil || c.got.DashboardID != c.wantDashboard):
			t.Errorf("%s: got %+v, want a panel of dashboard %d", c.name, c.got, c.wantDashboard)
		}
	}
	// Lookups hand out the same values as the ordered list, not copies.
	if got, want := s.Panel(a1), s.Dashboard("a").Panels[0]; got != want {
		t.Errorf("Panel(a1): got %p, want the dashboard's own panel %p", got, want)
	}
}

func TestLoadOptions(t *testing.T) {
	t.Parallel()
	two, zero := 2, 0
	tests := []struct {
		name    string
		options string
		want    panel.Options
	}{
		{"empty", `{}`, panel.Options{}},
		{"every key", `{"unit": "ms", "prefix": "$", "decimals": 2, "sparkline": true, "delta": true, "limit": 5, "stacked": true}`,
			panel.Options{Unit: "ms", Prefix: "$", Decimals: &two, Sparkline: true, Delta: true, Limit: 5, Stacked: true}},
		{"decimals zero is not automatic", `{"decimals": 0}`, panel.Options{Decimals: &zero}},
		{"unknown keys ignored", `{"note": "ask ops", "unit": "%"}`, panel.Options{Unit: "%"}},
		// A value of the wrong type leaves that field at its default; the
		// well-typed keys beside it still apply.
		{"wrong type", `{"unit": "ms", "limit": "ten"}`, panel.Options{Unit: "ms"}},
		{"array", `[1, 2]`, panel.Options{}},
		{"string", `"ms"`, panel.Options{}},
		{"null", `null`, panel.Options{}},
	}
	db := newDB(t)
	d := db.dashboard(t, dash{slug: "d"})
	ids := make([]int64, len(tests))
	for i, tt := range tests {
		ids[i] = db.panel(t, d, pnl{slug: fmt.Sprintf("p%d", i), options: tt.options})
	}
	s := load(t, loader(db.pool))
	if got, want := len(s.Dashboard("d").Panels), len(tests); got != want {
		t.Fatalf("panels: got %d, want %d (a bad options value must not drop its panel)", got, want)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := s.Panel(ids[i])
			if !p.Options.Equal(tt.want) {
				t.Errorf("options %s: got %s, want %s", tt.options, fmtOptions(p.Options), fmtOptions(tt.want))
			}
			if n := s.Notice(ids[i]); n != "" {
				t.Errorf("notice: got %q, want none", n)
			}
		})
	}
}

func fmtOptions(o panel.Options) string {
	decimals := "nil"
	if o.Decimals != nil {
		decimals = fmt.Sprint(*o.Decimals)
	}
	o.Decimals = nil
	return fmt.Sprintf("%+v decimals=%s", o, decimals)
}

// TestLoadUnknownKind: the schema's CHECK keeps unknown kinds out; if it is
// dropped, the loader passes the kind through (the views draw such panels
// as "unknown") instead of failing the catalog.
func TestLoadUnknownKind(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, "ALTER TABLE dashboard.panels DROP CONSTRAINT panels_kind_valid")
	d := db.dashboard(t, dash{slug: "d"})
	pie := db.panel(t, d, pnl{slug: "pie", kind: "pie"})
	ok := db.panel(t, d, pnl{slug: "ok", kind: "table"})

	s := load(t, loader(db.pool))

	if got := s.Panel(pie); got == nil || got.Kind != "pie" || got.Kind.Valid() {
		t.Errorf("Panel(pie): got %+v, want kind \"pie\" (not Valid)", got)
	}
	if got := s.Panel(ok); got == nil || got.Kind != panel.Table {
		t.Errorf("Panel(ok): got %+v, want kind table", got)
	}
}

func TestLoadFailsWithoutSchema(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, "DROP SCHEMA dashboard CASCADE")
	s, err := loader(db.pool).Load(t.Context())
	var pgErr *pgconn.PgError
	if s != nil || !errors.As(err, &pgErr) || pgErr.Code != "42P01" || !strings.HasPrefix(err.Error(), "reading dashboards: ") {
		t.Errorf("Load: got %v, %v, want nil and a \"reading dashboards: \" error with SQLSTATE 42P01", s, err)
	}
}

func TestLoadCancelled(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.panel(t, db.dashboard(t, dash{slug: "d"}), pnl{slug: "p"})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if s, err := loader(db.pool).Load(ctx); s != nil || !errors.Is(err, context.Canceled) {
		t.Errorf("Load with a cancelled context: got %v, %v, want nil, context.Canceled", s, err)
	}
}

// depsSchema is what the dependency tests read: tables in two schemas,
// names that need quoting, a view over a join and a function that hides
// the table it reads.
const depsSchema = `
CREATE TABLE orders (id int, customer int, total numeric);
CREATE TABLE customers (id int, name text);
CREATE SCHEMA sales;
CREATE TABLE sales.orders (id int);
CREATE TABLE "Weird Name" (id int);
CREATE SCHEMA "Sales Data";
CREATE TABLE "Sales Data"."Q1" (id int);
CREATE VIEW order_totals AS
	SELECT c.name, sum(o.total) AS total FROM orders o JOIN customers c ON c.id = o.customer GROUP BY c.name;
CREATE FUNCTION order_count() RETURNS bigint LANGUAGE sql STABLE AS 'SELECT count(*) FROM orders';
`

func TestDependencies(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		sql       string
		dependsOn []string
		want      []string
	}{
		{"plain table", "SELECT count(*) FROM orders", nil, []string{"public.orders"}},
		{"join", "SELECT c.name, o.total FROM orders o JOIN customers c ON c.id = o.customer",
			nil, []string{"public.customers", "public.orders"}},
		{"subquery", "SELECT name FROM customers WHERE id IN (SELECT customer FROM orders)",
			nil, []string{"public.customers", "public.orders"}},
		// The planner expands views, so EXPLAIN names their base tables and
		// never the view, which could not be watched anyway.
		{"view", "SELECT * FROM order_totals", nil, []string{"public.customers", "public.orders"}},
		{"CTE", "WITH big AS (SELECT * FROM orders WHERE total > 100) SELECT count(*) FROM big",
			nil, []string{"public.orders"}},
		{"materialized CTE", "WITH big AS MATERIALIZED (SELECT * FROM orders) SELECT count(*) FROM big b JOIN customers c ON c.id = b.customer",
			nil, []string{"public.customers", "public.orders"}},
		{"schema-qualified", "SELECT count(*) FROM sales.orders", nil, []string{"sales.orders"}},
		{"same name in two schemas", "SELECT count(*) FROM sales.orders, public.orders",
			nil, []string{"public.orders", "sales.orders"}},
		{"quoted identifier", `SELECT count(*) FROM "Weird Name"`, nil, []string{`public."Weird Name"`}},
		{"quoted schema and table", `SELECT count(*) FROM "Sales Data"."Q1"`, nil, []string{`"Sales Data"."Q1"`}},
		{"no table", "SELECT now()", nil, []string{}},
		// A function's body is opaque to EXPLAIN: depends_on is the way out.
		{"function hides its table", "SELECT order_count()", nil, []string{}},
		{"function with depends_on", "SELECT order_count()", []string{"orders"}, []string{"public.orders"}},
		{"depends_on merged", "SELECT count(*) FROM customers", []string{"sales.orders", `"Weird Name"`},
			[]string{`public."Weird Name"`, "public.customers", "sales.orders"}},
		{"depends_on duplicate of EXPLAIN", "SELECT count(*) FROM orders", []string{"public.orders"}, []string{"public.orders"}},
		// A name that does not resolve is dropped without a notice.
		{"depends_on missing table", "SELECT count(*) FROM orders", []string{"public.nosuch"}, []string{"public.orders"}},
	}
	db := newDB(t)
	db.exec(t, depsSchema)
	d := db.dashboard(t, dash{slug: "d"})
	ids := make([]int64, len(tests))
	for i, tt := range tests {
		ids[i] = db.panel(t, d, pnl{slug: fmt.Sprintf("p%d", i), sql: tt.sql, dependsOn: tt.dependsOn})
	}
	s := load(t, loader(db.pool))
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := sorted(s.Dependencies(ids[i])); !slices.Equal(got, sorted(tt.want)) {
				t.Errorf("Dependencies(%q, depends_on %q): got %q, want %q", tt.sql, tt.dependsOn, got, sorted(tt.want))
			}
			if n := s.Notice(ids[i]); n != "" {
				t.Errorf("Notice: got %q, want none", n)
			}
		})
	}
}

// TestDependsOnInvalidName: a depends_on entry that is not a valid name
// makes the panel's dependency lookup fail as a whole, with a notice.
func TestDependsOnInvalidName(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, depsSchema)
	id := db.panel(t, db.dashboard(t, dash{slug: "d"}), pnl{slug: "p", sql: "SELECT count(*) FROM orders", dependsOn: []string{"not a name"}})
	s := load(t, loader(db.pool))
	if got := s.Dependencies(id); len(got) != 0 {
		t.Errorf("Dependencies: got %q, want none", got)
	}
	want := "Cannot find the tables this query reads, so it refreshes every 1m0s only: invalid name syntax (SQLSTATE 42602)"
	if got := s.Notice(id); got != want {
		t.Errorf("Notice: got %q, want %q", got, want)
	}
}

func TestPanelsReading(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, depsSchema)
	first := db.dashboard(t, dash{slug: "first", position: 1})
	second := db.dashboard(t, dash{slug: "second", position: 2})
	// Inserted in an order unlike the dashboards' and panels' order.
	db.panel(t, second, pnl{slug: "totals", sql: "SELECT * FROM order_totals"})
	db.panel(t, first, pnl{slug: "names", sql: "SELECT name FROM customers", position: 2})
	db.panel(t, first, pnl{slug: "count", sql: "SELECT count(*) FROM orders", position: 1})
	db.panel(t, first, pnl{slug: "weird", sql: `SELECT count(*) FROM "Weird Name"`, position: 3})
	db.panel(t, second, pnl{slug: "explicit", sql: "SELECT 1", dependsOn: []string{"customers"}, position: -1})
	s := load(t, loader(db.pool))

	tests := []struct {
		table string
		want  []string // in dashboard order, then panel order
	}{
		{"public.orders", []string{"count", "totals"}},
		{"public.customers", []string{"names", "explicit", "totals"}},
		{`public."Weird Name"`, []string{"weird"}},
		{"public.Weird Name", []string{}}, // not the payload form
		{"orders", []string{}},            // payloads are schema-qualified
		{"public.order_totals", []string{}},
		{"sales.orders", []string{}},
		{"dashboard.panels", []string{}},
	}
	for _, tt := range tests {
		if got := panelSlugs(s.PanelsReading(tt.table)); !slices.Equal(got, tt.want) {
			t.Errorf("PanelsReading(%q): got %v, want %v", tt.table, got, tt.want)
		}
	}
}

// TestLoadBrokenPanelSQL: a panel whose query cannot be explained keeps its
// place with a notice, and the other panels load as usual.
func TestLoadBrokenPanelSQL(t *testing.T) {
	t.Parallel()
	const prefix = "Cannot find the tables this query reads, so it refreshes every 1m0s only: "
	tests := []struct {
		name       string
		sql        string
		wantNotice string // "": none
		wantDeps   []string
	}{
		{"good before", "SELECT count(*) FROM orders", "", []string{"public.orders"}},
		{"syntax error", "SELEC 1", prefix + `syntax error at or near "SELEC" (SQLSTATE 42601)`, nil},
		{"missing table", "SELECT * FROM nosuch", prefix + `relation "nosuch" does not exist (SQLSTATE 42P01)`, nil},
		{"missing column", "SELECT nosuch FROM orders", prefix + `column "nosuch" does not exist (SQLSTATE 42703)`, nil},
		// The extended protocol takes one statement: SQL cannot escape the
		// read-only transaction with its own COMMIT.
		{"several statements", "SELECT 1; COMMIT; DROP TABLE orders",
			prefix + "cannot insert multiple commands into a prepared statement (SQLSTATE 42601)", nil},
		{"good after", "SELECT name FROM customers", "", []string{"public.customers"}},
	}
	db := newDB(t)
	db.exec(t, depsSchema)
	d := db.dashboard(t, dash{slug: "d"})
	ids := make([]int64, len(tests))
	for i, tt := range tests {
		ids[i] = db.panel(t, d, pnl{slug: fmt.Sprintf("p%d", i), sql: tt.sql, position: i})
	}
	// No Logger: the warnings about the broken panels must not panic.
	s := load(t, &catalog.Loader{Pool: db.pool, QueryTimeout: 5 * time.Second, SafetyRefresh: safetyRefresh})

	if got, want := len(s.Dashboard("d").Panels), len(tests); got != want {
		t.Fatalf("panels: got %d, want %d", got, want)
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := s.Panel(ids[i]); got == nil {
				t.Fatalf("Panel: got nil, want the panel")
			}
			if got := s.Notice(ids[i]); got != tt.wantNotice {
				t.Errorf("Notice: got %q, want %q", got, tt.wantNotice)
			}
			if got := sorted(s.Dependencies(ids[i])); !slices.Equal(got, sorted(tt.wantDeps)) {
				t.Errorf("Dependencies: got %q, want %q", got, tt.wantDeps)
			}
		})
	}
	var n int
	if err := db.pool.QueryRow(t.Context(), "SELECT count(*) FROM pg_class WHERE oid = to_regclass('public.orders')").Scan(&n); err != nil || n != 1 {
		t.Errorf("table orders after Load: got %d (err %v), want it still there", n, err)
	}
}

// TestLoadWatchesTables: Load itself calls dashboard.watch on the tables
// its panels read when it may, and then shows no notice.
func TestLoadWatchesTables(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, depsSchema)
	db.exec(t, "CREATE TABLE unread (id int)")
	d := db.dashboard(t, dash{slug: "d"})
	ids := []int64{
		db.panel(t, d, pnl{slug: "view", sql: "SELECT * FROM order_totals"}),
		db.panel(t, d, pnl{slug: "weird", sql: `SELECT count(*) FROM "Weird Name"`}),
		db.panel(t, d, pnl{slug: "explicit", sql: "SELECT 1", dependsOn: []string{"sales.orders"}}),
	}
	tables := []string{"public.orders", "public.customers", `public."Weird Name"`, "sales.orders"}
	for _, table := range tables {
		if db.isWatched(t, table) {
			t.Fatalf("%s is watched before Load; the test proves nothing", table)
		}
	}

	s := load(t, loader(db.pool))

	for _, table := range tables {
		if !db.isWatched(t, table) {
			t.Errorf("is_watched(%s) after Load: got false, want true", table)
		}
	}
	if db.isWatched(t, "public.unread") {
		t.Errorf("is_watched(unread) after Load: got true, want false (no panel reads it)")
	}
	for _, id := range ids {
		if n := s.Notice(id); n != "" {
			t.Errorf("Notice(%s): got %q, want none", s.Panel(id).Slug, n)
		}
	}
}

// TestWatchNotices: with a server role that may not create triggers on a
// table, the panel's notice names the exact statement an owner must run,
// and running it makes the notice go at the next load.
func TestWatchNotices(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	role, rolePool := db.role(t)
	db.exec(t, `
		CREATE TABLE theirs (id int);
		CREATE TABLE other (id int);
		CREATE TABLE "Weird Name" (id int);
		CREATE TABLE "it's" (id int);
		CREATE TABLE mine (id int);
		CREATE TABLE prewatched (id int);
		SELECT dashboard.watch('prewatched');
		GRANT SELECT ON theirs, other, "Weird Name", "it's", prewatched TO `+role+`;
		GRANT SELECT, TRIGGER ON mine TO `+role)
	const prefix = "Refreshes every 1m0s only: the server may not watch this panel's tables. For live updates a table owner must run: "
	tests := []struct {
		slug, sql  string
		wantNotice string
	}{
		{"theirs", "SELECT count(*) FROM theirs", prefix + "SELECT dashboard.watch('public.theirs');"},
		{"join", "SELECT count(*) FROM theirs, other",
			prefix + "SELECT dashboard.watch('public.other'); SELECT dashboard.watch('public.theirs');"},
		{"weird", `SELECT count(*) FROM "Weird Name"`, prefix + `SELECT dashboard.watch('public."Weird Name"');`},
		{"quote", `SELECT count(*) FROM "it's"`, prefix + `SELECT dashboard.watch('public."it''s"');`},
		// Watched ones need nothing: one the role may watch, and one an owner watched already.
		{"mine", "SELECT count(*) FROM mine", ""},
		{"prewatched", "SELECT count(*) FROM prewatched", ""},
		{"mixed", "SELECT count(*) FROM mine, prewatched, theirs", prefix + "SELECT dashboard.watch('public.theirs');"},
	}
	d := db.dashboard(t, dash{slug: "d"})
	ids := make(map[string]int64)
	for _, tt := range tests {
		ids[tt.slug] = db.panel(t, d, pnl{slug: tt.slug, sql: tt.sql})
	}
	l := loader(rolePool)

	s := load(t, l)

	for _, tt := range tests {
		if got := s.Notice(ids[tt.slug]); got != tt.wantNotice {
			t.Errorf("Notice(%s): got %q, want %q", tt.slug, got, tt.wantNotice)
		}
	}
	if !db.isWatched(t, "mine") {
		t.Errorf("is_watched(mine) after Load: got false, want true (the role has TRIGGER on it)")
	}
	if db.isWatched(t, "theirs") {
		t.Errorf("is_watched(theirs) after Load: got true, want false")
	}

	// An owner runs exactly what the notices say.
	for _, tt := range tests {
		if _, stmts, ok := strings.Cut(tt.wantNotice, "must run: "); ok {
			db.exec(t, stmts)
		}
	}
	s = load(t, l)
	for _, tt := range tests {
		if got := s.Notice(ids[tt.slug]); got != "" {
			t.Errorf("Notice(%s) after the owner ran the statements: got %q, want none", tt.slug, got)
		}
	}
}

// TestCacheSkipsUnchangedSQL: a reload does not EXPLAIN a query it has
// explained before. The observable trace is a view redefined between loads:
// a fresh EXPLAIN would see the new base table, the cache still answers
// with the old one.
func TestCacheSkipsUnchangedSQL(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, "CREATE TABLE a (x int); CREATE TABLE b (x int); CREATE VIEW v AS SELECT x FROM a")
	d := db.dashboard(t, dash{slug: "d"})
	id := db.panel(t, d, pnl{slug: "p", sql: "SELECT x FROM v"})
	l := loader(db.pool)
	if got, want := load(t, l).Dependencies(id), []string{"public.a"}; !slices.Equal(got, want) {
		t.Fatalf("Dependencies on the first load: got %q, want %q", got, want)
	}

	db.exec(t, "CREATE OR REPLACE VIEW v AS SELECT x FROM b")

	// Proof that an EXPLAIN now sees b: a Loader without a cache.
	if got, want := load(t, loader(db.pool)).Dependencies(id), []string{"public.b"}; !slices.Equal(got, want) {
		t.Fatalf("Dependencies from a new Loader: got %q, want %q", got, want)
	}
	// The panel's SQL did not change: no EXPLAIN, the old answer stays.
	// (Unrelated catalog changes, such as a new panel, do not clear it.)
	db.panel(t, d, pnl{slug: "other"})
	if got, want := load(t, l).Dependencies(id), []string{"public.a"}; !slices.Equal(got, want) {
		t.Errorf("Dependencies on a reload with unchanged SQL: got %q, want %q (from the cache)", got, want)
	}
}

// TestCacheExplainsChangedSQL: what makes a reload EXPLAIN a panel again.
// Each step redefines the view first, so a stale cache entry would show.
func TestCacheExplainsChangedSQL(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, "CREATE TABLE a (x int); CREATE TABLE b (x int); CREATE TABLE c (x int); CREATE VIEW v AS SELECT x FROM a")
	d := db.dashboard(t, dash{slug: "d"})
	id := db.panel(t, d, pnl{slug: "p", sql: "SELECT x FROM v"})
	l := loader(db.pool)
	if got, want := load(t, l).Dependencies(id), []string{"public.a"}; !slices.Equal(got, want) {
		t.Fatalf("Dependencies on the first load: got %q, want %q", got, want)
	}

	steps := []struct {
		name   string
		view   string // the view's new base table
		change string // run after the view is redefined
		want   []string
	}{
		{"SQL changed", "b", "UPDATE dashboard.panels SET sql = 'SELECT x FROM v -- edited' WHERE id = $1", []string{"public.b"}},
		{"depends_on changed", "a", "UPDATE dashboard.panels SET depends_on = '{c}' WHERE id = $1", []string{"public.a", "public.c"}},
		{"SQL changed back", "b", "UPDATE dashboard.panels SET sql = 'SELECT x FROM v', depends_on = '{}' WHERE id = $1", []string{"public.b"}},
	}
	for _, st := range steps {
		db.exec(t, "CREATE OR REPLACE VIEW v AS SELECT x FROM "+st.view)
		db.exec(t, st.change, id)
		if got := sorted(load(t, l).Dependencies(id)); !slices.Equal(got, st.want) {
			t.Errorf("%s: Dependencies: got %q, want %q", st.name, got, st.want)
		}
	}

	// A query no panel uses any more leaves the cache: deleted, reloaded,
	// then added back, it is explained afresh.
	db.exec(t, "DELETE FROM dashboard.panels WHERE id = $1", id)
	load(t, l)
	db.exec(t, "CREATE OR REPLACE VIEW v AS SELECT x FROM c")
	id = db.panel(t, d, pnl{slug: "p", sql: "SELECT x FROM v"})
	if got, want := load(t, l).Dependencies(id), []string{"public.c"}; !slices.Equal(got, want) {
		t.Errorf("re-added panel: Dependencies: got %q, want %q", got, want)
	}
}

func TestQueryError(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"server error", &pgconn.PgError{Code: "42P01", Message: `relation "x" does not exist`},
			`relation "x" does not exist (SQLSTATE 42P01)`},
		{"detail and hint", fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: "22012", Message: "division by zero", Detail: "d", Hint: "h"}),
			"division by zero. d. Hint: h (SQLSTATE 22012)"},
		{"statement timeout", &pgconn.PgError{Code: "57014", Message: "canceling statement due to statement timeout"},
			"query cancelled: it ran longer than DASHBOARD_QUERY_TIMEOUT (SQLSTATE 57014)"},
		{"deadline", fmt.Errorf("x: %w", context.DeadlineExceeded), "query took longer than DASHBOARD_QUERY_TIMEOUT"},
		{"connection details stay hidden", errors.New("dial unix /tmp/secret/.s.PGSQL.5432: connect: refused"), "query failed"},
	}
	for _, tt := range tests {
		if got := catalog.QueryError(tt.err); got != tt.want {
			t.Errorf("%s: QueryError(%v): got %q, want %q", tt.name, tt.err, got, tt.want)
		}
	}
}

// TestLoadRetriesFailedExplain: a query that could not be explained is
// explained again at the next load, so a panel whose table appears later,
// or whose table was locked for a moment, becomes live without an edit.
func TestLoadRetriesFailedExplain(t *testing.T) {
	t.Parallel()
	const prefix = "Cannot find the tables this query reads, so it refreshes every 1m0s only: "
	tests := []struct {
		name string
		// before runs before the first load and returns what makes the
		// query explainable again.
		before     func(t *testing.T, db *testDB) (fix func())
		wantNotice string
	}{
		{"table created later", func(t *testing.T, db *testDB) func() {
			return func() { db.exec(t, "CREATE TABLE later (id int)") }
		}, prefix + `relation "later" does not exist (SQLSTATE 42P01)`},
		{"table locked during the load", func(t *testing.T, db *testDB) func() {
			db.exec(t, "CREATE TABLE later (id int)")
			tx, err := db.pool.Begin(t.Context())
			if err != nil {
				t.Fatalf("begin: %v", err)
			}
			// Before the pool closes, whatever the test's fate: Close waits for it.
			t.Cleanup(func() { _ = tx.Rollback(context.Background()) })
			if _, err := tx.Exec(t.Context(), "LOCK TABLE later IN ACCESS EXCLUSIVE MODE"); err != nil {
				t.Fatalf("locking: %v", err)
			}
			return func() {
				if err := tx.Rollback(t.Context()); err != nil {
					t.Fatalf("rollback: %v", err)
				}
			}
		}, prefix + "query cancelled: it ran longer than DASHBOARD_QUERY_TIMEOUT (SQLSTATE 57014)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			db := newDB(t)
			d := db.dashboard(t, dash{slug: "d"})
			id := db.panel(t, d, pnl{slug: "later", sql: "SELECT count(*) FROM later"})
			other := db.panel(t, d, pnl{slug: "other", sql: "SELECT count(*) FROM dashboard.dashboards"})
			fix := tt.before(t, db)
			l := loader(db.pool)
			l.QueryTimeout = 200 * time.Millisecond

			s := load(t, l)
			if got := s.Notice(id); got != tt.wantNotice {
				t.Errorf("first load: Notice: got %q, want %q", got, tt.wantNotice)
			}
			if got, want := s.Dependencies(other), []string{"dashboard.dashboards"}; !slices.Equal(got, want) {
				t.Errorf("first load: Dependencies(other): got %q, want %q", got, want)
			}

			fix()
			s = load(t, l)
			if got := s.Notice(id); got != "" {
				t.Errorf("reload: Notice: got %q, want none", got)
			}
			if got, want := s.Dependencies(id), []string{"public.later"}; !slices.Equal(got, want) {
				t.Errorf("reload: Dependencies: got %q, want %q", got, want)
			}
		})
	}
}

// TestDependenciesPartitionedTable: EXPLAIN names only the partitions it
// scans, but a write through a partitioned table fires that table's
// statement triggers, not the partitions'. The panels must depend on the
// ancestors too, so that every way of writing reaches them.
func TestDependenciesPartitionedTable(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, `
		CREATE TABLE parted (k int NOT NULL) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20) PARTITION BY RANGE (k);
		CREATE TABLE parted_2a PARTITION OF parted_2 FOR VALUES FROM (10) TO (15);
		CREATE TABLE parted_2b PARTITION OF parted_2 FOR VALUES FROM (15) TO (20)`)
	d := db.dashboard(t, dash{slug: "d"})
	panels := []struct {
		slug, sql string
		wantDeps  []string
	}{
		{"all", "SELECT count(*) FROM parted",
			[]string{"public.parted", "public.parted_1", "public.parted_2", "public.parted_2a", "public.parted_2b"}},
		{"pruned", "SELECT count(*) FROM parted WHERE k = 3", []string{"public.parted", "public.parted_1"}},
		{"sub", "SELECT count(*) FROM parted_2",
			[]string{"public.parted", "public.parted_2", "public.parted_2a", "public.parted_2b"}},
	}
	ids := make(map[int64]string)
	for _, p := range panels {
		ids[db.panel(t, d, pnl{slug: p.slug, sql: p.sql})] = p.slug
	}
	s := load(t, loader(db.pool))
	for id, slug := range ids {
		for _, p := range panels {
			if p.slug == slug {
				if got := sorted(s.Dependencies(id)); !slices.Equal(got, p.wantDeps) {
					t.Errorf("Dependencies(%s): got %q, want %q", slug, got, p.wantDeps)
				}
			}
		}
	}

	// What a write wakes: the panels reading the tables named by its
	// notifications. The triggers notify only while a server wants news
	// (migrations/0005), so a connection arms every table, as a server
	// viewing all three panels would.
	server, err := db.pool.Acquire(t.Context())
	if err != nil {
		t.Fatalf("acquiring: %v", err)
	}
	defer server.Release()
	for _, tbl := range []string{"parted", "parted_1", "parted_2", "parted_2a", "parted_2b"} {
		if _, err := server.Exec(t.Context(), "SELECT pg_advisory_lock(dashboard.feed_key(0, $1::regclass))", tbl); err != nil {
			t.Fatalf("arming %s: %v", tbl, err)
		}
	}
	defer func() { _, _ = server.Exec(context.Background(), "SELECT pg_advisory_unlock_all()") }()
	listener, err := db.pool.Acquire(t.Context())
	if err != nil {
		t.Fatalf("acquiring: %v", err)
	}
	defer listener.Release()
	if _, err := listener.Exec(t.Context(), "LISTEN dashboard"); err != nil {
		t.Fatalf("LISTEN: %v", err)
	}
	defer func() { _, _ = listener.Exec(context.Background(), "UNLISTEN *") }()
	writes := []struct {
		sql  string
		want []string
	}{
		{"INSERT INTO parted VALUES (3)", []string{"all", "pruned", "sub"}},
		{"INSERT INTO parted VALUES (17)", []string{"all", "pruned", "sub"}},
		{"INSERT INTO parted_2 VALUES (12)", []string{"all", "sub"}},
		{"INSERT INTO parted_2b VALUES (17)", []string{"all", "sub"}},
		{"INSERT INTO parted_1 VALUES (4)", []string{"all", "pruned"}},
	}
	for i, w := range writes {
		db.exec(t, w.sql)
		sentinel := fmt.Sprintf("sentinel-%d", i)
		db.exec(t, "SELECT pg_notify('dashboard', $1)", sentinel)
		woken := []string{}
		var payloads []string
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			n, err := listener.Conn().WaitForNotification(ctx)
			cancel()
			if err != nil {
				t.Fatalf("%s: waiting for notifications: %v", w.sql, err)
			}
			if n.Payload == sentinel {
				break
			}
			payloads = append(payloads, n.Payload)
			for _, p := range s.PanelsReading(n.Payload) {
				woken = append(woken, p.Slug)
			}
		}
		if got := slices.Compact(sorted(woken)); !slices.Equal(got, w.want) {
			t.Errorf("%s (notifications %q): woke %v, want %v", w.sql, payloads, got, w.want)
		}
	}
}
