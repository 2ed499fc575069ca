// Package refresh owns turning dirty tables into fresh panel results for
// every view with viewers: which panels to re-query and when (leading edge,
// then coalesce, at most one query in flight per panel and view, a
// per-panel rate cap, only views somebody watches, clock ticks for time
// ranges), and running each query once, read-only, with a statement
// timeout and the view's bound values. A result whose hash equals the last
// one is dropped here; changed results go to a Publisher. It does not
// render anything.
//
// refresh.go is the scheduling loop; views.go the views the engine knows
// (Acquire, the bound, Fresh, readiness); query.go and options.go the
// queries of panels and of variables; standby.go where they run (a hot
// standby that has replayed the primary's position, or the primary); failing.go what a failing query
// shows and logs; metrics.go the metrics.
package refresh

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/errgroup"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// Publisher receives the engine's output. CatalogChanged and Publish are
// called from the engine's scheduling goroutine, in order. ViewOpened and
// ViewDropped are called under the engine's lock, from whichever goroutine
// opened or dropped the view, so that what the Publisher keeps for a view
// lives exactly as long as the engine knows the view. No method may block
// for long or call back into the engine.
type Publisher interface {
	// CatalogChanged hands over a new catalog before any result of its new
	// or changed panels is published.
	CatalogChanged(s *catalog.Snapshot)
	// Publish hands over a result that differs from the last one published
	// for that panel in that view. notifiedAt is when the earliest
	// notification the result reflects was received; zero when the query
	// was not caused by one. A result for a view dropped meanwhile may
	// still arrive and is to be ignored.
	Publish(view panel.ViewKey, p *panel.Def, r *panel.Result, notifiedAt time.Time)
	// ViewOpened says a view has its first viewer; ViewDropped that it is
	// forgotten (no viewers, and its room was needed or its dashboard is
	// gone).
	ViewOpened(view panel.ViewKey)
	ViewDropped(view panel.ViewKey)
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
	// Pool is the primary: the catalog, the queue usage gauge and the WAL
	// position read for standbys use it, and every panel and variable query
	// when there are no standbys or none can answer.
	Pool *pgxpool.Pool
	// Standbys are hot standbys of Pool's database where panel and variable
	// queries run once they have replayed the primary's position (see
	// standby.go and docs/architecture.md, "Reads from standbys"). A
	// standby unreachable at start is no error: it is used once it answers.
	Standbys []*pgxpool.Pool
	// StandbyMaxWait bounds the wait for a standby to replay the
	// primary's position; past it the query runs on the primary. Default
	// 500ms.
	StandbyMaxWait time.Duration
	Loader         Loader
	Publisher      Publisher
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
	// MaxViews bounds the distinct views of one dashboard. Default 100.
	MaxViews int
	// Linger keeps a view's panels refreshed this long after its last
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
	run func(ctx context.Context, p *panel.Def, args []any, notice string) (*panel.Result, error)

	snapshot atomic.Pointer[catalog.Snapshot]
	options  optionsCache

	standbys    []*standby
	nextStandby atomic.Uint64 // round robin over standbys
	positions   positions     // the primary's WAL position, shared reads
	nudger      nudger        // makes the primary flush WAL a standby waits for

	// Inputs from other goroutines, guarded by mu.
	mu     sync.Mutex
	dirty  map[string]time.Time // table -> earliest receipt
	resync bool
	views  map[panel.ViewKey]*entry
	signal chan struct{}

	// The rest belongs to Run's goroutine.
	states    map[panel.ViewKey]*viewState
	byBoard   map[int64]map[panel.ViewKey]*viewState // dashboard -> its views' states
	lastFlush time.Time
	inflight  int
	done      chan queryDone
	reload    bool     // catalog reload wanted (and retried until it works)
	wanted    []string // tables the live panels read, as last given to Arms.Keep
	// failingPanels holds, per panel, the views where its query fails.
	failingPanels map[int64]map[panel.ViewKey]bool
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
	startGen   uint64 // view generation when the running query started
	doneGen    uint64 // generation of the last completed query
	// good is the last result without an error; failingSince and lastErr
	// say since when, and with which message, the query has been failing
	// (zero and "" while it works).
	good         *panel.Result
	failingSince time.Time
	lastErr      string
}

// waiter is a channel to close once every panel of a view has finished a
// query of generation gen or later. gen is 0 until the loop has seen the
// waiter; fresh asks the loop for a generation of its own.
type waiter struct {
	ch    chan struct{}
	fresh bool
	gen   uint64
}

type queryDone struct {
	view       panel.ViewKey
	entry      *entry
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
	if cfg.MaxViews <= 0 {
		cfg.MaxViews = 100
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
	if cfg.StandbyMaxWait <= 0 {
		cfg.StandbyMaxWait = 500 * time.Millisecond
	}
	e := &Engine{
		cfg:     cfg,
		dirty:   make(map[string]time.Time),
		views:   make(map[panel.ViewKey]*entry),
		signal:  make(chan struct{}, 1),
		states:  make(map[panel.ViewKey]*viewState),
		byBoard: make(map[int64]map[panel.ViewKey]*viewState),
		done:    make(chan queryDone),

		failingPanels: make(map[int64]map[panel.ViewKey]bool),
	}
	e.run = e.query
	e.positions.pool = cfg.Pool
	e.nudger.pool, e.nudger.logger = cfg.Pool, cfg.Logger
	for _, pool := range cfg.Standbys {
		e.standbys = append(e.standbys, newStandby(pool, cfg.Logger, cfg.RetryDelay, cfg.Metrics.standbys))
	}
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
		!catalog.Reloads(table) {
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
	for _, s := range e.standbys {
		g.Go(func() error { s.run(ctx); return nil })
	}
	g.Go(func() error { e.loop(ctx); return nil })
	err := g.Wait()
	e.nudger.wait()
	return err
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
	live := make(map[panel.ViewKey]*entry, len(e.views))
	active := make(map[panel.ViewKey]bool, len(e.views))
	snap := e.snapshot.Load()
	for key, en := range e.views {
		if snap != nil && snap.DashboardByID(key.Dashboard) == nil && en.viewers == 0 {
			e.drop(en) // its dashboard is gone and nobody holds it
			continue
		}
		live[key] = en
		switch {
		case en.viewers > 0:
			active[key] = true
		case !en.leftAt.IsZero():
			if until := en.leftAt.Add(e.cfg.Linger); now.Before(until) {
				active[key] = true
				soon(until)
			}
		}
	}
	e.mu.Unlock()

	for table := range dirty {
		if catalog.Reloads(table) {
			e.reload = true
		}
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
	snap = e.snapshot.Load()

	// The loop's states follow the views: new ones start with every panel
	// dirty, dropped (or dropped and added again) ones are forgotten.
	for key, vs := range e.states {
		if live[key] != vs.entry {
			e.forget(key)
		}
	}
	for key, en := range live {
		if e.states[key] == nil {
			e.adopt(snap, key, en)
		}
	}

	if snap != nil {
		for table, at := range dirty {
			for _, p := range snap.PanelsReading(table) {
				for _, vs := range e.byBoard[p.DashboardID] {
					if st := vs.panels[p.ID]; st != nil {
						st.mark(at)
					}
				}
			}
		}
	}

	// Views gaining their first viewer are queried afresh; those that lost
	// their last are left alone.
	for key, vs := range e.states {
		if !active[key] {
			if vs.active {
				// Nobody looks: its failures are nobody's concern now
				// (dashboard_panels_failing counts what people see).
				for id, st := range vs.panels {
					st.failingSince, st.lastErr = time.Time{}, ""
					e.notFailing(id, key)
				}
			}
			vs.active = false
			continue
		}
		if !vs.active {
			vs.active = true
			vs.gen++
			vs.markAll(time.Time{}, true)
		}
		if tick := e.tick(snap, vs); tick > 0 {
			// The time range moves on the clock: panels that read it run
			// again once now, rounded down, has moved.
			at := roundDown(now, tick)
			if !at.Equal(vs.clock) {
				if !vs.clock.IsZero() {
					for _, st := range vs.panels {
						if st.def.ReadsTime() {
							st.mark(time.Time{})
						}
					}
				}
				vs.clock = at
			}
			soon(at.Add(tick))
		}
	}
	e.assignGenerations()
	e.keepWanted(snap)

	for key, vs := range e.states {
		if !vs.active {
			for _, st := range vs.panels {
				// Nobody watches: forget the change, the first viewer
				// queries afresh.
				st.dirty = false
				st.notifiedAt = time.Time{}
			}
			continue
		}
		for id, st := range vs.panels {
			if !st.dirty || st.running {
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
			e.start(ctx, workers, key, vs, id, st, now, snap)
		}
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
	for _, vs := range e.states {
		vs.markAll(at, false)
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

func (e *Engine) start(ctx context.Context, workers *sync.WaitGroup, key panel.ViewKey, vs *viewState, id int64, st *panelState,
	now time.Time, snap *catalog.Snapshot) {
	st.dirty = false
	st.running = true
	st.lastStart = now
	st.startGen = vs.gen
	notifiedAt := st.notifiedAt
	st.notifiedAt = time.Time{}
	def := st.def
	notice := ""
	var deps []string
	if snap != nil {
		notice = snap.Notice(id)
		if d := snap.DashboardByID(def.DashboardID); d == nil || d.Public {
			notice = snap.PublicNotice(id)
		}
		deps = snap.Dependencies(id)
	}
	args, argErr := e.args(vs, def, now)
	en := vs.entry
	e.inflight++
	workers.Add(1)
	go func() {
		defer workers.Done()
		began := time.Now()
		var r *panel.Result
		var err error
		if argErr != nil {
			r = &panel.Result{Err: argErr.Error(), Notice: notice}
		} else {
			if e.cfg.Arms != nil {
				// The query's snapshot must come after every writer that
				// skipped its notification has ended.
				e.cfg.Arms.Arm(ctx, deps)
			}
			r, err = e.run(ctx, def, args, notice)
		}
		e.done <- queryDone{view: key, entry: en, id: id, def: def, result: r, err: err, notifiedAt: notifiedAt, took: time.Since(began)}
	}()
}

// args returns a panel's bind arguments in a view. Panels that read the
// time range see now rounded down to the view's tick, so every server
// computes the same view.
func (e *Engine) args(vs *viewState, def *panel.Def, now time.Time) ([]any, error) {
	if len(def.Params) == 0 {
		return nil, nil
	}
	v := vs.entry.view
	if v.Args == nil {
		return nil, fmt.Errorf("the panel's SQL uses :%s, which its dashboard does not declare", def.Params[0])
	}
	if v.Clock {
		now = vs.clock
	}
	return v.Args(def.Params, now)
}

// finish records a completed query and publishes a changed result.
func (e *Engine) finish(d queryDone) {
	e.inflight--
	m := e.cfg.Metrics
	m.duration.Observe(d.took.Seconds())
	vs := e.states[d.view]
	if vs == nil || vs.entry != d.entry {
		return // the view was dropped while the query ran
	}
	st := vs.panels[d.id]
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
		// The database, not the query: retried. One log line per new
		// message, not one per retry.
		if msg := d.err.Error(); msg != st.lastErr {
			st.lastErr = msg
			e.cfg.Logger.Warn("panel query", "panel", st.def.Slug, "err", d.err)
		}
		st.mark(d.notifiedAt)
		st.retryAt = time.Now().Add(e.cfg.RetryDelay)
		return
	}
	st.doneGen = st.startGen
	if !d.notifiedAt.IsZero() {
		m.notifyToResult.Observe(time.Since(d.notifiedAt).Seconds())
	}
	outcome := "unchanged"
	r := d.result
	if r.Err != "" {
		outcome = "error"
		r = e.failing(d.view, st, r, vs.active)
	} else {
		e.working(d.view, st)
		st.good = r
	}
	if h := r.Hash(); !st.published || h != st.hash {
		st.hash, st.published = h, true
		if outcome != "error" {
			outcome = "changed"
		}
		e.cfg.Publisher.Publish(d.view, st.def, r, d.notifiedAt)
	}
	m.queries.WithLabelValues(outcome).Inc()
}

// apply installs a new catalog: new and changed panels are marked dirty and
// will be published afresh, removed ones are forgotten, in every view.
func (e *Engine) apply(snap *catalog.Snapshot) {
	old := e.snapshot.Load()
	type failing struct {
		view panel.ViewKey
		id   int64
	}
	var now []failing
	for key, vs := range e.states {
		d := snap.DashboardByID(key.Dashboard)
		if d != nil && old != nil {
			if was := old.DashboardByID(key.Dashboard); was != nil && was.Public != d.Public {
				// What a failing panel shows depends on who may see it:
				// run everything again, and show a panel failing now as
				// the new audience may see it at once, whether or not the
				// database answers the rerun.
				for id, st := range vs.panels {
					if st.lastErr != "" && st.published {
						now = append(now, failing{key, id})
					}
				}
				vs.markAll(time.Time{}, true)
			}
		}
		seen := make(map[int64]bool)
		if d != nil {
			for _, p := range d.Panels {
				seen[p.ID] = true
				st := vs.panels[p.ID]
				if st == nil {
					vs.panels[p.ID] = &panelState{def: p, dirty: true}
					continue
				}
				if !sameDef(st.def, p) || snap.Notice(p.ID) != notice(old, p.ID) {
					st.published = false
					st.mark(time.Time{})
				}
				st.def = p
			}
		}
		for id := range vs.panels {
			if !seen[id] {
				delete(vs.panels, id)
				e.notFailing(id, key)
			}
		}
	}
	// The Publisher first: whoever finds a dashboard in the new snapshot
	// may open a view of it at once.
	e.cfg.Publisher.CatalogChanged(snap)
	e.snapshot.Store(snap)
	for _, f := range now {
		if st := e.states[f.view].panels[f.id]; st != nil {
			notice := snap.Notice(f.id)
			if d := snap.DashboardByID(st.def.DashboardID); d == nil || d.Public {
				notice = snap.PublicNotice(f.id)
			}
			r := e.shown(snap, st, st.lastErr, notice)
			st.hash = r.Hash()
			e.cfg.Publisher.Publish(f.view, st.def, r, time.Time{})
		}
	}
}

func notice(s *catalog.Snapshot, id int64) string {
	if s != nil {
		return s.Notice(id)
	}
	return ""
}

func sameDef(a, b *panel.Def) bool {
	return a.Slug == b.Slug && a.Title == b.Title && a.Kind == b.Kind && a.SQL == b.SQL &&
		a.Position == b.Position && a.Width == b.Width && a.Height == b.Height &&
		a.Options.Equal(b.Options) && slices.Equal(a.DependsOn, b.DependsOn) && a.DashboardID == b.DashboardID
}

// keepWanted tells Arms which tables the live panels read, when that
// changed, so that tables nobody watches stop costing writers anything.
func (e *Engine) keepWanted(snap *catalog.Snapshot) {
	if e.cfg.Arms == nil || snap == nil {
		return
	}
	set := make(map[string]bool)
	for id, views := range e.byBoard {
		live := false
		for _, vs := range views {
			live = live || vs.active
		}
		if d := snap.DashboardByID(id); d != nil && live {
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
