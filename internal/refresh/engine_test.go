package refresh_test

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/refresh"
)

// countPanel sets up table t and a dashboard with one panel counting it.
func countPanel(t *testing.T, db *testDB, sql string) (dashboard, panelID int64) {
	t.Helper()
	db.table(t, "t")
	dashboard = db.dashboard(t, "main")
	if sql == "" {
		sql = "SELECT count(*) AS n FROM t"
	}
	return dashboard, db.panel(t, dashboard, "count", sql)
}

// Rule 1: writes committed while the listener's connection is down show up
// after the automatic reconnect. In logical mode the walsender is killed,
// which ends the slot too: the reconnect streams from a new one.
func TestEngineTerminatedListenerCatchesUp(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineTerminatedListenerCatchesUp)
}

func testEngineTerminatedListenerCatchesUp(t *testing.T, feed string) {
	db := newTestDB(t)
	dash, p := countPanel(t, db, "")
	// BackoffMin 1s: the reconnect waits at least 500ms, time enough to
	// commit while nobody listens.
	h := start(t, db, options{feed: feed, listen: listen.Config{BackoffMin: time.Second, BackoffMax: 2 * time.Second}})
	defer h.acquire(t, dash)()
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	h.pub.waitValue(t, p, 1)

	before, _ := h.listener.State()
	db.exec(t, "SELECT pg_terminate_backend($1)", int32(before.BackendPID))
	waitState(t, h.listener, "not listening", func(s listen.State) bool { return !s.Listening })
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	if s, _ := h.listener.State(); s.Listening || s.Connects != before.Connects {
		t.Fatalf("listener reconnected before the writes committed (%+v): the test did not write into the gap", s)
	}

	after := h.waitListening(t, before.Connects+1)
	if after.BackendPID == before.BackendPID || after.BackendPID == 0 {
		t.Errorf("backend pid after reconnect: got %d, want a new one (was %d)", after.BackendPID, before.BackendPID)
	}
	h.pub.waitValue(t, p, 3)
	if got := h.metric(t, "dashboard_listener_reconnects_total"); got != 1 {
		t.Errorf("listener_reconnects_total: got %v, want 1", got)
	}
}

// A PostgreSQL restart (clean or crash) heals by itself: the listener
// reconnects, queries are retried, and panels converge on the data. It
// restarts the package's server, so it must not run in parallel.
func TestEngineRecoversFromRestart(t *testing.T) {
	forEachFeed(t, false, testEngineRecoversFromRestart)
}

func testEngineRecoversFromRestart(t *testing.T, feed string) {
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			srv := pgtest.Server(t)
			db := newTestDB(t)
			dash, p := countPanel(t, db, "")
			h := start(t, db, options{feed: feed, listen: listen.Config{BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond}})
			defer h.acquire(t, dash)()
			db.exec(t, "INSERT INTO t SELECT FROM generate_series(1, 3)")
			h.pub.waitValue(t, p, 3)
			before, _ := h.listener.State()

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := srv.Restart(ctx, mode); err != nil {
				t.Fatalf("Restart(%s): %v", mode, err)
			}
			// Probably before the listener is back: found by the resync.
			insert(t, db.connString, 2)
			h.waitListening(t, before.Connects+1)
			// After it is back: found by the notification.
			insert(t, db.connString, 1)
			want := countFresh(t, db.connString, "t")
			if want != 6 {
				t.Fatalf("rows after restart: got %d, want 6", want)
			}
			h.pub.waitValue(t, p, int64(want))
		})
	}
}

// insert adds n rows to t on a connection of its own (the pool's may be
// stale after a restart).
func insert(t *testing.T, connString string, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connecting after restart: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "INSERT INTO t SELECT FROM generate_series(1, $1::int)", n); err != nil {
		t.Fatalf("inserting: %v", err)
	}
}

// countFresh counts the rows of table on a connection of its own: the
// pool's may still hold one the restart broke ("broken pipe" on first use).
func countFresh(t *testing.T, connString, table string) int {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatalf("connecting after restart: %v", err)
	}
	defer conn.Close(ctx)
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}

// Rule 3: a commit that lands while the panel's query runs is not in that
// query's snapshot; the panel runs again after it and shows it.
func TestEngineCommitDuringQuery(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineCommitDuringQuery)
}

func testEngineCommitDuringQuery(t *testing.T, feed string) {
	db := newTestDB(t)
	const slow = "SELECT (SELECT count(*) FROM t) AS n FROM pg_sleep(0.3)"
	dash, p := countPanel(t, db, slow)
	h := start(t, db, options{feed: feed})
	defer h.acquire(t, dash)()
	q0 := h.queries(t)

	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	waitRunning(t, db, slow)
	db.exec(t, "INSERT INTO t DEFAULT VALUES") // commits while the query sleeps

	h.pub.waitValue(t, p, 2)
	var got []int64
	for _, r := range h.pub.of(p) {
		got = append(got, value(r))
	}
	if want := []int64{0, 1, 2}; !slices.Equal(got, want) {
		t.Errorf("published values: got %v, want %v (the run that missed the commit, then the re-run)", got, want)
	}
	if n := h.waitMetric(t, "dashboard_refresh_queries_total", q0+2); n != q0+2 {
		t.Errorf("queries: got %v, want %v", n-q0, 2)
	}
}

// waitRunning waits until a panel query with this text is executing.
func waitRunning(t *testing.T, db *testDB, sql string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var n int
		err := db.pool.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND pid <> pg_backend_pid()
			  AND state = 'active' AND query = $1`, sql).Scan(&n)
		if err != nil {
			t.Fatalf("reading pg_stat_activity: %v", err)
		}
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("panel query %q did not start within %v", sql, waitTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// insertingSink commits a row after LISTEN is in effect and before the
// engine's resync, which is the window rule 1 closes.
type insertingSink struct {
	*refresh.Engine
	t          *testing.T
	connString string
	resyncs    atomic.Int32
}

func (s *insertingSink) Resync() {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.connString)
	if err == nil {
		_, err = conn.Exec(ctx, "INSERT INTO t DEFAULT VALUES")
		conn.Close(ctx)
	}
	if err != nil {
		s.t.Errorf("inserting in Resync: %v", err)
	}
	s.resyncs.Add(1)
	s.Engine.Resync()
}

func TestEngineWriteBetweenListenAndSnapshot(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineWriteBetweenListenAndSnapshot)
}

func testEngineWriteBetweenListenAndSnapshot(t *testing.T, feed string) {
	db := newTestDB(t)
	dash, p := countPanel(t, db, "")
	var sink *insertingSink
	h := start(t, db, options{feed: feed, noSettle: true, sink: func(e *refresh.Engine) listen.Sink {
		sink = &insertingSink{Engine: e, t: t, connString: db.connString}
		return sink
	}})
	defer h.acquire(t, dash)()
	h.waitListening(t, 1)
	h.pub.waitValue(t, p, 1)

	// Again on a reconnect.
	before, _ := h.listener.State()
	db.exec(t, "SELECT pg_terminate_backend($1)", int32(before.BackendPID))
	h.waitListening(t, before.Connects+1)
	h.pub.waitValue(t, p, 2)
	if got := sink.resyncs.Load(); got != 2 {
		t.Errorf("resyncs: got %d, want 2", got)
	}
}

// Rule 4 under load: 32 writers for 5s cost at most panels x rate x seconds
// queries, the notification queue drains, and memory stays bounded.
// Not parallel: it measures the process's heap and the server's queue.
func TestEngineWriteStorm(t *testing.T) {
	forEachFeed(t, false, testEngineWriteStorm)
}

func testEngineWriteStorm(t *testing.T, feed string) {
	const (
		writers  = 32
		duration = 5 * time.Second
		hz       = 10
		heapMax  = 200 << 20 // bytes, after GC
	)
	db := newTestDB(t)
	db.table(t, "a")
	db.table(t, "b")
	dash := db.dashboard(t, "storm")
	panels := []int64{
		db.panel(t, dash, "a-count", "SELECT count(*) AS n FROM a"),
		db.panel(t, dash, "a-sum", "SELECT coalesce(sum(v), 0) AS n FROM a"),
		db.panel(t, dash, "b-count", "SELECT count(*) AS n FROM b"),
		db.panel(t, dash, "b-distinct", "SELECT count(DISTINCT id) AS n FROM b"),
	}
	h := start(t, db, options{feed: feed, engine: refresh.Config{BatchWindow: 25 * time.Millisecond, MaxRefreshHz: hz}})
	defer h.acquire(t, dash)()
	q0 := h.queries(t)

	wcfg, err := pgxpool.ParseConfig(db.connString)
	if err != nil {
		t.Fatal(err)
	}
	wcfg.MaxConns = writers
	wpool, err := pgxpool.NewWithConfig(context.Background(), wcfg)
	if err != nil {
		t.Fatal(err)
	}
	defer wpool.Close()

	began := time.Now()
	var writes atomic.Int64
	// Writers stop at a time, not by cancelling: a cancelled INSERT may still
	// commit after the final count was read.
	end := began.Add(duration)
	var g errgroup.Group
	for i := range writers {
		table := []string{"a", "b"}[i%2]
		g.Go(func() error {
			for time.Now().Before(end) {
				if _, err := wpool.Exec(context.Background(), "INSERT INTO "+table+" (v) VALUES (1)"); err != nil {
					return err
				}
				writes.Add(1)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatalf("writer: %v", err)
	}
	stormEnd := time.Now()

	na, nb := db.count(t, "a"), db.count(t, "b")
	for i, want := range []int64{na, na, nb, nb} {
		h.pub.waitValue(t, panels[i], want)
	}
	elapsed := time.Since(began)
	q := h.queries(t) - q0
	// Starts of one panel are at least 1/hz apart: at most floor(s*hz)+1 in s.
	bound := float64(len(panels)) * (math.Floor(elapsed.Seconds()*hz) + 1)
	t.Logf("%d writes in %v (%.0f/s), converged %v after; %v panel queries, bound %v (%d panels x %d Hz x %.2fs + leading edges)",
		writes.Load(), stormEnd.Sub(began).Round(time.Millisecond), float64(writes.Load())/stormEnd.Sub(began).Seconds(),
		time.Since(stormEnd).Round(time.Millisecond), q, bound, len(panels), hz, elapsed.Seconds())
	if q > bound {
		t.Errorf("panel queries during the storm: got %v, want <= %v", q, bound)
	}
	if writes.Load() < 100 {
		t.Errorf("writes: got %d, want a storm (>= 100)", writes.Load())
	}

	// The listener consumed everything: the server's queue is empty again.
	deadline := time.Now().Add(waitTimeout)
	for {
		var usage float64
		if err := db.pool.QueryRow(context.Background(), "SELECT pg_notification_queue_usage()").Scan(&usage); err != nil {
			t.Fatal(err)
		}
		if usage == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("pg_notification_queue_usage: got %v, want 0 within %v", usage, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap after GC: %.1f MB (bound %d MB)", float64(ms.HeapAlloc)/(1<<20), heapMax>>20)
	if ms.HeapAlloc > heapMax {
		t.Errorf("HeapAlloc after the storm: got %d bytes, want <= %d", ms.HeapAlloc, heapMax)
	}
}

// sentinel sets up a second watched table s with a panel on the viewed
// dashboard; a write to it, once published, proves the engine has handled
// every notification committed before it.
func sentinel(t *testing.T, db *testDB, dash int64) int64 {
	t.Helper()
	db.table(t, "s")
	return db.panel(t, dash, "sentinel", "SELECT count(*) AS n FROM s")
}

// Statements that change no rows: the triggers no longer keep transition
// tables (a bulk statement would store every row to learn that it changed
// something), so such a statement notifies like any other while its table
// is wanted. It costs at most one query per statement, and the unchanged
// result is not published again.
func TestEngineNoRowsNoPublish(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineNoRowsNoPublish)
}

func testEngineNoRowsNoPublish(t *testing.T, feed string) {
	db := newTestDB(t)
	dash, p := countPanel(t, db, "")
	s := sentinel(t, db, dash)
	db.exec(t, "INSERT INTO t SELECT FROM generate_series(1, 3)")
	h := start(t, db, options{feed: feed, engine: refresh.Config{MaxRefreshHz: 1000}})
	defer h.acquire(t, dash)()
	q0, n0 := h.queries(t), h.metric(t, "dashboard_notifications_total")

	db.exec(t, "UPDATE t SET v = v + 1 WHERE false")
	db.exec(t, "DELETE FROM t WHERE id < 0")
	db.exec(t, "INSERT INTO t SELECT FROM generate_series(1, 0)")
	db.exec(t, "INSERT INTO s DEFAULT VALUES")
	h.pub.waitValue(t, s, 1)

	// Notifications arrive in commit order, so any from the no-op statements
	// came before the sentinel's.
	if got := h.metric(t, "dashboard_notifications_total") - n0; got < 1 || got > 4 {
		t.Errorf("notifications: got %v, want 1 to 4 (at most one per statement)", got)
	}
	if got := h.waitMetric(t, "dashboard_refresh_queries_total", q0+1) - q0; got > 4 {
		t.Errorf("queries: got %v, want at most 4 (one per statement)", got)
	}
	if got := len(h.pub.of(p)); got != 1 {
		t.Errorf("publications of the unchanged panel: got %d, want 1 (the initial one)", got)
	}
}

// Rule 5: a panel nobody watches is never queried, however its tables change.
func TestEngineNoViewerNoQuery(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineNoViewerNoQuery)
}

func testEngineNoViewerNoQuery(t *testing.T, feed string) {
	db := newTestDB(t)
	viewed := db.dashboard(t, "viewed")
	s := sentinel(t, db, viewed)
	db.table(t, "b")
	other := db.dashboard(t, "other")
	unseen := db.panel(t, other, "unseen", "SELECT count(*) AS n FROM b")
	h := start(t, db, options{feed: feed, engine: refresh.Config{MaxRefreshHz: 1000}})
	defer h.acquire(t, viewed)()
	q0, n0 := h.queries(t), h.metric(t, "dashboard_notifications_total")

	for range 5 {
		db.exec(t, "INSERT INTO b DEFAULT VALUES")
	}
	db.exec(t, "INSERT INTO s DEFAULT VALUES")
	h.pub.waitValue(t, s, 1)
	// Nobody watches b, so its trigger finds it not wanted: writes to it
	// send nothing, in either mode (no NOTIFY and its cluster-wide lock, no
	// WAL message for the walsenders to send).
	if got := h.metric(t, "dashboard_notifications_total") - n0; got != 1 {
		t.Errorf("notifications: got %v, want 1 (the sentinel's; none for b, which nobody watches)", got)
	}
	if got := h.waitMetric(t, "dashboard_refresh_queries_total", q0+1) - q0; got != 1 {
		t.Errorf("queries: got %v, want 1 (the sentinel panel's only)", got)
	}
	if got := h.pub.of(unseen); len(got) != 0 {
		t.Errorf("publications of the unwatched panel: got %d, want 0", len(got))
	}

	// Its first viewer queries it afresh.
	defer h.acquire(t, other)()
	h.pub.waitValue(t, unseen, 5)
}

// A panel whose SQL fails shows its error while the others keep refreshing,
// and recovers when an operator fixes its SQL. The dashboard is private, so
// its viewers see the database's message (public ones see only that there
// is one: cmd/dashboard's TestBrokenPanelKeepsLastGoodData).
func TestEngineFailingPanel(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testEngineFailingPanel)
}

func testEngineFailingPanel(t *testing.T, feed string) {
	db := newTestDB(t)
	dash, good := countPanel(t, db, "")
	// EXPLAIN accepts it (so it depends on t); running it divides by zero.
	bad := db.panel(t, dash, "bad", "SELECT count(*) / (count(*) - count(*)) AS n FROM t")
	db.exec(t, "UPDATE dashboard.dashboards SET visibility = 'private' WHERE id = $1", dash)
	h := start(t, db, options{feed: feed})
	defer h.acquire(t, dash)()
	h.pub.waitFor(t, "the bad panel's error", func() bool {
		rs := h.pub.ofLocked(bad)
		return len(rs) > 0 && strings.Contains(rs[len(rs)-1].Err, "division by zero")
	})
	errs0 := h.metric(t, "dashboard_refresh_queries_total")

	for want := int64(1); want <= 3; want++ {
		db.exec(t, "INSERT INTO t DEFAULT VALUES")
		h.pub.waitValue(t, good, want)
	}
	if got := len(h.pub.of(bad)); got != 1 {
		t.Errorf("publications of the failing panel: got %d, want 1 (the same error is not republished)", got)
	}
	if got := h.metric(t, "dashboard_refresh_queries_total"); got <= errs0 {
		t.Errorf("queries after writes: got %v, want more than %v", got, errs0)
	}

	db.exec(t, "UPDATE dashboard.panels SET sql = 'SELECT count(*) * 10 AS n FROM t' WHERE id = $1", bad)
	h.pub.waitValue(t, bad, 30)
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	h.pub.waitValue(t, bad, 40)
	h.pub.waitValue(t, good, 4)
}

// Shutdown ends every goroutine of the engine and the listener, even with a
// query running, and in logical mode leaves no replication slot behind.
// Not parallel: it counts the process's goroutines.
func TestEngineShutdownLeavesNoGoroutines(t *testing.T) {
	forEachFeed(t, false, testEngineShutdownLeavesNoGoroutines)
}

func testEngineShutdownLeavesNoGoroutines(t *testing.T, feed string) {
	db := newTestDB(t)
	const slow = "SELECT (SELECT count(*) FROM t) AS n FROM pg_sleep(0.5)"
	dash, _ := countPanel(t, db, slow)
	db.exec(t, "SELECT count(*) FROM t") // warm the pool
	base := runtime.NumGoroutine()

	h := start(t, db, options{feed: feed, engine: refresh.Config{QueueUsageInterval: 50 * time.Millisecond}})
	h.acquire(t, dash)
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	waitRunning(t, db, slow)
	stopped := time.Now()
	if err := h.stop(); err != nil {
		t.Fatalf("stopping: %v", err)
	}
	t.Logf("Run returned %v after cancel with a query running", time.Since(stopped).Round(time.Millisecond))
	if s, _ := h.listener.State(); s.Listening {
		t.Errorf("listener state after Run returned: got %+v, want not listening", s)
	}
	if feed == logicalFeed {
		wantNoSlots(t, db)
	}

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			var b bytes.Buffer
			_ = pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("goroutines: got %d, want <= %d (before start)\n%s", runtime.NumGoroutine(), base, b.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// BenchmarkCommitToResult measures, on an idle engine, the time from just
// before a COMMIT to the Publish of the result that reflects it. Each commit
// waits until the previous result was published and the batch window and
// rate cap have passed, so each one meets a quiet engine (the leading edge).
func BenchmarkCommitToResult(b *testing.B) {
	for _, feed := range feeds {
		b.Run(feed, func(b *testing.B) { benchmarkCommitToResult(b, feed) })
	}
}

func benchmarkCommitToResult(b *testing.B, feed string) {
	const commits = 1000
	window := 25 * time.Millisecond
	db := newTestDB(b)
	db.table(b, "t")
	dash := db.dashboard(b, "bench")
	p := db.panel(b, dash, "count", "SELECT count(*) AS n FROM t")
	h := start(b, db, options{feed: feed, engine: refresh.Config{BatchWindow: window, MaxRefreshHz: 40}})
	defer h.acquire(b, dash)()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, db.connString)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)

	var lat []time.Duration
	n := int64(0)
	b.ResetTimer()
	for range b.N {
		for range commits {
			tx, err := conn.Begin(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if _, err := tx.Exec(ctx, "INSERT INTO t DEFAULT VALUES"); err != nil {
				b.Fatal(err)
			}
			n++
			before := time.Now()
			if err := tx.Commit(ctx); err != nil {
				b.Fatal(err)
			}
			var at time.Time
			h.pub.waitFor(b, fmt.Sprintf("count %d", n), func() bool {
				for i := len(h.pub.pubs) - 1; i >= 0; i-- {
					if pb := h.pub.pubs[i]; pb.panel == p {
						at = pb.at
						return value(pb.result) == n
					}
				}
				return false
			})
			lat = append(lat, at.Sub(before))
			time.Sleep(time.Until(at.Add(window + time.Millisecond))) // pace: let the engine go quiet
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	pct := func(q float64) time.Duration { return lat[int(math.Ceil(q*float64(len(lat))))-1] }
	b.ReportMetric(float64(pct(0.5).Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(pct(0.99).Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
	b.Logf("commit-to-result over %d commits: median %v, p99 %v, max %v (batch window %v, idle engine)",
		len(lat), pct(0.5), pct(0.99), lat[len(lat)-1], window)
}
