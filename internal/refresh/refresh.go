// Package refresh owns turning dirty tables into fresh panel results: which
// panels to re-query and when (leading edge, then coalesce, at most one query
// in flight per panel, a per-panel rate cap, only panels somebody watches),
// and running each query once, read-only, with a statement timeout. A result
// whose hash equals the last one is dropped here; changed results go to a
// Publisher. It does not render anything.
package refresh

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/errgroup"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// Publisher receives the engine's output. Both methods are called from the
// engine's scheduling goroutine, in order, and should not block for long.
type Publisher interface {
	// CatalogChanged hands over a new catalog before any result of its new
	// or changed panels is published.
	CatalogChanged(s *catalog.Snapshot)
	// Publish hands over a result that differs from the last one published
	// for that panel. notifiedAt is when the earliest notification the result
	// reflects was received; zero when the query was not caused by one.
	Publish(p *panel.Def, r *panel.Result, notifiedAt time.Time)
}

// Arms asks the database for news of tables (implemented by listen.Arms):
// a watched table's trigger notifies only while it is armed. The engine
// disarms a table when a notification for it arrives, so the rest of the
// refresh cycle costs writers nothing, and arms it before a query reads it.
type Arms interface {
	// Arm returns once the tables are armed (every writer that skipped its
	// notification has ended) or pending past a bound.
	Arm(ctx context.Context, tables []string)
	// Disarm and Keep never block.
	Disarm(tables []string)
	// Keep disarms every table not in wanted.
	Keep(wanted []string)
}

// Loader reads the catalog (implemented by catalog.Loader).
type Loader interface {
	Load(ctx context.Context) (*catalog.Snapshot, error)
}

// Config configures an Engine. Zero durations take the defaults of
// internal/config.
type Config struct {
	Pool      *pgxpool.Pool
	Loader    Loader
	Publisher Publisher
	// Arms, if set, gates the triggers (see Arms); nil means triggers that
	// always notify.
	Arms    Arms
	Logger  *slog.Logger
	Metrics *Metrics

	BatchWindow   time.Duration
	MaxRefreshHz  float64
	QueryTimeout  time.Duration
	Concurrency   int
	SafetyRefresh time.Duration // 0: off
	MaxRows       int
	// Linger keeps a dashboard's panels refreshed this long after its last
	// viewer left, so that a page load followed by its stream, or a quick
	// reconnect, does not query twice. Default 30s.
	Linger time.Duration
	// RetryDelay is the wait after a query failed for a reason that is not
	// the query's fault (lost connection, database restarting). Default 1s.
	RetryDelay time.Duration
	// QueueUsageInterval is how often pg_notification_queue_usage() is read
	// for the notify_queue_usage gauge. Default 10s.
	QueueUsageInterval time.Duration
}

// Engine schedules and runs panel queries. Feed it with TableChanged and
// Resync (it implements listen.Sink) and with viewers through Acquire.
type Engine struct {
	cfg Config
	// run runs one panel query; it is e.query except in scheduling tests.
	run func(ctx context.Context, p *panel.Def, notice string) (*panel.Result, error)

	snapshot atomic.Pointer[catalog.Snapshot]

	// Inputs from other goroutines, guarded by mu.
	mu      sync.Mutex
	dirty   map[string]time.Time // table -> earliest receipt
	resync  bool
	viewers map[int64]int       // dashboard -> viewers now
	leftAt  map[int64]time.Time // dashboard -> when its last viewer left
	waiters map[int64][]*waiter
	signal  chan struct{}

	// The rest belongs to Run's goroutine.
	panels    map[int64]*panelState
	boards    map[int64]*boardState
	lastFlush time.Time
	inflight  int
	done      chan queryDone
	reload    bool     // catalog reload wanted (and retried until it works)
	wanted    []string // tables the live panels read, as last given to Arms.Keep
}

type panelState struct {
	def        *panel.Def
	dirty      bool
	notifiedAt time.Time // earliest notification not yet reflected
	running    bool
	lastStart  time.Time
	retryAt    time.Time
	hash       uint64
	published  bool
	startGen   uint64 // dashboard generation when the running query started
	doneGen    uint64 // generation of the last completed query
}

// waiter is a channel to close once every panel of a dashboard has finished
// a query of generation gen or later. gen is 0 until the loop has seen the
// waiter; fresh asks the loop for a generation of its own.
type waiter struct {
	ch    chan struct{}
	fresh bool
	gen   uint64
}

type boardState struct {
	active bool
	gen    uint64 // bumped on every activation
}

type queryDone struct {
	id         int64
	def        *panel.Def
	result     *panel.Result
	err        error // not the query's fault: retry
	notifiedAt time.Time
	took       time.Duration
}

// New returns an Engine. Run starts it.
func New(cfg Config) *Engine {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.BatchWindow <= 0 {
		cfg.BatchWindow = 25 * time.Millisecond
	}
	if cfg.MaxRefreshHz <= 0 {
		cfg.MaxRefreshHz = 10
	}
	if cfg.QueryTimeout <= 0 {
		cfg.QueryTimeout = 5 * time.Second
	}
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 4
	}
	if cfg.MaxRows <= 0 {
		cfg.MaxRows = 1000
	}
	if cfg.Linger <= 0 {
		cfg.Linger = 30 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = time.Second
	}
	if cfg.QueueUsageInterval <= 0 {
		cfg.QueueUsageInterval = 10 * time.Second
	}
	e := &Engine{
		cfg:     cfg,
		dirty:   make(map[string]time.Time),
		viewers: make(map[int64]int),
		leftAt:  make(map[int64]time.Time),
		waiters: make(map[int64][]*waiter),
		signal:  make(chan struct{}, 1),
		panels:  make(map[int64]*panelState),
		boards:  make(map[int64]*boardState),
		done:    make(chan queryDone),
	}
	e.run = e.query
	return e
}

// Snapshot returns the current catalog; nil before the first load.
func (e *Engine) Snapshot() *catalog.Snapshot { return e.snapshot.Load() }

// LoadCatalog reads the catalog once and hands it to the Publisher. Run
// does this too; serve calls it first so that a broken catalog stops the
// server at start and the first page has something to show.
func (e *Engine) LoadCatalog(ctx context.Context) error {
	snap, err := e.cfg.Loader.Load(ctx)
	if err != nil {
		return err
	}
	e.apply(snap)
	return nil
}

// TableChanged marks table dirty. It never blocks: it is called from the
// listener's connection reader.
func (e *Engine) TableChanged(table string, receivedAt time.Time) {
	// A table no panel reads changes nothing here: do not even wake up.
	// A panel that starts reading it is queried afresh when the catalog
	// reloads, so nothing is lost.
	if snap := e.snapshot.Load(); snap != nil && len(snap.PanelsReading(table)) == 0 &&
		table != catalog.DashboardsTable && table != catalog.PanelsTable {
		return
	}
	e.mu.Lock()
	if t, ok := e.dirty[table]; !ok || receivedAt.Before(t) {
		e.dirty[table] = receivedAt
	}
	e.mu.Unlock()
	e.wake()
}

// Resync marks everything dirty and reloads the catalog; the listener calls
// it after every (re)connect.
func (e *Engine) Resync() {
	e.mu.Lock()
	e.resync = true
	e.mu.Unlock()
	e.wake()
}

// Acquire registers a viewer of a dashboard, which makes its panels live.
// ready is closed once every panel of the dashboard has been queried since
// it became live (at once if it already was). release must be called once,
// when the viewer leaves.
func (e *Engine) Acquire(dashboardID int64) (ready <-chan struct{}, release func()) {
	ch := make(chan struct{})
	e.mu.Lock()
	e.viewers[dashboardID]++
	e.waiters[dashboardID] = append(e.waiters[dashboardID], &waiter{ch: ch})
	e.mu.Unlock()
	e.wake()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			e.viewers[dashboardID]--
			if e.viewers[dashboardID] <= 0 {
				delete(e.viewers, dashboardID)
				e.leftAt[dashboardID] = time.Now()
			}
			e.mu.Unlock()
			e.wake()
		})
	}
}

// Fresh asks for every panel of a dashboard to be queried again, and
// returns a channel that is closed once each of them has finished a query
// that started after the call. The caller must hold a viewer of the
// dashboard (Acquire). Requests that arrive together share one round of
// queries, and the per-panel rate cap still holds, so a crowd of clients
// asking at once costs one query per panel.
//
// This is how a server answers a client whose version it does not know:
// the client may have seen a state from another server, or from before a
// restore, and only a snapshot taken after it asked is sure to be at least
// as new as that.
func (e *Engine) Fresh(dashboardID int64) <-chan struct{} {
	ch := make(chan struct{})
	e.mu.Lock()
	e.waiters[dashboardID] = append(e.waiters[dashboardID], &waiter{ch: ch, fresh: true})
	e.mu.Unlock()
	e.wake()
	return ch
}

func (e *Engine) wake() {
	select {
	case e.signal <- struct{}{}:
	default:
	}
}

// Run schedules queries until ctx is cancelled, then waits for the queries
// in flight and returns nil.
func (e *Engine) Run(ctx context.Context) error {
	g, ctx := errgroup.WithContext(ctx)
	if e.cfg.Pool != nil {
		g.Go(func() error { e.pollQueueUsage(ctx); return nil })
	}
	g.Go(func() error { e.loop(ctx); return nil })
	return g.Wait()
}

func (e *Engine) loop(ctx context.Context) {
	var workers sync.WaitGroup
	defer workers.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var safety <-chan time.Time
	if e.cfg.SafetyRefresh > 0 {
		t := time.NewTicker(e.cfg.SafetyRefresh)
		defer t.Stop()
		safety = t.C
	}
	for {
		next := e.step(ctx, &workers)
		timer.Reset(time.Until(next))
		select {
		case <-ctx.Done():
			// Drain finished queries so workers never block on e.done.
			go func() {
				for range e.done {
				}
			}()
			workers.Wait()
			close(e.done)
			return
		case <-e.signal:
		case <-timer.C:
		case d := <-e.done:
			e.finish(d)
		case <-safety:
			e.mu.Lock()
			e.resync = true // the safety net re-checks everything
			e.mu.Unlock()
		}
	}
}

// step applies inputs, starts what may start, and returns when it wants to
// run again at the latest.
func (e *Engine) step(ctx context.Context, workers *sync.WaitGroup) time.Time {
	now := time.Now()
	next := now.Add(time.Hour)
	soon := func(t time.Time) {
		if t.Before(next) {
			next = t
		}
	}

	e.mu.Lock()
	var dirty map[string]time.Time
	if len(e.dirty) > 0 || e.resync {
		// Leading edge: the first change after a quiet window goes at once;
		// what comes within the window waits for its end and is merged.
		if flushAt := e.lastFlush.Add(e.cfg.BatchWindow); now.Before(flushAt) {
			soon(flushAt)
		} else {
			dirty, e.dirty = e.dirty, make(map[string]time.Time)
			if e.resync {
				e.reload = true
				e.resync = false
				e.markAllDirty(time.Time{})
			}
			e.lastFlush = now
		}
	}
	viewers := make(map[int64]bool, len(e.viewers)+len(e.leftAt))
	for id := range e.viewers {
		viewers[id] = true
	}
	for id, left := range e.leftAt {
		if until := left.Add(e.cfg.Linger); now.Before(until) {
			viewers[id] = true
			soon(until)
		} else {
			delete(e.leftAt, id)
		}
	}
	e.mu.Unlock()

	if dirty[catalog.DashboardsTable] != (time.Time{}) || dirty[catalog.PanelsTable] != (time.Time{}) {
		e.reload = true
	}
	if e.cfg.Arms != nil && len(dirty) > 0 {
		// News arrived: stop asking until the next query of these tables
		// arms them again. Writers in between skip their NOTIFY.
		e.cfg.Arms.Disarm(slices.Collect(maps.Keys(dirty)))
	}
	if e.reload {
		lctx, cancel := context.WithTimeout(ctx, e.cfg.QueryTimeout+time.Second)
		snap, err := e.cfg.Loader.Load(lctx)
		cancel()
		if err != nil {
			if ctx.Err() == nil {
				e.cfg.Logger.Warn("reloading catalog", "err", err)
			}
			soon(now.Add(e.cfg.RetryDelay))
		} else {
			e.reload = false
			e.apply(snap)
		}
	}

	snap := e.snapshot.Load()
	if snap != nil {
		for table, at := range dirty {
			for _, p := range snap.PanelsReading(table) {
				if st := e.panels[p.ID]; st != nil {
					st.mark(at)
				}
			}
		}
	}

	// Dashboards gaining their first viewer are queried afresh; those that
	// lost their last are left alone.
	for id := range viewers {
		b := e.boards[id]
		if b == nil {
			b = &boardState{}
			e.boards[id] = b
		}
		if !b.active {
			b.active = true
			b.gen++
			e.markDashboard(snap, id, true)
		}
	}
	for id, b := range e.boards {
		if !viewers[id] {
			b.active = false
		}
	}
	e.assignGenerations(snap)
	e.keepWanted(snap)

	for id, st := range e.panels {
		if !st.dirty || st.running {
			continue
		}
		b := e.boards[st.def.DashboardID]
		if b == nil || !b.active {
			// Nobody watches: forget the change, the first viewer queries afresh.
			st.dirty = false
			st.notifiedAt = time.Time{}
			continue
		}
		if now.Before(st.retryAt) {
			soon(st.retryAt)
			continue
		}
		if due := st.lastStart.Add(e.minInterval(snap, st.def)); now.Before(due) {
			soon(due)
			continue
		}
		if e.inflight >= e.cfg.Concurrency {
			continue // a finishing query wakes the loop
		}
		e.start(ctx, workers, id, st, b.gen, now, snap)
	}

	e.notifyReady(snap)
	return next
}

func (st *panelState) mark(at time.Time) {
	st.dirty = true
	if !at.IsZero() && (st.notifiedAt.IsZero() || at.Before(st.notifiedAt)) {
		st.notifiedAt = at
	}
}

func (e *Engine) markAllDirty(at time.Time) {
	for _, st := range e.panels {
		st.mark(at)
	}
}

func (e *Engine) minInterval(snap *catalog.Snapshot, p *panel.Def) time.Duration {
	hz := e.cfg.MaxRefreshHz
	if snap != nil {
		if d := snap.DashboardByID(p.DashboardID); d != nil && d.MaxRefreshHz > 0 && d.MaxRefreshHz < hz {
			hz = d.MaxRefreshHz
		}
	}
	return time.Duration(float64(time.Second) / hz)
}

func (e *Engine) start(ctx context.Context, workers *sync.WaitGroup, id int64, st *panelState, gen uint64, now time.Time, snap *catalog.Snapshot) {
	st.dirty = false
	st.running = true
	st.lastStart = now
	st.startGen = gen
	notifiedAt := st.notifiedAt
	st.notifiedAt = time.Time{}
	def := st.def
	notice := ""
	if snap != nil {
		notice = snap.Notice(id)
	}
	e.inflight++
	workers.Add(1)
	var deps []string
	if snap != nil {
		deps = snap.Dependencies(id)
	}
	go func() {
		defer workers.Done()
		began := time.Now()
		if e.cfg.Arms != nil {
			// The query's snapshot must come after every writer that
			// skipped its notification has ended.
			e.cfg.Arms.Arm(ctx, deps)
		}
		r, err := e.run(ctx, def, notice)
		e.done <- queryDone{id: id, def: def, result: r, err: err, notifiedAt: notifiedAt, took: time.Since(began)}
	}()
}

// finish records a completed query and publishes a changed result.
func (e *Engine) finish(d queryDone) {
	e.inflight--
	m := e.cfg.Metrics
	m.duration.Observe(d.took.Seconds())
	st := e.panels[d.id]
	// Every catalog reload hands out new *panel.Def values, so compare
	// definitions, not pointers: a reload that left this panel alone must
	// not throw its result away (nothing would run it again).
	if st == nil || !sameDef(st.def, d.def) {
		// Removed or redefined while it ran; a changed panel was marked
		// dirty by apply and runs again.
		if st != nil {
			st.running = false
		}
		return
	}
	st.running = false
	if d.err != nil {
		m.queries.WithLabelValues("error").Inc()
		e.cfg.Logger.Warn("panel query", "panel", st.def.Slug, "err", d.err)
		st.mark(d.notifiedAt)
		st.retryAt = time.Now().Add(e.cfg.RetryDelay)
		return
	}
	st.doneGen = st.startGen
	if !d.notifiedAt.IsZero() {
		m.notifyToResult.Observe(time.Since(d.notifiedAt).Seconds())
	}
	outcome := "unchanged"
	if d.result.Err != "" {
		outcome = "error"
	}
	if h := d.result.Hash(); !st.published || h != st.hash {
		st.hash, st.published = h, true
		if outcome != "error" {
			outcome = "changed"
		}
		e.cfg.Publisher.Publish(st.def, d.result, d.notifiedAt)
	}
	m.queries.WithLabelValues(outcome).Inc()
}

// apply installs a new catalog: new and changed panels are marked dirty and
// will be published afresh, removed ones are forgotten.
func (e *Engine) apply(snap *catalog.Snapshot) {
	seen := make(map[int64]bool)
	for _, d := range snap.Dashboards {
		for _, p := range d.Panels {
			seen[p.ID] = true
			st := e.panels[p.ID]
			if st == nil {
				e.panels[p.ID] = &panelState{def: p, dirty: true}
				continue
			}
			if !sameDef(st.def, p) || snap.Notice(p.ID) != e.notice(p.ID) {
				st.published = false
				st.mark(time.Time{})
			}
			st.def = p
		}
	}
	for id := range e.panels {
		if !seen[id] {
			delete(e.panels, id)
		}
	}
	e.snapshot.Store(snap)
	e.cfg.Publisher.CatalogChanged(snap)
}

func (e *Engine) notice(id int64) string {
	if s := e.snapshot.Load(); s != nil {
		return s.Notice(id)
	}
	return ""
}

func sameDef(a, b *panel.Def) bool {
	return a.Slug == b.Slug && a.Title == b.Title && a.Kind == b.Kind && a.SQL == b.SQL &&
		a.Position == b.Position && a.Width == b.Width && a.Height == b.Height &&
		a.Options.Equal(b.Options) && slices.Equal(a.DependsOn, b.DependsOn) && a.DashboardID == b.DashboardID
}

// markDashboard marks every panel of a dashboard dirty, so that each runs
// again; republish also publishes results equal to the last ones (for a
// dashboard that comes back to life, whose board may have moved on).
func (e *Engine) markDashboard(snap *catalog.Snapshot, id int64, republish bool) {
	if snap == nil {
		return
	}
	d := snap.DashboardByID(id)
	if d == nil {
		return
	}
	for _, p := range d.Panels {
		if st := e.panels[p.ID]; st != nil {
			st.mark(time.Time{})
			if republish {
				st.published = false
			}
		}
	}
}

// keepWanted tells Arms which tables the live panels read, when that
// changed, so that tables nobody watches stop costing writers anything.
func (e *Engine) keepWanted(snap *catalog.Snapshot) {
	if e.cfg.Arms == nil || snap == nil {
		return
	}
	set := make(map[string]bool)
	for id, b := range e.boards {
		if !b.active {
			continue
		}
		if d := snap.DashboardByID(id); d != nil {
			for _, p := range d.Panels {
				for _, t := range snap.Dependencies(p.ID) {
					set[t] = true
				}
			}
		}
	}
	wanted := slices.Sorted(maps.Keys(set))
	if !slices.Equal(wanted, e.wanted) {
		e.wanted = wanted
		e.cfg.Arms.Keep(wanted)
	}
}

// assignGenerations gives each waiter the loop has not seen yet the
// generation it waits for: the dashboard's current one, or for a fresh
// request a new one, whose panels are marked dirty so that they run again
// (one new generation per dashboard and step, however many asked).
func (e *Engine) assignGenerations(snap *catalog.Snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, ws := range e.waiters {
		b := e.boards[id]
		if b == nil || !b.active {
			continue // assigned once the dashboard is live
		}
		bumped := false
		for _, w := range ws {
			if w.gen != 0 {
				continue
			}
			if w.fresh && !bumped {
				bumped = true
				b.gen++
				e.markDashboard(snap, id, false)
			}
			w.gen = b.gen
		}
	}
}

// notifyReady closes the waiters of dashboards whose panels have all
// finished a query of the generation the waiter waits for.
func (e *Engine) notifyReady(snap *catalog.Snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for id, ws := range e.waiters {
		var d *panel.Dashboard
		if snap != nil {
			d = snap.DashboardByID(id)
		}
		keep := ws[:0]
		for _, w := range ws {
			if d == nil || (w.gen != 0 && e.queriedSince(d, w.gen)) {
				close(w.ch) // unknown dashboards have nothing to wait for
				continue
			}
			keep = append(keep, w)
		}
		clear(ws[len(keep):])
		if len(keep) == 0 {
			delete(e.waiters, id)
		} else {
			e.waiters[id] = keep
		}
	}
}

// queriedSince reports whether every panel of d has finished a query of
// generation gen or later.
func (e *Engine) queriedSince(d *panel.Dashboard, gen uint64) bool {
	for _, p := range d.Panels {
		if st := e.panels[p.ID]; st == nil || st.doneGen < gen {
			return false
		}
	}
	return true
}

func (e *Engine) pollQueueUsage(ctx context.Context) {
	t := time.NewTicker(e.cfg.QueueUsageInterval)
	defer t.Stop()
	for {
		var usage float64
		qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := e.cfg.Pool.QueryRow(qctx, "SELECT pg_notification_queue_usage()").Scan(&usage)
		cancel()
		if err == nil {
			e.cfg.Metrics.queueUsage.Set(usage)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Metrics are the engine's Prometheus metrics.
type Metrics struct {
	queries        *prometheus.CounterVec
	duration       prometheus.Histogram
	notifyToResult prometheus.Histogram
	queueUsage     prometheus.Gauge
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		queries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "refresh_queries_total",
			Help: "Panel queries run, by outcome: changed, unchanged or error.",
		}, []string{"outcome"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "refresh_duration_seconds",
			Help:    "Time to run one panel query, transaction included.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		notifyToResult: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "notify_to_result_seconds",
			Help:    "Time from receipt of a notification to the panel result that reflects it.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		queueUsage: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "notify_queue_usage",
			Help: "pg_notification_queue_usage(): fraction of the server's notification queue in use.",
		}),
	}
	for _, o := range []string{"changed", "unchanged", "error"} {
		m.queries.WithLabelValues(o)
	}
	if reg != nil {
		reg.MustRegister(m.queries, m.duration, m.notifyToResult, m.queueUsage)
	}
	return m
}
