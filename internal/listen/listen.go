// Package listen owns the change feed's connections. In the default notify
// mode that is one dedicated PostgreSQL connection that LISTENs on the
// "dashboard" channel and hands every notification's payload (a
// schema-qualified table name) to a Sink, plus Arms, which tells the gated
// triggers which tables this server wants news of. In logical mode it is
// Logical: a replication connection that decodes the triggers' messages
// from a temporary slot and hands them to the same Sink.
//
// It reconnects with jittered exponential backoff, pings while idle with a
// context that is not already cancelled, and tells the Sink to resync after
// every (re)connect, because NOTIFY is only a hint: anything committed while
// the connection was down is found by re-querying. It knows nothing about
// panels or dashboards.
package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// Channel is the notification channel the triggers of migrations/ use.
const Channel = "dashboard"

// Sink receives the feed. Both methods must return quickly without
// blocking on I/O, and be safe for concurrent use: the Listener calls them
// from its connection's goroutine, the Logical feed also resyncs from a
// timer while it has no slot.
type Sink interface {
	// TableChanged marks one table dirty.
	TableChanged(table string, receivedAt time.Time)
	// Resync is called after every (re)connect, once LISTEN is in effect:
	// everything must be treated as dirty.
	Resync()
}

// Config configures a Listener.
type Config struct {
	// ConnConfig is the connection to LISTEN on; it must reach the primary.
	ConnConfig *pgx.ConnConfig
	Sink       Sink
	Logger     *slog.Logger
	Metrics    *Metrics
	// PingInterval is how often the connection is pinged. A dead
	// connection is found within PingInterval plus PingTimeout.
	PingInterval time.Duration
	// PingTimeout bounds one ping; default 5s.
	PingTimeout time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential reconnect
	// delay; defaults 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
}

// Listener holds the LISTEN connection. Run it with Run.
type Listener struct {
	cfg Config

	mu      sync.Mutex
	state   State
	changed chan struct{}
}

// State is a snapshot of the listener's connection.
type State struct {
	// Listening is true while LISTEN is in effect on a live connection.
	Listening bool
	// Connects counts successful (re)connects since Run started.
	Connects uint64
	// BackendPID is the server process of the current connection; 0 when
	// not listening.
	BackendPID uint32
	// Slot is the replication slot the Logical feed streams from; empty
	// for the Listener and when not streaming.
	Slot string
	// Resyncs counts the resyncs the Logical feed asked of its sink.
	Resyncs uint64
	// Owed is true while the Logical feed owes its sink a resync: the
	// transactions running at its last one have not all ended.
	Owed bool
}

// New returns a Listener; it connects when Run is called.
func New(cfg Config) *Listener {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 5 * time.Second
	}
	if cfg.PingTimeout <= 0 {
		cfg.PingTimeout = 5 * time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Listener{cfg: cfg, changed: make(chan struct{})}
}

// State returns the current state and a channel that is closed at the next
// change, so callers can wait for "listening again" without polling.
func (l *Listener) State() (State, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.state, l.changed
}

// Listening reports whether LISTEN is in effect; it is the listener's part
// of /readyz.
func (l *Listener) Listening() bool {
	s, _ := l.State()
	return s.Listening
}

func (l *Listener) setState(listening bool, pid uint32) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if listening {
		l.state.Connects++
	}
	l.state.Listening = listening
	l.state.BackendPID = pid
	close(l.changed)
	l.changed = make(chan struct{})
	if listening {
		l.cfg.Metrics.connected.Set(1)
	} else {
		l.cfg.Metrics.connected.Set(0)
	}
}

// Run connects, listens and reconnects until ctx is cancelled, then closes
// the connection and returns nil. It never gives up on a failing database.
func (l *Listener) Run(ctx context.Context) error {
	reconnect(ctx, l.cfg.BackoffMin, l.cfg.BackoffMax, l.session, func(err error, retryIn time.Duration) {
		l.cfg.Logger.Warn("listener disconnected", "err", err, "retry_in", retryIn.Round(time.Millisecond))
		l.cfg.Metrics.reconnects.Inc()
	})
	return nil
}

// reconnect runs session until ctx is cancelled. After each failure it
// calls lost and waits a jittered delay that grows with every failure in a
// row; a session resets it by calling up once it is established.
func reconnect(ctx context.Context, min, max time.Duration, session func(ctx context.Context, up func()) error,
	lost func(err error, retryIn time.Duration)) {
	attempt := 0
	for {
		err := session(ctx, func() { attempt = 0 })
		if ctx.Err() != nil {
			return
		}
		attempt++
		delay := backoff(attempt, min, max)
		lost(err, delay)
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// session runs one connection from connect to failure. onListening is
// called once LISTEN is in effect, which resets the backoff.
func (l *Listener) session(ctx context.Context, onListening func()) error {
	conn, err := connect(ctx, l.cfg.ConnConfig, "listener")
	if err != nil {
		return err
	}
	defer func() {
		// The close must run even though ctx may be cancelled by now.
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		conn.Close(closeCtx)
		l.setState(false, 0)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listening on %s: %w", Channel, err)
	}
	l.setState(true, conn.PgConn().PID())
	onListening()
	l.cfg.Logger.Info("listener connected", "backend_pid", conn.PgConn().PID())
	// LISTEN is in effect before the resync reads anything, so a write
	// committed after this point either shows in the resync's queries or
	// arrives as a notification: nothing falls between the two.
	l.cfg.Sink.Resync()

	for {
		// One wait context per ping interval, not per notification: under
		// a write load thousands arrive each second.
		waitCtx, cancel := context.WithTimeout(ctx, l.cfg.PingInterval)
		err := l.receive(waitCtx, conn)
		cancel()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("waiting for notification: %w", err)
		}
		// An interval has passed: make sure the connection is alive. The
		// ping gets a fresh context; waitCtx is already done.
		pingCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.cfg.PingTimeout)
		err = conn.Ping(pingCtx)
		cancel()
		if err != nil {
			return fmt.Errorf("pinging idle listener: %w", err)
		}
		// Notifications that came in with the ping's reply are buffered by
		// pgx and returned by the next WaitForNotification.
	}
}

// connect opens a dedicated connection of the change feed.
func connect(ctx context.Context, config *pgx.ConnConfig, what string) (*pgx.Conn, error) {
	cc := config.Copy()
	// TCP keepalive finds a peer that vanished without a FIN even if a ping
	// is stuck in the kernel's send queue.
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3,
	}}
	cc.DialFunc = dialer.DialContext
	// A name in pg_stat_activity, so that a DBA (and `dashboard status`)
	// can tell the feed's sessions apart; one set in DATABASE_URL wins.
	if cc.RuntimeParams["application_name"] == "" {
		params := maps.Clone(cc.RuntimeParams)
		if params == nil {
			params = make(map[string]string)
		}
		params["application_name"] = "dashboard " + what
		cc.RuntimeParams = params
	}
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > 10*time.Second {
		cc.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, fmt.Errorf("connecting %s: %w", what, err)
	}
	return conn, nil
}

// receive hands notifications to the sink until ctx ends or the
// connection fails.
func (l *Listener) receive(ctx context.Context, conn *pgx.Conn) error {
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return err
		}
		l.cfg.Metrics.notifications.Inc()
		l.cfg.Sink.TableChanged(n.Payload, time.Now())
	}
}

// backoff returns a full-jitter exponential delay for the n-th attempt
// (n >= 1), between min and max.
func backoff(n int, min, max time.Duration) time.Duration {
	d := min
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	if d > max {
		d = max
	}
	// Jitter in [d/2, d) so that a fleet of replicas does not reconnect in
	// lockstep after a database restart.
	return d/2 + rand.N(d/2+1)
}

// Metrics are the listener's Prometheus metrics.
type Metrics struct {
	connected     prometheus.Gauge
	reconnects    prometheus.Counter
	notifications prometheus.Counter
	armed         prometheus.Gauge
	pending       prometheus.Gauge
	armWait       prometheus.Histogram
	armTimeouts   prometheus.Counter
	heldBack      prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Namespace: "dashboard", Name: "listener_connected",
			Help: "1 while the change feed is connected (LISTEN in effect, or in logical mode streaming from its slot), else 0.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "listener_reconnects_total",
			Help: "Times the change feed (listener or logical feed) lost or failed to open its connection.",
		}),
		notifications: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "dashboard", Name: "notifications_total",
			Help: "Change notices received: notifications on the dashboard channel, or in logical mode decoded messages with prefix dashboard.",
		}),
	}
	m.armed = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "dashboard", Name: "feed_tables_armed",
		Help: "Tables whose triggers notify this server now (it holds their feed key).",
	})
	m.pending = prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: "dashboard", Name: "feed_tables_pending",
		Help: "Tables waiting to be armed behind a writer that skipped its notification and is still open.",
	})
	m.armWait = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "dashboard", Name: "feed_arm_seconds",
		Help:    "Time to arm a table: waiting for writers that skipped their notification.",
		Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
	})
	m.armTimeouts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dashboard", Name: "feed_arm_timeouts_total",
		Help: "Arms that waited past their bound for an open writer; the table is armed when the writer ends.",
	})
	m.heldBack = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "dashboard", Name: "feed_commits_held_total",
		Help: "Logical mode: times the feed had to hold news back because a decoded commit (or a transaction running at a resync) had not yet ended for new snapshots.",
	})
	if reg != nil {
		reg.MustRegister(m.connected, m.reconnects, m.notifications, m.armed, m.pending, m.armWait, m.armTimeouts, m.heldBack)
	}
	return m
}

// Sinks sends the feed to several sinks, in order.
type Sinks []Sink

// TableChanged implements Sink.
func (ss Sinks) TableChanged(table string, receivedAt time.Time) {
	for _, s := range ss {
		s.TableChanged(table, receivedAt)
	}
}

// Resync implements Sink.
func (ss Sinks) Resync() {
	for _, s := range ss {
		s.Resync()
	}
}
