package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// result is one latency run (or the median of several). Latencies are in
// milliseconds, from just before the commit is sent to the client's
// receipt of a frame showing that commit or a later one.
type result struct {
	N       int     `json:"n"`
	M       int     `json:"m"`
	Views   int     `json:"views"` // -views: distinct views the clients spread over; 1 is the dashboard without variables
	Rate    float64 `json:"rate"`
	Commits int     `json:"commits"`
	P50     float64 `json:"p50_ms"`
	P90     float64 `json:"p90_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	PollP99 float64 `json:"poll_p99_ms,omitempty"`
	// FirstP50 is, per commit, the earliest any client saw it (median over
	// commits): the chain from commit to the first write, before the
	// fan-out's spread.
	FirstP50         float64   `json:"first_p50_ms"`
	WindowP99        []float64 `json:"window_p99_ms"` // per 5 s of commits, to see a backlog grow
	Deliveries       int       `json:"deliveries"`
	DeliveriesPerSec float64   `json:"deliveries_per_sec"`
	Frames           int       `json:"frames"`
	Missing          int       `json:"missing"`
	Dups             int       `json:"duplicates"`
	ConnectErrors    int       `json:"connect_errors"`
	Disconnected     int       `json:"disconnected"`
	SlowDropped      int       `json:"slow_dropped"`
	ConnectSeconds   float64   `json:"connect_seconds"`
	ServerRSSBaseMB  float64   `json:"server_rss_base_mb"`
	ServerRSSIdleMB  float64   `json:"server_rss_idle_mb"`
	RSSPerConnKB     float64   `json:"server_rss_per_idle_conn_kb"`
	ServerCPUPct     float64   `json:"server_cpu_pct"` // of one core
	ClientCPUPct     float64   `json:"client_cpu_pct"`
	PgCPUPct         float64   `json:"pg_cpu_pct"`         // the private PostgreSQL
	BoxCPUPct        float64   `json:"box_cpu_pct"`        // the whole machine, of one core
	QueriesPerCommit float64   `json:"queries_per_commit"` // the server's count
	// DBQueriesPerCommit is the panel query's executions per measured
	// commit as pg_stat_statements counts them; nil when the database
	// does not have it.
	DBQueriesPerCommit *float64 `json:"db_queries_per_commit"`
	CommitP50          float64  `json:"commit_p50_ms"`
	CommitP99          float64  `json:"commit_p99_ms"`
	Runs               int      `json:"runs"`

	// Proto is the clients' protocol (h1, h2c); StreamsPerConn the h2c
	// streams sharing one connection; Conns the TCP connections the
	// clients opened. RSSPerTCPConnKB is the same RSS growth as
	// RSSPerConnKB, per connection instead of per stream.
	Proto           string  `json:"proto,omitempty"`
	StreamsPerConn  int     `json:"streams_per_conn,omitempty"`
	Conns           int     `json:"conns,omitempty"`
	RSSPerTCPConnKB float64 `json:"server_rss_per_idle_tcp_conn_kb,omitempty"`
	// Servers started on the database (RSS and CPU are their sums);
	// Nginx when the clients went through it.
	Servers        int     `json:"servers,omitempty"`
	Nginx          bool    `json:"nginx,omitempty"`
	NginxRSSIdleMB float64 `json:"nginx_rss_idle_mb,omitempty"` // master and workers, with every stream open
	// NginxRSSPerConnKB is nginx's RSS growth per idle stream (a client
	// and an upstream connection each), not part of RSSPerConnKB.
	NginxRSSPerConnKB float64 `json:"nginx_rss_per_idle_conn_kb,omitempty"`
	NginxCPUPct       float64 `json:"nginx_cpu_pct,omitempty"`
	// Backwards counts frames that showed an older sequence than the
	// client had already shown: the resume contract says never.
	Backwards int `json:"backwards"`
}

type stormResult struct {
	N                   int     `json:"n"`
	Writers             int     `json:"writers"`
	Seconds             float64 `json:"seconds"`
	MaxRefreshHz        float64 `json:"max_refresh_hz"`
	WritesPerSec        float64 `json:"writes_per_sec"`
	QueriesPerSec       float64 `json:"queries_per_sec"`
	FramesPerSecAvg     float64 `json:"frames_per_sec_per_viewer_avg"`
	PeakFramesPerSecP50 float64 `json:"frames_in_busiest_second_per_viewer_p50"`
	MaxFramesPerSec     int     `json:"frames_in_busiest_second_max"`
	Dups                int     `json:"duplicates"`
	ConnectErrors       int     `json:"connect_errors"`
	ServerCPUPct        float64 `json:"server_cpu_pct"`
	ClientCPUPct        float64 `json:"client_cpu_pct"`
	PgCPUPct            float64 `json:"pg_cpu_pct"`
	BoxCPUPct           float64 `json:"box_cpu_pct"`
}

// spread is a set of runs: their median and range.
type spread struct {
	Runs   []float64 `json:"runs"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
}

// summarize returns v's median (the mean of the middle two for an even
// count) and range.
func summarize(v []float64) spread {
	s := spread{Runs: slices.Clone(v)}
	if len(v) == 0 {
		return s
	}
	sorted := slices.Sorted(slices.Values(v))
	s.Min, s.Max = sorted[0], sorted[len(sorted)-1]
	if h := len(sorted) / 2; len(sorted)%2 == 1 {
		s.Median = sorted[h]
	} else {
		s.Median = (sorted[h-1] + sorted[h]) / 2
	}
	return s
}

// ratio is a/b, 0 when b is.
func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return a / b
}

// pairRatios is a[i]/b[i]: per interleaved pair of runs.
func pairRatios(a, b []float64) []float64 {
	out := make([]float64, 0, min(len(a), len(b)))
	for i := range min(len(a), len(b)) {
		out = append(out, ratio(a[i], b[i]))
	}
	return out
}

// pgbenchMatrix is -pgbench: throughput with the four tables watched and
// not, per cell.
type pgbenchMatrix struct {
	Feed         string        `json:"feed"`
	Scale        int           `json:"scale"`
	Seconds      float64       `json:"seconds"`
	Runs         int           `json:"runs_per_variant"`
	MaxRefreshHz float64       `json:"max_refresh_hz"`
	Cells        []pgbenchCell `json:"cells"`
}

type pgbenchCell struct {
	Feed      string `json:"feed"`
	Fsync     bool   `json:"fsync"`
	WalLevel  string `json:"wal_level"`
	Clients   int    `json:"clients"`
	Viewers   string `json:"viewers"`
	Unwatched spread `json:"unwatched_tps"`
	Watched   spread `json:"watched_tps"`
	// Ratio is watched over unwatched, of the medians; PairRatios the
	// same per interleaved pair of runs.
	Ratio      float64 `json:"watched_over_unwatched"`
	PairRatios spread  `json:"pair_ratios"`
	// WatchedQueries is the server's panel queries per second during the
	// watched runs: about 0 without viewers, up to panels x the refresh
	// cap with them.
	WatchedQueries spread `json:"watched_panel_queries_per_sec"`
}

// bulkResult is -bulk: seconds of a COPY and of an UPDATE of every row,
// into a watched and an unwatched table.
type bulkResult struct {
	Feed         string     `json:"feed"`
	Rows         int        `json:"rows"`
	Runs         int        `json:"runs_per_variant"`
	Fsync        bool       `json:"fsync"`
	WalLevel     string     `json:"wal_level"`
	MaxRefreshHz float64    `json:"max_refresh_hz"`
	Cells        []bulkCell `json:"cells"`
}

type bulkCell struct {
	Viewers string        `json:"viewers"`
	Copy    bulkStatement `json:"copy"`
	Update  bulkStatement `json:"update"`
}

type bulkStatement struct {
	Unwatched spread `json:"unwatched_seconds"`
	Watched   spread `json:"watched_seconds"`
	// Ratio is watched over unwatched time, of the medians: 1.10 is 10%
	// extra. PairRatios the same per interleaved pair of runs.
	Ratio      float64 `json:"watched_over_unwatched"`
	PairRatios spread  `json:"pair_ratios"`
}

type reportConfig struct {
	Rate         float64 `json:"rate"`
	Duration     float64 `json:"duration_seconds"`
	Warmup       float64 `json:"warmup_seconds"`
	MaxRefreshHz float64 `json:"max_refresh_hz"`
	M            int     `json:"m"`
	Views        int     `json:"views,omitempty"` // latency and storm runs
	Fsync        *bool   `json:"fsync,omitempty"` // -pgbench, -bulk: per cell
	Server       string  `json:"server,omitempty"`
	Proto        string  `json:"proto,omitempty"`
	Servers      int     `json:"servers,omitempty"`
	Nginx        bool    `json:"nginx,omitempty"`
}

type report struct {
	Config  reportConfig   `json:"config"`
	Results []result       `json:"results,omitempty"` // per N, the median of its runs
	Runs    []result       `json:"runs,omitempty"`
	Storm   *stormResult   `json:"storm,omitempty"`
	Pgbench *pgbenchMatrix `json:"pgbench,omitempty"`
	Bulk    *bulkResult    `json:"bulk,omitempty"`
	Drain   *drainResult   `json:"drain,omitempty"`
}

// median combines runs at the same N field by field.
func median(rows []result) result {
	if len(rows) == 1 {
		r := rows[0]
		r.Runs = 1
		return r
	}
	med := func(f func(result) float64) float64 {
		v := make([]float64, len(rows))
		for i, r := range rows {
			v[i] = f(r)
		}
		slices.Sort(v)
		return v[len(v)/2]
	}
	medInt := func(f func(result) int) int { return int(med(func(r result) float64 { return float64(f(r)) })) }
	r := rows[0]
	r.Runs = len(rows)
	r.P50 = med(func(r result) float64 { return r.P50 })
	r.P90 = med(func(r result) float64 { return r.P90 })
	r.P99 = med(func(r result) float64 { return r.P99 })
	r.Max = med(func(r result) float64 { return r.Max })
	r.PollP99 = med(func(r result) float64 { return r.PollP99 })
	r.FirstP50 = med(func(r result) float64 { return r.FirstP50 })
	r.Deliveries = medInt(func(r result) int { return r.Deliveries })
	r.DeliveriesPerSec = med(func(r result) float64 { return r.DeliveriesPerSec })
	r.Frames = medInt(func(r result) int { return r.Frames })
	r.Missing = medInt(func(r result) int { return r.Missing })
	r.Dups = medInt(func(r result) int { return r.Dups })
	r.ConnectErrors = medInt(func(r result) int { return r.ConnectErrors })
	r.Disconnected = medInt(func(r result) int { return r.Disconnected })
	r.SlowDropped = medInt(func(r result) int { return r.SlowDropped })
	r.ConnectSeconds = med(func(r result) float64 { return r.ConnectSeconds })
	r.ServerRSSBaseMB = med(func(r result) float64 { return r.ServerRSSBaseMB })
	r.ServerRSSIdleMB = med(func(r result) float64 { return r.ServerRSSIdleMB })
	r.RSSPerConnKB = med(func(r result) float64 { return r.RSSPerConnKB })
	r.ServerCPUPct = med(func(r result) float64 { return r.ServerCPUPct })
	r.ClientCPUPct = med(func(r result) float64 { return r.ClientCPUPct })
	r.BoxCPUPct = med(func(r result) float64 { return r.BoxCPUPct })
	r.PgCPUPct = med(func(r result) float64 { return r.PgCPUPct })
	r.QueriesPerCommit = med(func(r result) float64 { return r.QueriesPerCommit })
	r.DBQueriesPerCommit = medOptional(rows, func(r result) *float64 { return r.DBQueriesPerCommit })
	r.CommitP50 = med(func(r result) float64 { return r.CommitP50 })
	r.CommitP99 = med(func(r result) float64 { return r.CommitP99 })
	r.RSSPerTCPConnKB = med(func(r result) float64 { return r.RSSPerTCPConnKB })
	r.NginxRSSIdleMB = med(func(r result) float64 { return r.NginxRSSIdleMB })
	r.NginxRSSPerConnKB = med(func(r result) float64 { return r.NginxRSSPerConnKB })
	r.NginxCPUPct = med(func(r result) float64 { return r.NginxCPUPct })
	r.Backwards = medInt(func(r result) int { return r.Backwards })
	r.WindowP99 = nil // per run only
	return r
}

// medOptional is the median of f over the rows that have it; nil when
// none has.
func medOptional(rows []result, f func(result) *float64) *float64 {
	var v []float64
	for _, r := range rows {
		if p := f(r); p != nil {
			v = append(v, *p)
		}
	}
	if len(v) == 0 {
		return nil
	}
	slices.Sort(v)
	m := v[len(v)/2]
	return &m
}

// optional formats *p with f, or "-" when p is nil.
func optional(p *float64, f string) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf(f, *p)
}

func printReport(w io.Writer, rep report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	if len(rep.Results) > 0 {
		fmt.Fprintf(w, "commit-to-client latency, %g commits/s, max refresh %g Hz (ms; per N the median of its runs)\n", rep.Config.Rate, rep.Config.MaxRefreshHz)
		fmt.Fprintln(tw, "N\tM\tviews\tsetup\truns\tfirst\tp50\tp90\tp99\tmax\tp99 first/last 5s\tdeliv/s\tmissing\tdups\tdropped\tKB/idle conn\tKB/TCP conn\tsrv CPU%\tcli CPU%\tpg CPU%\tbox CPU%\tqueries/commit\tdb queries/commit\tcommit p99\t")
		for _, r := range rep.Results {
			trend := "-"
			for _, run := range rep.Runs {
				if run.N == r.N && run.StreamsPerConn == r.StreamsPerConn && len(run.WindowP99) > 0 {
					trend = fmt.Sprintf("%.1f/%.1f", run.WindowP99[0], run.WindowP99[len(run.WindowP99)-1])
				}
			}
			fmt.Fprintf(tw, "%d\t%d\t%d\t%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t%s\t%.0f\t%d\t%d\t%d\t%.1f\t%.1f\t%.0f\t%.0f\t%.0f\t%.0f\t%.2f\t%s\t%.1f\t\n",
				r.N, r.M, r.Views, setupText(r.Proto, r.StreamsPerConn, r.Servers, r.Nginx), r.Runs, r.FirstP50, r.P50, r.P90, r.P99, r.Max, trend, r.DeliveriesPerSec, r.Missing, r.Dups,
				r.Disconnected+r.ConnectErrors, r.RSSPerConnKB, r.RSSPerTCPConnKB, r.ServerCPUPct, r.ClientCPUPct, r.PgCPUPct, r.BoxCPUPct, r.QueriesPerCommit,
				optional(r.DBQueriesPerCommit, "%.2f"), r.CommitP99)
		}
		tw.Flush()
		for _, r := range rep.Results {
			if r.Nginx {
				fmt.Fprintf(w, "N=%d through nginx: nginx RSS %.1f MB with every stream open (%.1f KB more per stream), nginx CPU %.0f%%\n",
					r.N, r.NginxRSSIdleMB, r.NginxRSSPerConnKB, r.NginxCPUPct)
			}
			if r.Backwards > 0 {
				fmt.Fprintf(w, "N=%d: %d frames showed an older sequence than their client had shown\n", r.N, r.Backwards)
			}
		}
		for _, c := range sharedConnCosts(rep.Results) {
			fmt.Fprintf(w, "HTTP/2 at N=%d: %.1f KB/stream with 1 stream per connection, %.1f KB/stream with %d: a connection costs %.1f KB, an extra stream on a shared connection %.1f KB\n",
				c.N, c.PerStreamAlone, c.PerStreamShared, c.StreamsPerConn, c.ConnKB, c.ExtraStreamKB)
		}
		if len(rep.Runs) > len(rep.Results) {
			fmt.Fprintln(w, "\nruns:")
			fmt.Fprintln(tw, "N\tviews\tp50\tp99\tmax\tmissing\tKB/idle conn\tsrv CPU%\tqueries/commit\tdb queries/commit\t")
			for _, r := range rep.Runs {
				fmt.Fprintf(tw, "%d\t%d\t%.1f\t%.1f\t%.1f\t%d\t%.1f\t%.0f\t%.2f\t%s\t\n", r.N, r.Views, r.P50, r.P99, r.Max, r.Missing,
					r.RSSPerConnKB, r.ServerCPUPct, r.QueriesPerCommit, optional(r.DBQueriesPerCommit, "%.2f"))
			}
			tw.Flush()
		}
	}
	if d := rep.Drain; d != nil {
		printDrain(w, d)
	}
	if s := rep.Storm; s != nil {
		fmt.Fprintf(w, "write storm: %d writers for %.0fs, %d viewers, max refresh %g Hz\n", s.Writers, s.Seconds, s.N, s.MaxRefreshHz)
		fmt.Fprintln(tw, "writes/s\tqueries/s\tframes/s/viewer\tbusiest second p50\tbusiest second max\tdups\tsrv CPU%\tcli CPU%\tpg CPU%\tbox CPU%\t")
		fmt.Fprintf(tw, "%.0f\t%.1f\t%.1f\t%.0f\t%d\t%d\t%.0f\t%.0f\t%.0f\t%.0f\t\n", s.WritesPerSec, s.QueriesPerSec, s.FramesPerSecAvg,
			s.PeakFramesPerSecP50, s.MaxFramesPerSec, s.Dups, s.ServerCPUPct, s.ClientCPUPct, s.PgCPUPct, s.BoxCPUPct)
		tw.Flush()
	}
	if p := rep.Pgbench; p != nil {
		fmt.Fprintf(w, "writer overhead: pgbench tpcb-like, scale %d, %.0fs runs, %d per variant interleaved, feed %s, server refresh cap %g Hz\n",
			p.Scale, p.Seconds, p.Runs, p.Feed, p.MaxRefreshHz)
		fmt.Fprintln(w, "tps: median (min-max); watched/unwatched: of the medians, and (min-max) over the interleaved pairs")
		fmt.Fprintln(tw, "fsync\twal_level\tclients\tviewers\tunwatched tps\twatched tps\twatched/unwatched\tpairs\tpanel queries/s (watched)\t")
		for _, c := range p.Cells {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%.1f%%\t%s\t%.1f\t\n", onOff(c.Fsync), c.WalLevel, c.Clients, c.Viewers,
				spreadText(c.Unwatched, "%.0f"), spreadText(c.Watched, "%.0f"), c.Ratio*100, rangeText(c.PairRatios, 100, "%.1f%%"), c.WatchedQueries.Median)
		}
		tw.Flush()
	}
	if b := rep.Bulk; b != nil {
		fmt.Fprintf(w, "bulk statements: %d rows, %d runs per variant interleaved, feed %s, fsync %s, wal_level %s, server refresh cap %g Hz\n",
			b.Rows, b.Runs, b.Feed, onOff(b.Fsync), b.WalLevel, b.MaxRefreshHz)
		fmt.Fprintln(w, "seconds: median (min-max); extra: watched over unwatched, of the medians, and (min-max) over the interleaved pairs; target at most +10%")
		fmt.Fprintln(tw, "viewers\tstatement\tunwatched s\twatched s\textra\tpairs\t")
		for _, c := range b.Cells {
			for _, s := range []struct {
				name string
				st   bulkStatement
			}{{"COPY", c.Copy}, {"UPDATE", c.Update}} {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%+.1f%%\t%s\t\n", c.Viewers, s.name,
					spreadText(s.st.Unwatched, "%.2f"), spreadText(s.st.Watched, "%.2f"), (s.st.Ratio-1)*100,
					rangeText(shift(s.st.PairRatios, -1), 100, "%+.1f%%"))
			}
		}
		tw.Flush()
	}
}

// setupText names a run's clients and servers: "h1", "h2c/100" (100
// streams per connection), "h1 3srv" (three servers, client i on server
// i mod 3), "h1 3srv+nginx".
func setupText(proto string, perConn, servers int, nginx bool) string {
	s := cmp.Or(proto, protoH1)
	if proto == protoH2C {
		s += "/" + strconv.Itoa(max(perConn, 1))
	}
	if servers > 1 || nginx {
		s += " " + strconv.Itoa(max(servers, 1)) + "srv"
		if nginx {
			s += "+nginx"
		}
	}
	return s
}

// sharedConnCost splits HTTP/2 memory into a connection's and a stream's
// from two runs at one N: per stream a with one stream per connection and
// b with K. Per stream a = c + s and b = c/K + s, so c = (a-b)/(1-1/K)
// and s = a - c.
type sharedConnCost struct {
	N, StreamsPerConn               int
	PerStreamAlone, PerStreamShared float64
	ConnKB, ExtraStreamKB           float64
}

func sharedConnCosts(rows []result) []sharedConnCost {
	var out []sharedConnCost
	for _, a := range rows {
		if a.Proto != protoH2C || a.StreamsPerConn != 1 {
			continue
		}
		for _, b := range rows {
			if b.Proto != protoH2C || b.N != a.N || b.StreamsPerConn <= 1 || b.Servers != a.Servers {
				continue
			}
			k := float64(b.StreamsPerConn)
			c := (a.RSSPerConnKB - b.RSSPerConnKB) / (1 - 1/k)
			out = append(out, sharedConnCost{N: a.N, StreamsPerConn: b.StreamsPerConn, PerStreamAlone: a.RSSPerConnKB,
				PerStreamShared: b.RSSPerConnKB, ConnKB: c, ExtraStreamKB: a.RSSPerConnKB - c})
		}
	}
	return out
}

// spreadText is "median (min-max)".
func spreadText(s spread, f string) string {
	return fmt.Sprintf(f+" ("+f+"-"+f+")", s.Median, s.Min, s.Max)
}

// rangeText is "(min-max)", each times scale.
func rangeText(s spread, scale float64, f string) string {
	return fmt.Sprintf("("+f+" to "+f+")", s.Min*scale, s.Max*scale)
}

// shift adds d to a spread's figures.
func shift(s spread, d float64) spread {
	s.Median, s.Min, s.Max = s.Median+d, s.Min+d, s.Max+d
	return s
}

func writeJSON(path string, rep report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing JSON: %w", err)
	}
	return nil
}

// chartSVG draws p50 and p99 against N, both axes logarithmic.
func chartSVG(rows []result) []byte {
	const (
		width, height         = 640, 400
		left, right, top, bot = 70, 40, 40, 50
		plotW, plotH          = width - left - right, height - top - bot
	)
	xs := make([]float64, 0, len(rows))
	var ymin, ymax = math.Inf(1), math.Inf(-1)
	for _, r := range rows {
		xs = append(xs, float64(max(r.N, 1)))
		for _, y := range []float64{r.P50, r.P99} {
			y = max(y, 0.1)
			ymin, ymax = min(ymin, y), max(ymax, y)
		}
	}
	xmin, xmax := slices.Min(xs), slices.Max(xs)
	// Whole decades around the data.
	lxmin, lxmax := math.Floor(math.Log10(xmin)), math.Ceil(math.Log10(xmax))
	if lxmax == lxmin {
		lxmax++
	}
	lymin, lymax := math.Floor(math.Log10(ymin)), math.Ceil(math.Log10(ymax))
	if lymax == lymin {
		lymax++
	}
	px := func(x float64) float64 { return left + (math.Log10(x)-lxmin)/(lxmax-lxmin)*plotW }
	py := func(y float64) float64 {
		return top + plotH - (math.Log10(max(y, 0.1))-lymin)/(lymax-lymin)*plotH
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", width, height)
	fmt.Fprintf(&b, `<text x="%d" y="22" font-size="14">Commit-to-client latency against SSE clients (log-log)</text>`+"\n", left)
	for e := lxmin; e <= lxmax; e++ {
		x := px(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`, x, top, x, top+plotH)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x, top+plotH+18, fmtNum(math.Pow(10, e)))
	}
	for e := lymin; e <= lymax; e++ {
		y := py(math.Pow(10, e))
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%d" y2="%.1f" stroke="#ddd"/>`, left, y, left+plotW, y)
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end">%s ms</text>`+"\n", left-6, y+4, fmtNum(math.Pow(10, e)))
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="middle">SSE clients (N)</text>`+"\n", left+plotW/2, height-10)
	for _, s := range []struct {
		name, color string
		v           func(result) float64
	}{
		{"p50", "#1f77b4", func(r result) float64 { return r.P50 }},
		{"p99", "#d62728", func(r result) float64 { return r.P99 }},
	} {
		var pts []string
		for _, r := range rows {
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(float64(max(r.N, 1))), py(s.v(r))))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="2" points="%s"/>`+"\n", s.color, strings.Join(pts, " "))
		for i, r := range rows {
			p := strings.Split(pts[i], ",")
			fmt.Fprintf(&b, `<circle cx="%s" cy="%s" r="3.5" fill="%s"><title>N=%d %s=%.1f ms</title></circle>`+"\n", p[0], p[1], s.color, r.N, s.name, s.v(r))
		}
	}
	fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#1f77b4">p50</text><text x="%d" y="%d" fill="#d62728">p99</text>`+"\n", left+10, top+14, left+45, top+14)
	b.WriteString("</svg>\n")
	return []byte(b.String())
}

func fmtNum(v float64) string {
	if v >= 1 {
		return fmt.Sprintf("%.0f", v)
	}
	return fmt.Sprintf("%g", v)
}
