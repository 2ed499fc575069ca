package listen_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// waitTimeout is the safety net of every wait on a signal.
const waitTimeout = 30 * time.Second

// sink records what the listener hands over and wakes waiters on each call.
// onResync, if set, runs inside Resync, on the listener's goroutine.
type sink struct {
	mu       sync.Mutex
	tables   []string
	resyncs  int
	changed  chan struct{}
	onResync func()
}

func newSink() *sink { return &sink{changed: make(chan struct{})} }

func (s *sink) TableChanged(table string, _ time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.tables = append(s.tables, table)
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sink) Resync() {
	if s.onResync != nil {
		s.onResync()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resyncs++
	close(s.changed)
	s.changed = make(chan struct{})
}

func (s *sink) waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		ok, ch := cond(), s.changed
		s.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-ch:
		case <-deadline.C:
			s.mu.Lock()
			defer s.mu.Unlock()
			t.Fatalf("timed out after %v waiting for %s; tables %v, resyncs %d", waitTimeout, what, s.tables, s.resyncs)
		}
	}
}

func (s *sink) waitTable(t *testing.T, table string) {
	t.Helper()
	s.waitFor(t, "notification "+table, func() bool { return slices.Contains(s.tables, table) })
}

type fixture struct {
	connString string
	l          *listen.Listener
	sink       *sink
	reg        *prometheus.Registry
	stop       func()
}

// run starts a Listener on a fresh database and stops it when the test ends,
// checking that Run returns nil promptly and leaves the state not listening.
func run(t *testing.T, cfg listen.Config, s *sink) *fixture {
	t.Helper()
	f := &fixture{connString: pgtest.NewDB(t), sink: s, reg: prometheus.NewRegistry()}
	cc, err := pgx.ParseConfig(f.connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig = cc
	cfg.Sink = s
	cfg.Metrics = listen.NewMetrics(f.reg)
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 300 * time.Millisecond
	}
	f.l = listen.New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.l.Run(ctx) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: got %v, want nil", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %v of cancel", waitTimeout)
			}
			if st, _ := f.l.State(); st.Listening || f.l.Listening() {
				t.Errorf("state after Run returned: got %+v, want not listening", st)
			}
		})
	}
	t.Cleanup(f.stop)
	return f
}

// feed is what Listener and Logical have in common for waiting on.
type feed interface {
	State() (listen.State, <-chan struct{})
}

func waitState(t *testing.T, l feed, what string, cond func(listen.State) bool) listen.State {
	t.Helper()
	deadline := time.NewTimer(waitTimeout)
	defer deadline.Stop()
	for {
		s, changed := l.State()
		if cond(s) {
			return s
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out after %v waiting for listener state %s; last %+v", waitTimeout, what, s)
		}
	}
}

func waitListening(t *testing.T, l feed, connects uint64) listen.State {
	t.Helper()
	return waitState(t, l, fmt.Sprintf("listening, connects >= %d", connects), func(s listen.State) bool {
		return s.Listening && s.Connects >= connects
	})
}

// notify sends one notification on the dashboard channel from a connection
// of its own.
func notify(t *testing.T, connString, payload string) {
	t.Helper()
	if err := notifyErr(connString, payload); err != nil {
		t.Fatalf("notifying %s: %v", payload, err)
	}
}

func notifyErr(connString, payload string) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "SELECT pg_notify($1, $2)", listen.Channel, payload)
	return err
}

func metric(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			m := mf.GetMetric()[0]
			return m.GetCounter().GetValue() + m.GetGauge().GetValue()
		}
	}
	t.Fatalf("metric %s not registered", name)
	return 0
}

// Rule 1: Resync comes once LISTEN is in effect, so a notification committed
// during Resync (before any snapshot a Sink would take) is delivered.
func TestListenerResyncAfterListen(t *testing.T) {
	t.Parallel()
	s := newSink()
	var f *fixture
	started := make(chan struct{}) // f is set
	var listeningAtResync bool
	s.onResync = func() {
		<-started
		st, _ := f.l.State()
		listeningAtResync = st.Listening
		if err := notifyErr(f.connString, "public.during_resync"); err != nil {
			t.Errorf("notifying in Resync: %v", err)
		}
	}
	f = run(t, listen.Config{}, s)
	close(started)
	waitListening(t, f.l, 1)
	s.waitFor(t, "first resync", func() bool { return s.resyncs == 1 })
	if !listeningAtResync {
		t.Error("State().Listening during Resync: got false, want true")
	}
	s.waitTable(t, "public.during_resync")

	notify(t, f.connString, `public."Mixed Case"`)
	s.waitTable(t, `public."Mixed Case"`)
	if got := metric(t, f.reg, "dashboard_listener_connected"); got != 1 {
		t.Errorf("listener_connected: got %v, want 1", got)
	}
	if got := metric(t, f.reg, "dashboard_notifications_total"); got != 2 {
		t.Errorf("notifications_total: got %v, want 2", got)
	}

	f.stop()
	if got := metric(t, f.reg, "dashboard_listener_connected"); got != 0 {
		t.Errorf("listener_connected after stop: got %v, want 0", got)
	}
}

// pg_terminate_backend of the listener's connection: it notices at once,
// reconnects on its own and resyncs.
func TestListenerReconnectsAfterTerminate(t *testing.T) {
	t.Parallel()
	s := newSink()
	f := run(t, listen.Config{BackoffMin: 200 * time.Millisecond}, s)
	before := waitListening(t, f.l, 1)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.connString)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(before.BackendPID)); err != nil {
		t.Fatal(err)
	}
	down := waitState(t, f.l, "not listening", func(s listen.State) bool { return !s.Listening })
	if down.BackendPID != 0 {
		t.Errorf("BackendPID while down: got %d, want 0", down.BackendPID)
	}
	after := waitListening(t, f.l, before.Connects+1)
	if after.BackendPID == before.BackendPID {
		t.Errorf("BackendPID after reconnect: got %d again, want a new backend", after.BackendPID)
	}
	s.waitFor(t, "second resync", func() bool { return s.resyncs == 2 })
	notify(t, f.connString, "public.after")
	s.waitTable(t, "public.after")
	if got := metric(t, f.reg, "dashboard_listener_reconnects_total"); got != 1 {
		t.Errorf("listener_reconnects_total: got %v, want 1", got)
	}
}

// Rule 7: a connection that stops answering (here: its backend is stopped
// with SIGSTOP, as a vanished peer would be) is found by the idle ping and
// replaced.
func TestListenerDetectsStalledConnection(t *testing.T) {
	t.Parallel()
	pgtest.Server(t) // needs a server on this machine (skips with TEST_DATABASE_URL)
	s := newSink()
	f := run(t, listen.Config{PingInterval: 200 * time.Millisecond, PingTimeout: 300 * time.Millisecond}, s)
	before := waitListening(t, f.l, 1)
	pid := int(before.BackendPID)
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Skipf("cannot stop backend %d: %v", pid, err)
	}
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGCONT) })
	stalled := time.Now()
	waitState(t, f.l, "not listening", func(s listen.State) bool { return !s.Listening })
	t.Logf("stalled connection dropped after %v (PingInterval 200ms + PingTimeout 300ms)", time.Since(stalled).Round(time.Millisecond))
	waitListening(t, f.l, before.Connects+1)
	s.waitFor(t, "second resync", func() bool { return s.resyncs == 2 })
	notify(t, f.connString, "public.after_stall")
	s.waitTable(t, "public.after_stall")
}

// A PostgreSQL restart, clean or crash: the listener keeps retrying and is
// back by itself. It restarts the package's server, so it is not parallel.
func TestListenerSurvivesRestart(t *testing.T) {
	for _, mode := range []string{"fast", "immediate"} {
		t.Run(mode, func(t *testing.T) {
			srv := pgtest.Server(t)
			s := newSink()
			f := run(t, listen.Config{}, s)
			before := waitListening(t, f.l, 1)
			s.waitFor(t, "first resync", func() bool { return s.resyncs == 1 })

			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			if err := srv.Restart(ctx, mode); err != nil {
				t.Fatalf("Restart(%s): %v", mode, err)
			}
			waitListening(t, f.l, before.Connects+1)
			s.waitFor(t, "resync after restart", func() bool { return s.resyncs >= 2 })
			notify(t, f.connString, "public.after_restart")
			s.waitTable(t, "public.after_restart")
		})
	}
}

// Cancelling Run while it waits to reconnect returns at once.
func TestListenerStopsWhileDisconnected(t *testing.T) {
	t.Parallel()
	s := newSink()
	f := run(t, listen.Config{BackoffMin: time.Hour, BackoffMax: time.Hour}, s)
	before := waitListening(t, f.l, 1)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, f.connString)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "SELECT pg_terminate_backend($1)", int32(before.BackendPID)); err != nil {
		t.Fatal(err)
	}
	waitState(t, f.l, "not listening", func(s listen.State) bool { return !s.Listening })
	f.stop() // fails the test if Run does not return
}
