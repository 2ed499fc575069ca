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
// binds the region and, for the time range, the now it is given.
func regionView(region string, tick time.Duration) View {
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
		Tick: tick,
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
			defer f.acquireView(t, regionView("eu", 0))()
		}
		defer f.acquireView(t, regionView("us", 0))()
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
		releaseEU := f.acquireView(t, regionView("eu", 0))
		time.Sleep(time.Second)
		releaseUS := f.acquireView(t, regionView("us", 0))
		defer releaseUS()
		synctest.Wait()
		if _, _, err := f.e.Acquire(regionView("asia", 0)); !errors.Is(err, ErrTooManyViews) {
			t.Fatalf("third view while both have viewers: got %v, want ErrTooManyViews", err)
		}
		// Another dashboard's views do not count against this one.
		_, releaseOne := f.acquire(1)
		defer releaseOne()
		releaseEU()
		time.Sleep(time.Second)
		defer f.acquireView(t, regionView("asia", 0))()
		synctest.Wait()
		f.pub.mu.Lock()
		dropped := slices.Clone(f.pub.dropped)
		f.pub.mu.Unlock()
		if want := []panel.ViewKey{regionView("eu", 0).Key}; !slices.Equal(dropped, want) {
			t.Fatalf("dropped views: got %v, want %v (the one without viewers)", dropped, want)
		}
		if got := regions(f.db.callsOf(31)); !slices.Equal(got, []string{"asia", "eu", "us"}) {
			t.Errorf("queries of panel 31: got regions %v", got)
		}
		// The dropped view comes back as a new one, queried afresh.
		if _, _, err := f.e.Acquire(regionView("eu", 0)); !errors.Is(err, ErrTooManyViews) {
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
		defer f.acquireView(t, regionView("eu", time.Minute))()
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
