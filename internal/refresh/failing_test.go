package refresh

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
)

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) count(s string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Count(b.buf.String(), s)
}

func gaugeValue(t *testing.T, g prometheus.Gauge) float64 {
	t.Helper()
	var m dto.Metric
	if err := g.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetGauge().GetValue()
}

// TestScheduleBrokenQueryKeepsLastGoodData: a query that starts failing
// keeps its panel's last good data, marked with when the failure began;
// the log gets one line per new message, not one per run; the gauge
// counts the failing panel until its query works again.
func TestScheduleBrokenQueryKeepsLastGoodData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		logs := &lockedBuffer{}
		f := startEngine(t, Config{MaxRefreshHz: 1000, Logger: slog.New(slog.NewTextHandler(logs, nil))})
		f.db.set(11, 7)
		_, release := f.acquire(1)
		defer release()
		synctest.Wait()

		f.db.mu.Lock()
		f.db.broken[11] = `relation "gone" does not exist (SQLSTATE 42P01)`
		f.db.mu.Unlock()
		time.Sleep(time.Second)
		failedAt := time.Now().UTC()
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		pubs := f.pub.of(11)
		last := pubs[len(pubs)-1]
		if last.value != 7 || !strings.Contains(last.err, "gone") {
			t.Fatalf("after the failure: got value %v err %q, want the last good 7 with the error", last.value, last.err)
		}
		if got := f.pub.result(11).FailingSince; !got.Equal(failedAt) {
			t.Errorf("FailingSince: got %v, want the failure's time %v", got, failedAt)
		}
		if got := gaugeValue(t, f.e.cfg.Metrics.failing); got != 1 {
			t.Errorf("panels_failing: got %v, want 1", got)
		}
		// The same failure again: nothing new to show, nothing new to log.
		for range 3 {
			time.Sleep(time.Second)
			f.e.TableChanged("public.a", time.Now())
			synctest.Wait()
		}
		if got := len(f.pub.of(11)); got != len(pubs) {
			t.Errorf("repeated failure published %d more results, want none", got-len(pubs))
		}
		if got := logs.count("panel query failing"); got != 1 {
			t.Errorf("log lines for one failure run 4 times: got %d, want 1", got)
		}
		// A new message is a new line; the mark keeps its first time.
		f.db.mu.Lock()
		f.db.broken[11] = `division by zero (SQLSTATE 22012)`
		f.db.mu.Unlock()
		time.Sleep(time.Second)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		if got := logs.count("panel query failing"); got != 2 {
			t.Errorf("log lines after a new message: got %d, want 2", got)
		}
		if got := f.pub.result(11).FailingSince; !got.Equal(failedAt) {
			t.Errorf("FailingSince after a new message: got %v, want still %v", got, failedAt)
		}
		// Fixed: fresh data, no mark, gauge back to zero.
		f.db.mu.Lock()
		delete(f.db.broken, 11)
		f.db.mu.Unlock()
		f.db.set(11, 8)
		time.Sleep(time.Second)
		f.e.TableChanged("public.a", time.Now())
		synctest.Wait()
		if r := f.pub.result(11); r.Err != "" || !r.FailingSince.IsZero() || r.Rows[0][0].Num != 8 {
			t.Errorf("after the fix: got %+v, want 8 without a mark", r)
		}
		if got := gaugeValue(t, f.e.cfg.Metrics.failing); got != 0 {
			t.Errorf("panels_failing after the fix: got %v, want 0", got)
		}
		if got := logs.count("panel query works again"); got != 1 {
			t.Errorf("recovery log lines: got %d, want 1", got)
		}
	})
}

// TestQueryBindErrorIsTheQuerysFault: a multi-valued variable is bound as
// []string; a panel that casts it to int[] (or compares it with an int
// column) makes pgx fail to encode the argument, client side. That error is
// no *pgconn.PgError, so infrastructure() calls it the database's fault: the
// query is retried every RetryDelay forever instead of showing an error.
func TestQueryBindErrorIsTheQuerysFault(t *testing.T) {
	cs := pgtest.NewDB(t)
	pool, err := pgxpool.New(context.Background(), cs)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	e := New(Config{Pool: pool})
	for _, tc := range []struct {
		sql string
		arg any
	}{
		{"SELECT $1::int AS n", []string{"1"}},          // multi-valued variable used as a scalar
		{"SELECT 1 AS n WHERE $1 = 'x'", []string{"1"}}, // same, text
	} {
		sql, arg := tc.sql, tc.arg
		p := &panel.Def{ID: 1, Slug: "p", SQL: sql, Query: sql, Params: []string{"ids"}}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		r, err := e.query(ctx, p, []any{arg}, "")
		cancel()
		if err != nil {
			t.Errorf("%s: returned error %v, want Result.Err", sql, err)
		} else if !strings.Contains(r.Err, "= ANY(:name)") {
			t.Errorf("%s: Result.Err %q, want it to say how a multi-valued variable is used", sql, r.Err)
		}
	}
}

// TestScheduleFailingGaugeCountsWatchedViews: a view whose choice breaks a panel
// (a viewer's text that fails a cast) counts in panels_failing for as long
// as the engine remembers the view, long after its last viewer left: any
// visitor of a public dashboard can raise the operator's alert for good.
func TestScheduleFailingGaugeCountsWatchedViews(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := startEngine(t, Config{MaxRefreshHz: 1000})
		f.db.mu.Lock()
		f.db.broken[31] = `invalid input syntax for type integer: "x" (SQLSTATE 22P02)`
		f.db.mu.Unlock()
		release := f.acquireView(t, regionView("x", false))
		synctest.Wait()
		release()
		time.Sleep(time.Hour)
		synctest.Wait()
		if got := gaugeValue(t, f.e.cfg.Metrics.failing); got != 0 {
			t.Errorf("panels_failing an hour after the only viewer of the broken view left: got %v, want 0", got)
		}
	})
}

// publicLoader is fakeLoader with dashboard 1's visibility switchable.
type publicLoader struct {
	fakeLoader
	public atomic.Bool
}

func (l *publicLoader) Load(ctx context.Context) (*catalog.Snapshot, error) {
	s, err := l.fakeLoader.Load(ctx)
	if err != nil {
		return nil, err
	}
	for _, d := range s.Dashboards {
		d.Public = l.public.Load()
	}
	return s, nil
}

// TestScheduleVisibilityFlipRepublishes: a private dashboard's failing
// panel shows the database's message. When the dashboard is made public,
// its panels are published again, so public viewers never see it.
func TestScheduleVisibilityFlipRepublishes(t *testing.T) {
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
		if got := pub.result(11); got == nil || !strings.Contains(got.Err, "salaries") {
			t.Fatalf("private: got %+v, want the raw message", got)
		}
		n := len(pub.of(11))

		// The owner makes the dashboard public; the catalog reloads.
		loader.public.Store(true)
		time.Sleep(time.Second)
		e.TableChanged(catalog.DashboardsTable, time.Now())
		synctest.Wait()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if e.Snapshot().DashboardByID(1).Public != true {
			t.Fatal("catalog not reloaded")
		}
		if got := pub.result(11); len(pub.of(11)) == n || strings.Contains(got.Err, "salaries") {
			t.Errorf("after the dashboard became public: last published Err %q (%d publishes, was %d), want %q republished",
				got.Err, len(pub.of(11)), n, failedQuery)
		}
	})
}
