package refresh

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/livedash/dashboard/internal/panel"
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
// link a wall screen opens) is still admitted.
func TestScheduleDefaultViewAdmitted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxViews: 1})
		defer f.acquireView(t, regionView("eu", false))()
		if _, _, err := f.e.Acquire(regionView("us", false)); !errors.Is(err, ErrTooManyViews) {
			t.Fatalf("a second choice: got %v, want ErrTooManyViews", err)
		}
		def := regionView("asia", false)
		def.Default = true
		defer f.acquireView(t, def)()
		synctest.Wait()
		if got := regions(f.db.callsOf(31)); !slices.Equal(got, []string{"asia", "eu"}) {
			t.Errorf("queries: got regions %v, want the default view's too", got)
		}
	})
}
