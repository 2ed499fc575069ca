package main

import (
	"context"
	"fmt"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// latencyRun is one run at n SSE clients: connect, measure idle memory,
// commit at the rate, and time every (commit, client) pair. perConn is
// -proto h2c's streams per connection.
func (b *bench) latencyRun(ctx context.Context, n, perConn int) (result, error) {
	r := result{N: n, M: b.o.m, Views: b.o.views, Rate: b.o.rate, Proto: b.o.proto, Servers: max(b.o.servers, 1), Nginx: b.o.nginx}
	if b.o.proto == protoH2C {
		r.StreamsPerConn = perConn
	}
	t, err := b.target(ctx, n)
	if err != nil {
		return r, err
	}
	defer t.stop()
	if err := t.waitBoard(ctx); err != nil {
		return r, err
	}
	var seq int64
	if err := b.conn.QueryRow(ctx, `SELECT n FROM bench.seq WHERE id = 1`).Scan(&seq); err != nil {
		return r, fmt.Errorf("reading sequence: %w", err)
	}
	warm := int(b.o.warmup.Seconds() * b.o.rate)
	meas := max(1, int(math.Round(b.o.duration.Seconds()*b.o.rate)))
	k := warm + meas
	l := &ledger{clock: clock{time.Now()}, base: seq, t0: make([]atomic.Int64, k), commits: k}

	m0, err := t.scrape(ctx)
	if err != nil {
		return r, err
	}
	nginx0 := t.nginx.rss()
	connStart := time.Now()
	cs, err := b.connect(ctx, l, t, n, 0, perConn)
	if err != nil {
		return r, err
	}
	defer cs.stop()
	var pc *clients // the long-poll clients, connected after the idle measurement
	r.ConnectSeconds = time.Since(connStart).Seconds()
	r.ConnectErrors = int(cs.connErrs.Load())
	if r.ConnectErrors > 0 {
		for _, v := range cs.viewers {
			if v.err != nil {
				fmt.Fprintf(b.stderr, "dashbench: %d clients could not connect, first error: %v\n", r.ConnectErrors, v.err)
				break
			}
		}
	}
	// Idle memory: every stream open, its first frame sent, nothing to do.
	if err := sleep(ctx, 3*time.Second); err != nil {
		return r, err
	}
	m1, err := t.scrape(ctx)
	if err != nil {
		return r, err
	}
	r.ServerRSSBaseMB = m0.rss / (1 << 20)
	r.ServerRSSIdleMB = m1.rss / (1 << 20)
	r.Conns = cs.conns
	if up := n - r.ConnectErrors; up > 0 {
		r.RSSPerConnKB = (m1.rss - m0.rss) / float64(up) / 1024
		// Connections that carried at least one open stream.
		if r.StreamsPerConn > 1 {
			r.RSSPerTCPConnKB = (m1.rss - m0.rss) / math.Ceil(float64(up)/float64(r.StreamsPerConn)) / 1024
		} else {
			r.RSSPerTCPConnKB = r.RSSPerConnKB
		}
	}
	if t.nginx != nil {
		nginx1 := t.nginx.rss()
		r.NginxRSSIdleMB = nginx1 / (1 << 20)
		if up := n - r.ConnectErrors; up > 0 {
			r.NginxRSSPerConnKB = (nginx1 - nginx0) / float64(up) / 1024
		}
	}
	if b.o.m > 0 {
		if pc, err = b.connect(ctx, l, t, 0, b.o.m, 1); err != nil {
			return r, err
		}
		defer pc.stop()
		cs.viewers = append(cs.viewers, pc.viewers...)
	}

	interval := time.Duration(float64(time.Second) / b.o.rate)
	var mStart, mEnd metrics
	var cpuStart, cpuEnd, boxStart, pgStart, nginxStart float64
	var callsStart, callsEnd float64 // the panel query's executions, counted by PostgreSQL
	var callsOK bool
	var tStart, tEnd time.Time
	commitLat := make([]int32, 0, meas)
	start := time.Now()
	for i := range k {
		if err := sleep(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			return r, err
		}
		if i == warm {
			// After the sleep, so that the queries of the last warm-up
			// commit have run: with several views they take a few ms,
			// and counted here they would be charged to the window.
			if mStart, err = t.scrape(ctx); err != nil {
				return r, err
			}
			if callsStart, callsOK, err = b.stats.panelCalls(ctx); err != nil {
				return r, err
			}
			cpuStart, tStart = cpuSeconds(), time.Now()
			boxStart, pgStart = boxCPUSeconds(), b.pgCPUSeconds()
			nginxStart = t.nginx.cpuSeconds()
		}
		t0 := l.clock.now()
		l.t0[i].Store(t0)
		if _, err := b.conn.Exec(ctx, `UPDATE bench.seq SET n = $1 WHERE id = 1`, seq+1+int64(i)); err != nil {
			return r, fmt.Errorf("committing: %w", err)
		}
		if i >= warm {
			commitLat = append(commitLat, int32((l.clock.now()-t0)/1000))
		}
	}
	cpuEnd, tEnd = cpuSeconds(), time.Now()
	boxEnd, pgEnd, nginxEnd := boxCPUSeconds(), b.pgCPUSeconds(), t.nginx.cpuSeconds()
	mCPU, err := t.scrape(ctx)
	if err != nil {
		return r, err
	}
	window := tEnd.Sub(tStart).Seconds()

	// Let the last frames arrive.
	live := 0
	for _, v := range cs.viewers {
		if v.connected {
			live++
		}
	}
	for deadline := time.Now().Add(b.o.grace); time.Now().Before(deadline) && int(l.done.Load()) < live; {
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return r, err
		}
	}
	if mEnd, err = t.scrape(ctx); err != nil {
		return r, err
	}
	if callsOK {
		if callsEnd, callsOK, err = b.stats.panelCalls(ctx); err != nil {
			return r, err
		}
	}
	cs.stop()
	if pc != nil {
		pc.stop()
	}

	// Statistics over the measured commits [warm, k).
	winLen := max(1, int(5*b.o.rate))
	windows := make([][]int32, (meas+winLen-1)/winLen)
	var all, poll []int32
	first := make([]int32, k-warm)
	for j := range first {
		first[j] = math.MaxInt32
	}
	for _, v := range cs.viewers {
		if !v.connected {
			continue
		}
		if v.closed {
			r.Disconnected++
		}
		r.Frames += v.frames
		r.Dups += v.dups
		r.Backwards += v.back
		for j := warm; j < k; j++ {
			d := v.lat[j]
			if d < 0 {
				r.Missing++
				continue
			}
			w := (j - warm) / winLen
			windows[w] = append(windows[w], d)
			first[j-warm] = min(first[j-warm], d)
			if v.poll {
				poll = append(poll, d)
			}
		}
	}
	for _, w := range windows {
		slices.Sort(w)
		all = append(all, w...)
		r.WindowP99 = append(r.WindowP99, pct(w, 0.99))
	}
	slices.Sort(all)
	slices.Sort(poll)
	slices.Sort(commitLat)
	// A commit no client saw has no first receipt.
	first = slices.DeleteFunc(first, func(d int32) bool { return d == math.MaxInt32 })
	slices.Sort(first)
	r.FirstP50 = pct(first, 0.5)
	r.Commits = meas
	r.Deliveries = len(all)
	r.DeliveriesPerSec = float64(len(all)) / window
	r.P50, r.P90, r.P99, r.Max = pct(all, 0.50), pct(all, 0.90), pct(all, 0.99), pct(all, 1)
	if len(poll) > 0 {
		r.PollP99 = pct(poll, 0.99)
	}
	r.CommitP50, r.CommitP99 = pct(commitLat, 0.5), pct(commitLat, 0.99)
	r.ServerCPUPct = (mCPU.cpu - mStart.cpu) / window * 100
	r.ClientCPUPct = (cpuEnd - cpuStart) / window * 100
	r.BoxCPUPct = (boxEnd - boxStart) / window * 100
	r.PgCPUPct = (pgEnd - pgStart) / window * 100
	r.NginxCPUPct = (nginxEnd - nginxStart) / window * 100
	r.QueriesPerCommit = (mEnd.queries - mStart.queries) / float64(meas)
	if callsOK {
		q := (callsEnd - callsStart) / float64(meas)
		r.DBQueriesPerCommit = &q
	}
	r.SlowDropped = int(mEnd.slow - m0.slow)
	return r, nil
}

// stormRun runs the write storm against n viewers and counts the frames
// each receives per second.
func (b *bench) stormRun(ctx context.Context, n int) (*stormResult, error) {
	r := &stormResult{N: n, Writers: b.o.stormWriters, Seconds: b.o.duration.Seconds(), MaxRefreshHz: b.o.maxHz}
	t, err := b.target(ctx, n+b.o.m)
	if err != nil {
		return nil, err
	}
	defer t.stop()
	if err := t.waitBoard(ctx); err != nil {
		return nil, err
	}
	var seq int64
	if err := b.conn.QueryRow(ctx, `SELECT n FROM bench.seq WHERE id = 1`).Scan(&seq); err != nil {
		return nil, fmt.Errorf("reading sequence: %w", err)
	}
	secs := int(b.o.duration / time.Second)
	l := &ledger{clock: clock{time.Now()}, base: seq, storm: true, seconds: secs}
	cs, err := b.connect(ctx, l, t, n, b.o.m, b.o.streamsPerConn[0])
	if err != nil {
		return nil, err
	}
	defer cs.stop()
	r.ConnectErrors = int(cs.connErrs.Load())
	writers := make([]*pgx.Conn, b.o.stormWriters)
	for i := range writers {
		if writers[i], err = pgx.Connect(ctx, b.db.connString); err != nil {
			return nil, fmt.Errorf("connecting writer: %w", err)
		}
		defer writers[i].Close(context.WithoutCancel(ctx))
	}
	if err := sleep(ctx, 2*time.Second); err != nil {
		return nil, err
	}
	mStart, err := t.scrape(ctx)
	if err != nil {
		return nil, err
	}
	cpuStart, tStart, boxStart, pgStart := cpuSeconds(), time.Now(), boxCPUSeconds(), b.pgCPUSeconds()
	l.stormT0.Store(l.clock.now())
	wctx, cancel := context.WithDeadline(ctx, tStart.Add(b.o.duration))
	defer cancel()
	var writes atomic.Int64
	var wg sync.WaitGroup
	for _, c := range writers {
		wg.Go(func() {
			for wctx.Err() == nil {
				if _, err := c.Exec(wctx, `UPDATE bench.seq SET n = n + 1 WHERE id = 1`); err == nil {
					writes.Add(1)
				}
			}
		})
	}
	wg.Wait()
	window := time.Since(tStart).Seconds()
	cpuEnd, boxEnd, pgEnd := cpuSeconds(), boxCPUSeconds(), b.pgCPUSeconds()
	mEnd, err := t.scrape(ctx)
	if err != nil {
		return nil, err
	}
	if err := sleep(ctx, time.Second); err != nil {
		return nil, err
	}
	cs.stop()

	r.WritesPerSec = float64(writes.Load()) / window
	r.QueriesPerSec = (mEnd.queries - mStart.queries) / window
	r.ServerCPUPct = (mEnd.cpu - mStart.cpu) / window * 100
	r.ClientCPUPct = (cpuEnd - cpuStart) / window * 100
	r.BoxCPUPct = (boxEnd - boxStart) / window * 100
	r.PgCPUPct = (pgEnd - pgStart) / window * 100
	var sum float64
	viewers := 0
	var perViewer []int32
	for _, v := range cs.viewers {
		if !v.connected {
			continue
		}
		viewers++
		total, peak := 0, 0
		for s := 0; s < secs; s++ {
			total += int(v.perSec[s])
			peak = max(peak, int(v.perSec[s]))
		}
		sum += float64(total) / float64(max(secs, 1))
		r.MaxFramesPerSec = max(r.MaxFramesPerSec, peak)
		perViewer = append(perViewer, int32(peak))
		r.Dups += v.dups
	}
	if viewers > 0 {
		r.FramesPerSecAvg = sum / float64(viewers)
	}
	slices.Sort(perViewer)
	if len(perViewer) > 0 {
		r.PeakFramesPerSecP50 = float64(perViewer[len(perViewer)/2])
	}
	return r, nil
}

// pct is the q quantile of sorted, in milliseconds (sorted holds
// microseconds); 0 when empty.
func pct(sorted []int32, q float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(q*float64(len(sorted)))) - 1
	return float64(sorted[max(0, min(i, len(sorted)-1))]) / 1000
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// boxCPUSeconds is the CPU time the whole machine has spent busy (all but
// idle and iowait), from /proc/stat; 0 where that is unavailable. The
// difference to server plus client is PostgreSQL and whatever else runs.
func boxCPUSeconds() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 6 || f[0] != "cpu" {
		return 0
	}
	var busy float64
	for i, s := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		v, _ := strconv.ParseFloat(s, 64)
		busy += v
	}
	return busy / 100 // USER_HZ
}

// pgCPUSeconds is the CPU time of the private PostgreSQL: its postmaster,
// the children it has reaped and those still running. 0 for a database the
// bench did not start.
func (b *bench) pgCPUSeconds() float64 {
	if b.db.srv == nil {
		return 0
	}
	pidFile, err := os.ReadFile(b.db.srv.Dir() + "/postmaster.pid")
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(pidFile), "\n")
	pm := strings.TrimSpace(first)
	ticks := func(pid string, withChildren bool) (float64, string) {
		s, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			return 0, ""
		}
		// Fields after the command, which is in parentheses.
		_, rest, _ := strings.Cut(string(s), ") ")
		f := strings.Fields(rest)
		if len(f) < 15 {
			return 0, ""
		}
		var t float64
		last := 12 // utime, stime: fields 14 and 15 (11 and 12 here)
		if withChildren {
			last = 14 // cutime, cstime
		}
		for i := 11; i <= last; i++ {
			v, _ := strconv.ParseFloat(f[i], 64)
			t += v
		}
		return t, f[1] // f[1] is the parent pid
	}
	total, _ := ticks(pm, true)
	procs, _ := os.ReadDir("/proc")
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		if t, ppid := ticks(p.Name(), false); ppid == pm {
			total += t
		}
	}
	return total / 100 // USER_HZ
}
