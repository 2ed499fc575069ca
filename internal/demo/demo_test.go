package demo

import (
	"context"
	"log/slog"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/variables"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testRate is the traffic rate the tests seed history for: low, so that
// Setup is quick (TestSeedAtLiveRate seeds at the default rate).
const testRate = 1

// newPool returns a pool on a fresh, migrated database.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	connString := pgtest.NewDB(t)
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	if _, err := migrations.Up(t.Context(), conn); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	pool, err := pgxpool.New(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// setUp returns a pool on a fresh database on which Setup has run.
func setUp(t *testing.T) *pgxpool.Pool {
	t.Helper()
	pool := newPool(t)
	if err := Setup(t.Context(), pool, testRate); err != nil {
		t.Fatalf("Setup: %v", err)
	}
	return pool
}

func count(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

// state is what a re-run of Setup must leave as it was.
type state struct {
	dashboards, panels int
	rows               map[string]int
	lastChange         time.Time
}

func snapshot(t *testing.T, pool *pgxpool.Pool) state {
	t.Helper()
	s := state{
		dashboards: count(t, pool, "SELECT count(*) FROM dashboard.dashboards"),
		panels:     count(t, pool, "SELECT count(*) FROM dashboard.panels"),
		rows:       map[string]int{},
	}
	for _, table := range watched {
		s.rows[table] = count(t, pool, "SELECT count(*) FROM "+table)
	}
	err := pool.QueryRow(t.Context(), `SELECT greatest((SELECT max(updated_at) FROM dashboard.dashboards),
		(SELECT max(updated_at) FROM dashboard.panels))`).Scan(&s.lastChange)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestSetupIdempotent(t *testing.T) {
	t.Parallel()
	pool := setUp(t)
	first := snapshot(t, pool)

	set, err := Dashboards()
	if err != nil {
		t.Fatal(err)
	}
	wantPanels := 0
	for _, d := range set.Docs {
		wantPanels += len(d.Dashboard.Panels)
	}
	if first.dashboards != len(set.Docs) || first.panels != wantPanels {
		t.Errorf("got %d dashboards and %d panels, want %d and %d", first.dashboards, first.panels, len(set.Docs), wantPanels)
	}
	for table, n := range first.rows {
		if n == 0 {
			t.Errorf("got no rows in %s, want seeded history", table)
		}
	}
	if got := count(t, pool, "SELECT count(*) FROM dashboard.dashboards WHERE visibility <> 'public'"); got != 0 {
		t.Errorf("got %d non-public demo dashboards, want 0", got)
	}

	if err := Setup(t.Context(), pool, testRate); err != nil {
		t.Fatalf("second Setup: %v", err)
	}
	second := snapshot(t, pool)
	if second.dashboards != first.dashboards || second.panels != first.panels {
		t.Errorf("after a second Setup got %d dashboards and %d panels, want %d and %d",
			second.dashboards, second.panels, first.dashboards, first.panels)
	}
	for table, n := range first.rows {
		if second.rows[table] != n {
			t.Errorf("after a second Setup got %d rows in %s, want %d (reused, not re-seeded)", second.rows[table], table, n)
		}
	}
	if !second.lastChange.Equal(first.lastChange) {
		t.Errorf("second Setup rewrote dashboards or panels (updated_at %v, was %v), want them untouched",
			second.lastChange, first.lastChange)
	}
}

// TestSetupFillsGap moves the data two hours into the past, as if the demo
// had been stopped, and checks that a re-run fills the gap up to now.
func TestSetupFillsGap(t *testing.T) {
	t.Parallel()
	pool := setUp(t)
	for _, sql := range []string{
		"UPDATE demo.orders SET created_at = created_at - interval '2 hours'",
		"UPDATE demo.sensor_readings SET reading_at = reading_at - interval '2 hours'",
		"UPDATE demo.seed_state SET seeded_until = seeded_until - interval '2 hours'",
	} {
		if _, err := pool.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	if err := Setup(t.Context(), pool, testRate); err != nil {
		t.Fatalf("Setup after a pause: %v", err)
	}
	for _, q := range []string{
		"SELECT count(*) FROM demo.orders WHERE created_at > now() - interval '30 minutes'",
		"SELECT count(*) FROM demo.sensor_readings WHERE reading_at > now() - interval '30 minutes'",
	} {
		if got := count(t, pool, q); got == 0 {
			t.Errorf("%s: got 0, want the gap filled", q)
		}
	}
}

func TestEveryKindUsed(t *testing.T) {
	t.Parallel()
	pool := setUp(t)
	rows, err := pool.Query(t.Context(), "SELECT DISTINCT kind FROM dashboard.panels")
	if err != nil {
		t.Fatal(err)
	}
	kinds, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range panel.Kinds {
		if !slices.Contains(kinds, string(k)) {
			t.Errorf("got kinds %v, want %s among them", kinds, k)
		}
	}
}

// defaultChoice is dashboard d's default choice of its variables and time
// range, with query variables' options read as the server reads them, and
// the names its SQL may use.
func defaultChoice(t *testing.T, pool *pgxpool.Pool, d *panel.Dashboard) (variables.Selection, func(string) bool) {
	t.Helper()
	declared := variables.Declared(d)
	options := func(v *panel.Variable, upstream variables.Selection) ([]string, error) {
		query, params, err := variables.Rewrite(v.SQL, declared)
		if err != nil {
			return nil, err
		}
		args, err := variables.Args(d, upstream, params, time.Now())
		if err != nil {
			return nil, err
		}
		rows, err := pool.Query(t.Context(), query, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
	sel, err := variables.Select(d, url.Values{}, nil, options)
	if err != nil {
		t.Fatalf("dashboard %s: the default choice: %v", d.Slug, err)
	}
	return sel, declared
}

// TestPanelQueries runs every demo panel's SQL as the server would (read
// only, its :name placeholders bound to the default choice of its
// dashboard's variables and time range) and checks its result against its
// kind's column conventions.
func TestPanelQueries(t *testing.T) {
	t.Parallel()
	pool := setUp(t)
	dashboards, err := catalog.ReadDashboards(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(dashboards) == 0 {
		t.Fatal("got no dashboards")
	}
	withVariables, chained, timeRange := false, false, false
	for _, d := range dashboards {
		sel, declared := defaultChoice(t, pool, d)
		timeRange = timeRange || d.Time != nil
		if len(d.Variables) > 0 {
			withVariables = true
			for _, v := range d.Variables {
				if names, _ := variables.Names(v.SQL, declared); v.Kind == panel.QueryVariable && slices.ContainsFunc(names, func(n string) bool {
					return d.Variable(n) != nil
				}) {
					chained = true
				}
				if len(sel.Values[v.Name]) == 0 {
					t.Errorf("dashboard %s: variable %s has no default value on a seeded demo", d.Slug, v.Name)
				}
			}
		}
		for _, p := range d.Panels {
			t.Run(d.Slug+"/"+p.Slug, func(t *testing.T) {
				if p.Width < 1 || p.Width > 4 || p.Height < 1 || p.Height > 4 {
					t.Errorf("got size %dx%d, want 1-4 each", p.Width, p.Height)
				}
				query, params, err := variables.Rewrite(p.SQL, declared)
				if err != nil {
					t.Fatal(err)
				}
				args, err := variables.Args(d, sel, params, time.Now())
				if err != nil {
					t.Fatal(err)
				}
				var cols []string
				var data [][]any
				var plan catalog.QueryPlan
				err = pgx.BeginTxFunc(t.Context(), pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
					if plan, err = catalog.Explain(t.Context(), tx, query, p.DependsOn); err != nil {
						return err
					}
					rows, err := tx.Query(t.Context(), query, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
					if err != nil {
						return err
					}
					defer rows.Close()
					for _, f := range rows.FieldDescriptions() {
						cols = append(cols, f.Name)
					}
					for rows.Next() {
						v, err := rows.Values()
						if err != nil {
							return err
						}
						data = append(data, v)
					}
					return rows.Err()
				})
				if err != nil {
					t.Fatalf("running the panel's SQL read-only: %v", err)
				}
				if !slices.ContainsFunc(plan.Tables, func(s string) bool { return strings.HasPrefix(s, "demo.") }) {
					t.Errorf("EXPLAIN finds no demo table (%v), want the server to find the panel's dependencies", plan.Tables)
				}
				if len(data) == 0 {
					t.Fatalf("got no rows, want at least one on a freshly seeded demo")
				}
				checkConventions(t, p.Kind, cols, data)
			})
		}
	}
	if !withVariables || !chained || !timeRange {
		t.Errorf("demo dashboards: variables %v, a query variable that depends on another %v, a time range %v; the demo shows all three",
			withVariables, chained, timeRange)
	}
}

func isNumber(v any) bool {
	switch v := v.(type) {
	case int16, int32, int64, float32, float64:
		return true
	case pgtype.Numeric:
		return v.Valid
	}
	return false
}

func isTime(v any) bool { _, ok := v.(time.Time); return ok }

func isText(v any) bool { _, ok := v.(string); return ok }

// checkConventions checks a result against docs/panels.md.
func checkConventions(t *testing.T, kind panel.Kind, cols []string, data [][]any) {
	t.Helper()
	switch kind {
	case panel.Stat:
		if last := data[len(data)-1]; !isNumber(last[0]) {
			t.Errorf("stat: got last row's first cell %#v, want a number", last[0])
		}
	case panel.Table:
		if len(cols) < 2 {
			t.Errorf("table: got columns %v, want several", cols)
		}
	case panel.Timeseries:
		long := len(cols) == 3 && isText(data[0][1])
		for i, row := range data {
			if !isTime(row[0]) {
				t.Fatalf("timeseries: row %d first cell %#v, want a time", i, row[0])
			}
			if i > 0 && row[0].(time.Time).Before(data[i-1][0].(time.Time)) {
				t.Errorf("timeseries: row %d is older than row %d, want ascending time", i, i-1)
			}
			start := 1
			if long {
				if !isText(row[1]) {
					t.Errorf("timeseries long form: row %d series %#v, want text", i, row[1])
				}
				start = 2
			}
			for j := start; j < len(row); j++ {
				if row[j] != nil && !isNumber(row[j]) {
					t.Errorf("timeseries: row %d column %s = %#v, want a number", i, cols[j], row[j])
				}
			}
		}
	case panel.Bar:
		if len(cols) < 2 {
			t.Fatalf("bar: got columns %v, want a label and values", cols)
		}
		for i, row := range data {
			if !isText(row[0]) {
				t.Errorf("bar: row %d label %#v, want text", i, row[0])
			}
			for j := 1; j < len(row); j++ {
				if !isNumber(row[j]) {
					t.Errorf("bar: row %d column %s = %#v, want a number", i, cols[j], row[j])
				}
			}
		}
	case panel.Feed:
		if len(cols) < 2 {
			t.Fatalf("feed: got columns %v, want a time and text", cols)
		}
		for i, row := range data {
			if !isTime(row[0]) || !isText(row[1]) {
				t.Fatalf("feed: row %d starts %#v, %#v, want a time then text", i, row[0], row[1])
			}
			if i > 0 && row[0].(time.Time).After(data[i-1][0].(time.Time)) {
				t.Errorf("feed: row %d is newer than row %d, want newest first", i, i-1)
			}
		}
	default:
		t.Errorf("got kind %q, want one of %v", kind, panel.Kinds)
	}
}

// TestTraffic runs Traffic at 50 writes per second until it has inserted
// 100 orders, then cancels it. It also checks that old rows are deleted.
func TestTraffic(t *testing.T) {
	t.Parallel()
	pool := setUp(t)
	for _, sql := range []string{
		"INSERT INTO demo.orders (created_at, customer, region, product, amount) VALUES (now() - interval '3 days', 'Old', 'Europe', 'Mouse', 1)",
		"INSERT INTO demo.sensor_readings (reading_at, sensor, temperature, humidity) VALUES (now() - interval '3 hours', 'lab', 20, 50)",
	} {
		if _, err := pool.Exec(t.Context(), sql); err != nil {
			t.Fatal(err)
		}
	}
	before := count(t, pool, "SELECT count(*) FROM demo.orders")
	var lastReading time.Time
	if err := pool.QueryRow(t.Context(), "SELECT max(reading_at) FROM demo.sensor_readings").Scan(&lastReading); err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Traffic(ctx, pool, 50, slog.New(slog.DiscardHandler)) }()

	const want = 100
	deadline := time.Now().Add(30 * time.Second) // safety net; expected ~3 s
	for count(t, pool, "SELECT count(*) FROM demo.orders") < before+want {
		if time.Now().After(deadline) {
			cancel()
			<-done
			t.Fatalf("Traffic inserted fewer than %d orders in 30 s", want)
		}
		time.Sleep(20 * time.Millisecond) // polling the table, not hoping
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Traffic after cancel: got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Traffic did not return within 10 s of cancel")
	}

	if got := count(t, pool, "SELECT count(*) FROM demo.orders WHERE created_at < now() - interval '2 days'"); got != 0 {
		t.Errorf("got %d orders older than 2 days, want them deleted", got)
	}
	if got := count(t, pool, "SELECT count(*) FROM demo.sensor_readings WHERE reading_at < now() - interval '2 hours 1 minute'"); got != 0 {
		t.Errorf("got %d sensor readings older than 2 hours, want them deleted", got)
	}
	// Counting all readings would race with the retention delete, which
	// also removes seeded readings as they cross the two-hour line.
	var fresh int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM demo.sensor_readings WHERE reading_at > $1", lastReading).Scan(&fresh); err != nil {
		t.Fatal(err)
	}
	if fresh == 0 {
		t.Errorf("no sensor reading newer than the seeded ones (%v): Traffic recorded none", lastReading)
	}
}

func TestTrafficRateZero(t *testing.T) {
	t.Parallel()
	// No database is needed: rate 0 writes nothing.
	if err := Traffic(t.Context(), nil, 0, nil); err != nil {
		t.Errorf("got %v, want nil", err)
	}
}

// warnSignal is a slog handler that signals the first warning.
type warnSignal struct {
	once sync.Once
	ch   chan struct{}
}

func (h *warnSignal) Enabled(context.Context, slog.Level) bool { return true }
func (h *warnSignal) Handle(_ context.Context, r slog.Record) error {
	if r.Level >= slog.LevelWarn {
		h.once.Do(func() { close(h.ch) })
	}
	return nil
}
func (h *warnSignal) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *warnSignal) WithGroup(string) slog.Handler      { return h }

// TestTrafficKeepsGoing runs Traffic against a database without the demo
// schema: it must log, back off and still return nil on cancel.
func TestTrafficKeepsGoing(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	h := &warnSignal{ch: make(chan struct{})}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- Traffic(ctx, pool, 50, slog.New(h)) }()
	select {
	case <-h.ch:
	case err := <-done:
		t.Fatalf("Traffic returned %v before it was cancelled, want it to keep going", err)
	case <-time.After(30 * time.Second):
		t.Fatal("got no warning within 30 s, want one for the missing schema")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("got %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Traffic did not return within 10 s of cancel")
	}
}
