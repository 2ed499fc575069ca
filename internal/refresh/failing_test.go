package refresh

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
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
