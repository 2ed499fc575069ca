package refresh_test

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/refresh"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// waitTimeout is the safety net of every wait on a signal; passing tests
// never get near it.
const waitTimeout = 30 * time.Second

// testDB is a fresh, migrated database for one test.
type testDB struct {
	connString string
	pool       *pgxpool.Pool
}

func newTestDB(t testing.TB) *testDB {
	t.Helper()
	cs := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	if _, err := migrations.Up(ctx, conn); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	conn.Close(ctx)
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		t.Fatalf("parsing %q: %v", cs, err)
	}
	cfg.MaxConns = 8
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return &testDB{connString: cs, pool: pool}
}

func (db *testDB) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := db.pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func (db *testDB) count(t testing.TB, table string) int64 {
	t.Helper()
	var n int64
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := db.pool.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("counting %s: %v", table, err)
	}
	return n
}

// table creates a table with a serial id and an int column v.
func (db *testDB) table(t testing.TB, name string) {
	t.Helper()
	db.exec(t, "CREATE TABLE "+name+" (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int NOT NULL DEFAULT 0)")
}

func (db *testDB) dashboard(t testing.TB, slug string) int64 {
	t.Helper()
	var id int64
	if err := db.pool.QueryRow(context.Background(),
		"INSERT INTO dashboard.dashboards (slug, title) VALUES ($1, $1) RETURNING id", slug).Scan(&id); err != nil {
		t.Fatalf("inserting dashboard %s: %v", slug, err)
	}
	return id
}

func (db *testDB) panel(t testing.TB, dashboard int64, slug, sql string) int64 {
	t.Helper()
	var id int64
	if err := db.pool.QueryRow(context.Background(),
		"INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql) VALUES ($1, $2, $2, 'stat', $3) RETURNING id",
		dashboard, slug, sql).Scan(&id); err != nil {
		t.Fatalf("inserting panel %s: %v", slug, err)
	}
	return id
}

// publication is one Publish call seen by the recorder.
type publication struct {
	panel  int64
	result *panel.Result
	at     time.Time
}

// recorder is a Publisher that keeps every call and wakes waiters on each,
// without ever blocking the engine.
type recorder struct {
	mu       sync.Mutex
	catalogs int
	pubs     []publication
	changed  chan struct{}
}

func newRecorder() *recorder { return &recorder{changed: make(chan struct{})} }

func (r *recorder) signal() {
	close(r.changed)
	r.changed = make(chan struct{})
}

func (r *recorder) CatalogChanged(*catalog.Snapshot) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.catalogs++
	r.signal()
}

func (r *recorder) ViewOpened(panel.ViewKey)  {}
func (r *recorder) ViewDropped(panel.ViewKey) {}

func (r *recorder) Publish(_ panel.ViewKey, p *panel.Def, res *panel.Result, _ time.Time) {
	at := time.Now()
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pubs = append(r.pubs, publication{panel: p.ID, result: res, at: at})
	r.signal()
}

// waitFor waits until cond, called with the recorder locked, holds.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		r.mu.Lock()
		ok, ch := cond(), r.changed
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for %s; published: %s", waitTimeout, what, r.String())
		}
	}
}

// of returns the results published for panel id, oldest first.
func (r *recorder) of(id int64) []*panel.Result {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ofLocked(id)
}

func (r *recorder) ofLocked(id int64) []*panel.Result {
	var out []*panel.Result
	for _, p := range r.pubs {
		if p.panel == id {
			out = append(out, p.result)
		}
	}
	return out
}

// waitValue waits until the latest result published for panel id is a
// success whose first cell is want.
func (r *recorder) waitValue(t testing.TB, id int64, want int64) {
	t.Helper()
	r.waitFor(t, fmt.Sprintf("panel %d = %d", id, want), func() bool {
		rs := r.ofLocked(id)
		return len(rs) > 0 && rs[len(rs)-1].Err == "" && value(rs[len(rs)-1]) == want
	})
}

func (r *recorder) String() string {
	var b strings.Builder
	for _, p := range r.pubs {
		if p.result.Err != "" {
			fmt.Fprintf(&b, "[%d: err %q] ", p.panel, p.result.Err)
		} else {
			fmt.Fprintf(&b, "[%d: %d] ", p.panel, value(p.result))
		}
	}
	return b.String()
}

// value is the first cell of a stat result, or -1.
func value(r *panel.Result) int64 {
	if len(r.Rows) == 0 || len(r.Rows[0]) == 0 {
		return -1
	}
	return int64(r.Rows[0][0].Num)
}

// The change feed modes (DASHBOARD_FEED) the harness runs.
const (
	notifyFeed  = "notify"
	logicalFeed = "logical"
)

// feeds lists every mode, for tests that must hold in each.
var feeds = []string{notifyFeed, logicalFeed}

// forEachFeed runs f as one subtest per feed mode, named after it; in
// parallel when the test itself runs in parallel.
func forEachFeed(t *testing.T, parallel bool, f func(t *testing.T, feed string)) {
	t.Helper()
	for _, feed := range feeds {
		t.Run(feed, func(t *testing.T) {
			if parallel {
				t.Parallel()
			}
			f(t, feed)
		})
	}
}

// feedSource is what the harness needs of a change feed: the Listener in
// notify mode, the Logical feed in logical mode.
type feedSource interface {
	Run(ctx context.Context) error
	State() (listen.State, <-chan struct{})
}

// harness is an Engine and a change feed on one test database, running
// until the test ends.
type harness struct {
	db     *testDB
	feed   string
	arms   *listen.Arms // the gated triggers' locks, in both modes
	engine *refresh.Engine
	// listener is the change feed: a *listen.Listener in notify mode, a
	// *listen.Logical in logical mode.
	listener feedSource
	pub      *recorder
	reg      *prometheus.Registry
	stop     func() error // cancels and waits for Run; safe to call twice
}

type options struct {
	// feed is the change feed mode, notifyFeed (the default) or
	// logicalFeed. In logical mode the database is switched to it
	// (dashboard.set_feed_mode), and listen's
	// PingInterval and backoff configure the Logical feed.
	feed   string
	engine refresh.Config // Pool, Loader, Publisher and Metrics are filled in
	listen listen.Config  // ConnConfig, Sink and Metrics are filled in
	// sink wraps the engine as the listener's Sink.
	sink func(*refresh.Engine) listen.Sink
	// noSettle skips waiting for the first connect's resync.
	noSettle bool
	// fault turns on a known-bad variant of the gated triggers' protocol.
	fault listen.Fault
	// slotWait, in logical mode, is how long the feed may be without a
	// slot before it resyncs periodically (every 250ms here); zero keeps
	// the default, 10s, longer than convergeWait.
	slotWait time.Duration
	// armsBackoff is the least reconnect delay of Arms; default 50ms.
	armsBackoff time.Duration
}

// start runs an Engine and a change feed on db. Unless o.noSettle, it
// returns once the feed is connected and the engine has applied the resync
// of that connect (its second catalog): from then on, with no viewer and no
// write, the engine is idle.
func start(t testing.TB, db *testDB, o options) *harness {
	t.Helper()
	h := &harness{db: db, feed: cmp.Or(o.feed, notifyFeed), pub: newRecorder(), reg: prometheus.NewRegistry()}
	cfg := o.engine
	cfg.Pool = db.pool
	cfg.Loader = &catalog.Loader{Pool: db.pool, QueryTimeout: 5 * time.Second, SafetyRefresh: 5 * time.Minute}
	cfg.Publisher = h.pub
	cfg.Metrics = refresh.NewMetrics(h.reg)
	if cfg.RetryDelay == 0 {
		cfg.RetryDelay = 100 * time.Millisecond
	}
	// Both modes gate the triggers through Arms.
	h.arms = listen.NewArms(listen.ArmsConfig{ConnConfig: db.pool.Config().ConnConfig,
		Metrics: listen.NewMetrics(nil), BackoffMin: cmp.Or(o.armsBackoff, 50*time.Millisecond),
		BackoffMax: max(o.armsBackoff, 500*time.Millisecond), Fault: o.fault})
	cfg.Arms = h.arms
	switch h.feed {
	case notifyFeed:
	case logicalFeed:
		pgtest.RequireLogical(t)
		// Switching is idempotent: several servers may share db.
		db.exec(t, "SELECT dashboard.set_feed_mode('logical')")
	default:
		t.Fatalf("unknown feed mode %q", o.feed)
	}
	h.engine = refresh.New(cfg)
	if err := h.engine.LoadCatalog(context.Background()); err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	lc := o.listen
	lc.ConnConfig = db.pool.Config().ConnConfig
	lc.Sink = h.engine
	if o.sink != nil {
		lc.Sink = o.sink(h.engine)
	}
	lc.Metrics = listen.NewMetrics(h.reg)
	if lc.PingInterval == 0 {
		lc.PingInterval = time.Second
	}
	if lc.BackoffMin == 0 {
		lc.BackoffMin = 50 * time.Millisecond
	}
	if lc.BackoffMax == 0 {
		lc.BackoffMax = 500 * time.Millisecond
	}
	if h.feed == logicalFeed {
		h.listener = listen.NewLogical(listen.LogicalConfig{ConnConfig: lc.ConnConfig, Sink: lc.Sink,
			Metrics: lc.Metrics, StatusInterval: lc.PingInterval, Timeout: lc.PingTimeout,
			BackoffMin: lc.BackoffMin, BackoffMax: lc.BackoffMax, Fault: o.fault,
			SlotWait: o.slotWait, PollInterval: 250 * time.Millisecond})
	} else {
		h.listener = listen.New(lc)
	}

	ctx, cancel := context.WithCancel(context.Background())
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return h.engine.Run(gctx) })
	g.Go(func() error { return h.listener.Run(gctx) })
	if h.arms != nil {
		g.Go(func() error { return h.arms.Run(gctx, h.engine) })
	}
	var once sync.Once
	var runErr error
	h.stop = func() error {
		once.Do(func() {
			cancel()
			done := make(chan error, 1)
			go func() { done <- g.Wait() }()
			select {
			case runErr = <-done:
			case <-time.After(waitTimeout):
				runErr = fmt.Errorf("Run did not return within %v of cancel", waitTimeout)
			}
		})
		return runErr
	}
	t.Cleanup(func() {
		if err := h.stop(); err != nil {
			t.Errorf("stopping: %v", err)
		}
	})
	if !o.noSettle {
		h.waitListening(t, 1)
		if h.arms != nil {
			h.waitArmsReady(t)
		}
		h.pub.waitFor(t, "the first connect's resync", func() bool { return h.pub.catalogs >= 2 })
	}
	return h
}

// waitArmsReady waits until the engine's Arms holds a feed slot.
func (h *harness) waitArmsReady(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for h.arms.Ready() != nil {
		if time.Now().After(deadline) {
			t.Fatalf("no feed slot within %v: %v", waitTimeout, h.arms.Ready())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitListening waits until the change feed is connected (listening, or
// streaming from its slot) on its connects-th connection or a later one.
func (h *harness) waitListening(t testing.TB, connects uint64) listen.State {
	t.Helper()
	return waitState(t, h.listener, fmt.Sprintf("listening, connects >= %d", connects), func(s listen.State) bool {
		return s.Listening && s.Connects >= connects
	})
}

func waitState(t testing.TB, l feedSource, what string, cond func(listen.State) bool) listen.State {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s, changed := l.State()
		if cond(s) {
			return s
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for listener state %s; last %+v", waitTimeout, what, s)
		}
	}
}

// acquire makes a dashboard live and waits until all its panels ran.
func (h *harness) acquire(t testing.TB, dashboard int64) (release func()) {
	t.Helper()
	ready, release, err := h.engine.Acquire(refresh.View{Key: panel.ViewKey{Dashboard: dashboard}})
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-ready:
	case <-time.After(waitTimeout):
		t.Fatalf("dashboard %d not ready after %v; published: %s", dashboard, waitTimeout, h.pub)
	}
	return release
}

// metric sums every series of the named metric family (counter or gauge).
func (h *harness) metric(t testing.TB, name string) float64 {
	t.Helper()
	mfs, err := h.reg.Gather()
	if err != nil {
		t.Fatalf("gathering metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
		return sum
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

func (h *harness) queries(t testing.TB) float64 {
	t.Helper()
	return h.metric(t, "dashboard_refresh_queries_total")
}

// waitMetric waits until the named metric reaches at least want. Metrics
// have no change signal, so this polls; it is used only where the value is
// known to get there (a Publish was seen and the counter follows it).
func (h *harness) waitMetric(t testing.TB, name string, want float64) float64 {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := h.metric(t, name)
		if got >= want {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: got %v, want >= %v within %v", name, got, want, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// wantNoSlots checks that db has no replication slot of the logical feed
// left: the feed drops its temporary slot before Run returns, so a stopped
// server retains no WAL.
func wantNoSlots(t testing.TB, db *testDB) {
	t.Helper()
	rows, err := db.pool.Query(context.Background(), `SELECT slot_name FROM pg_replication_slots
		WHERE database = current_database() AND starts_with(slot_name, $1)`, listen.SlotPrefix)
	if err != nil {
		t.Fatalf("reading pg_replication_slots: %v", err)
	}
	slots, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("reading pg_replication_slots: %v", err)
	}
	if len(slots) != 0 {
		t.Errorf("replication slots after the feed stopped: got %q, want none", slots)
	}
}
