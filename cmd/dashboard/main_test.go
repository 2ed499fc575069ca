package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testConfig is the configuration of a test server: a fresh database, a
// random port, short timers.
func testConfig(t testing.TB) config.Config {
	t.Helper()
	return configFor(pgtest.NewDB(t))
}

// configFor is the tests' configuration on the database at url.
func configFor(url string) config.Config {
	return config.Config{
		DatabaseURL:      url,
		Addr:             "127.0.0.1:0",
		LogLevel:         "debug",
		LogFormat:        "text",
		Migrate:          true,
		BatchWindow:      10 * time.Millisecond,
		MaxRefreshHz:     50,
		QueryTimeout:     5 * time.Second,
		QueryConcurrency: 4,
		SafetyRefresh:    5 * time.Minute,
		MaxRows:          1000,
		ListenerPing:     time.Second,
		Heartbeat:        15 * time.Second,
		StreamMaxAge:     30 * time.Minute,
		WriteTimeout:     5 * time.Second,
		LongPollWait:     25 * time.Second,
		MaxStreams:       1000,
		MaxStreamsIP:     1000,
		MaxLongPoll:      1000,
		ShutdownGrace:    5 * time.Second,
		FrameAncestors:   "'none'",
	}
}

// testServer is the real program running in the test process.
type testServer struct {
	*running
	URL  string
	logs *syncBuffer
	// client, if set, replaces http.DefaultClient for get (a server with
	// TLS and a test certificate).
	client *http.Client
}

// startServer runs serve with cfg until the test ends, and fails the test
// if serve returns an error.
func startServer(t testing.TB, cfg config.Config, demoMode bool) *testServer {
	t.Helper()
	s, stop := startStoppable(t, cfg, demoMode)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return s
}

// startStoppable runs serve with cfg and returns once its listener
// listens, as a real client would find the server after /readyz turned
// true. stop cancels serve and returns its result; it is idempotent, and
// runs at the end of the test if the test did not call it. adjust, if
// given, changes the serveOptions first.
func startStoppable(t testing.TB, cfg config.Config, demoMode bool, adjust ...func(*serveOptions)) (*testServer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	started := make(chan *running, 1)
	done := make(chan error, 1)
	opts := serveOptions{demo: demoMode, stdout: io.Discard, started: func(r *running) { started <- r }}
	for _, f := range adjust {
		f(&opts)
	}
	go func() {
		done <- serve(ctx, cfg, logger, opts)
	}()
	var r *running
	select {
	case r = <-started:
	case err := <-done:
		cancel()
		t.Fatalf("serve: %v\nlogs:\n%s", err, logs.String())
	case <-time.After(60 * time.Second):
		cancel()
		t.Fatalf("serve did not start within 60s\nlogs:\n%s", logs.String())
	}
	var once sync.Once
	var result error
	stop := func() error {
		once.Do(func() {
			cancel()
			select {
			case result = <-done:
			case <-time.After(30 * time.Second):
				result = errors.New("serve did not return within 30s of cancel")
			}
		})
		return result
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("server %s logs:\n%s", r.addr, logs.String())
		}
	})
	deadline := time.After(30 * time.Second)
	for {
		var st listen.State
		var changed <-chan struct{}
		var ok bool
		if r.logical != nil {
			st, changed = r.logical.State()
			ok = st.Listening
		} else {
			st, changed = r.listener.State()
			ok = st.Listening && r.arms.Ready() == nil
		}
		if ok {
			break
		}
		select {
		case <-changed:
		case <-time.After(5 * time.Millisecond): // Arms has no change signal
		case <-deadline:
			t.Fatalf("listener not listening or no feed slot within 30s\nlogs:\n%s", logs.String())
		}
	}
	return &testServer{running: r, URL: "http://" + r.addr, logs: logs}, stop
}

// exec runs SQL on the server's database.
func (s *testServer) exec(t testing.TB, sql string, args ...any) {
	t.Helper()
	if _, err := s.pool.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("exec %q: %v", sql, err)
	}
}

// get fetches path and returns the response with its body read.
func (s *testServer) get(t testing.TB, path string, header ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	client := http.DefaultClient
	if s.client != nil {
		client = s.client
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// createDashboard adds a dashboard with one panel per (slug, kind, sql)
// triple, in one transaction so that no viewer sees it without its panels,
// and returns the dashboard id.
func createDashboard(t testing.TB, pool *pgxpool.Pool, slug string, public bool, panels ...[3]string) int64 {
	t.Helper()
	vis := "public"
	if !public {
		vis = "private"
	}
	var id int64
	err := pgx.BeginFunc(context.Background(), pool, func(tx pgx.Tx) error {
		ctx := context.Background()
		err := tx.QueryRow(ctx, `INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ($1, $2, $3) RETURNING id`,
			slug, "Dashboard "+slug, vis).Scan(&id)
		if err != nil {
			return fmt.Errorf("creating dashboard: %w", err)
		}
		for i, p := range panels {
			_, err := tx.Exec(ctx, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position) VALUES ($1, $2, $3, $4, $5, $6)`,
				id, p[0], "Panel "+p[0], p[1], p[2], i)
			if err != nil {
				return fmt.Errorf("creating panel %s: %w", p[0], err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return id
}

// syncBuffer is a bytes.Buffer safe for the logger and the test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestRunHelpListsEveryVariable(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"help"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"dashboard demo", "DASHBOARD_ADDR", "127.0.0.1:8080", "DASHBOARD_DATA_DIR", "DASHBOARD_LOG_FORMAT"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q", want)
		}
	}
}

func TestRunRejectsBadConfig(t *testing.T) {
	t.Setenv("DASHBOARD_ADDR", "nonsense")
	err := run(context.Background(), []string{"serve"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DASHBOARD_ADDR") {
		t.Fatalf("got %v, want an error naming DASHBOARD_ADDR", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("got a multi-line error %q, want one line", err)
	}
}

func TestRunUnreachableDatabaseFailsFast(t *testing.T) {
	// A port on loopback where nothing listens: connection refused at once.
	t.Setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none?connect_timeout=3")
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:0")
	err := run(context.Background(), []string{"serve"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "database unreachable") {
		t.Fatalf("got %v, want a 'database unreachable' error", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Errorf("got a multi-line error %q, want one line", err)
	}
	// Once, and naming the setting to fix; the same for a command.
	for _, args := range [][]string{{"serve"}, {"migrate"}} {
		err := run(context.Background(), args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "DATABASE_URL=postgres://nobody@127.0.0.1:1/none") ||
			strings.Count(err.Error(), "connection refused") != 1 {
			t.Errorf("%v: got %v, want one report of the refused connection naming DATABASE_URL", args, err)
		}
	}
}

// TestRunBadDataDir: a data folder that cannot be made is reported naming
// DASHBOARD_DATA_DIR.
func TestRunBadDataDir(t *testing.T) {
	if _, err := pgserver.Find(); err != nil {
		t.Skip(err)
	}
	t.Setenv("DATABASE_URL", "")
	os.Unsetenv("DATABASE_URL")
	t.Setenv("DASHBOARD_DATA_DIR", "/proc/no-such-folder")
	err := run(context.Background(), []string{"migrate"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "DASHBOARD_DATA_DIR=/proc/no-such-folder") {
		t.Fatalf("got %v, want an error naming DASHBOARD_DATA_DIR", err)
	}
}

func TestRunUnknownCommand(t *testing.T) {
	err := run(context.Background(), []string{"frobnicate"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "unknown command") {
		t.Fatalf("got %v, want unknown command", err)
	}
}

func TestServeHealthReadyMetrics(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	for _, tt := range []struct {
		path, want string
	}{
		{"/healthz", "ok"},
		{"/readyz", "ready"},
		{"/metrics", "dashboard_listener_connected 1"},
		{"/", "Dashboards"},
	} {
		resp, body := s.get(t, tt.path)
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: got %d %q, want 200 containing %q", tt.path, resp.StatusCode, trim(body), tt.want)
		}
	}
}

func trim(s string) string {
	if len(s) > 300 {
		return s[:300] + "…"
	}
	return s
}
