package refresh_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/refresh"
)

// These tests run the engine with a real streaming standby of the
// package's server (pgtest.NewStandby). Each dashboard has a panel
// counting table t and a panel "where" that says where its query ran: 1 on
// a server in recovery (the standby), 0 on the primary. They do not run in
// parallel: each makes a standby of its own, and the machine is small.

// standbyFixture is a harness whose engine reads from one standby.
type standbyFixture struct {
	*harness
	standby    *pgtest.Standby
	standbyURL string
	dash       int64
	count      int64 // the panel counting t
	where      int64 // the panel saying where it ran
}

func newStandbyFixture(t *testing.T, countSQL string, maxWait time.Duration) *standbyFixture {
	t.Helper()
	db := newTestDB(t)
	db.table(t, "t")
	f := &standbyFixture{dash: db.dashboard(t, "main")}
	if countSQL == "" {
		countSQL = "SELECT count(*) AS n FROM t"
	}
	f.count = db.panel(t, f.dash, "count", countSQL)
	f.where = db.panel(t, f.dash, "where", "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END + 0 * count(*) AS n FROM t")
	f.standby = pgtest.NewStandby(t, pgtest.Server(t))
	f.standbyURL = f.standby.ConnString(db.pool.Config().ConnConfig.Database)
	cfg, err := pgxpool.ParseConfig(f.standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 8
	cfg.ConnConfig.ConnectTimeout = 2 * time.Second
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	f.harness = start(t, db, options{engine: refresh.Config{Standbys: []*pgxpool.Pool{pool}, StandbyMaxWait: maxWait}})
	return f
}

// insert commits one row into t on the primary and returns the count.
func (f *standbyFixture) insert(t *testing.T) int64 {
	t.Helper()
	f.db.exec(t, "INSERT INTO t DEFAULT VALUES")
	return f.db.count(t, "t")
}

// waitShown waits until the count panel shows n.
func (f *standbyFixture) waitShown(t *testing.T, n int64) {
	t.Helper()
	f.pub.waitValue(t, f.count, n)
}

// ranOn is where the latest query of the where panel ran, from the
// database itself.
func (f *standbyFixture) ranOn() string {
	rs := f.pub.of(f.where)
	if len(rs) == 0 {
		return "nowhere"
	}
	if value(rs[len(rs)-1]) == 1 {
		return "standby"
	}
	return "primary"
}

// labelled is the value of one series of a counter vector.
func (h *harness) labelled(t testing.TB, name, label, value string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("metric %s{%s=%q} not registered", name, label, value)
	return 0
}

func (h *harness) fallbacks(t testing.TB, reason string) float64 {
	t.Helper()
	return h.labelled(t, "dashboard_standby_fallbacks_total", "reason", reason)
}

// untilStandby commits rows until a refresh of the where panel ran on the
// standby: once the engine uses the standby again, the next commit shows
// it.
func (f *standbyFixture) untilStandby(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		n := f.insert(t)
		if f.whereSettled(t, n) == "standby" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no query ran on the standby within %v; published: %s", waitTimeout, f.pub)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// whereSettled waits until the count panel shows n and a fresh round of
// both panels has finished, then says where the where panel ran in it (a
// result equal to the last one is not published again, so the last one
// published is the round's).
func (f *standbyFixture) whereSettled(t *testing.T, n int64) string {
	t.Helper()
	f.pub.waitValue(t, f.count, n)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	select {
	case <-f.engine.Fresh(ctx, panel.ViewKey{Dashboard: f.dash}):
	case <-ctx.Done():
		t.Fatalf("no fresh round within %v", waitTimeout)
	}
	f.pub.waitValue(t, f.count, n)
	return f.ranOn()
}

// Panels served from the standby show every committed change, and their
// queries run there (the where panel says so from the database itself,
// and dashboard_panel_queries_total{db="standby"} counts them).
func TestStandbyServesEveryCommit(t *testing.T) {
	f := newStandbyFixture(t, "", 10*time.Second)
	defer f.acquire(t, f.dash)()
	for range 20 {
		f.waitShown(t, f.insert(t))
	}
	if got := f.whereSettled(t, 20); got != "standby" {
		t.Errorf("the where panel ran on the %s, want the standby", got)
	}
	if got := f.labelled(t, "dashboard_panel_queries_total", "db", "standby"); got < 20 {
		t.Errorf("panel_queries_total{db=standby}: got %v, want at least 20", got)
	}
	for _, reason := range []string{"lag", "down", "promoted", "conflict"} {
		if got := f.fallbacks(t, reason); got != 0 {
			t.Errorf("standby_fallbacks_total{reason=%s}: got %v, want 0 (the bound is 10s)", reason, got)
		}
	}
}

// With replay paused the standby keeps its old data. A commit must still
// show: past the bound the refresh runs on the primary (counted as lag).
// Without the wait for the primary's position the query would run on the
// paused standby, show the old count, and nothing would ever run it again.
// After replay resumes, the standby is used again.
func TestStandbyReplayPaused(t *testing.T) {
	f := newStandbyFixture(t, "", 200*time.Millisecond)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)

	f.standby.PauseReplay(t)
	lagBefore := f.fallbacks(t, "lag")
	n := f.insert(t)
	f.waitShown(t, n)
	if got := f.fallbacks(t, "lag"); got <= lagBefore {
		t.Errorf("standby_fallbacks_total{reason=lag}: got %v, want more than %v", got, lagBefore)
	}
	if got := f.whereSettled(t, n); got != "primary" {
		t.Errorf("with replay paused the where panel ran on the %s, want the primary", got)
	}
	if got := f.standbyCount(t); got >= n {
		t.Fatalf("the paused standby has %d rows, want fewer than %d: replay was not paused", got, n)
	}

	f.standby.ResumeReplay(t)
	f.untilStandby(t)
}

// standbyCount counts t on the standby directly.
func (f *standbyFixture) standbyCount(t *testing.T) int64 {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), f.standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var n int64
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// A stopped standby costs nothing but a fallback: panels keep updating
// from the primary, and once the standby is back it is used again.
func TestStandbyStopped(t *testing.T) {
	f := newStandbyFixture(t, "", 2*time.Second)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)

	f.standby.Stop(t)
	downBefore := f.fallbacks(t, "down")
	for range 3 {
		n := f.insert(t)
		f.waitShown(t, n)
		if got := f.whereSettled(t, n); got != "primary" {
			t.Errorf("with the standby stopped the where panel ran on the %s, want the primary", got)
		}
	}
	if got := f.fallbacks(t, "down"); got <= downBefore {
		t.Errorf("standby_fallbacks_total{reason=down}: got %v, want more than %v", got, downBefore)
	}

	f.standby.Start(t)
	f.untilStandby(t)
}

// A promoted standby leaves the primary's timeline: the engine stops using
// it. Rows written on the promoted server only must never show.
func TestStandbyPromoted(t *testing.T) {
	f := newStandbyFixture(t, "", 2*time.Second)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)

	f.standby.Promote(t)
	conn, err := pgx.Connect(t.Context(), f.standbyURL)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := conn.Exec(t.Context(), "INSERT INTO t SELECT FROM generate_series(1, 1000)"); err != nil {
		t.Fatalf("writing on the promoted standby: %v", err)
	}
	before := f.fallbacks(t, "promoted")
	for range 3 {
		n := f.insert(t)
		f.waitShown(t, n)
		for _, r := range f.pub.of(f.count) {
			if value(r) >= 1000 {
				t.Fatalf("the panel showed %d rows, the promoted standby's data", value(r))
			}
		}
	}
	if got := f.fallbacks(t, "promoted"); got <= before {
		t.Errorf("standby_fallbacks_total{reason=promoted}: got %v, want more than %v", got, before)
	}
}

// A query that replay cancels (a recovery conflict: here the primary takes
// an ACCESS EXCLUSIVE lock on the table the query reads, and the standby
// may not delay replay at all) runs again on the primary; the panel shows
// the new count and never an error.
func TestStandbyRecoveryConflict(t *testing.T) {
	f := newStandbyFixture(t, "SELECT count(*) AS n FROM t, pg_sleep(1.5)", 2*time.Second)
	execOn(t, f.standbyURL, "ALTER SYSTEM SET max_standby_streaming_delay = 0")
	execOn(t, f.standbyURL, "SELECT pg_reload_conf()")
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)

	before := f.fallbacks(t, "conflict")
	n := f.insert(t)
	// Wait until the count query sleeps on the standby, holding its lock
	// on t.
	deadline := time.Now().Add(waitTimeout)
	for scalarOn(t, f.standbyURL, `SELECT count(*)::text FROM pg_stat_activity
		WHERE state = 'active' AND query LIKE '%pg_sleep(1.5)%' AND pid <> pg_backend_pid()`) == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("the count query never ran on the standby within %v", waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	tx, err := f.db.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	f.waitShown(t, n)
	if got := f.fallbacks(t, "conflict"); got <= before {
		t.Errorf("standby_fallbacks_total{reason=conflict}: got %v, want more than %v", got, before)
	}
	for _, r := range f.pub.of(f.count) {
		if r.Err != "" {
			t.Errorf("the panel showed the error %q", r.Err)
		}
	}
	// The standby's own account of it (its statistics arrive a moment
	// later).
	deadline = time.Now().Add(waitTimeout)
	for scalarOn(t, f.standbyURL, "SELECT confl_lock::text FROM pg_stat_database_conflicts WHERE datname = current_database()") == "0" {
		if time.Now().After(deadline) {
			t.Fatalf("pg_stat_database_conflicts.confl_lock on the standby still 0 after %v", waitTimeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func execOn(t *testing.T, url, sql string) {
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

func scalarOn(t *testing.T, url, sql string) string {
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
