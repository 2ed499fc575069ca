package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// options are the command's flags.
type options struct {
	n, m        int
	ns          []int
	views       int // distinct views of the bench dashboard the clients spread over
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	grace       time.Duration
	sources     int
	runs        int
	server      string
	serverBin   string
	databaseURL string
	dataDir     string
	fsync       bool
	maxHz       float64
	jsonFile    string
	svgFile     string
	cpuProfile  string

	storm        bool
	stormWriters int

	// feed is the change feed of the started server and the database's
	// triggers: "notify" or "logical".
	feed     string
	maxHzSet bool // -max-hz given: pgbench and bulk use the server's default otherwise

	pgbench        bool
	pgbenchBin     string
	pgbenchClients []int
	pgbenchFsync   []bool
	pgbenchTime    time.Duration
	pgbenchRuns    int
	pgbenchScale   int
	viewers        []string // pgbench, bulk: viewerNone, viewerAll

	bulk     bool
	bulkRows int
	bulkRuns int
}

// Feeds the bench can measure; the first is the default.
var feeds = []string{"notify", "logical"}

// The viewer cases of -pgbench and -bulk.
const (
	viewerNone = "none" // the tables' dashboard exists, nobody has it open
	viewerAll  = "all"  // one SSE viewer of a dashboard reading every table
)

func parseFlags(args []string, stderr io.Writer) (options, error) {
	var o options
	fs := flag.NewFlagSet("dashbench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&o.n, "n", 1000, "SSE clients (at most ~15,000 per process: the open-file cap is 20,000)")
	fs.IntVar(&o.m, "m", 0, "long-poll clients")
	fs.IntVar(&o.views, "views", 1, "distinct views: above 1 the bench dashboard gets a list variable v with options 0..K-1 that its panel reads, and client i asks for var-v=i mod K")
	ns := fs.String("ns", "", "comma-separated list of N to sweep (overrides -n), e.g. 1000,5000,10000")
	fs.Float64Var(&o.rate, "rate", 20, "commits per second")
	fs.DurationVar(&o.duration, "duration", 30*time.Second, "measured time (storm: storm length)")
	fs.DurationVar(&o.warmup, "warmup", 3*time.Second, "commits before measuring starts")
	fs.DurationVar(&o.grace, "grace", 5*time.Second, "wait after the last commit for outstanding frames")
	fs.IntVar(&o.sources, "sources", 0, "127.0.0.x source addresses to spread clients over (0: N/5000+2)")
	fs.IntVar(&o.runs, "runs", 1, "runs per N; the table adds their median")
	fs.StringVar(&o.server, "server", "", "URL of a running server (needs -database-url); empty starts one")
	fs.StringVar(&o.serverBin, "server-bin", "", "dashboard binary to start (empty: go build ./cmd/dashboard)")
	fs.StringVar(&o.databaseURL, "database-url", "", "database to use (empty: a private PostgreSQL)")
	fs.StringVar(&o.dataDir, "data-dir", "", "folder of the private PostgreSQL (empty: a temporary one)")
	fs.BoolVar(&o.fsync, "fsync", false, "private PostgreSQL: keep fsync on (its commit time is then part of every latency); -pgbench: see -pgbench-fsync")
	fs.Float64Var(&o.maxHz, "max-hz", 50, "DASHBOARD_MAX_REFRESH_HZ of the started server (-pgbench, -bulk: the server's default unless given)")
	fs.StringVar(&o.feed, "feed", feeds[0], "change feed of the started server and the database's triggers: notify (LISTEN/NOTIFY behind the gated triggers) or logical (logical decoding messages over a temporary slot; needs wal_level=logical, which the private PostgreSQL has)")
	fs.StringVar(&o.jsonFile, "json", "", "write the results as JSON to this file")
	fs.StringVar(&o.svgFile, "svg", "", "draw latency against N as SVG to this file")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the bench's own CPU profile (the clients) to this file")
	fs.BoolVar(&o.storm, "storm", false, "write storm: -storm-writers as fast as they can for -duration")
	fs.IntVar(&o.stormWriters, "storm-writers", 64, "writers of the storm")
	fs.BoolVar(&o.pgbench, "pgbench", false, "writer overhead: pgbench tpcb-like, its tables watched vs not, over the matrix -pgbench-fsync x -pgbench-clients x -viewers")
	fs.StringVar(&o.pgbenchBin, "pgbench-bin", "", "pgbench program (empty: PATH, then /usr/lib/postgresql/*/bin)")
	clients := fs.String("pgbench-clients", "8,32", "comma-separated pgbench -c values")
	fsyncs := fs.String("pgbench-fsync", "off,on", "comma-separated fsync settings, one private PostgreSQL started for each (with -database-url: that database's own setting)")
	fs.DurationVar(&o.pgbenchTime, "pgbench-time", 10*time.Second, "length of one pgbench run")
	fs.IntVar(&o.pgbenchRuns, "pgbench-runs", 5, "pgbench runs per variant and cell (watched and unwatched interleaved)")
	fs.IntVar(&o.pgbenchScale, "pgbench-scale", 10, "pgbench -s")
	viewers := fs.String("viewers", viewerNone+","+viewerAll, "-pgbench, -bulk: viewer cases, comma-separated: none (nobody has the tables' dashboard open), all (one SSE viewer of a dashboard reading every table)")
	fs.BoolVar(&o.bulk, "bulk", false, "bulk statements: an UPDATE of every row and a COPY of -bulk-rows rows into a watched vs an unwatched table")
	fs.IntVar(&o.bulkRows, "bulk-rows", 1_000_000, "rows of the bulk tables")
	fs.IntVar(&o.bulkRuns, "bulk-runs", 3, "bulk runs per variant and viewer case (watched and unwatched interleaved)")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	o.maxHzSet = set["max-hz"]
	if !slices.Contains(feeds, o.feed) {
		return o, fmt.Errorf("-feed %q: want one of %s", o.feed, strings.Join(feeds, ", "))
	}
	var err error
	if o.pgbenchClients, err = parseInts(*clients); err != nil {
		return o, fmt.Errorf("-pgbench-clients: %w", err)
	}
	if o.pgbenchFsync, err = parseOnOff(*fsyncs); err != nil {
		return o, fmt.Errorf("-pgbench-fsync: %w", err)
	}
	if o.viewers, err = parseViewers(*viewers); err != nil {
		return o, fmt.Errorf("-viewers: %w", err)
	}
	if o.pgbench || o.bulk {
		switch {
		case o.pgbench && o.bulk:
			return o, errors.New("-pgbench and -bulk are separate runs: pass one")
		case o.pgbench && o.storm, o.bulk && o.storm:
			return o, errors.New("-storm is a separate run: pass it without -pgbench or -bulk")
		case set["views"]:
			return o, errors.New("-views applies to the latency runs and -storm, not to -pgbench or -bulk")
		case o.server != "":
			return o, errors.New("-pgbench and -bulk start their own server, as a role that may not watch tables (so that only the bench watches and unwatches them): drop -server")
		case o.pgbench && set["fsync"]:
			return o, errors.New("-pgbench starts one PostgreSQL per fsync setting: use -pgbench-fsync on, off or off,on instead of -fsync")
		case o.pgbench && o.databaseURL != "" && set["pgbench-fsync"] && len(o.pgbenchFsync) > 1:
			return o, errors.New("-pgbench-fsync: with -database-url the database has one fsync setting; pass at most one")
		case o.pgbench && o.pgbenchRuns < 1:
			return o, errors.New("-pgbench-runs must be at least 1")
		case o.pgbench && o.pgbenchTime < time.Second:
			return o, errors.New("-pgbench-time must be at least 1s")
		case o.bulk && o.bulkRuns < 1:
			return o, errors.New("-bulk-runs must be at least 1")
		case o.bulk && o.bulkRows < 1:
			return o, errors.New("-bulk-rows must be at least 1")
		}
		if o.pgbench && o.databaseURL != "" && !set["pgbench-fsync"] {
			o.pgbenchFsync = nil // the database's own, read when connected
		}
	}
	o.ns = []int{o.n}
	if *ns != "" {
		o.ns = nil
		for _, s := range strings.Split(*ns, ",") {
			v, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || v < 0 {
				return o, fmt.Errorf("-ns: %q is not a list of numbers", *ns)
			}
			o.ns = append(o.ns, v)
		}
	}
	switch {
	case o.rate <= 0:
		return o, errors.New("-rate must be above zero")
	case o.duration <= 0:
		return o, errors.New("-duration must be above zero")
	case o.runs < 1:
		return o, errors.New("-runs must be at least 1")
	case o.views < 1:
		return o, errors.New("-views must be at least 1")
	case o.server != "" && o.databaseURL == "":
		return o, errors.New("-server needs -database-url: the bench writes to the server's database")
	}
	return o, nil
}

// run is the whole command; main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// The server and pgbench processes write to stderr too, from the
	// goroutines os/exec copies with when it is not a file.
	stderr = &lockedWriter{w: stderr}
	o, err := parseFlags(args, stderr)
	if err != nil {
		return err
	}
	limit := raiseFileLimit()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	for _, n := range o.ns {
		if need := n + o.m + 200; uint64(need) > limit {
			return fmt.Errorf("%d clients need about %d open files, the limit is %d: run several dashbench processes (-server, -database-url) with at most ~15,000 clients each", n+o.m, need, limit)
		}
	}

	if o.server == "" && o.serverBin == "" {
		dir, err := os.MkdirTemp("", "dashbench-bin")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		if o.serverBin, err = buildServer(ctx, dir, stderr); err != nil {
			return err
		}
	}

	rep := report{Config: reportConfig{Rate: o.rate, Duration: o.duration.Seconds(), Warmup: o.warmup.Seconds(),
		MaxRefreshHz: o.maxHz, M: o.m, Views: o.views, Fsync: &o.fsync, Server: o.server}}
	// -pgbench and -bulk open their own databases (one per fsync setting)
	// and report their settings per cell.
	switch {
	case o.pgbench:
		rep.Config = reportConfig{MaxRefreshHz: serverHz(o)}
		if rep.Pgbench, err = pgbenchOverhead(ctx, o, stderr); err != nil {
			return err
		}
		return finishReport(stdout, o, rep)
	case o.bulk:
		rep.Config = reportConfig{MaxRefreshHz: serverHz(o)}
		if rep.Bulk, err = bulkOverhead(ctx, o, stderr); err != nil {
			return err
		}
		return finishReport(stdout, o, rep)
	}

	db, err := openDatabase(ctx, o.databaseURL, o.dataDir, o.fsync, true)
	if err != nil {
		return err
	}
	defer db.close()
	conn, err := pgx.Connect(ctx, db.connString)
	if err != nil {
		return fmt.Errorf("connecting to database: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := setupBench(ctx, conn, o.views); err != nil {
		return err
	}
	if err := setFeedMode(ctx, conn, o.feed); err != nil {
		return err
	}
	stats := openStatements(ctx, conn, stderr)

	b := &bench{o: o, db: db, conn: conn, stats: stats, stderr: stderr}
	switch {
	case o.storm:
		r, err := b.stormRun(ctx, o.ns[0])
		if err != nil {
			return err
		}
		rep.Storm = r
	default:
		for _, n := range o.ns {
			var rows []result
			for range o.runs {
				fmt.Fprintf(stderr, "dashbench: N=%d M=%d rate=%g/s for %s...\n", n, o.m, o.rate, o.duration)
				r, err := b.latencyRun(ctx, n)
				if err != nil {
					return err
				}
				rows = append(rows, r)
				rep.Runs = append(rep.Runs, r)
			}
			rep.Results = append(rep.Results, median(rows))
		}
	}
	return finishReport(stdout, o, rep)
}

// finishReport prints the report and writes -json and -svg.
func finishReport(stdout io.Writer, o options, rep report) error {
	printReport(stdout, rep)
	if o.jsonFile != "" {
		if err := writeJSON(o.jsonFile, rep); err != nil {
			return err
		}
	}
	if o.svgFile != "" && len(rep.Results) > 0 {
		if err := os.WriteFile(o.svgFile, chartSVG(rep.Results), 0o644); err != nil {
			return fmt.Errorf("writing chart: %w", err)
		}
	}
	return nil
}

// raiseFileLimit sets the soft open-files limit to the hard one and
// returns it.
func raiseFileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 1024
	}
	if rl.Cur < rl.Max {
		rl.Cur = rl.Max
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl) != nil {
			syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl)
		}
	}
	return rl.Cur
}

// bench holds what the runs share.
type bench struct {
	o      options
	db     *database
	conn   *pgx.Conn
	stats  *statements // panel queries counted at the database
	stderr io.Writer
}

// target starts a server for one run, or returns the given one.
func (b *bench) target(ctx context.Context) (base string, stop func(), err error) {
	if b.o.server != "" {
		return strings.TrimSuffix(b.o.server, "/"), func() {}, nil
	}
	env := []string{"DASHBOARD_MAX_REFRESH_HZ=" + strconv.FormatFloat(b.o.maxHz, 'g', -1, 64), "DASHBOARD_FEED=" + b.o.feed}
	if b.o.views > 100 { // the server's default bound on one dashboard's views
		env = append(env, "DASHBOARD_MAX_VIEWS="+strconv.Itoa(b.o.views))
	}
	p, err := startServer(ctx, b.o.serverBin, b.db.connString, env, b.stderr)
	if err != nil {
		return "", nil, err
	}
	return p.url, p.stop, nil
}

func (b *bench) sources(n int) int {
	if b.o.sources > 0 {
		return min(b.o.sources, 254)
	}
	return min(n/5000+2, 254)
}

// waitBoard waits until the server serves the bench dashboard.
func waitBoard(ctx context.Context, base, slug string) error {
	hc := pollHTTPClient(1, 1)
	defer hc.CloseIdleConnections()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := hc.Get(base + "/d/" + slug + "/poll?wait=0")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	return fmt.Errorf("the server does not serve /d/%s within 30s", slug)
}

// clients is a set of running viewers.
type clients struct {
	viewers  []*viewer
	sse      int
	connErrs atomic.Int64
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	stopOnce sync.Once
	pollHTTP interface{ CloseIdleConnections() }
}

// connect opens n SSE clients (at most 256 dialling at once) and m
// long-poll clients, and returns once every SSE client has its response
// header or failed.
func (b *bench) connect(ctx context.Context, l *ledger, base string, n, m int) (*clients, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	c := &clients{sse: n, cancel: cancel}
	rd, err := newReaders(cctx, l, runtime.GOMAXPROCS(0), &c.wg)
	if err != nil {
		rd = nil // a goroutine per stream, then
	}
	src := b.sources(n + m)
	sem := make(chan struct{}, 256)
	var connected sync.WaitGroup
	for i := range n {
		v := l.newViewer()
		c.viewers = append(c.viewers, v)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			cancel()
			c.wg.Wait()
			return nil, ctx.Err()
		}
		connected.Add(1)
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			sseClient(cctx, l, v, u, eventsPath(i, b.o.views), dialer(i, src), rd, func(err error) {
				if err != nil {
					c.connErrs.Add(1)
				}
				<-sem
				connected.Done()
			})
		}()
	}
	connected.Wait()
	if m > 0 {
		hc := pollHTTPClient(m, src)
		c.pollHTTP = hc.Transport.(interface{ CloseIdleConnections() })
		for j := range m {
			v := l.newViewer()
			c.viewers = append(c.viewers, v)
			c.wg.Add(1)
			go func() {
				defer c.wg.Done()
				pollClient(cctx, l, v, base+pollPath(j, b.o.views), hc)
			}()
		}
	}
	return c, nil
}

// stop ends the clients and waits for them; after it their viewers may be
// read. Calling it again does nothing.
func (c *clients) stop() {
	c.stopOnce.Do(func() {
		c.cancel()
		c.wg.Wait()
		if c.pollHTTP != nil {
			c.pollHTTP.CloseIdleConnections()
		}
	})
}

// cpuSeconds is this process's user+system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
