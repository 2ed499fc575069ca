package refresh

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
)

// regionView is a view of dashboard 3 whose :region is region. Its Args
// binds the region and, for the time range, the now it is given; with
// clock, the view reads the clock (the dashboard's refresh: a minute).
func regionView(region string, clock bool) View {
	return View{
		Key: panel.ViewKey{Dashboard: 3, Vars: "var-region=" + region},
		Args: func(params []string, now time.Time) ([]any, error) {
			var args []any
			for _, p := range params {
				switch p {
				case "region":
					args = append(args, region)
				case panel.FromParam:
					args = append(args, now.Add(-time.Hour))
				case panel.ToParam:
					args = append(args, now)
				default:
					return nil, fmt.Errorf("unknown parameter %s", p)
				}
			}
			return args, nil
		},
		Clock: clock,
	}
}

func (f *fixture) acquireView(t *testing.T, v View) func() {
	t.Helper()
	_, release, err := f.e.Acquire(v)
	if err != nil {
		t.Fatalf("Acquire %v: %v", v.Key, err)
	}
	return release
}

// regions lists the region argument of each recorded call of a panel.
func regions(calls []call) []string {
	var out []string
	for _, c := range calls {
		out = append(out, fmt.Sprint(c.args[0]))
	}
	slices.Sort(out)
	return out
}

// TestScheduleViews: each view runs its own queries with its own bound
// values, once per change however many viewers it has, and publishes
// under its own key.
func TestScheduleViews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000})
		for range 3 {
			defer f.acquireView(t, regionView("eu", false))()
		}
		defer f.acquireView(t, regionView("us", false))()
		synctest.Wait()
		if got := regions(f.db.callsOf(31)); !slices.Equal(got, []string{"eu", "us"}) {
			t.Fatalf("first queries of panel 31: got regions %v, want one per view [eu us]", got)
		}
		time.Sleep(time.Second)
		f.e.TableChanged("public.c", time.Now())
		synctest.Wait()
		if got := regions(f.db.callsOf(31)); !slices.Equal(got, []string{"eu", "eu", "us", "us"}) {
			t.Fatalf("after one change: got regions %v, want one more query per view, not per viewer", got)
		}
		views := map[panel.ViewKey]bool{}
		for _, p := range f.pub.of(31) {
			views[p.view] = true
		}
		if len(views) != 2 {
			t.Errorf("panel 31 published under %d views, want 2", len(views))
		}
		if got := f.db.n(11); got != 0 {
			t.Errorf("panel 11 (dashboard 1, nobody watching): %d queries, want 0", got)
		}
	})
}

// TestScheduleMaxViews: a dashboard has at most MaxViews views. A new one
// takes the room of the least recently used view without viewers; when
// every view has viewers, it is refused and counted.
func TestScheduleMaxViews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxViews: 2})
		releaseEU := f.acquireView(t, regionView("eu", false))
		time.Sleep(time.Second)
		releaseUS := f.acquireView(t, regionView("us", false))
		defer releaseUS()
		synctest.Wait()
		if _, _, err := f.e.Acquire(regionView("asia", false)); !errors.Is(err, ErrTooManyViews) {
			t.Fatalf("third view while both have viewers: got %v, want ErrTooManyViews", err)
		}
		// Another dashboard's views do not count against this one.
		_, releaseOne := f.acquire(1)
		defer releaseOne()
		releaseEU()
		time.Sleep(time.Second)
		defer f.acquireView(t, regionView("asia", false))()
		synctest.Wait()
		f.pub.mu.Lock()
		dropped := slices.Clone(f.pub.dropped)
		f.pub.mu.Unlock()
		if want := []panel.ViewKey{regionView("eu", false).Key}; !slices.Equal(dropped, want) {
			t.Fatalf("dropped views: got %v, want %v (the one without viewers)", dropped, want)
		}
		if got := regions(f.db.callsOf(31)); !slices.Equal(got, []string{"asia", "eu", "us"}) {
			t.Errorf("queries of panel 31: got regions %v", got)
		}
		// The dropped view comes back as a new one, queried afresh.
		if _, _, err := f.e.Acquire(regionView("eu", false)); !errors.Is(err, ErrTooManyViews) {
			t.Errorf("a fourth view while the two have viewers: got %v, want ErrTooManyViews", err)
		}
		if got := counterValue(t, f.e.cfg.Metrics.viewsRefused); got != 2 {
			t.Errorf("views_refused_total: got %v, want 2", got)
		}
		if got := counterValue(t, f.e.cfg.Metrics.viewsDropped); got != 1 {
			t.Errorf("views_dropped_total: got %v, want 1", got)
		}
	})
}

// TestScheduleClock: in a view that reads the clock, the panels that use
// the time range run again when now, rounded down to the tick, moves, and
// see that rounded now; the others do not run for the clock.
func TestScheduleClock(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{})
		// synctest's clock starts at 2000-01-01 00:00 UTC: move off the
		// boundary so that rounding shows.
		time.Sleep(90 * time.Second)
		defer f.acquireView(t, regionView("eu", true))()
		synctest.Wait()
		time.Sleep(3 * time.Minute)
		synctest.Wait()
		calls := f.db.callsOf(32)
		if len(calls) != 4 {
			t.Fatalf("panel 32 (reads :from/:to): got %d queries in 3 minutes, want 4 (start + one per minute)", len(calls))
		}
		for i, c := range calls {
			to := c.args[2].(time.Time)
			if to.Second() != 0 || to.Nanosecond() != 0 || to.After(c.at) {
				t.Errorf("query %d at %v: :to = %v, want now rounded down to the minute", i, c.at, to)
			}
			if i > 0 && !to.After(calls[i-1].args[2].(time.Time)) {
				t.Errorf("query %d: :to %v did not move", i, to)
			}
		}
		if got := f.db.n(31); got != 1 {
			t.Errorf("panel 31 (no time range): got %d queries, want 1", got)
		}
	})
}

// A view dropped while its query runs and re-created with the same key:
// the new one is queried afresh, its ready closes, nothing leaks.
func TestScheduleViewDroppedAndRecreated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxViews: 1, MaxRefreshHz: 1000})
		f.db.hold(31)
		_, rel, _ := f.e.Acquire(regionView("eu", false))
		synctest.Wait()
		rel()
		_, relUS, err := f.e.Acquire(regionView("us", false)) // drops eu, whose query is held
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		relUS()
		ready, relEU, err := f.e.Acquire(regionView("eu", false)) // drops us, eu again
		if err != nil {
			t.Fatal(err)
		}
		defer relEU()
		synctest.Wait()
		f.db.release(31)
		synctest.Wait()
		time.Sleep(time.Second)
		synctest.Wait()
		if !isClosed(ready) {
			t.Fatalf("ready of the re-created view never closed; calls %d", f.db.n(31))
		}
		if got := gaugeValue(t, f.e.cfg.Metrics.views); got != 1 {
			t.Errorf("views: got %v, want 1", got)
		}
	})
}

// TestScheduleDefaultViewAdmitted: with every view of a dashboard watched,
// a new choice is refused, but the dashboard's default view (the plain
// link a wall screen opens) is still admitted, and a new choice cannot
// push it out.
func TestScheduleDefaultViewAdmitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxViews: 1})
		defer f.acquireView(t, regionView("eu", false))()
		if _, _, err := f.e.Acquire(regionView("us", false)); !errors.Is(err, ErrTooManyViews) {
			t.Fatalf("a second choice: got %v, want ErrTooManyViews", err)
		}
		def := regionView("asia", false)
		def.Default = true
		f.acquireView(t, def)() // the page, gone again
		synctest.Wait()
		if _, _, err := f.e.Acquire(regionView("us", false)); !errors.Is(err, ErrTooManyViews) {
			t.Fatalf("a second choice after the default's page left: got %v, want ErrTooManyViews", err)
		}
		defer f.acquireView(t, def)() // its stream
		synctest.Wait()
		if got := regions(f.db.callsOf(31)); !slices.Contains(got, "asia") {
			t.Errorf("queries: got regions %v, want the default view's too", got)
		}
	})
}

// TestScheduleFailingGaugeQueryInFlightWhenUnwatched: the view goes idle (Linger
// over) while its failing query is still running; the result arrives
// after step() forgot the view's failures, and finish re-registers it, so
// panels_failing stays up for a view nobody watches (until the view is
// dropped, which may be never below MaxViews).
func TestScheduleFailingGaugeQueryInFlightWhenUnwatched(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000, Linger: time.Second})
		f.db.mu.Lock()
		f.db.broken[31] = `canceling statement due to statement timeout (SQLSTATE 57014)`
		f.db.mu.Unlock()
		f.db.hold(31)
		release := f.acquireView(t, regionView("x", false))
		synctest.Wait()
		release()
		time.Sleep(2 * time.Second) // Linger over while the query runs
		synctest.Wait()
		f.db.release(31)
		synctest.Wait()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := gaugeValue(t, f.e.cfg.Metrics.failing); got != 0 {
			t.Errorf("panels_failing an hour after the only viewer left (query in flight when the view went idle): got %v, want 0", got)
		}
	})
}

// TestScheduleDefaultViewsBounded: every distinct key flagged Default is
// admitted past MaxViews; nothing bounds how many.
func TestScheduleDefaultViewsBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxViews: 1})
		defer f.acquireView(t, regionView("eu", false))()
		for i := range 50 {
			v := regionView("d"+string(rune('a'+i%26))+string(rune('a'+i/26)), false)
			v.Default = true
			if _, release, err := f.e.Acquire(v); err == nil {
				defer release()
			}
		}
		synctest.Wait()
		if got := gaugeValue(t, f.e.cfg.Metrics.views); got != 2 {
			t.Errorf("views of a dashboard with MaxViews 1: got %v, want 2 (one choice, one default)", got)
		}
	})
}

// TestOptionsOutliveTheFirstAsker: a follower with a live
// context shares the leader's set; the leader gives up waiting for a slot,
// and the follower gets ErrDatabase (503) although its own context is fine.
func TestOptionsOutliveTheFirstAsker(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := New(Config{Concurrency: 1})
		v := &panel.Variable{Name: "customer", Query: "SELECT 1"}
		// Fill the only slot.
		e.options.sets = make(map[string]*optionSet)
		e.options.running = make(chan struct{}, 1)
		e.options.running <- struct{}{}
		leaderCtx, cancel := context.WithCancel(context.Background())
		go e.Options(leaderCtx, 1, v, nil)
		synctest.Wait()
		errc := make(chan error, 1)
		go func() {
			ctx, c := context.WithTimeout(context.Background(), time.Minute)
			defer c()
			_, err := e.Options(ctx, 1, v, nil)
			errc <- err
		}()
		synctest.Wait()
		cancel() // the first viewer closes its tab
		synctest.Wait()
		select {
		case err := <-errc:
			t.Errorf("follower with a live context: got %v after the leader left", err)
		default:
		}
		<-e.options.running
		synctest.Wait()
	})
}

// TestScheduleVisibilityFlipWhileDatabaseDown: a failing panel is shown as
// the public may see it as soon as its dashboard is made public, not only
// once its query runs again (the database may not answer).
func TestScheduleVisibilityFlipWhileDatabaseDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		loader := &publicLoader{}
		f := startEngineWith(t, Config{MaxRefreshHz: 1000}, loader)
		db, pub, e := f.db, f.pub, f.e
		db.mu.Lock()
		db.broken[11] = `permission denied for table salaries (SQLSTATE 42501)`
		db.mu.Unlock()
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()
		db.setFail(11, errors.New("connection refused"))
		loader.public.Store(true)
		time.Sleep(time.Second)
		e.TableChanged(catalog.DashboardsTable, time.Now())
		synctest.Wait()
		time.Sleep(time.Minute)
		synctest.Wait()
		if got := pub.result(11); strings.Contains(got.Err, "salaries") {
			t.Errorf("a minute after the dashboard became public (database unreachable): board still has %q", got.Err)
		}
	})
}

// TestOptionsBytesCounted: a stale set replaced by a fresh one for the
// same key keeps its bytes counted, so the count grows by a whole set at
// every TTL and the cache is wiped although it holds one set.
func TestOptionsBytesCounted(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), pgtest.NewDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := New(Config{Pool: pool})
	v := &panel.Variable{Name: "n", Query: "SELECT repeat('x', 1000) || g FROM generate_series(1, 1000) g"}
	ctx := context.Background()
	var one int
	for i := range 5 {
		opts, err := e.Options(ctx, 1, v, nil)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			for _, o := range opts {
				one += len(o)
			}
		}
		e.options.mu.Lock()
		for _, s := range e.options.sets {
			s.at = s.at.Add(-time.Minute) // stale, as after 5 s
		}
		e.options.mu.Unlock()
	}
	e.options.mu.Lock()
	defer e.options.mu.Unlock()
	for key := range e.options.sets {
		if want := one + len(key); len(e.options.sets) != 1 || e.options.bytes != want {
			t.Errorf("after 5 refreshes of one set of %d bytes: %d sets, %d bytes counted, want %d", want, len(e.options.sets), e.options.bytes, want)
		}
	}
}
