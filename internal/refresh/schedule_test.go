package refresh

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// The scheduling tests run the real Engine loop inside a synctest bubble with
// a fake clock: e.run is replaced by fakeDB.run and the catalog comes from
// fakeLoader, so every assertion about "when" is exact.
//
// Catalog: dashboard 1 has panels 11 (reads public.a) and 12 (public.b);
// dashboard 2 has panel 21 (public.a); dashboard 3 has panels 31 (reads
// public.c with :region) and 32 (public.c with :region, :from and :to).

type fakeLoader struct {
	mu    sync.Mutex
	loads int
	sql11 string // SQL of panel 11; changing it redefines the panel
}

// Load builds fresh pointers on every call, as catalog.Loader does.
func (l *fakeLoader) Load(ctx context.Context) (*catalog.Snapshot, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads++
	sql11 := l.sql11
	if sql11 == "" {
		sql11 = "SELECT 11"
	}
	d1 := &panel.Dashboard{ID: 1, Slug: "one", Panels: []*panel.Def{
		{ID: 11, DashboardID: 1, Slug: "a", Kind: panel.Stat, SQL: sql11, Width: 1, Height: 1},
		{ID: 12, DashboardID: 1, Slug: "b", Kind: panel.Stat, SQL: "SELECT 12", Width: 1, Height: 1},
	}}
	d2 := &panel.Dashboard{ID: 2, Slug: "two", Panels: []*panel.Def{
		{ID: 21, DashboardID: 2, Slug: "c", Kind: panel.Stat, SQL: "SELECT 21", Width: 1, Height: 1},
	}}
	d3 := &panel.Dashboard{ID: 3, Slug: "three", Panels: []*panel.Def{
		{ID: 31, DashboardID: 3, Slug: "d", Kind: panel.Stat, SQL: "SELECT :region", Width: 1, Height: 1,
			Params: []string{"region"}},
		{ID: 32, DashboardID: 3, Slug: "e", Kind: panel.Stat, SQL: "SELECT :region, :from, :to", Width: 1, Height: 1,
			Params: []string{"region", panel.FromParam, panel.ToParam}},
	}}
	deps := map[int64][]string{11: {"public.a"}, 12: {"public.b"}, 21: {"public.a"}, 31: {"public.c"}, 32: {"public.c"}}
	return catalog.NewSnapshot([]*panel.Dashboard{d1, d2, d3}, deps, nil), nil
}

func (l *fakeLoader) setSQL11(s string) {
	l.mu.Lock()
	l.sql11 = s
	l.mu.Unlock()
}

func (l *fakeLoader) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.loads
}

type call struct {
	at   time.Time
	sql  string
	args []any
}

// fakeDB stands in for the database: it records every query and answers
// with the panel's current value, optionally holding the query until the
// test releases it.
type fakeDB struct {
	mu         sync.Mutex
	calls      map[int64][]call
	running    map[int64]int
	maxRunning map[int64]int
	value      map[int64]float64
	gate       map[int64]chan struct{}
	fail       map[int64]error
	broken     map[int64]string // the query's own error, as Result.Err
}

func newFakeDB() *fakeDB {
	return &fakeDB{
		calls:      make(map[int64][]call),
		running:    make(map[int64]int),
		maxRunning: make(map[int64]int),
		value:      make(map[int64]float64),
		gate:       make(map[int64]chan struct{}),
		fail:       make(map[int64]error),
		broken:     make(map[int64]string),
	}
}

func (f *fakeDB) run(ctx context.Context, p *panel.Def, args []any, notice string) (*panel.Result, error) {
	f.mu.Lock()
	f.calls[p.ID] = append(f.calls[p.ID], call{at: time.Now(), sql: p.SQL, args: args})
	f.running[p.ID]++
	f.maxRunning[p.ID] = max(f.maxRunning[p.ID], f.running[p.ID])
	gate, v, err, broken := f.gate[p.ID], f.value[p.ID], f.fail[p.ID], f.broken[p.ID]
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		f.running[p.ID]--
		f.mu.Unlock()
	}()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, err
	}
	if broken != "" {
		return &panel.Result{Err: broken, Notice: notice}, nil
	}
	return &panel.Result{
		Columns: []string{"n"},
		Rows:    [][]panel.Value{{{Kind: panel.Number, Num: v, Text: strconv.FormatFloat(v, 'g', -1, 64)}}},
		Notice:  notice,
	}, nil
}

// hold makes the next queries of panel id wait until release.
func (f *fakeDB) hold(id int64) {
	f.mu.Lock()
	f.gate[id] = make(chan struct{})
	f.mu.Unlock()
}

func (f *fakeDB) release(id int64) {
	f.mu.Lock()
	close(f.gate[id])
	delete(f.gate, id)
	f.mu.Unlock()
}

func (f *fakeDB) set(id int64, v float64) {
	f.mu.Lock()
	f.value[id] = v
	f.mu.Unlock()
}

func (f *fakeDB) setFail(id int64, err error) {
	f.mu.Lock()
	f.fail[id] = err
	f.mu.Unlock()
}

func (f *fakeDB) n(id int64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.calls[id])
}

func (f *fakeDB) callsOf(id int64) []call {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]call(nil), f.calls[id]...)
}

type pub struct {
	res   *panel.Result
	view  panel.ViewKey
	panel int64
	value float64
	err   string
	at    time.Time
}

type recPublisher struct {
	mu      sync.Mutex
	pubs    []pub
	opened  []panel.ViewKey
	dropped []panel.ViewKey
}

func (r *recPublisher) CatalogChanged(*catalog.Snapshot) {}

func (r *recPublisher) ViewOpened(v panel.ViewKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.opened = append(r.opened, v)
}

func (r *recPublisher) ViewDropped(v panel.ViewKey) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropped = append(r.dropped, v)
}

func (r *recPublisher) Publish(view panel.ViewKey, p *panel.Def, res *panel.Result, _ time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v := pub{res: res, view: view, panel: p.ID, err: res.Err, at: time.Now()}
	if len(res.Rows) > 0 && len(res.Rows[0]) > 0 {
		v.value = res.Rows[0][0].Num
	}
	r.pubs = append(r.pubs, v)
}

// result is the last result published for panel id, or nil.
func (r *recPublisher) result(id int64) *panel.Result {
	if pubs := r.of(id); len(pubs) > 0 {
		return pubs[len(pubs)-1].res
	}
	return nil
}

func (r *recPublisher) of(id int64) []pub {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []pub
	for _, p := range r.pubs {
		if p.panel == id {
			out = append(out, p)
		}
	}
	return out
}

type fixture struct {
	e      *Engine
	db     *fakeDB
	pub    *recPublisher
	loader *fakeLoader
}

// startEngine builds an Engine on fakes and runs it until the bubble's test
// function returns. It must be called inside synctest.Test.
func startEngine(t *testing.T, cfg Config) *fixture {
	t.Helper()
	return startEngineWith(t, cfg, nil)
}

// startEngineWith is startEngine with another catalog than fakeLoader's
// (nil: fakeLoader's).
func startEngineWith(t *testing.T, cfg Config, loader Loader) *fixture {
	t.Helper()
	f := &fixture{db: newFakeDB(), pub: &recPublisher{}, loader: &fakeLoader{}}
	cfg.Loader = f.loader
	if loader != nil {
		cfg.Loader = loader
	}
	cfg.Publisher = f.pub
	if cfg.BatchWindow == 0 {
		cfg.BatchWindow = 25 * time.Millisecond
	}
	if cfg.MaxRefreshHz == 0 {
		cfg.MaxRefreshHz = 10
	}
	f.e = New(cfg)
	f.e.run = f.db.run
	if err := f.e.LoadCatalog(t.Context()); err != nil {
		t.Fatalf("LoadCatalog: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.e.Run(ctx) }()
	// Cleanups run inside the bubble, so Run's goroutines end before it does.
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: got %v, want nil", err)
		}
	})
	synctest.Wait()
	return f
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// acquire makes dashboard id's one view (no variables) live.
func (f *fixture) acquire(id int64) (ready <-chan struct{}, release func()) {
	ready, release, err := f.e.Acquire(View{Key: panel.ViewKey{Dashboard: id}})
	if err != nil {
		panic(err)
	}
	return ready, release
}

func TestScheduleLeadingEdgeThenBatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// A high rate cap isolates the batch window.
		f := startEngine(t, Config{BatchWindow: 25 * time.Millisecond, MaxRefreshHz: 1000})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		if got := f.db.n(11); got != 1 {
			t.Fatalf("initial queries of panel 11: got %d, want 1", got)
		}
		time.Sleep(time.Second) // quiet period

		start := time.Now()
		f.e.TableChanged("public.a", start)
		synctest.Wait()
		calls := f.db.callsOf(11)
		if len(calls) != 2 || !calls[1].at.Equal(start) {
			t.Fatalf("leading edge: got calls %v, want a second one at %v (no time passing)", calls, start)
		}

		// Two more changes within the window: merged, run at the window's end.
		time.Sleep(5 * time.Millisecond)
		f.e.TableChanged("public.a", time.Now())
		time.Sleep(5 * time.Millisecond)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		if got := f.db.n(11); got != 2 {
			t.Fatalf("within the batch window: got %d queries, want 2 (changes wait for the window's end)", got)
		}
		time.Sleep(start.Add(25 * time.Millisecond).Sub(time.Now()))
		synctest.Wait()
		calls = f.db.callsOf(11)
		if len(calls) != 3 || !calls[2].at.Equal(start.Add(25*time.Millisecond)) {
			t.Fatalf("after the window: got calls %v, want a third at %v", calls, start.Add(25*time.Millisecond))
		}
		time.Sleep(time.Second)
		if got := f.db.n(11); got != 3 {
			t.Fatalf("merged changes: got %d queries, want 3", got)
		}
		// Panel 12 reads another table; it was queried once, at the start.
		if got := f.db.n(12); got != 1 {
			t.Errorf("panel 12 (public.b untouched): got %d queries, want 1", got)
		}
	})
}

func TestSchedulePerPanelRateCap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const hz = 10
		f := startEngine(t, Config{BatchWindow: 25 * time.Millisecond, MaxRefreshHz: hz})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		time.Sleep(time.Second)

		start := time.Now()
		var last time.Time
		for range 100 { // a change every 10ms for 1s
			last = time.Now()
			f.e.TableChanged("public.a", last)
			time.Sleep(10 * time.Millisecond)
		}
		end := time.Now()
		time.Sleep(time.Second) // let the trailing refresh run
		var during int
		calls := f.db.callsOf(11)
		for _, c := range calls {
			if !c.at.Before(start) && c.at.Before(end) {
				during++
			}
		}
		if during > hz+1 || during < hz-1 {
			t.Errorf("queries during 1s of changes every 10ms: got %d, want %d-%d", during, hz-1, hz+1)
		}
		if final := calls[len(calls)-1].at; final.Before(last) {
			t.Errorf("last query at %v, before the last change at %v: the last change is not reflected", final, last)
		}
		for i := 2; i < len(calls); i++ {
			if gap := calls[i].at.Sub(calls[i-1].at); gap < time.Second/hz {
				t.Errorf("queries %d and %d are %v apart, want >= %v", i-1, i, gap, time.Second/hz)
			}
		}
		if got := f.db.n(12); got != 1 {
			t.Errorf("panel 12: got %d queries, want 1", got)
		}
	})
}

func TestScheduleOneInFlightThenOneRerun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		time.Sleep(time.Second)

		f.db.hold(11)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		if got := f.db.n(11); got != 2 {
			t.Fatalf("queries: got %d, want 2 (one running)", got)
		}
		for range 10 {
			time.Sleep(50 * time.Millisecond)
			f.e.TableChanged("public.a", time.Now())
		}
		synctest.Wait()
		if got := f.db.n(11); got != 2 {
			t.Fatalf("changes while a query runs: got %d queries, want 2 (wait for the running one)", got)
		}
		f.db.set(11, 42)
		f.db.release(11)
		synctest.Wait()
		if got := f.db.n(11); got != 3 {
			t.Fatalf("after the running query: got %d queries, want 3 (exactly one re-run)", got)
		}
		time.Sleep(time.Second)
		if got := f.db.n(11); got != 3 {
			t.Errorf("later: got %d queries, want 3", got)
		}
		f.db.mu.Lock()
		maxRunning := f.db.maxRunning[11]
		f.db.mu.Unlock()
		if maxRunning != 1 {
			t.Errorf("queries of panel 11 in flight at once: got %d, want 1", maxRunning)
		}
		pubs := f.pub.of(11)
		if len(pubs) == 0 || pubs[len(pubs)-1].value != 42 {
			t.Errorf("published values %v: want the last to be 42", pubs)
		}
	})
}

func TestScheduleNoViewerNoQuery(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000, Linger: 2 * time.Second})
		if got := f.db.n(11) + f.db.n(12) + f.db.n(21); got != 0 {
			t.Fatalf("before any viewer: got %d queries, want 0", got)
		}
		_, release1 := f.acquire(1)
		defer release1()
		synctest.Wait()
		for range 5 {
			f.e.TableChanged("public.a", time.Now())
			time.Sleep(200 * time.Millisecond)
		}
		if got := f.db.n(11); got != 6 {
			t.Errorf("panel 11 (viewed): got %d queries, want 6", got)
		}
		if got := f.db.n(21); got != 0 {
			t.Fatalf("panel 21 (dashboard 2 has no viewer): got %d queries, want 0", got)
		}

		// The first viewer queries afresh, with nothing changed.
		ready, release2 := f.acquire(2)
		synctest.Wait()
		if got := f.db.n(21); got != 1 {
			t.Fatalf("panel 21 after its first viewer: got %d queries, want 1", got)
		}
		if !isClosed(ready) {
			t.Errorf("ready of dashboard 2 is still open after its panels were queried")
		}
		if got := len(f.pub.of(21)); got != 1 {
			t.Errorf("panel 21 publications: got %d, want 1", got)
		}

		// After its last viewer leaves it lingers, then stops.
		release2()
		time.Sleep(100 * time.Millisecond)
		f.e.TableChanged("public.a", time.Now())
		time.Sleep(100 * time.Millisecond)
		if got := f.db.n(21); got != 2 {
			t.Errorf("panel 21 within the linger time: got %d queries, want 2", got)
		}
		time.Sleep(3 * time.Second)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		if got := f.db.n(21); got != 2 {
			t.Errorf("panel 21 after the linger time: got %d queries, want 2", got)
		}
	})
}

func TestScheduleAcquireReady(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{})
		f.db.hold(11)
		f.db.hold(12)
		ready, release := f.acquire(1)
		defer release()
		synctest.Wait()
		if isClosed(ready) {
			t.Fatal("ready closed before any panel was queried")
		}
		f.db.release(11)
		synctest.Wait()
		if isClosed(ready) {
			t.Fatal("ready closed with panel 12 still running")
		}
		f.db.release(12)
		synctest.Wait()
		if !isClosed(ready) {
			t.Fatal("ready still open after every panel was queried")
		}
		if got := len(f.pub.of(11)) + len(f.pub.of(12)); got != 2 {
			t.Errorf("publications: got %d, want 2", got)
		}

		// A second viewer of a live dashboard is ready at once, without queries.
		ready2, release2 := f.acquire(1)
		defer release2()
		synctest.Wait()
		if !isClosed(ready2) {
			t.Error("second viewer's ready still open")
		}
		if got := f.db.n(11); got != 1 {
			t.Errorf("panel 11 queries after a second viewer: got %d, want 1", got)
		}
	})
}

func TestScheduleSameResultPublishedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		for range 3 {
			time.Sleep(time.Second)
			f.e.TableChanged("public.a", time.Now())
			synctest.Wait()
		}
		if got := f.db.n(11); got != 4 {
			t.Fatalf("queries: got %d, want 4", got)
		}
		if got := len(f.pub.of(11)); got != 1 {
			t.Errorf("publications of an unchanged result: got %d, want 1", got)
		}
		m := f.e.cfg.Metrics.queries
		if got := counterValue(t, m.WithLabelValues("unchanged")); got != 3 {
			t.Errorf("unchanged outcomes: got %v, want 3", got)
		}

		f.db.set(11, 7)
		time.Sleep(time.Second)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		pubs := f.pub.of(11)
		if len(pubs) != 2 || pubs[1].value != 7 {
			t.Errorf("publications after a change: got %v, want a second one with 7", pubs)
		}
		// changed: 11 and 12 at first, then 11 again.
		if got := counterValue(t, m.WithLabelValues("changed")); got != 3 {
			t.Errorf("changed outcomes: got %v, want 3", got)
		}
	})
}

// A catalog reload that does not change a panel must not throw away the
// result of its running query.
func TestScheduleReloadWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		time.Sleep(time.Second)

		f.db.hold(11)
		f.db.set(11, 5)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		f.e.TableChanged(catalog.PanelsTable, time.Now()) // another panel edited
		time.Sleep(time.Second)
		if got := f.loader.count(); got != 2 {
			t.Fatalf("catalog loads: got %d, want 2", got)
		}
		f.db.release(11)
		synctest.Wait()
		pubs := f.pub.of(11)
		if len(pubs) != 2 || pubs[1].value != 5 {
			t.Fatalf("publications of panel 11: got %v, want a second one with 5", pubs)
		}
		if got := f.db.n(11); got != 2 {
			t.Errorf("queries of unchanged panel 11: got %d, want 2 (no re-run needed)", got)
		}
	})
}

// A panel redefined while its query runs drops that result and runs the new
// SQL once the old query is done.
func TestScheduleRedefinedWhileRunning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		time.Sleep(time.Second)

		f.db.hold(11)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		f.loader.setSQL11("SELECT 11 + 0")
		f.e.TableChanged(catalog.PanelsTable, time.Now())
		time.Sleep(time.Second)
		if got := f.db.n(11); got != 2 {
			t.Fatalf("queries while the old one runs: got %d, want 2", got)
		}
		f.db.release(11)
		synctest.Wait()
		calls := f.db.callsOf(11)
		if len(calls) != 3 || calls[2].sql != "SELECT 11 + 0" {
			t.Fatalf("queries after redefinition: got %v, want a third with the new SQL", calls)
		}
		// The new definition is published afresh even though its data is equal.
		if got := len(f.pub.of(11)); got != 2 {
			t.Errorf("publications: got %d, want 2", got)
		}
	})
}

func TestScheduleRetryAfterDatabaseError(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{RetryDelay: time.Second})
		f.db.setFail(11, errors.New("connection refused"))
		ready, release := f.acquire(1)
		defer release()
		synctest.Wait()
		start := time.Now()
		if got := f.db.n(11); got != 1 {
			t.Fatalf("queries: got %d, want 1", got)
		}
		if isClosed(ready) {
			t.Fatal("ready closed although panel 11 has no result")
		}
		f.db.setFail(11, nil)
		time.Sleep(time.Second)
		synctest.Wait()
		calls := f.db.callsOf(11)
		if len(calls) != 2 || !calls[1].at.Equal(start.Add(time.Second)) {
			t.Fatalf("retry: got calls %v, want a second at %v", calls, start.Add(time.Second))
		}
		if !isClosed(ready) {
			t.Error("ready still open after the retry succeeded")
		}
		if got := counterValue(t, f.e.cfg.Metrics.queries.WithLabelValues("error")); got != 1 {
			t.Errorf("error outcomes: got %v, want 1", got)
		}
	})
}

func TestScheduleResync(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		time.Sleep(time.Second)
		f.e.Resync()
		synctest.Wait()
		if got, want := []int{f.db.n(11), f.db.n(12), f.db.n(21)}, []int{2, 2, 0}; got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
			t.Errorf("queries of panels 11, 12, 21 after Resync: got %v, want %v", got, want)
		}
		if got := f.loader.count(); got != 2 {
			t.Errorf("catalog loads: got %d, want 2 (Resync reloads)", got)
		}
	})
}

// counterValue reads a counter. (prometheus/testutil would do, but its
// dependency github.com/kylelemons/godebug has no go.sum entry here.)
func counterValue(t *testing.T, c prometheus.Counter) float64 {
	t.Helper()
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		t.Fatalf("reading counter: %v", err)
	}
	return m.GetCounter().GetValue()
}

// TestScheduleUnreadTableIgnored: a notification for a table no panel reads
// does not even wake the engine (under a write load on other tables that is
// thousands of wake-ups a second), while the catalog's own tables always
// count.
func TestScheduleUnreadTableIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{})
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		for range 100 {
			f.e.TableChanged("public.nobody_reads_this", time.Now())
		}
		f.e.mu.Lock()
		dirty := len(f.e.dirty)
		f.e.mu.Unlock()
		if dirty != 0 || len(f.e.signal) != 0 {
			t.Fatalf("after notifications for an unread table: %d dirty tables, %d wake-ups pending; want none", dirty, len(f.e.signal))
		}
		loads := f.loader.count()
		f.e.TableChanged(catalog.PanelsTable, time.Now())
		time.Sleep(time.Second)
		if got := f.loader.count(); got != loads+1 {
			t.Errorf("catalog loads after a change to %s: got %d, want %d", catalog.PanelsTable, got, loads+1)
		}
		f.e.TableChanged("public.a", time.Now())
		time.Sleep(time.Second)
		if got := f.db.n(11); got != 2 {
			t.Errorf("panel 11 after a change to the table it reads: got %d queries, want 2", got)
		}
	})
}

// TestScheduleFresh: Fresh is satisfied only by queries that started after
// it was called (a query already running does not count), a crowd of
// requests shares one round, and the per-panel rate cap still holds.
func TestScheduleFresh(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 10})
		ready, release := f.acquire(1)
		defer release()
		synctest.Wait()
		if !isClosed(ready) {
			t.Fatal("Acquire not ready after the first queries")
		}
		time.Sleep(time.Second)
		before11, before12 := f.db.n(11), f.db.n(12)

		// A query of panel 11 is running when the requests arrive.
		f.db.hold(11)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		var fresh []<-chan struct{}
		for range 50 {
			fresh = append(fresh, f.e.Fresh(t.Context(), panel.ViewKey{Dashboard: 1}))
		}
		synctest.Wait()
		if got := f.db.n(12); got != before12+1 {
			t.Errorf("panel 12: got %d queries, want %d (one round for 50 requests)", got, before12+1)
		}
		f.db.release(11)
		synctest.Wait()
		// The running query ended, but it started before the requests: the
		// panel runs again, once, within its rate cap.
		for _, ch := range fresh {
			if isClosed(ch) {
				t.Fatal("Fresh closed by a query that started before it was called")
			}
		}
		time.Sleep(100 * time.Millisecond)
		synctest.Wait()
		if got := f.db.n(11); got != before11+2 {
			t.Errorf("panel 11: got %d queries, want %d (the running one and one re-run)", got, before11+2)
		}
		for i, ch := range fresh {
			if !isClosed(ch) {
				t.Fatalf("Fresh request %d still open after every panel was queried again", i)
			}
		}
		calls := f.db.callsOf(11)
		if gap := calls[len(calls)-1].at.Sub(calls[len(calls)-2].at); gap < 100*time.Millisecond {
			t.Errorf("panel 11 queried again after %s, want at least the rate cap's 100ms", gap)
		}
		// Nothing more runs without a reason.
		time.Sleep(time.Second)
		if got := f.db.n(11); got != before11+2 {
			t.Errorf("later: got %d queries of panel 11, want %d", got, before11+2)
		}
	})
}
