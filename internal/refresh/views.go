package refresh

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// View is one dashboard as one group of viewers sees it: the dashboard and
// one choice of its variables.
type View struct {
	Key panel.ViewKey
	// Args returns a panel's bind arguments, in the order of params, at
	// time now (already rounded down to the dashboard's refresh interval
	// when Clock is set). nil for a dashboard without variables.
	Args func(params []string, now time.Time) ([]any, error)
	// Clock makes the view read the clock: panels that use the time range
	// run again whenever now, rounded down to the dashboard's refresh
	// interval (as the catalog has it at that moment), moves.
	Clock bool
	// Default says the choice is the dashboard's default one (what the
	// plain link shows, with a token's fixed values if any). Default views
	// are bounded apart from the others (Config.MaxViews each), so that a
	// crowd of other choices never locks the plain link, and a wall
	// screen's, out.
	Default bool
}

// ErrTooManyViews is Acquire's answer when a dashboard has as many views as
// Config.MaxViews allows and every one of them has viewers.
var ErrTooManyViews = errors.New("too many distinct views of this dashboard")

// entry is a view the engine knows, as the goroutines that add and remove
// viewers see it (guarded by Engine.mu).
type entry struct {
	view    View
	viewers int
	leftAt  time.Time // when the last viewer left; zero while it has viewers
	waiters []*waiter
}

// viewState is the loop's side of an entry: its panels and generations.
type viewState struct {
	entry  *entry
	active bool
	gen    uint64    // bumped on every activation and fresh request
	clock  time.Time // rounded now of the time range, when the view reads the clock
	panels map[int64]*panelState
}

// Acquire registers a viewer of a view, which makes its panels live.
// ready is closed once every panel of the view has been queried since it
// became live (at once if it already was). release must be called once,
// when the viewer leaves.
//
// A view the engine does not know yet is added; when its dashboard already
// has Config.MaxViews views, the least recently used one without viewers
// is dropped to make room, and if every one has viewers the answer is
// ErrTooManyViews.
func (e *Engine) Acquire(v View) (ready <-chan struct{}, release func(), err error) {
	ch := make(chan struct{})
	e.mu.Lock()
	en := e.views[v.Key]
	if en == nil {
		if !e.makeRoom(v.Key.Dashboard, v.Default) {
			e.mu.Unlock()
			e.cfg.Metrics.viewsRefused.Inc()
			return nil, nil, ErrTooManyViews
		}
		en = &entry{view: v}
		e.views[v.Key] = en
		e.cfg.Metrics.views.Inc()
		e.cfg.Publisher.ViewOpened(v.Key)
	}
	en.viewers++
	en.leftAt = time.Time{}
	w := &waiter{ch: ch}
	en.waiters = append(en.waiters, w)
	e.mu.Unlock()
	e.wake()
	var once sync.Once
	return ch, func() {
		once.Do(func() {
			e.mu.Lock()
			en.viewers--
			if en.viewers <= 0 {
				en.leftAt = time.Now()
			}
			// Nobody waits on it any more: while a query keeps failing, a
			// stream of short visits must not pile up waiters.
			en.remove(w)
			e.mu.Unlock()
			e.wake()
		})
	}, nil
}

// remove takes w out of the entry's waiters, if it is still there. Called
// with the engine's mu held.
func (en *entry) remove(w *waiter) {
	if i := slices.Index(en.waiters, w); i >= 0 {
		en.waiters = slices.Delete(en.waiters, i, i+1)
	}
}

// makeRoom reports whether dashboard may have one more view, dropping its
// least recently used view without viewers if it must. Default views (the
// plain link's choice, or a token's) have a room of their own, of the same
// size: a crowd of other choices can neither refuse nor push out the view a
// wall screen shows, and defaults that changed with the data are bounded
// all the same. Called with mu held.
func (e *Engine) makeRoom(dashboard int64, isDefault bool) bool {
	n := 0
	var lru *entry
	for key, en := range e.views {
		if key.Dashboard != dashboard || en.view.Default != isDefault {
			continue
		}
		n++
		if en.viewers == 0 && (lru == nil || en.leftAt.Before(lru.leftAt)) {
			lru = en
		}
	}
	if n < e.cfg.MaxViews {
		return true
	}
	if lru == nil {
		return false
	}
	e.drop(lru)
	return true
}

// drop forgets a view without viewers. Called with mu held; the loop
// forgets its state at its next step.
func (e *Engine) drop(en *entry) {
	delete(e.views, en.view.Key)
	for _, w := range en.waiters {
		close(w.ch)
	}
	en.waiters = nil
	e.cfg.Metrics.views.Dec()
	e.cfg.Metrics.viewsDropped.Inc()
	e.cfg.Publisher.ViewDropped(en.view.Key)
}

// Fresh asks for every panel of a view to be queried again, and returns a
// channel that is closed once each of them has finished a query that
// started after the call, unless ctx ends first. The caller must hold a viewer of the view
// (Acquire). Requests that arrive together share one round of queries,
// and the per-panel rate cap still holds, so a crowd of clients asking at
// once costs one query per panel.
//
// This is how a server answers a client whose version it does not know:
// the client may have seen a state from another server, or from before a
// restore, and only a snapshot taken after it asked is sure to be at least
// as new as that.
//
// The request is forgotten when ctx ends, so a caller that stops waiting
// leaves nothing behind.
func (e *Engine) Fresh(ctx context.Context, view panel.ViewKey) <-chan struct{} {
	ch := make(chan struct{})
	e.mu.Lock()
	en := e.views[view]
	if en == nil {
		close(ch) // nothing to wait for: the caller holds no viewer
		e.mu.Unlock()
		return ch
	}
	w := &waiter{ch: ch, fresh: true}
	en.waiters = append(en.waiters, w)
	e.mu.Unlock()
	context.AfterFunc(ctx, func() {
		e.mu.Lock()
		en.remove(w)
		e.mu.Unlock()
	})
	e.wake()
	return ch
}

// roundDown rounds t down to a multiple of d since the Unix epoch, the same
// instant on every server.
func roundDown(t time.Time, d time.Duration) time.Time {
	return time.Unix(0, t.UnixNano()-t.UnixNano()%int64(d))
}

// adopt gives the loop a state for a view it has not seen.
func (e *Engine) adopt(snap *catalog.Snapshot, key panel.ViewKey, en *entry) {
	vs := &viewState{entry: en, panels: make(map[int64]*panelState)}
	if snap != nil {
		if d := snap.DashboardByID(key.Dashboard); d != nil {
			for _, p := range d.Panels {
				vs.panels[p.ID] = &panelState{def: p, dirty: true}
			}
		}
	}
	e.states[key] = vs
	if e.byBoard[key.Dashboard] == nil {
		e.byBoard[key.Dashboard] = make(map[panel.ViewKey]*viewState)
	}
	e.byBoard[key.Dashboard][key] = vs
}

// forget drops the loop's state of a view.
func (e *Engine) forget(key panel.ViewKey) {
	if vs := e.states[key]; vs != nil {
		for id := range vs.panels {
			e.notFailing(id, key)
		}
	}
	delete(e.states, key)
	if m := e.byBoard[key.Dashboard]; m != nil {
		delete(m, key)
		if len(m) == 0 {
			delete(e.byBoard, key.Dashboard)
		}
	}
}

// markAll marks every panel of the view dirty; republish also publishes
// results equal to the last ones (for a view that comes back to life,
// whose board may have moved on).
func (vs *viewState) markAll(at time.Time, republish bool) {
	for _, st := range vs.panels {
		st.mark(at)
		if republish {
			st.published = false
		}
	}
}

// tick is the clock refresh of a view: its dashboard's refresh interval as
// the catalog has it now (an edit applies at once), or zero for a view
// that does not read the clock.
func (e *Engine) tick(snap *catalog.Snapshot, vs *viewState) time.Duration {
	if !vs.entry.view.Clock || snap == nil {
		return 0
	}
	if d := snap.DashboardByID(vs.entry.view.Key.Dashboard); d != nil {
		return d.RefreshInterval()
	}
	return 0
}

// assignGenerations gives each waiter the loop has not seen yet the
// generation it waits for: the view's current one, or for a fresh request
// a new one, whose panels are marked dirty so that they run again (one new
// generation per view and step, however many asked).
func (e *Engine) assignGenerations() {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, en := range e.views {
		vs := e.states[key]
		if vs == nil || vs.entry != en || !vs.active {
			continue // assigned once the view is live
		}
		bumped := false
		for _, w := range en.waiters {
			if w.gen != 0 {
				continue
			}
			if w.fresh && !bumped {
				bumped = true
				vs.gen++
				vs.markAll(time.Time{}, false)
			}
			w.gen = vs.gen
		}
	}
}

// notifyReady closes the waiters of views whose panels have all finished a
// query of the generation the waiter waits for.
func (e *Engine) notifyReady(snap *catalog.Snapshot) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for key, en := range e.views {
		if len(en.waiters) == 0 {
			continue
		}
		var d *panel.Dashboard
		if snap != nil {
			d = snap.DashboardByID(key.Dashboard)
		}
		vs := e.states[key]
		keep := en.waiters[:0]
		for _, w := range en.waiters {
			// Unknown dashboards have nothing to wait for.
			if d == nil || (w.gen != 0 && vs != nil && vs.entry == en && vs.queriedSince(d, w.gen)) {
				close(w.ch)
				continue
			}
			keep = append(keep, w)
		}
		clear(en.waiters[len(keep):])
		en.waiters = keep
	}
}

// queriedSince reports whether every panel of d has finished a query of
// generation gen or later in this view.
func (vs *viewState) queriedSince(d *panel.Dashboard, gen uint64) bool {
	for _, p := range d.Panels {
		if st := vs.panels[p.ID]; st == nil || st.doneGen < gen {
			return false
		}
	}
	return true
}
