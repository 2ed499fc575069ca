package demo

import (
	"math"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// TestSeedAtLiveRate checks that the seeded history meets live traffic
// without a jump: over the last hour each table holds what Traffic at the
// configured rate writes in an hour, and no stat panel's delta (its last
// row against the one before) is large right after Setup.
func TestSeedAtLiveRate(t *testing.T) {
	t.Parallel()
	const rate = 5 // DASHBOARD_DEMO_RATE's default
	pool := newPool(t)
	if err := Setup(t.Context(), pool, rate); err != nil {
		t.Fatal(err)
	}

	// What Traffic writes per minute, from its constants: the steady rate
	// plus a burst of burstFactor times it for burstLength every 20-40 s.
	bursty := rate * (1 + (burstFactor-1)*burstLength.Seconds()/((burstEveryMin+burstEveryMax).Seconds()/2))
	deployEvery := (deployEveryMin + deployEveryMax).Seconds() / 2
	for _, c := range []struct {
		what string
		sql  string
		want float64 // per minute
		tol  float64
	}{
		{"orders", "SELECT count(*) FROM demo.orders WHERE created_at > now() - interval '1 hour'", bursty * orderShare * 60, 0.25},
		// Ticket writes open and close in about equal numbers.
		{"tickets opened", "SELECT count(*) FROM demo.tickets WHERE opened_at > now() - interval '1 hour'", bursty * ticketShare / 2 * 60, 0.25},
		{"deploys", "SELECT count(*) FROM demo.deploys WHERE deployed_at > now() - interval '1 hour'", 60 / deployEvery, 0.25},
		{"sensor readings", "SELECT count(*) FROM demo.sensor_readings WHERE reading_at > now() - interval '1 hour'", float64(len(sensors)) * 60 / sensorEvery.Seconds(), 0.05},
	} {
		got := float64(count(t, pool, c.sql)) / 60
		if math.Abs(got-c.want) > c.tol*c.want {
			t.Errorf("seeded %s per minute over the last hour: got %.1f, want %.1f ± %.0f%%, the rate live traffic writes", c.what, got, c.want, c.tol*100)
		}
	}
	if got := count(t, pool, "SELECT count(*) FROM demo.tickets WHERE closed_at IS NULL"); got < targetOpen/2 || got > targetOpen*2 {
		t.Errorf("got %d open tickets, want about %d, where Traffic keeps them", got, targetOpen)
	}

	var sinceMidnight time.Duration
	if err := pool.QueryRow(t.Context(), "SELECT now() - date_trunc('day', now())").Scan(&sinceMidnight); err != nil {
		t.Fatal(err)
	}
	deltas := statDeltas(t, pool)
	if len(deltas) == 0 {
		t.Fatal("got no stat panel with a delta")
	}
	for name, pct := range deltas {
		// A running total of 30-minute buckets grows by up to half in its
		// first 90 minutes of the day, cliff or not.
		if name == "sales/revenue-today" && sinceMidnight < 90*time.Minute {
			continue
		}
		if math.Abs(pct) > 50 {
			t.Errorf("%s right after Setup: got a delta of %+.1f%%, want within ±50%%", name, pct)
		}
	}
	t.Logf("deltas right after Setup: %v", deltas)
}

func TestSeedPlan(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		rate       float64
		wantWindow time.Duration
		jump       bool // the seeded rate is below the live one
	}{
		{0, seedWindow, false},
		{5, seedWindow, false},
		{20, 8*time.Hour + 40*time.Minute, false},
		{60, seedMinWindow + 53*time.Minute, false},
		{1000, seedMinWindow, true},
	} {
		perSecond, window := seedPlan(c.rate)
		if window != c.wantWindow {
			t.Errorf("rate %g: got window %v, want %v", c.rate, window, c.wantWindow)
		}
		if writes := perSecond * window.Seconds(); writes > seedMaxWrites*1.01 {
			t.Errorf("rate %g: got %.0f writes to seed, want at most %d", c.rate, writes, seedMaxWrites)
		}
		live := meanRate(max(c.rate, seedStillRate))
		if jump := perSecond < live*0.99; jump != c.jump {
			t.Errorf("rate %g: seeded %g writes per second, live %g; want a lower seeded rate %v", c.rate, perSecond, live, c.jump)
		}
	}
}

// statDeltas runs every stat panel with a delta as the server would (its
// variables and time range at their defaults) and returns the change of its
// last row from the one before, in percent, by "dashboard/panel". Panels
// with fewer than two rows or a zero previous row are left out.
func statDeltas(t *testing.T, pool *pgxpool.Pool) map[string]float64 {
	t.Helper()
	dashboards, err := catalog.ReadDashboards(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	deltas := map[string]float64{}
	for _, d := range dashboards {
		sel, declared := defaultChoice(t, pool, d)
		for _, p := range d.Panels {
			if p.Kind != panel.Stat || !p.Options.Delta {
				continue
			}
			query, params, err := variables.Rewrite(p.SQL, declared)
			if err != nil {
				t.Fatal(err)
			}
			args, err := variables.Args(d, sel, params, time.Now())
			if err != nil {
				t.Fatal(err)
			}
			rows, err := pool.Query(t.Context(), query, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
			if err != nil {
				t.Fatalf("%s/%s: %v", d.Slug, p.Slug, err)
			}
			values, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (float64, error) {
				var n pgtype.Numeric
				if err := row.Scan(&n); err != nil {
					return 0, err
				}
				f, err := n.Float64Value()
				return f.Float64, err
			})
			if err != nil {
				t.Fatalf("%s/%s: %v", d.Slug, p.Slug, err)
			}
			if len(values) < 2 || values[len(values)-2] == 0 {
				continue
			}
			cur, prev := values[len(values)-1], values[len(values)-2]
			deltas[d.Slug+"/"+p.Slug] = math.Round((cur-prev)/math.Abs(prev)*1000) / 10
		}
	}
	return deltas
}
