package refresh_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pglogrepl"
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

// standbyFixture is a harness whose engine reads from real standbys.
type standbyFixture struct {
	*harness
	standby    *pgtest.Standby // the first of standbys
	standbyURL string          // its connection string for the test's database
	standbys   []*pgtest.Standby
	urls       []string
	dash       int64
	count      int64 // the panel counting t
	where      int64 // the panel saying where it ran
}

func newStandbyFixture(t *testing.T, countSQL string, maxWait time.Duration) *standbyFixture {
	t.Helper()
	return newStandbysFixture(t, countSQL, maxWait, 1)
}

// newStandbysFixture makes n standbys; with extra panels, made before the
// engine starts.
func newStandbysFixture(t *testing.T, countSQL string, maxWait time.Duration, n int, extra ...[2]string) *standbyFixture {
	t.Helper()
	db := newTestDB(t)
	db.table(t, "t")
	f := &standbyFixture{dash: db.dashboard(t, "main")}
	if countSQL == "" {
		countSQL = "SELECT count(*) AS n FROM t"
	}
	f.count = db.panel(t, f.dash, "count", countSQL)
	f.where = db.panel(t, f.dash, "where", "SELECT CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END + 0 * count(*) AS n FROM t")
	for _, p := range extra {
		db.panel(t, f.dash, p[0], p[1])
	}
	var pools []*pgxpool.Pool
	for range n {
		sb := pgtest.NewStandby(t, pgtest.Server(t))
		url := sb.ConnString(db.pool.Config().ConnConfig.Database)
		f.standbys = append(f.standbys, sb)
		f.urls = append(f.urls, url)
		cfg, err := pgxpool.ParseConfig(url)
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
		pools = append(pools, pool)
	}
	f.standby, f.standbyURL = f.standbys[0], f.urls[0]
	f.harness = start(t, db, options{engine: refresh.Config{Standbys: pools, StandbyMaxWait: maxWait}})
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

// labelled is the value of one series of a counter or gauge vector.
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
					return m.GetCounter().GetValue() + m.GetGauge().GetValue()
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
	if got := f.labelled(t, "dashboard_standbys", "state", "down"); got != 1 {
		t.Errorf("dashboard_standbys{state=down} with the standby stopped: got %v, want 1", got)
	}

	f.standby.Start(t)
	f.untilStandby(t)
	if got := f.labelled(t, "dashboard_standbys", "state", "usable"); got != 1 {
		t.Errorf("dashboard_standbys{state=usable} once the standby is back: got %v, want 1", got)
	}
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
	if got := f.labelled(t, "dashboard_standbys", "state", "promoted"); got != 1 {
		t.Errorf("dashboard_standbys{state=promoted}: got %v, want 1", got)
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

// With two standbys, queries are spread over both; with one of them
// stopped, the other serves them all.
func TestStandbysTakenInTurn(t *testing.T) {
	f := newStandbysFixture(t, "", 2*time.Second, 2,
		[2]string{"dir", "SELECT current_setting('data_directory') AS dir, count(*) AS n FROM t"})
	dirA := scalarOn(t, f.urls[0], "SHOW data_directory")
	dirB := scalarOn(t, f.urls[1], "SHOW data_directory")
	dirPrimary := scalarOn(t, f.db.connString, "SHOW data_directory")
	defer f.acquire(t, f.dash)()
	dirID := f.panelID(t, "dir")

	// seen returns the data folders of the dir panel's results from the
	// k-th on, and how many there were.
	seen := func(from int) (map[string]int, int) {
		rs := f.pub.of(dirID)
		m := make(map[string]int)
		for _, r := range rs[min(from, len(rs)):] {
			if r.Err == "" && len(r.Rows) > 0 {
				m[r.Rows[0][0].Text]++
			}
		}
		return m, len(rs)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		f.waitShown(t, f.insert(t))
		m, _ := seen(0)
		if m[dirA] > 0 && m[dirB] > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results from the standbys' folders: got %v, want both %s and %s", m, dirA, dirB)
		}
	}

	f.whereSettled(t, f.db.count(t, "t")) // no query in flight on the standby to stop
	f.standbys[0].Stop(t)
	// The first query meant for the stopped standby finds it down and runs
	// on the primary; from then on the other standby serves every query.
	deadline = time.Now().Add(waitTimeout)
	for {
		_, from := seen(0)
		for range 4 {
			f.waitShown(t, f.insert(t))
		}
		m, _ := seen(from)
		if m[dirA] > 0 {
			t.Fatalf("a query ran on the stopped standby: %v", m)
		}
		if m[dirB] >= 4 && m[dirPrimary] == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("results after the stop: got %v, want only %s", m, dirB)
		}
	}
	// Known down, it is skipped without a fallback.
	down := f.fallbacks(t, "down")
	for range 4 {
		f.waitShown(t, f.insert(t))
	}
	if got := f.fallbacks(t, "down"); got != down {
		t.Errorf("standby_fallbacks_total{reason=down}: got %v, want still %v (a standby known down is skipped)", got, down)
	}
}

// panelID is the id of the fixture's panel with slug.
func (f *standbyFixture) panelID(t *testing.T, slug string) int64 {
	t.Helper()
	var id int64
	if err := f.db.pool.QueryRow(t.Context(), "SELECT id FROM dashboard.panels WHERE dashboard_id = $1 AND slug = $2",
		f.dash, slug).Scan(&id); err != nil {
		t.Fatal(err)
	}
	return id
}

// The resume contract on standbys: a Fresh round (a refresh that started
// after the request arrived) shows every commit made before it, even one
// that sent no notification and that the standby has not replayed (its
// replay is paused): the round reads the primary's position after the
// request, and the standby has not reached it, so the primary answers.
func TestStandbyFreshSeesEveryCommit(t *testing.T) {
	f := newStandbyFixture(t, "", 200*time.Millisecond)
	defer f.acquire(t, f.dash)()
	// quiet has no triggers: its writes notify nobody.
	f.db.exec(t, "CREATE TABLE quiet (id int)")
	quiet := f.db.panel(t, f.dash, "quiet", "SELECT count(*) AS n FROM quiet")
	f.pub.waitValue(t, quiet, 0)
	f.db.exec(t, "ALTER TABLE quiet DISABLE TRIGGER USER")
	f.untilStandby(t)

	f.standby.PauseReplay(t)
	f.db.exec(t, "INSERT INTO quiet SELECT generate_series(1, 3)")
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	select {
	case <-f.engine.Fresh(ctx, panel.ViewKey{Dashboard: f.dash}):
	case <-ctx.Done():
		t.Fatalf("no fresh round within %v", waitTimeout)
	}
	rs := f.pub.of(quiet)
	if got := value(rs[len(rs)-1]); got != 3 {
		t.Errorf("after a fresh round the quiet panel shows %d, want 3 (committed before the request)", got)
	}
	if got := f.fallbacks(t, "lag"); got == 0 {
		t.Errorf("standby_fallbacks_total{reason=lag}: got 0, want the fresh round's fallbacks")
	}
	f.standby.ResumeReplay(t)
}

// Variable options are read on the standby too, and with replay paused a
// new option committed on the primary is there all the same.
func TestStandbyVariableOptions(t *testing.T) {
	f := newStandbyFixture(t, "", 200*time.Millisecond)
	options := func(name string) []string {
		t.Helper()
		v := &panel.Variable{Name: name, Kind: panel.QueryVariable,
			SQL: "SELECT CASE WHEN pg_is_in_recovery() THEN 'standby' ELSE 'primary' END || ':' || count(*) FROM t"}
		got, err := f.engine.Options(t.Context(), f.dash, v, nil)
		if err != nil {
			t.Fatalf("Options: %v", err)
		}
		return got
	}
	if got := options("a"); len(got) != 1 || got[0] != "standby:0" {
		t.Errorf("options with the standby replaying: got %q, want [standby:0]", got)
	}
	f.standby.PauseReplay(t)
	f.insert(t)
	// Another name: the options of "a" are cached for a few seconds.
	if got := options("b"); len(got) != 1 || got[0] != "primary:1" {
		t.Errorf("options with replay paused after a commit: got %q, want [primary:1]", got)
	}
	f.standby.ResumeReplay(t)
}

// replayWaits is how many queries have waited for a standby's replay
// (the count of dashboard_standby_replay_wait_seconds).
func (h *harness) replayWaits(t testing.TB) uint64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "dashboard_standby_replay_wait_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatalf("metric dashboard_standby_replay_wait_seconds not registered")
	return 0
}

// setPrimary sets a server setting of the package's server (ALTER SYSTEM,
// then a reload) and resets it at cleanup. The standby tests do not run
// in parallel, so no other test of the package runs meanwhile.
func setPrimary(t *testing.T, name, value string) {
	t.Helper()
	admin := pgtest.Server(t).ConnString("postgres")
	run := func(ctx context.Context, sql ...string) error {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			return err
		}
		defer conn.Close(context.Background())
		for _, s := range sql {
			if _, err := conn.Exec(ctx, s); err != nil {
				return fmt.Errorf("%s: %w", s, err)
			}
		}
		return nil
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := run(ctx, "ALTER SYSTEM RESET "+name, "SELECT pg_reload_conf()"); err != nil {
			t.Errorf("resetting %s on the test server: %v", name, err)
		}
	})
	if err := run(t.Context(), fmt.Sprintf("ALTER SYSTEM SET %s = '%s'", name, value), "SELECT pg_reload_conf()"); err != nil {
		t.Fatal(err)
	}
}

// A writer with synchronous_commit=off: its commit record is inserted, and
// its notification delivered, before the WAL writer writes it out, up to
// wal_writer_delay (here 5 s) later. The panel must show that commit. With
// the position of the WAL written out (pg_current_wal_lsn()) the query ran
// at once on the standby, which did not have the commit yet, and the panel
// kept the old count; with the insert position it waits until the standby
// has replayed the commit (the bound is longer than the WAL writer's
// delay), and runs there.
func TestStandbyAsyncCommit(t *testing.T) {
	f := newStandbyFixture(t, "", 20*time.Second)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)
	setPrimary(t, "wal_writer_delay", "5s")

	w, err := pgx.Connect(t.Context(), f.db.connString)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close(context.Background())
	if _, err := w.Exec(t.Context(), "SET synchronous_commit = off"); err != nil {
		t.Fatal(err)
	}
	scalar := func(sql string) string {
		t.Helper()
		var v string
		if err := w.QueryRow(t.Context(), sql).Scan(&v); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return v
	}
	lagBefore := f.fallbacks(t, "lag")
	// Only a commit the WAL writer has not written when the engine reads
	// the position tells the positions apart; a sleeping WAL writer is
	// woken by an async commit and writes it at once. So each try first
	// commits asynchronously and waits until the WAL writer has flushed
	// that: from then on it is awake and sleeps a whole delay.
	for try := 1; ; try++ {
		scalar("SELECT pg_current_xact_id()::text")
		primed := scalar("SELECT pg_current_wal_insert_lsn()::text")
		deadline := time.Now().Add(waitTimeout)
		for scalar("SELECT (pg_current_wal_flush_lsn() >= '"+primed+"')::text") != "true" {
			if time.Now().After(deadline) {
				t.Fatalf("the WAL writer did not flush %s within %v", primed, waitTimeout)
			}
			time.Sleep(5 * time.Millisecond)
		}
		if _, err := w.Exec(t.Context(), "INSERT INTO t DEFAULT VALUES"); err != nil {
			t.Fatal(err)
		}
		unwritten := scalar("SELECT (pg_current_wal_lsn() < pg_current_wal_insert_lsn())::text") == "true"
		n := f.db.count(t, "t")
		f.waitShown(t, n)
		if unwritten {
			// No query of the commit's round (finished before the fresh
			// one) nor of the fresh round went to the primary.
			if got := f.whereSettled(t, n); got != "standby" {
				t.Errorf("the where panel ran on the %s, want the standby (after the WAL writer's flush)", got)
			}
			break
		}
		if try == 3 {
			t.Fatalf("the async commit was written out at once in %d tries: the test shows nothing", try)
		}
		t.Logf("try %d: the async commit was written out at once; again", try)
	}
	if got := f.fallbacks(t, "lag"); got != lagBefore {
		t.Errorf("standby_fallbacks_total{reason=lag}: got %v, want still %v", got, lagBefore)
	}
}

// After pg_switch_wal the primary's insert position is the next segment's
// start plus the segment's long page header, where no record ends: the
// standby's replay stops at the segment's start until more WAL comes. A
// round with no WAL after the switch must still run on the standby, not
// wait out the bound and go to the primary.
func TestStandbyAtSegmentStart(t *testing.T) {
	f := newStandbyFixture(t, "", 5*time.Second)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)
	seg, err := strconv.ParseUint(scalarOn(t, f.db.connString, "SELECT pg_size_bytes(current_setting('wal_segment_size'))::text"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	for try := 1; ; try++ {
		n := f.insert(t) // WAL to switch from
		f.waitShown(t, n)
		scalarOn(t, f.db.connString, "SELECT pg_switch_wal()::text")
		insert := scalarOn(t, f.db.connString, "SELECT pg_current_wal_insert_lsn()::text")
		pos, err := pglogrepl.ParseLSN(insert)
		if err != nil {
			t.Fatal(err)
		}
		if uint64(pos)%seg == 40 {
			start := (pos - 40).String()
			deadline := time.Now().Add(waitTimeout)
			for scalarOn(t, f.standbyURL, "SELECT pg_last_wal_replay_lsn()::text") != start {
				if time.Now().After(deadline) {
					t.Fatalf("the standby did not replay up to %s within %v", start, waitTimeout)
				}
				time.Sleep(5 * time.Millisecond)
			}
			lag := f.fallbacks(t, "lag")
			where := f.whereSettled(t, n)
			if scalarOn(t, f.db.connString, "SELECT pg_current_wal_insert_lsn()::text") == insert {
				if where != "standby" {
					t.Errorf("at a segment's start the where panel ran on the %s, want the standby", where)
				}
				if got := f.fallbacks(t, "lag"); got != lag {
					t.Errorf("standby_fallbacks_total{reason=lag}: got %v, want still %v", got, lag)
				}
				return
			}
		}
		// Some other WAL came: the insert position left the header.
		if try == 5 {
			t.Fatalf("WAL kept coming after pg_switch_wal in %d tries: the test shows nothing", try)
		}
		t.Logf("try %d: WAL came after pg_switch_wal; again", try)
	}
}

// A standby whose replay is paused makes the queries of one round wait
// out the bound; from then on it is known to lag, and every query goes to
// the primary at once (counted as lag) without waiting for it, until it
// has replayed the position it missed.
func TestStandbyLaggingSkipped(t *testing.T) {
	var extra [][2]string
	for i := range 10 {
		extra = append(extra, [2]string{fmt.Sprintf("p%d", i), "SELECT count(*) AS n FROM t"})
	}
	f := newStandbysFixture(t, "", 200*time.Millisecond, 1, extra...)
	defer f.acquire(t, f.dash)()
	f.untilStandby(t)

	f.standby.PauseReplay(t)
	n := f.insert(t)
	if got := f.whereSettled(t, n); got != "primary" {
		t.Errorf("with replay paused the where panel ran on the %s, want the primary", got)
	}
	if got := f.labelled(t, "dashboard_standbys", "state", "lagging"); got != 1 {
		t.Errorf("dashboard_standbys{state=lagging} after a wait timed out: got %v, want 1", got)
	}
	waits, lag := f.replayWaits(t), f.fallbacks(t, "lag")
	n = f.insert(t)
	if got := f.whereSettled(t, n); got != "primary" {
		t.Errorf("with replay paused the where panel ran on the %s, want the primary", got)
	}
	if got := f.replayWaits(t); got != waits {
		t.Errorf("queries that waited for the lagging standby: got %d, want none", got-waits)
	}
	// At least the commit's round, 12 panels (the fresh round may be
	// those same queries, if they started after it was asked for).
	if got := f.fallbacks(t, "lag"); got < lag+12 {
		t.Errorf("standby_fallbacks_total{reason=lag}: got %v, want at least %v", got, lag+12)
	}

	f.standby.ResumeReplay(t)
	f.untilStandby(t)
	if got := f.labelled(t, "dashboard_standbys", "state", "lagging"); got != 0 {
		t.Errorf("dashboard_standbys{state=lagging} once caught up: got %v, want 0", got)
	}
}

// WAL that is not a commit (here the rows of a transaction left open on
// the primary) stays in a partial page, unflushed and so unsent to the
// standby, until the next commit, a full page or the background writer's
// running-transactions record (about 15 s). A query that waits for the
// insert position then runs out the bound although the standby has all
// the primary flushed: it goes to the primary, counted as unflushed, the
// standby is not marked lagging, and the primary is nudged to flush. The
// next commit's queries run on the standby again, without a fallback.
// Marking the standby lagging instead sent them to the primary (lag) too.
func TestStandbyUnflushedNotLagging(t *testing.T) {
	f := newStandbyFixture(t, "", 300*time.Millisecond)
	defer f.acquire(t, f.dash)()
	f.db.exec(t, "CREATE TABLE other (n int)")
	f.untilStandby(t)

	open, err := pgx.Connect(t.Context(), f.db.connString)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { open.Close(context.Background()) })
	if _, err := open.Exec(t.Context(), "BEGIN"); err != nil {
		t.Fatal(err)
	}
	lag, unflushed := f.fallbacks(t, "lag"), f.fallbacks(t, "unflushed")
	for try := 1; ; try++ {
		// The commit flushes everything inserted before it, the open
		// transaction's earlier rows too; the rows inserted after it stay
		// unflushed while the primary is otherwise quiet.
		n := f.insert(t)
		f.waitShown(t, n)
		if _, err := open.Exec(t.Context(), "INSERT INTO other SELECT generate_series(1, 3)"); err != nil {
			t.Fatal(err)
		}
		if got := scalarOn(t, f.db.connString, "SELECT (pg_current_wal_flush_lsn() < pg_current_wal_insert_lsn())::text"); got != "true" {
			t.Fatalf("the open transaction's rows were flushed at once: the test shows nothing")
		}
		// A round that starts now reads a position the primary has not
		// flushed; the panel shows the commit from the primary.
		where := f.whereSettled(t, n)
		if got := f.fallbacks(t, "lag"); got != lag {
			t.Fatalf("standby_fallbacks_total{reason=lag}: got %v, want still %v (the standby had all the primary flushed)", got, lag)
		}
		if f.fallbacks(t, "unflushed") > unflushed {
			if where != "primary" {
				t.Errorf("with the position unflushed the where panel ran on the %s, want the primary", where)
			}
			break
		}
		// The WAL was flushed before the round's wait ran out (the
		// background writer's record came meanwhile).
		if try == 3 {
			t.Fatalf("no query waited for unflushed WAL in %d tries: the test shows nothing", try)
		}
		t.Logf("try %d: the primary flushed meanwhile; again", try)
	}
	if got := f.labelled(t, "dashboard_standbys", "state", "lagging"); got != 0 {
		t.Errorf("dashboard_standbys{state=lagging} after a wait for unflushed WAL: got %v, want 0", got)
	}

	// The next commit's queries run on the standby: no fallback.
	unflushed = f.fallbacks(t, "unflushed")
	onStandby := f.labelled(t, "dashboard_panel_queries_total", "db", "standby")
	n := f.insert(t)
	if got := f.whereSettled(t, n); got != "standby" {
		t.Errorf("after the wait for unflushed WAL the where panel ran on the %s, want the standby", got)
	}
	if got := f.labelled(t, "dashboard_panel_queries_total", "db", "standby"); got <= onStandby {
		t.Errorf("panel_queries_total{db=standby}: got %v, want more than %v", got, onStandby)
	}
	if got := f.fallbacks(t, "lag"); got != lag {
		t.Errorf("standby_fallbacks_total{reason=lag}: got %v, want still %v", got, lag)
	}
	if got := f.fallbacks(t, "unflushed"); got != unflushed {
		t.Errorf("standby_fallbacks_total{reason=unflushed}: got %v, want still %v", got, unflushed)
	}
}
