package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"text/tabwriter"
	"time"
)

// drainBucket is the width of the reconnect histogram's buckets.
const drainBucket = 250 * time.Millisecond

// drainResult is -drain: n clients on -servers servers (through nginx, or
// client i on server i mod servers), the first server sent SIGTERM after
// the warm-up while commits go on at the rate.
type drainResult struct {
	N       int  `json:"n"`
	Servers int  `json:"servers"`
	Nginx   bool `json:"nginx"`
	// Drained is the server sent SIGTERM; ExitSeconds how long it took to
	// exit after it.
	Drained     string  `json:"drained"`
	ExitSeconds float64 `json:"exit_seconds"`
	// StreamsBefore and StreamsAfter are each server's
	// dashboard_sse_clients just before the SIGTERM and at the end (the
	// drained one has none then).
	StreamsBefore map[string]int `json:"streams_before"`
	StreamsAfter  map[string]int `json:"streams_after"`
	// Goodbyes counts streams that ended with the reconnect event,
	// OtherEnds those that ended without it (refused, cut, reached their
	// maximum age).
	Goodbyes  int `json:"goodbyes"`
	OtherEnds int `json:"other_ends"`
	// Reconnects are the new streams after the SIGTERM, ReconnectFailed
	// the attempts that were refused (each waited the retry again).
	Reconnects      int `json:"reconnects"`
	ReconnectFailed int `json:"reconnect_failed"`
	// Histogram counts reconnects (the new stream's response head
	// arriving) per BucketMs after the SIGTERM.
	BucketMs  int   `json:"bucket_ms"`
	Histogram []int `json:"histogram"`
	// ReconnectSeconds is the first, median and last reconnect after the
	// SIGTERM.
	ReconnectSeconds [3]float64 `json:"reconnect_first_median_last_seconds"`
	// Landed counts the reconnects by the server that took them.
	Landed map[string]int `json:"landed"`
	// Commits after the SIGTERM; NotNewest the clients that did not show
	// the last of them by the end of the grace time; Backwards the frames
	// older than one their client had shown.
	Commits   int `json:"commits"`
	NotNewest int `json:"not_newest"`
	Backwards int `json:"backwards"`
	Dups      int `json:"duplicates"`
	// P50, P99 and Max are the commit-to-client latency of the commits
	// after the SIGTERM, reconnects included; Missing the (commit, client)
	// pairs never delivered.
	P50           float64 `json:"p50_ms"`
	P99           float64 `json:"p99_ms"`
	Max           float64 `json:"max_ms"`
	Missing       int     `json:"missing"`
	ConnectErrors int     `json:"connect_errors"`
}

// drainRun connects n clients, commits through the warm-up, sends the
// first server SIGTERM and commits on for -duration, then waits -grace for
// every client to show the last commit.
func (b *bench) drainRun(ctx context.Context, n int) (*drainResult, error) {
	r := &drainResult{N: n, Servers: b.o.servers, Nginx: b.o.nginx, BucketMs: int(drainBucket / time.Millisecond),
		StreamsBefore: map[string]int{}, StreamsAfter: map[string]int{}, Landed: map[string]int{}}
	t, err := b.target(ctx, n)
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
	warm := max(1, int(b.o.warmup.Seconds()*b.o.rate))
	meas := max(1, int(math.Round(b.o.duration.Seconds()*b.o.rate)))
	k := warm + meas
	l := &ledger{clock: clock{time.Now()}, base: seq, t0: make([]atomic.Int64, k), commits: k}
	cs, err := b.connect(ctx, l, t, n, 0, 1)
	if err != nil {
		return nil, err
	}
	defer cs.stop()
	r.ConnectErrors = int(cs.connErrs.Load())

	drained := t.procs[0]
	r.Drained = strings.TrimPrefix(drained.url, "http://")
	var term int64 // clock time of the SIGTERM
	exited := make(chan time.Duration, 1)
	interval := time.Duration(float64(time.Second) / b.o.rate)
	start := time.Now()
	for i := range k {
		if err := sleep(ctx, time.Until(start.Add(time.Duration(i)*interval))); err != nil {
			return nil, err
		}
		if i == warm {
			for _, s := range t.servers {
				m, err := scrape(ctx, s)
				if err != nil {
					return nil, err
				}
				r.StreamsBefore[strings.TrimPrefix(s, "http://")] = int(m.clients)
			}
			term = l.clock.now()
			if err := drained.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				return nil, fmt.Errorf("sending SIGTERM: %w", err)
			}
			go func() {
				<-drained.done
				exited <- time.Duration(l.clock.now() - term)
			}()
		}
		l.t0[i].Store(l.clock.now())
		if _, err := b.conn.Exec(ctx, `UPDATE bench.seq SET n = $1 WHERE id = 1`, seq+1+int64(i)); err != nil {
			return nil, fmt.Errorf("committing: %w", err)
		}
	}
	for deadline := time.Now().Add(b.o.grace); time.Now().Before(deadline) && int(l.done.Load()) < n-r.ConnectErrors; {
		if err := sleep(ctx, 20*time.Millisecond); err != nil {
			return nil, err
		}
	}
	select {
	case d := <-exited:
		r.ExitSeconds = d.Seconds()
	case <-time.After(b.o.grace):
		return nil, fmt.Errorf("the drained server has not exited %s after the run", b.o.grace)
	}
	for _, s := range t.servers[1:] {
		m, err := scrape(ctx, s)
		if err != nil {
			return nil, err
		}
		r.StreamsAfter[strings.TrimPrefix(s, "http://")] = int(m.clients)
	}
	r.StreamsAfter[r.Drained] = 0
	cs.stop()

	var all, moments []int32
	for _, v := range cs.viewers {
		if !v.connected {
			continue
		}
		r.Goodbyes += v.goodbyes
		r.OtherEnds += len(v.ends) - v.goodbyes
		r.ReconnectFailed += v.failed
		r.Backwards += v.back
		r.Dups += v.dups
		if v.last != k-1 {
			r.NotNewest++
		}
		for j, at := range v.reconnects {
			if at < term {
				continue
			}
			r.Reconnects++
			d := time.Duration(at - term)
			moments = append(moments, int32(d/time.Microsecond))
			bucket := int(d / drainBucket)
			for len(r.Histogram) <= bucket {
				r.Histogram = append(r.Histogram, 0)
			}
			r.Histogram[bucket]++
			// landed[0] is the first stream; an upstream list ("a, b")
			// means nginx tried a before b took it.
			addrs := strings.Split(v.landed[j+1], ",")
			r.Landed[strings.TrimSpace(addrs[len(addrs)-1])]++
		}
		for j := warm; j < k; j++ {
			if d := v.lat[j]; d >= 0 {
				all = append(all, d)
			} else {
				r.Missing++
			}
		}
	}
	r.Commits = meas
	slices.Sort(all)
	r.P50, r.P99, r.Max = pct(all, 0.5), pct(all, 0.99), pct(all, 1)
	slices.Sort(moments)
	if len(moments) > 0 {
		r.ReconnectSeconds = [3]float64{pct(moments, 0) / 1000, pct(moments, 0.5) / 1000, pct(moments, 1) / 1000}
	}
	return r, nil
}

// printDrain writes -drain's report.
func printDrain(w io.Writer, d *drainResult) {
	via := "failing over between the servers' addresses"
	if d.Nginx {
		via = "through nginx"
	}
	fmt.Fprintf(w, "drain: %d clients on %d servers %s; SIGTERM to %s, which exited after %.2fs\n", d.N, d.Servers, via, d.Drained, d.ExitSeconds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "server\tstreams before\tstreams after\treconnects landed\t")
	for _, s := range slices.Sorted(maps.Keys(d.StreamsBefore)) {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t\n", s, d.StreamsBefore[s], d.StreamsAfter[s], d.Landed[s])
	}
	tw.Flush()
	fmt.Fprintf(w, "goodbyes %d, other stream ends %d, reconnects %d (first/median/last %.2f/%.2f/%.2f s after SIGTERM), refused attempts %d\n",
		d.Goodbyes, d.OtherEnds, d.Reconnects, d.ReconnectSeconds[0], d.ReconnectSeconds[1], d.ReconnectSeconds[2], d.ReconnectFailed)
	fmt.Fprintf(w, "reconnects per %d ms after SIGTERM:\n", d.BucketMs)
	peak := 0
	for _, c := range d.Histogram {
		peak = max(peak, c)
	}
	for i, c := range d.Histogram {
		bar := ""
		if peak > 0 {
			bar = strings.Repeat("#", (c*50+peak-1)/peak)
		}
		fmt.Fprintf(w, "  %5.2fs %6d %s\n", float64(i*d.BucketMs)/1000, c, bar)
	}
	fmt.Fprintf(w, "after the SIGTERM: %d commits; clients without the last one: %d; frames older than shown: %d; duplicates %d; missing pairs %d; connect errors %d\n",
		d.Commits, d.NotNewest, d.Backwards, d.Dups, d.Missing, d.ConnectErrors)
	fmt.Fprintf(w, "latency of those commits, reconnects included: p50 %.1f ms, p99 %.1f ms, max %.1f ms\n", d.P50, d.P99, d.Max)
}
