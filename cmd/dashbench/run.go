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

	// proto is the SSE clients' protocol, protoH1 or protoH2C; with h2c,
	// each value of streamsPerConn is a run of its own.
	proto          string
	streamsPerConn []int
	servers        int  // servers started on the one database
	nginx          bool // an nginx in front of them, which the clients go through
	nginxBin       string
	nginxConf      string
	drain          bool // SIGTERM one server with the clients connected
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
	fs.StringVar(&o.proto, "proto", protoH1, "SSE clients' protocol: h1 (raw HTTP/1.1, one connection per stream, epoll readers) or h2c (HTTP/2 with prior knowledge, -streams-per-conn streams per connection; the started servers get DASHBOARD_H2C=true)")
	perConn := fs.String("streams-per-conn", "1", "-proto h2c: streams sharing one connection, comma-separated for a run each (e.g. 1,100: the report then derives the cost of a connection and of an extra stream on a shared one)")
	fs.IntVar(&o.servers, "servers", 1, "servers to start on the one database; without -nginx client i connects to server i mod servers")
	fs.BoolVar(&o.nginx, "nginx", false, "start an nginx in front of the servers (deploy/nginx/dashboard.conf rendered for plain HTTP/1.1 on a local port) and connect the clients through it")
	fs.StringVar(&o.nginxBin, "nginx-bin", "", "nginx program (empty: PATH, then /usr/sbin/nginx)")
	fs.StringVar(&o.nginxConf, "nginx-conf", "", "nginx server configuration to render (empty: the module's deploy/nginx/dashboard.conf)")
	fs.BoolVar(&o.drain, "drain", false, "drain: with -n clients connected to -servers (2 or more; through -nginx, or failing over between the servers' addresses), SIGTERM the first server; the clients reconnect with Last-Event-ID after the retry they were given; reports when they came back, where they landed and whether each reached the newest sequence")
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
	if o.streamsPerConn, err = parseInts(*perConn); err != nil {
		return o, fmt.Errorf("-streams-per-conn: %w", err)
	}
	if err := o.checkScaleOut(set); err != nil {
		return o, err
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

// checkScaleOut checks the flags of the protocol, several servers, nginx
// and the drain against each other and the rest; set holds the flags given.
func (o *options) checkScaleOut(set map[string]bool) error {
	switch {
	case o.proto != protoH1 && o.proto != protoH2C:
		return fmt.Errorf("-proto %q: want h1 or h2c", o.proto)
	case set["streams-per-conn"] && o.proto != protoH2C:
		return errors.New("-streams-per-conn applies to -proto h2c (HTTP/1.1 carries one stream per connection)")
	case slices.Max(o.streamsPerConn) > maxStreamsPerConn:
		return fmt.Errorf("-streams-per-conn: at most %d, the server's limit of concurrent streams per connection", maxStreamsPerConn)
	case o.servers < 1:
		return errors.New("-servers must be at least 1")
	case (o.pgbench || o.bulk) && (set["proto"] || set["streams-per-conn"] || set["servers"] || o.nginx || o.drain):
		return errors.New("-proto, -streams-per-conn, -servers, -nginx and -drain apply to the latency runs, not to -pgbench or -bulk")
	case o.server != "" && (o.servers > 1 || o.nginx || o.drain):
		return errors.New("-servers, -nginx and -drain start their own servers: drop -server")
	case o.nginx && o.proto == protoH2C:
		return errors.New("-nginx: the bench's nginx listens for plain HTTP/1.1 (nginx speaks HTTP/2 to clients only over TLS): use -proto h1")
	case o.drain && o.servers < 2:
		return errors.New("-drain needs -servers 2 or more: the clients of the drained server must land somewhere")
	case o.drain && o.proto != protoH1:
		return errors.New("-drain: the reconnecting clients are HTTP/1.1 (-proto h1)")
	case o.drain && (o.storm || set["ns"] || o.runs > 1 || o.m > 0):
		return errors.New("-drain is one run at -n with SSE clients only: drop -storm, -ns, -runs and -m")
	}
	return nil
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
		MaxRefreshHz: o.maxHz, M: o.m, Views: o.views, Fsync: &o.fsync, Server: o.server,
		Proto: o.proto, Servers: o.servers, Nginx: o.nginx}}
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
	case o.drain:
		fmt.Fprintf(stderr, "dashbench: drain: N=%d over %d servers, rate=%g/s...\n", o.ns[0], o.servers, o.rate)
		r, err := b.drainRun(ctx, o.ns[0])
		if err != nil {
			return err
		}
		rep.Drain = r
	default:
		for _, n := range o.ns {
			for _, k := range o.streamsPerConn {
				var rows []result
				for range o.runs {
					fmt.Fprintf(stderr, "dashbench: N=%d M=%d %s rate=%g/s for %s...\n", n, o.m, setupText(o.proto, k, o.servers, o.nginx), o.rate, o.duration)
					r, err := b.latencyRun(ctx, n, k)
					if err != nil {
						return err
					}
					rows = append(rows, r)
					rep.Runs = append(rep.Runs, r)
				}
				rep.Results = append(rep.Results, median(rows))
			}
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

// target is what one run measures: the servers, and where the clients
// connect (nginx in front of them, or the servers themselves).
type target struct {
	clients []*url.URL    // client i starts at clients[i mod len]
	servers []string      // each server's own base URL, for /metrics
	procs   []*serverProc // the started servers, in the order of servers
	nginx   *nginxProc
}

// stop ends what the run started: nginx first, then the servers.
func (t *target) stop() {
	if t.nginx != nil {
		t.nginx.stop()
	}
	var wg sync.WaitGroup
	for _, p := range t.procs {
		wg.Go(p.stop)
	}
	wg.Wait()
}

// scrape reads every server's /metrics and adds them up.
func (t *target) scrape(ctx context.Context) (metrics, error) {
	var sum metrics
	for _, s := range t.servers {
		m, err := scrape(ctx, s)
		if err != nil {
			return sum, err
		}
		sum.add(m)
	}
	return sum, nil
}

// base is the first client address, as a URL string.
func (t *target) base() string { return t.clients[0].String() }

// target starts the servers (and nginx) of one run for n clients, or
// returns the given server.
func (b *bench) target(ctx context.Context, n int) (t *target, err error) {
	t = &target{}
	if b.o.server != "" {
		u, err := url.Parse(strings.TrimSuffix(b.o.server, "/"))
		if err != nil {
			return nil, fmt.Errorf("-server: %w", err)
		}
		t.clients, t.servers = []*url.URL{u}, []string{u.String()}
		return t, nil
	}
	defer func() {
		if err != nil {
			t.stop()
		}
	}()
	env := []string{"DASHBOARD_MAX_REFRESH_HZ=" + strconv.FormatFloat(b.o.maxHz, 'g', -1, 64), "DASHBOARD_FEED=" + b.o.feed}
	if b.o.views > 100 { // the server's default bound on one dashboard's views
		env = append(env, "DASHBOARD_MAX_VIEWS="+strconv.Itoa(b.o.views))
	}
	if b.o.proto == protoH2C {
		env = append(env, "DASHBOARD_H2C=true")
	}
	for range max(b.o.servers, 1) {
		p, err := startServer(ctx, b.o.serverBin, b.db.connString, env, b.stderr)
		if err != nil {
			return nil, err
		}
		t.procs = append(t.procs, p)
		t.servers = append(t.servers, p.url)
		u, _ := url.Parse(p.url)
		t.clients = append(t.clients, u)
	}
	if b.o.nginx {
		if t.nginx, err = startNginx(ctx, b.o.nginxBin, b.o.nginxConf, t.servers, b.stderr); err != nil {
			return nil, err
		}
		u, _ := url.Parse(t.nginx.url)
		t.clients = []*url.URL{u}
		// A worker may get every stream: a client connection and an
		// upstream one for each.
		if lim, need := t.nginx.workerFileLimit(), 2*n+100; lim > 0 && lim < need {
			return nil, fmt.Errorf("nginx's workers may open %d files, %d streams through one worker need about %d", lim, n, need)
		}
	}
	return t, nil
}

// waitBoard waits until every server, and the address the clients use,
// serves the bench dashboard.
func (t *target) waitBoard(ctx context.Context) error {
	for _, s := range t.servers {
		if err := waitBoard(ctx, s, benchSlug); err != nil {
			return err
		}
	}
	if t.nginx != nil {
		return waitBoard(ctx, t.base(), benchSlug)
	}
	return nil
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
	conns    int // TCP connections the SSE clients opened (h2c: fewer than streams)
	connErrs atomic.Int64
	wg       sync.WaitGroup
	cancel   context.CancelFunc
	stopOnce sync.Once
	pollHTTP interface{ CloseIdleConnections() }
}

// connect opens n SSE clients (at most 256 dialling at once) and m
// long-poll clients, and returns once every SSE client has its response
// header or failed. With -proto h2c, k streams share each connection.
func (b *bench) connect(ctx context.Context, l *ledger, t *target, n, m, k int) (*clients, error) {
	cctx, cancel := context.WithCancel(ctx)
	c := &clients{sse: n, cancel: cancel}
	rd, err := newReaders(cctx, l, runtime.GOMAXPROCS(0), &c.wg)
	if err != nil {
		rd = nil // a goroutine per stream, then
	}
	src := b.sources(n + m)
	sem := make(chan struct{}, 256)
	var connected sync.WaitGroup
	done := func(err error) {
		if err != nil {
			c.connErrs.Add(1)
		}
		<-sem
		connected.Done()
	}
	acquire := func() error {
		select {
		case sem <- struct{}{}:
			return nil
		case <-ctx.Done():
			cancel()
			c.wg.Wait()
			return ctx.Err()
		}
	}
	for range n {
		v := l.newViewer()
		if b.o.drain {
			v.st = newSSEState()
		}
		c.viewers = append(c.viewers, v)
	}
	if b.o.proto == protoH2C {
		k = max(k, 1)
		for g := 0; g*k < n; g++ {
			vs := c.viewers[g*k : min(n, (g+1)*k)]
			paths := make([]string, len(vs))
			for j := range vs {
				if err := acquire(); err != nil {
					return nil, err
				}
				paths[j] = eventsPath(g*k+j, b.o.views)
				connected.Add(1)
			}
			c.conns++
			// A group's connection, not its streams, has the source
			// address, so group g uses source g.
			h2Group(cctx, l, vs, t.clients[g%len(t.clients)], paths, dialer(g, src), &c.wg, done)
		}
	} else {
		for i, v := range c.viewers {
			if err := acquire(); err != nil {
				return nil, err
			}
			connected.Add(1)
			c.conns++
			targets := rotate(t.clients, i)
			c.wg.Go(func() {
				sseClient(cctx, l, v, targets, eventsPath(i, b.o.views), dialer(i, src), rd, b.o.drain, done)
			})
		}
	}
	connected.Wait()
	if m > 0 {
		hc := pollHTTPClient(m, src)
		c.pollHTTP = hc.Transport.(interface{ CloseIdleConnections() })
		for j := range m {
			v := l.newViewer()
			c.viewers = append(c.viewers, v)
			base := t.clients[j%len(t.clients)].String()
			c.wg.Go(func() {
				pollClient(cctx, l, v, base+pollPath(j, b.o.views), hc)
			})
		}
	}
	return c, nil
}

// rotate is s starting at its element i mod len(s).
func rotate[T any](s []T, i int) []T {
	i %= len(s)
	return append(s[i:len(s):len(s)], s[:i]...)
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
