package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/demo"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/presence"
	"github.com/livedash/dashboard/internal/provision"
	"github.com/livedash/dashboard/internal/refresh"
	"github.com/livedash/dashboard/internal/web"
	"github.com/livedash/dashboard/migrations"
)

// serveOptions are what differs between `serve`, `demo` and tests.
type serveOptions struct {
	demo   bool
	stdout io.Writer // where demo prints the URL to open
	// started, if set, is called once the server accepts requests, with its
	// address and parts that tests inspect.
	started func(s *running)
	// slotWait, if set, replaces the logical feed's SlotWait (tests).
	slotWait time.Duration
	// provisionPoll, if set, replaces how often DASHBOARD_PROVISION_DIR
	// is read (tests).
	provisionPoll time.Duration
	// release, if set, replaces the build's release identity (tests run
	// two releases side by side).
	release string
	// drained, if set, is called during a drain once every stream and
	// long-poll has been sent away and before the HTTP server stops
	// accepting (tests hold the server there to see it refuse work).
	drained func()
	// presenceInterval, if set, replaces how often who is watching is
	// shared with the other servers (tests); presenceCrash leaves this
	// server's rows behind when it stops, as a killed server does (tests
	// of expiry).
	presenceInterval time.Duration
	presenceCrash    bool
}

// running is the started program, for tests.
type running struct {
	addr        string
	metricsAddr string // "" when /metrics is on addr
	engine      *refresh.Engine
	listener    *listen.Listener // notify mode; nil in logical mode
	arms        *listen.Arms     // the gated triggers' locks, in both modes
	logical     *listen.Logical  // logical mode; nil in notify mode
	hub         *hub.Hub
	pool        *pgxpool.Pool
	standbys    []*pgxpool.Pool    // DASHBOARD_READ_DATABASE_URL, in its order
	provision   *provision.Watcher // nil without DASHBOARD_PROVISION_DIR
	site        *web.Server
	presence    *presence.Registry
}

// serve runs the server until ctx is cancelled. It fails fast: the address
// is bound and the database reached before anything else starts.
func serve(ctx context.Context, cfg config.Config, logger *slog.Logger, opts serveOptions) error {
	// stopBy is when a shutdown must be done (DASHBOARD_SHUTDOWN_TIMEOUT
	// after it began); zero until then.
	var stopBy time.Time
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("DASHBOARD_ADDR: %w", err)
	}
	defer ln.Close()
	var metricsLn net.Listener
	if cfg.MetricsAddr != "" {
		metricsLn, err = net.Listen("tcp", cfg.MetricsAddr)
		if err != nil {
			return fmt.Errorf("DASHBOARD_METRICS_ADDR: %w", err)
		}
		defer metricsLn.Close()
	}

	// A certificate that does not load stops the start before anything
	// else is done.
	var certs *certFiles
	if cfg.TLSCertFile != "" {
		if certs, err = loadCertFiles(cfg.TLSCertFile, cfg.TLSKeyFile, logger); err != nil {
			return err
		}
	}

	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()

	poolCfg, err := pgxpool.ParseConfig(db.connString)
	if err != nil {
		return fmt.Errorf("DATABASE_URL: %w", err)
	}
	poolCfg.MaxConns = int32(cfg.QueryConcurrency + 4)
	poolCfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, poolCfg)
	if err != nil {
		return fmt.Errorf("connecting to database: %w", err)
	}
	// Past the shutdown's deadline the pool's connections are left to the
	// process's exit: Close waits for every acquired one.
	defer func() { within(stopBy, pool.Close) }()
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err = pool.Ping(pingCtx)
	cancel()
	if err != nil {
		return db.unreachable(err)
	}

	standbys, err := openStandbys(ctx, cfg, logger)
	if err != nil {
		return err
	}
	// Like the primary's pool: past the deadline a standby's connections
	// are left to the process's exit.
	defer func() {
		for _, p := range standbys {
			within(stopBy, p.Close)
		}
	}()

	if cfg.Migrate || opts.demo {
		if err := migrate(ctx, pool); err != nil {
			return err
		}
	}
	if opts.demo {
		if err := demo.Setup(ctx, pool, cfg.DemoRate); err != nil {
			return fmt.Errorf("setting up demo: %w", err)
		}
		// The demo owns its database: it follows DASHBOARD_FEED.
		if _, err := pool.Exec(ctx, "SELECT dashboard.set_feed_mode($1)", cmp.Or(cfg.Feed, config.FeedNotify)); err != nil {
			return fmt.Errorf("setting up demo: DASHBOARD_FEED=%s: %w", cfg.Feed, err)
		}
	}
	if err := checkFeed(ctx, cfg, pool, poolCfg.ConnConfig); err != nil {
		return err
	}
	// Dashboard files are applied before the catalog is first loaded, so
	// the first page served shows them; a folder with a problem stops the
	// start with its file:line.
	var files *provision.Watcher
	if cfg.ProvisionDir != "" {
		files = &provision.Watcher{Dir: cfg.ProvisionDir, Prune: cfg.ProvisionPrune, DB: pool, Logger: logger,
			Interval: opts.provisionPoll, Options: provision.ApplyOptions{QueryTimeout: cfg.QueryTimeout}}
		if err := files.Start(ctx); err != nil {
			var probs provision.Problems
			if errors.As(err, &probs) {
				// One problem a line, each file:line: message.
				return fmt.Errorf("DASHBOARD_PROVISION_DIR=%s: nothing applied:\n%w", cfg.ProvisionDir, err)
			}
			return fmt.Errorf("DASHBOARD_PROVISION_DIR=%s: %w", cfg.ProvisionDir, err)
		}
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	h := hub.New(logger, hub.NewMetrics(reg))
	listenMetrics := listen.NewMetrics(reg)
	// The feed across every server on the database, read on scrape.
	reg.MustRegister(listen.NewStatusCollector(pool, 2*time.Second, logger))
	// Both modes gate the triggers through Arms: a table nobody wants news
	// of sends nothing, neither a NOTIFY nor a WAL message.
	arms := listen.NewArms(listen.ArmsConfig{ConnConfig: poolCfg.ConnConfig, Logger: logger, Metrics: listenMetrics})
	engine := refresh.New(refresh.Config{
		Arms:           arms,
		Pool:           pool,
		Standbys:       standbys,
		StandbyMaxWait: cfg.StandbyMaxWait,
		Loader: &catalog.Loader{Pool: pool, Logger: logger, QueryTimeout: cfg.QueryTimeout,
			SafetyRefresh: cfg.SafetyRefresh},
		Publisher:     h,
		Logger:        logger,
		Metrics:       refresh.NewMetrics(reg),
		BatchWindow:   cfg.BatchWindow,
		MaxRefreshHz:  cfg.MaxRefreshHz,
		QueryTimeout:  cfg.QueryTimeout,
		Concurrency:   cfg.QueryConcurrency,
		SafetyRefresh: cfg.SafetyRefresh,
		MaxRows:       cfg.MaxRows,
		MaxViews:      cfg.MaxViews,
	})
	if err := engine.LoadCatalog(ctx); err != nil {
		return fmt.Errorf("loading dashboards: %w", err)
	}
	tokens := access.NewStore(pool, logger)
	if err := tokens.Load(ctx); err != nil {
		return err
	}
	proxy, err := trustedProxy(cfg)
	if err != nil {
		return err
	}
	var listener *listen.Listener
	var logical *listen.Logical
	var feed interface{ Run(context.Context) error }
	if cfg.Logical() {
		logical = listen.NewLogical(listen.LogicalConfig{
			ConnConfig:     poolCfg.ConnConfig,
			Sink:           listen.Sinks{tokens, engine},
			Logger:         logger,
			Metrics:        listenMetrics,
			StatusInterval: cfg.ListenerPing,
			SlotWait:       opts.slotWait,
		})
		feed = logical
	} else {
		listener = listen.New(listen.Config{
			ConnConfig:   poolCfg.ConnConfig,
			Sink:         listen.Sinks{tokens, engine},
			Logger:       logger,
			Metrics:      listenMetrics,
			PingInterval: cfg.ListenerPing,
		})
		feed = listener
	}
	ready := func(ctx context.Context) error {
		if err := pool.Ping(ctx); err != nil {
			return errors.New("database unreachable")
		}
		if logical != nil {
			if err := logical.Ready(); err != nil {
				return fmt.Errorf("change feed: %w", err)
			}
		} else if !listener.Listening() {
			return errors.New("listener not listening")
		}
		if err := arms.Ready(); err != nil {
			return fmt.Errorf("change feed: %w", err)
		}
		return nil
	}
	// Who is watching, shared through small rows; the server's row names
	// its feed lock connection (dashboard token create --playlist checks
	// that every feed slot's holder is of this release or later).
	viewers := presence.New(presence.Config{
		Pool: pool, Interval: opts.presenceInterval, PerAddress: cfg.MaxStreamsIP,
		LockPID: func() uint32 { return arms.State().BackendPID }, Release: cmp.Or(opts.release, web.Release()),
		KeepRowsOnStop: opts.presenceCrash, Logger: logger,
	})
	site := web.New(web.Config{
		Heartbeat: cfg.Heartbeat, StreamMaxAge: cfg.StreamMaxAge, WriteTimeout: cfg.WriteTimeout,
		LongPollWait: cfg.LongPollWait, MaxLongPoll: config.MaxLongPollWait,
		MaxStreams: cfg.MaxStreams, MaxStreamsIP: cfg.MaxStreamsIP, MaxLongPolls: cfg.MaxLongPoll,
		FrameAncestors: cfg.FrameAncestors, PageWait: cfg.QueryTimeout, MetricsElsewhere: metricsLn != nil,
		PlaylistMinInterval: cfg.PlaylistMinInterval, Release: opts.release, Presence: viewers,
	}, logger, h, engine, tokens, proxy, ready, web.NewMetrics(reg), promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := newHTTPServer(site.Handler(), logger)
	scheme := "http"
	if certs != nil {
		// HTTPS with HTTP/2 (ALPN h2, then http/1.1); the certificate
		// follows its files without a restart.
		srv.TLSConfig = certs.tlsConfig()
		scheme = "https"
		if cfg.H2C {
			logger.Warn("DASHBOARD_H2C has no effect with DASHBOARD_TLS_CERT_FILE: HTTP/2 is served over TLS")
		}
	} else if cfg.H2C {
		// HTTP/2 with prior knowledge on the plain port, next to HTTP/1.1.
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		srv.Protocols = &p
	}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return feed.Run(gctx) })
	g.Go(func() error { return arms.Run(gctx, engine) })
	g.Go(func() error { return engine.Run(gctx) })
	g.Go(func() error { return tokens.Run(gctx) })
	g.Go(func() error { return viewers.Run(gctx) })
	if files != nil {
		g.Go(func() error { return files.Run(gctx) })
	}
	// The drain (docs/architecture.md, "Drain"): readiness off and new
	// requests refused first, then long-polls answered and streams told to
	// reconnect with spread-out delays, so that Shutdown does not wait for
	// them.
	drain := func() {
		site.Shutdown()
		// Go on answering 503 for a moment: a load balancer that routes
		// by /readyz may not have seen it turn yet, and a refusal it can
		// retry elsewhere beats a connection reset. Then
		// http.Server.Shutdown closes the listener, and requests that
		// arrive on open connections after that are dropped unanswered.
		time.Sleep(drainWindow(cfg.ShutdownGrace))
		if opts.drained != nil {
			opts.drained()
		}
	}
	serveHTTP(gctx, g, srv, ln, cfg.ShutdownGrace, "http", drain)
	var metricsAddr string
	if metricsLn != nil {
		metricsAddr = metricsLn.Addr().String()
		serveHTTP(gctx, g, newHTTPServer(site.MetricsHandler(), logger), metricsLn, cfg.ShutdownGrace, "metrics", nil)
		logger.Info("metrics serving", "url", "http://"+metricsAddr+"/metrics")
	}
	if opts.demo {
		g.Go(func() error { return demo.Traffic(gctx, pool, cfg.DemoRate, logger) })
	}
	if cfg.PprofAddr != "" {
		if err := servePprof(gctx, g, cfg.PprofAddr, logger); err != nil {
			return err
		}
	}

	url := scheme + "://" + ln.Addr().String() + "/"
	logger.Info("dashboard serving", "url", url, "feed", cmp.Or(cfg.Feed, config.FeedNotify))
	if opts.demo && opts.stdout != nil {
		fmt.Fprintf(opts.stdout, "\n  Demo running: open %s\n  Press Ctrl-C to stop.\n\n", url)
	}
	if opts.started != nil {
		opts.started(&running{addr: ln.Addr().String(), metricsAddr: metricsAddr, engine: engine, listener: listener,
			arms: arms, logical: logical, hub: h, pool: pool, provision: files, site: site, presence: viewers,
			standbys: standbys})
	}
	waited := make(chan error, 1)
	go func() { waited <- g.Wait() }()
	select {
	case err = <-waited:
	case <-gctx.Done():
		// Every part has DASHBOARD_SHUTDOWN_TIMEOUT from now, together.
		stopBy = time.Now().Add(cfg.ShutdownGrace)
		logger.Info("dashboard draining", "timeout", cfg.ShutdownGrace)
		t := time.NewTimer(cfg.ShutdownGrace)
		defer t.Stop()
		select {
		case err = <-waited:
		case <-t.C:
			logger.Error("shutdown: parts still running at DASHBOARD_SHUTDOWN_TIMEOUT; stopping without them",
				"timeout", cfg.ShutdownGrace)
			return fmt.Errorf("shutdown took longer than DASHBOARD_SHUTDOWN_TIMEOUT=%s", cfg.ShutdownGrace)
		}
	}
	logger.Info("dashboard stopped")
	return err
}

// drainWindow is how long a draining server keeps accepting requests only
// to refuse them: a tenth of DASHBOARD_SHUTDOWN_TIMEOUT, at most a second.
func drainWindow(grace time.Duration) time.Duration {
	return min(grace/10, time.Second)
}

// within runs f and waits for it until deadline (zero: for as long as it
// takes); past the deadline f is left running, for the process's exit.
func within(deadline time.Time, f func()) {
	if deadline.IsZero() {
		f()
		return
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
	}
}

// servePprof serves the Go profiler on its own listener, so that profiles
// of a loaded server can be taken without exposing them on the main
// address.
func servePprof(ctx context.Context, g *errgroup.Group, addr string, logger *slog.Logger) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("DASHBOARD_PPROF_ADDR: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.Go(func() error {
		<-ctx.Done()
		return srv.Close()
	})
	g.Go(func() error {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving pprof: %w", err)
		}
		return nil
	})
	logger.Info("pprof serving", "url", "http://"+ln.Addr().String()+"/debug/pprof/")
	return nil
}

// trustedProxy builds the trusted-proxy rule; nil when no proxy is
// configured, which trusts no forwarded header at all.
func trustedProxy(cfg config.Config) (*access.Proxy, error) {
	if len(cfg.TrustedProxyCIDRs) == 0 {
		return nil, nil
	}
	p := &access.Proxy{Header: cfg.UserHeader}
	for _, c := range cfg.TrustedProxyCIDRs {
		pr, err := netip.ParsePrefix(strings.TrimSpace(c))
		if err != nil {
			return nil, fmt.Errorf("DASHBOARD_TRUSTED_PROXY_CIDRS: %w", err)
		}
		p.Ranges = append(p.Ranges, pr.Masked())
	}
	return p, nil
}

// checkFeed refuses to start when DASHBOARD_FEED and the database's
// triggers disagree: the server would see no change at all. In logical mode
// it also checks, on a replication connection, everything logical decoding
// needs, so that a database that cannot do it stops the start with the
// setting or privilege to change instead of a feed that retries forever.
func checkFeed(ctx context.Context, cfg config.Config, pool *pgxpool.Pool, connConfig *pgx.ConnConfig) error {
	if cfg.Logical() {
		cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := listen.CheckLogical(cctx, connConfig); err != nil {
			return fmt.Errorf("DASHBOARD_FEED=logical: %w", err)
		}
		return nil
	}
	mode, err := feedMode(ctx, pool)
	if err != nil {
		return err
	}
	if mode == config.FeedLogical {
		return errors.New("DASHBOARD_FEED=notify, but the database's triggers are in logical mode and send no NOTIFY: " +
			"set DASHBOARD_FEED=logical, or run 'dashboard feed notify' (as the owner of schema dashboard)")
	}
	return nil
}

// feedMode returns the database's feed mode (dashboard.feed_mode()), or
// notify when the migration that added it has not run.
func feedMode(ctx context.Context, q interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (string, error) {
	var exists bool
	if err := q.QueryRow(ctx, "SELECT to_regprocedure('dashboard.feed_mode()') IS NOT NULL").Scan(&exists); err != nil {
		return "", fmt.Errorf("reading the feed mode: %w", err)
	}
	if !exists {
		return config.FeedNotify, nil
	}
	var mode string
	if err := q.QueryRow(ctx, "SELECT dashboard.feed_mode()").Scan(&mode); err != nil {
		return "", fmt.Errorf("reading the feed mode: %w", err)
	}
	return mode, nil
}

func migrate(ctx context.Context, pool *pgxpool.Pool) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	defer conn.Release()
	if _, err := migrations.Up(ctx, conn.Conn()); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
}

// newHTTPServer is an http.Server with the limits every listener of ours
// has: slow headers are cut (slowloris), headers are bounded, idle
// connections end. There is deliberately no write timeout: it would cut
// streams and long-polls.
func newHTTPServer(h http.Handler, logger *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		MaxHeaderBytes:    32 << 10,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelDebug),
	}
}

// serveHTTP serves srv on ln in g until ctx ends, over TLS if srv has a
// TLSConfig; then it calls beforeShutdown, if set, and shuts srv down so
// that it is done within grace of ctx's end, closing what is left after it.
// A little of grace is kept for closing: the whole program must be done
// within it.
func serveHTTP(ctx context.Context, g *errgroup.Group, srv *http.Server, ln net.Listener, grace time.Duration,
	what string, beforeShutdown func()) {
	g.Go(func() error {
		serve := srv.Serve
		if srv.TLSConfig != nil {
			// The certificate comes from TLSConfig.GetCertificate.
			serve = func(ln net.Listener) error { return srv.ServeTLS(ln, "", "") }
		}
		if err := serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serving %s: %w", what, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), grace-min(grace/5, time.Second))
		defer cancel()
		if beforeShutdown != nil {
			beforeShutdown()
		}
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		return nil
	})
}
