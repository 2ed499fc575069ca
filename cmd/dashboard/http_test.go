package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/static"
)

// This file tests the HTTP contract (docs/architecture.md) against the real program:
// the SSE stream, the long-poll, routing, headers and metrics, and the
// slow-client drop.

const contractWait = 20 * time.Second // generous bound for anything that should be quick

// contractFixture is a server with table t and the public dashboard "ops":
// panel p1 counts t, panel p2 never changes.
type contractFixture struct {
	*testServer
	dashID int64
}

func newContractFixture(t *testing.T, cfg config.Config) *contractFixture {
	t.Helper()
	s := startServer(t, cfg, false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	id := createDashboard(t, s.pool, "ops", true,
		[3]string{"p1", "stat", "SELECT count(*) AS n FROM t"},
		[3]string{"p2", "stat", "SELECT 'static' AS s"})
	awaitDashboard(t, s, "ops", "t")
	return &contractFixture{s, id}
}

// eventually polls cond until it holds, failing the test after contractWait.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(contractWait)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: timed out after %v", what, contractWait)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// awaitDashboard waits until the catalog has the dashboard and the tables
// are watched, so that its routes answer and writes reach it.
func awaitDashboard(t testing.TB, s *testServer, slug string, tables ...string) {
	t.Helper()
	eventually(t, "dashboard "+slug+" in the catalog", func() bool {
		snap := s.engine.Snapshot()
		return snap != nil && snap.Dashboard(slug) != nil
	})
	for _, tbl := range tables {
		eventually(t, tbl+" watched", func() bool {
			var ok bool
			err := s.pool.QueryRow(context.Background(), "SELECT dashboard.is_watched($1::regclass)", tbl).Scan(&ok)
			return err == nil && ok
		})
	}
}

// promValue returns the value of an unlabelled metric on /metrics.
func promValue(t testing.TB, s *testServer, name string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric %s: %v", name, err)
			}
			return f
		}
	}
	t.Fatalf("metric %s not on /metrics", name)
	return 0
}

// pollInBackground sends a long-poll that waits up to wait seconds for a
// version other than have; its status (0 on a transport error) arrives on
// the returned channel.
func pollInBackground(s *testServer, slug string, have hub.Version, wait int) <-chan int {
	status := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL+"/d/"+slug+"/poll?wait="+strconv.Itoa(wait), nil)
		req.Header.Set("If-None-Match", `"`+have.String()+`"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			status <- 0
			return
		}
		resp.Body.Close()
		status <- resp.StatusCode
	}()
	return status
}

// currentVersion asks the long-poll for the dashboard's current state.
func currentVersion(t testing.TB, s *testServer, slug string, header ...string) hub.Version {
	t.Helper()
	resp, body := s.get(t, "/d/"+slug+"/poll", header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /d/%s/poll: got %d %q, want 200", slug, resp.StatusCode, trim(body))
	}
	v, ok := hub.ParseVersion(strings.Trim(resp.Header.Get("ETag"), `"`))
	if !ok {
		t.Fatalf("got ETag %q, want a quoted version", resp.Header.Get("ETag"))
	}
	return v
}

// insertRow commits one row into t.
func insertRow(t testing.TB, s *testServer) {
	t.Helper()
	s.exec(t, `INSERT INTO t (v) VALUES ('x')`)
}

// sseMsg is one message of an event stream, with the comments and fields
// that came before its blank line.
type sseMsg struct {
	lines    []string
	id       string
	hasID    bool
	event    string
	data     []string
	comments []string
	retry    string
}

func (m sseMsg) body() string { return strings.Join(m.data, "\n") }

// sseClient reads an event stream line by line in its own goroutine.
type sseClient struct {
	resp    *http.Response
	lines   chan string
	done    chan struct{}
	cancel  context.CancelFunc
	err     error // set before lines is closed
	pending []string
}

// openSSE opens url with the header name/value pairs. The stream is read
// only when the answer is 200; the caller checks the status.
func openSSE(t testing.TB, client *http.Client, url string, header ...string) *sseClient {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	c := &sseClient{resp: resp, lines: make(chan string, 64), done: make(chan struct{}), cancel: cancel}
	t.Cleanup(c.close)
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		close(c.lines)
		close(c.done)
		return c
	}
	go func() {
		defer close(c.done)
		defer close(c.lines)
		r := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				c.err = err
				return
			}
			select {
			case c.lines <- strings.TrimSuffix(line, "\n"):
			case <-ctx.Done():
				c.err = ctx.Err()
				return
			}
		}
	}()
	return c
}

// close ends the stream and waits for its reader.
func (c *sseClient) close() {
	c.cancel()
	c.resp.Body.Close()
	<-c.done
}

var errWindow = errors.New("nothing within the window")

// line returns the next line, io.EOF (or the read error) when the stream
// ended, or errWindow after d.
func (c *sseClient) line(d time.Duration) (string, error) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case l, ok := <-c.lines:
		if !ok {
			if c.err == nil || errors.Is(c.err, io.EOF) {
				return "", io.EOF
			}
			return "", c.err
		}
		return l, nil
	case <-timer.C:
		return "", errWindow
	}
}

// nextWithin returns the next message (lines up to a blank line).
func (c *sseClient) nextWithin(d time.Duration) (sseMsg, error) {
	deadline := time.Now().Add(d)
	for {
		l, err := c.line(time.Until(deadline))
		if err != nil {
			return sseMsg{}, err
		}
		if l != "" {
			c.pending = append(c.pending, l)
			continue
		}
		m := sseMsg{lines: c.pending}
		c.pending = nil
		for _, l := range m.lines {
			switch {
			case strings.HasPrefix(l, ":"):
				m.comments = append(m.comments, l)
			case strings.HasPrefix(l, "id: "):
				m.id, m.hasID = strings.TrimPrefix(l, "id: "), true
			case strings.HasPrefix(l, "event: "):
				m.event = strings.TrimPrefix(l, "event: ")
			case strings.HasPrefix(l, "retry: "):
				m.retry = strings.TrimPrefix(l, "retry: ")
			case l == "data:" || strings.HasPrefix(l, "data: "):
				m.data = append(m.data, strings.TrimPrefix(strings.TrimPrefix(l, "data:"), " "))
			default:
				return m, fmt.Errorf("line %q is no SSE field", trim(l))
			}
		}
		return m, nil
	}
}

// nextUpdate returns the next message that carries an id, skipping
// heartbeats, and fails the test if none comes.
func (c *sseClient) nextUpdate(t testing.TB) sseMsg {
	t.Helper()
	deadline := time.Now().Add(contractWait)
	for {
		m, err := c.nextWithin(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for an update: %v", err)
		}
		if m.hasID {
			return m
		}
	}
}

// hello reads the lines written at connect up to the retry field, and
// fails if an update comes first.
func (c *sseClient) hello(t testing.TB) []string {
	t.Helper()
	var got []string
	for {
		l, err := c.line(contractWait)
		if err != nil {
			t.Fatalf("reading the first lines: %v (got %q)", err, got)
		}
		c.pending = append(c.pending, l)
		got = append(got, l)
		if strings.HasPrefix(l, "id:") || strings.HasPrefix(l, "data:") {
			t.Fatalf("got %q before the retry field, want a comment and retry first", got)
		}
		if strings.HasPrefix(l, "retry: ") {
			return got
		}
	}
}

// targets returns the hx-target of every partial in body, in order.
func targets(body string) []string {
	var out []string
	for _, part := range strings.Split(body, `<hx-partial hx-target="`)[1:] {
		out = append(out, part[:strings.IndexByte(part, '"')])
	}
	return out
}

// wantUpdate checks a message is one unnamed update with the partials want.
func wantUpdate(t testing.TB, m sseMsg, want ...string) hub.Version {
	t.Helper()
	if m.event != "" {
		t.Errorf("got event %q, want an unnamed message", m.event)
	}
	v, ok := hub.ParseVersion(m.id)
	if !ok {
		t.Fatalf("got id %q, want a version", m.id)
	}
	for _, l := range m.lines {
		if !strings.HasPrefix(l, ":") && !strings.HasPrefix(l, "retry: ") && !strings.HasPrefix(l, "id: ") &&
			!strings.HasPrefix(l, "data: ") {
			t.Errorf("got line %q in an update, want every data line prefixed `data: `", trim(l))
		}
	}
	if got := targets(m.body()); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got partials %v, want %v", got, want)
	}
	return v
}

// rawStatus sends raw bytes as a request and returns the status code.
func rawStatus(t testing.TB, addr, raw string) int {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(contractWait))
	if _, err := io.WriteString(conn, raw); err != nil {
		t.Fatalf("writing request: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading response to %q: %v", trim(raw), err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestHTTPContract(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.Heartbeat = 200 * time.Millisecond
	s := newContractFixture(t, cfg)
	events := s.URL + "/d/ops/events"

	t.Run("stream headers, comment at once, full state", func(t *testing.T) {
		// Hold the panel's table locked so that its query cannot finish:
		// whatever arrives meanwhile was sent before any data.
		ctx := context.Background()
		tx, err := s.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(ctx)
		if _, err := tx.Exec(ctx, "LOCK TABLE t IN ACCESS EXCLUSIVE MODE"); err != nil {
			t.Fatal(err)
		}
		c := openSSE(t, nil, events, "Accept-Encoding", "gzip, deflate, br")
		resp := c.resp
		for _, h := range [][2]string{
			{"Content-Type", "text/event-stream"},
			{"Cache-Control", "no-store, no-transform"},
			{"X-Accel-Buffering", "no"},
			{"Content-Encoding", ""},
		} {
			if got := resp.Header.Get(h[0]); got != h[1] {
				t.Errorf("%s: got %q, want %q", h[0], got, h[1])
			}
		}
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("got %d, want 200", resp.StatusCode)
		}
		first := c.hello(t)
		if !strings.HasPrefix(first[0], ":") {
			t.Errorf("got first line %q, want a comment", first[0])
		}
		ms, err := strconv.Atoi(strings.TrimPrefix(first[len(first)-1], "retry: "))
		if err != nil || ms <= 0 {
			t.Errorf("got %q, want a positive retry", first[len(first)-1])
		}
		if err := tx.Rollback(ctx); err != nil {
			t.Fatal(err)
		}
		m := c.nextUpdate(t)
		v := wantUpdate(t, m, "#heading", "#grid")
		if !strings.Contains(m.body(), "<hx-partial") {
			t.Errorf("got body %q, want hx-partial elements", trim(m.body()))
		}
		if cur := currentVersion(t, s.testServer, "ops"); cur != v {
			t.Errorf("got id %s, want the current version %s", v, cur)
		}
	})

	t.Run("resume with the current version sends nothing", func(t *testing.T) {
		for _, how := range []struct {
			name string
			open func(v string) *sseClient
		}{
			{"header", func(v string) *sseClient { return openSSE(t, nil, events, "Last-Event-ID", v) }},
			{"query", func(v string) *sseClient { return openSSE(t, nil, events+"?lastEventId="+v) }},
			{"header wins over query", func(v string) *sseClient {
				return openSSE(t, nil, events+"?lastEventId=garbage", "Last-Event-ID", v)
			}},
		} {
			t.Run(how.name, func(t *testing.T) {
				cur := currentVersion(t, s.testServer, "ops")
				c := how.open(cur.String())
				c.hello(t)
				insertRow(t, s.testServer)
				// The first update after the write is the step from cur:
				// only the panel that changed. A full state sent at
				// connect would come first and fail here.
				m := c.nextUpdate(t)
				v := wantUpdate(t, m, "#panel-p1")
				if v == cur {
					t.Errorf("got version %s after a write, want a new one", v)
				}
			})
		}
	})

	t.Run("malformed Last-Event-ID means unknown: full state", func(t *testing.T) {
		for _, bad := range []string{"garbage", strings.Repeat("f", 8000), "zz-zzzzzzzzzzzzzzzz",
			"1-000000000000000g", "-", "0x1-0000000000000000", "\"1-0000000000000000\""} {
			c := openSSE(t, nil, events, "Last-Event-ID", bad)
			if c.resp.StatusCode != http.StatusOK {
				t.Fatalf("Last-Event-ID %.40q: got %d, want 200", bad, c.resp.StatusCode)
			}
			wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
			c.close()
		}
		for _, q := range []string{"", "garbage", "%ff%00", "%00", strings.Repeat("a", 4000)} {
			c := openSSE(t, nil, events+"?lastEventId="+q)
			if c.resp.StatusCode != http.StatusOK {
				t.Fatalf("?lastEventId=%.40q: got %d, want 200", q, c.resp.StatusCode)
			}
			wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
			c.close()
		}
		// Header wins even when it is the malformed one.
		cur := currentVersion(t, s.testServer, "ops")
		c := openSSE(t, nil, events+"?lastEventId="+cur.String(), "Last-Event-ID", "garbage")
		wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	})

	// The resume contract: a version this server never issued (another
	// server's, another database's, a forged one, or the old <lsn>-<hash>
	// form, however large its position) gets the full state without
	// waiting for a write, never silence.
	t.Run("a version this server never issued gets the full state", func(t *testing.T) {
		foreign := []string{"ffffffffffffffff-0000000000000000", "ffffffffff-0000000000000000",
			strings.Repeat("f", 32), strings.Repeat("0", 32)}
		for _, v := range foreign {
			for _, c := range []*sseClient{
				openSSE(t, nil, events, "Last-Event-ID", v),
				openSSE(t, nil, events+"?lastEventId="+v),
			} {
				c.hello(t)
				got := wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
				if cur := currentVersion(t, s.testServer, "ops"); got != cur {
					t.Errorf("resuming from %s: got %s, want the current version %s", v, got, cur)
				}
				c.close()
			}
		}
	})

	// A current client hears a heartbeat event at once (the opening, so the
	// page knows bytes get through) and then one every interval.
	t.Run("heartbeat", func(t *testing.T) {
		c := openSSE(t, nil, events, "Last-Event-ID", currentVersion(t, s.testServer, "ops").String())
		c.hello(t)
		m, err := c.nextWithin(contractWait)
		if err != nil {
			t.Fatal(err)
		}
		if m.event != "heartbeat" || m.retry == "" || m.hasID {
			t.Fatalf("got %q, want the opening's retry and `event: heartbeat` without id", m.lines)
		}
		// Presence events (who is watching) may come between.
		for m, err = c.nextWithin(contractWait); err == nil && m.event == "presence"; m, err = c.nextWithin(contractWait) {
		}
		if err != nil {
			t.Fatal(err)
		}
		if m.event != "heartbeat" || !slicesContain(m.comments, ": heartbeat") || m.hasID {
			t.Fatalf("got %q, want a `: heartbeat` comment and `event: heartbeat` without id", m.lines)
		}
	})

	t.Run("long-poll", func(t *testing.T) {
		resp, body := s.get(t, "/d/ops/poll")
		etag := resp.Header.Get("ETag")
		cur, ok := hub.ParseVersion(strings.Trim(etag, `"`))
		if resp.StatusCode != http.StatusOK || !ok || etag != `"`+cur.String()+`"` {
			t.Fatalf("got %d with ETag %q, want 200 with a quoted version", resp.StatusCode, etag)
		}
		if got := resp.Header.Get("Cache-Control"); got != "no-cache" {
			t.Errorf("Cache-Control: got %q, want no-cache", got)
		}
		if got := targets(body); strings.Join(got, " ") != "#heading #grid" {
			t.Errorf("got partials %v, want the heading and the grid", got)
		}
		for _, inm := range []string{etag, "W/" + etag, `"x", ` + etag, `W/"nope", W/` + etag} {
			resp, body := s.get(t, "/d/ops/poll?wait=0", "If-None-Match", inm)
			if resp.StatusCode != http.StatusNotModified {
				t.Errorf("If-None-Match %s, wait=0: got %d %q, want 304", inm, resp.StatusCode, trim(body))
			}
		}
		// A version this server never issued: the full state, not 304.
		for _, foreign := range []string{`"ffffffffffffffff-0000000000000000"`, `"` + strings.Repeat("f", 32) + `"`} {
			resp, body := s.get(t, "/d/ops/poll?wait=0", "If-None-Match", foreign)
			if got := targets(body); resp.StatusCode != http.StatusOK || strings.Join(got, " ") != "#heading #grid" {
				t.Errorf("If-None-Match %s: got %d with %v, want 200 with the heading and the grid", foreign, resp.StatusCode, got)
			}
		}
		// "*" matches any current state: 304 at once, even with a long wait.
		resp, _ = s.get(t, "/d/ops/poll?wait=50", "If-None-Match", "*")
		if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != etag {
			t.Errorf("If-None-Match *: got %d with ETag %q, want 304 with %s", resp.StatusCode, resp.Header.Get("ETag"), etag)
		}
		for _, bad := range []string{`"garbage"`, `W/""`, strings.Repeat("x", 8000)} {
			resp, body := s.get(t, "/d/ops/poll?wait=0", "If-None-Match", bad)
			if resp.StatusCode != http.StatusOK || len(targets(body)) != 2 {
				t.Errorf("If-None-Match %.40q: got %d, want 200 with the heading and the grid", bad, resp.StatusCode)
			}
		}
		resp, body = s.get(t, "/d/ops/poll?wait=abc", "If-None-Match", etag)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, "wait must be a number of seconds") {
			t.Errorf("wait=abc: got %d %q, want 400 saying what wait must be", resp.StatusCode, body)
		}
		// No change within a second: 304, with the same ETag.
		resp, _ = s.get(t, "/d/ops/poll?wait=1", "If-None-Match", etag)
		if resp.StatusCode != http.StatusNotModified || resp.Header.Get("ETag") != etag {
			t.Errorf("wait=1 without change: got %d %q, want 304 %s", resp.StatusCode, resp.Header.Get("ETag"), etag)
		}
		// A write during the wait answers it, with only the changed panel.
		for _, wait := range []string{"5", "999"} {
			etag := `"` + currentVersion(t, s.testServer, "ops").String() + `"`
			type answer struct {
				resp *http.Response
				body string
			}
			got := make(chan answer, 1)
			before := promValue(t, s.testServer, "dashboard_longpoll_waiting")
			go func() {
				req, _ := http.NewRequest("GET", s.URL+"/d/ops/poll?wait="+wait, nil)
				req.Header.Set("If-None-Match", etag)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					got <- answer{}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got <- answer{resp, string(b)}
			}()
			eventually(t, "the long-poll waiting", func() bool {
				return promValue(t, s.testServer, "dashboard_longpoll_waiting") > before
			})
			insertRow(t, s.testServer)
			var a answer
			select {
			case a = <-got:
			case <-time.After(contractWait):
				t.Fatalf("wait=%s: no answer within %v of a write", wait, contractWait)
			}
			if a.resp == nil || a.resp.StatusCode != http.StatusOK {
				t.Fatalf("wait=%s: got %v, want 200", wait, a.resp)
			}
			if a.resp.Header.Get("ETag") == etag {
				t.Errorf("wait=%s: got the old ETag back", wait)
			}
			if got := targets(a.body); len(got) != 1 || got[0] != "#panel-p1" {
				t.Errorf("wait=%s: got partials %v, want only #panel-p1", wait, got)
			}
		}
	})

	t.Run("routes, methods, traversal, headers", func(t *testing.T) {
		for _, path := range []string{"/d/nope", "/d/nope/events", "/d/nope/poll", "/d/NOPE", "/d/ops/nope",
			"/static/app.js", "/static/../go.mod", "/static/..%2fgo.mod", "/static/%2e%2e/go.mod",
			"/static/vendor/../../go.mod", "/static//etc/passwd", "/go.mod", "/static/"} {
			resp, body := s.get(t, path)
			if resp.StatusCode != http.StatusNotFound || strings.Contains(body, "module github.com") {
				t.Errorf("GET %s: got %d, want 404", path, resp.StatusCode)
			}
		}
		for _, method := range []string{"POST", "PUT", "DELETE", "PATCH"} {
			for _, path := range []string{"/d/ops", "/d/ops/events", "/d/ops/poll", "/d/x", "/d/x/events"} {
				req, _ := http.NewRequest(method, s.URL+path, strings.NewReader("x=1"))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusMethodNotAllowed {
					t.Errorf("%s %s: got %d, want 405", method, path, resp.StatusCode)
				}
				checkSecurityHeaders(t, method+" "+path, resp)
			}
		}
		for _, path := range []string{"/", "/d/ops", "/d/ops/poll", "/d/ops/poll?wait=abc", "/d/nope",
			static.Path("app.js"), "/metrics", "/healthz", "/readyz", "/nope"} {
			resp, _ := s.get(t, path)
			checkSecurityHeaders(t, "GET "+path, resp)
		}
		c := openSSE(t, nil, events)
		checkSecurityHeaders(t, "GET /d/ops/events", c.resp)
		c.close()

		_, body := s.get(t, "/metrics")
		for _, name := range []string{"dashboard_sse_clients", "dashboard_frames_sent_total",
			"dashboard_slow_clients_dropped_total", "dashboard_refresh_queries_total"} {
			if !strings.Contains(body, "\n"+name) {
				t.Errorf("/metrics lacks %s", name)
			}
		}
		if promValue(t, s.testServer, "dashboard_frames_sent_total") == 0 {
			t.Error("dashboard_frames_sent_total is 0 after frames were sent")
		}
	})
}

func slicesContain(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

func checkSecurityHeaders(t testing.TB, what string, resp *http.Response) {
	t.Helper()
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
		t.Errorf("%s: Content-Security-Policy %q, want script-src 'self' and frame-ancestors 'none'", what, csp)
	}
	if got := resp.Header.Get("X-Content-Type-Options"); got != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q, want nosniff", what, got)
	}
	if got := resp.Header.Get("Referrer-Policy"); got != "no-referrer" {
		t.Errorf("%s: Referrer-Policy %q, want no-referrer", what, got)
	}
}

func TestSSEMaxAge(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.StreamMaxAge = time.Second
	s := newContractFixture(t, cfg)
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	start := time.Now()
	c.nextUpdate(t)
	for {
		_, err := c.line(contractWait)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("got %v, want the server to end the stream", err)
		}
	}
	t.Logf("stream ended by the server after %v", time.Since(start))
}

func TestShutdownEndsStreams(t *testing.T) {
	t.Parallel()
	s, stop := startStoppable(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	createDashboard(t, s.pool, "ops", true, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	awaitDashboard(t, s, "ops", "t")
	streams := []*sseClient{openSSE(t, nil, s.URL+"/d/ops/events"), openSSE(t, nil, s.URL+"/d/ops/events")}
	var cur hub.Version
	for _, c := range streams {
		cur = wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	}
	// A waiting long-poll is answered too.
	polled := pollInBackground(s, "ops", cur, 50)
	eventually(t, "the long-poll waiting", func() bool {
		return promValue(t, s, "dashboard_longpoll_waiting") == 1
	})
	start := time.Now()
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for i, c := range streams {
		sawRetry := false
		for {
			l, err := c.line(contractWait)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("stream %d: got %v, want it to end at shutdown", i, err)
			}
			sawRetry = sawRetry || strings.HasPrefix(l, "retry: ")
		}
		if !sawRetry {
			t.Errorf("stream %d ended without a retry field telling it to reconnect", i)
		}
	}
	select {
	case code := <-polled:
		if code != http.StatusNotModified {
			t.Errorf("long-poll at shutdown: got %d, want 304", code)
		}
	case <-time.After(contractWait):
		t.Fatal("long-poll not answered at shutdown")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v", err)
	}
	t.Logf("shutdown with 2 streams and a long-poll open took %v", time.Since(start))
}

// TestSlowClientDropped has a client that never reads while the server
// sends it large frames: the server drops it after the write timeout,
// counts it, and keeps serving the others.
func TestSlowClientDropped(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.WriteTimeout = 500 * time.Millisecond
	s := startServer(t, cfg, false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	// About 1 MB per frame: 500 rows of 1,984 characters that all change
	// with every write.
	createDashboard(t, s.pool, "big", true, [3]string{"rows", "table",
		`SELECT g AS i, repeat(md5(g::text || (SELECT count(*) FROM t)::text), 62) AS s FROM generate_series(1, 500) g`})
	awaitDashboard(t, s, "big", "t")

	good := openSSE(t, nil, s.URL+"/d/big/events")
	first := good.nextUpdate(t)
	t.Logf("frame size %d bytes", len(first.body()))

	// The slow client asks for a tiny receive window and never reads.
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	slow, err := d.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := io.WriteString(slow, "GET /d/big/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two streams open", func() bool { return promValue(t, s, "dashboard_sse_clients") == 2 })

	before := promValue(t, s, "dashboard_slow_clients_dropped_total")
	writes := 0
	for promValue(t, s, "dashboard_slow_clients_dropped_total") == before {
		if writes == 100 {
			t.Fatalf("slow client not dropped after %d writes of ~%d bytes", writes, len(first.body()))
		}
		insertRow(t, s)
		writes++
		good.nextUpdate(t) // the reading client keeps up
	}
	t.Logf("slow client dropped after %d writes", writes)
	eventually(t, "one stream left", func() bool { return promValue(t, s, "dashboard_sse_clients") == 1 })
	insertRow(t, s)
	wantUpdate(t, good.nextUpdate(t), "#panel-rows")
}

// TestHTTPHead: HEAD of the stream and of the long-poll answers GET's
// headers and nothing else: no body, no hijacked connection, no wait, and
// nothing counted. Access is checked as for GET.
func TestHTTPHead(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	secret, _ := s.token(t, "secret")
	conn, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	br := bufio.NewReader(conn)
	// ask sends a request on the one connection and reads the answer;
	// a body written after a HEAD answer would break the next one.
	ask := func(method, path string, header ...string) *http.Response {
		t.Helper()
		conn.SetDeadline(time.Now().Add(10 * time.Second))
		req := method + " " + path + " HTTP/1.1\r\nHost: x\r\n"
		for i := 0; i+1 < len(header); i += 2 {
			req += header[i] + ": " + header[i+1] + "\r\n"
		}
		if _, err := io.WriteString(conn, req+"\r\n"); err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		resp, err := http.ReadResponse(br, &http.Request{Method: method})
		if err != nil {
			t.Fatalf("%s %s: reading the answer: %v", method, path, err)
		}
		if _, err := io.Copy(io.Discard, resp.Body); err != nil {
			t.Fatalf("%s %s: reading the body: %v", method, path, err)
		}
		return resp
	}
	etag := `"` + currentVersion(t, s.testServer, "ops").String() + `"`
	for _, tt := range []struct {
		path        string
		header      []string
		want        int
		contentType string
	}{
		{"/d/ops/events", nil, 200, "text/event-stream"},
		{"/d/ops/events", []string{"Last-Event-ID", "garbage"}, 200, "text/event-stream"},
		{"/d/ops/poll?wait=30", []string{"If-None-Match", etag}, 200, "text/html; charset=utf-8"},
		{"/d/secret/events", nil, 404, ""},
		{"/d/secret/poll", nil, 404, ""},
		{"/d/nope/events", nil, 404, ""},
		{"/d/secret/events", cookie(secret), 200, "text/event-stream"},
		{"/d/secret/poll?wait=30", append(cookie(secret), "If-None-Match", etag), 200, "text/html; charset=utf-8"},
	} {
		resp := ask("HEAD", tt.path, tt.header...)
		if resp.StatusCode != tt.want || resp.Close {
			t.Errorf("HEAD %s: got %d, closing %v; want %d on a connection kept open", tt.path, resp.StatusCode, resp.Close, tt.want)
		}
		if tt.contentType != "" && resp.Header.Get("Content-Type") != tt.contentType {
			t.Errorf("HEAD %s: got Content-Type %q, want %q", tt.path, resp.Header.Get("Content-Type"), tt.contentType)
		}
		if strings.HasSuffix(tt.path, "/events") && tt.want == 200 {
			if got := resp.Header.Get("Cache-Control"); got != "no-store, no-transform" {
				t.Errorf("HEAD %s: got Cache-Control %q, want no-store, no-transform", tt.path, got)
			}
		}
		for _, m := range []string{"dashboard_sse_clients", "dashboard_longpoll_waiting"} {
			if n := promValue(t, s.testServer, m); n != 0 {
				t.Errorf("after HEAD %s: %s is %v, want 0", tt.path, m, n)
			}
		}
		if resp.Close {
			return
		}
	}
	// The connection still serves: nothing was written after the heads.
	if resp := ask("GET", "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz after the HEADs: got %d, want 200", resp.StatusCode)
	}
}

// TestHTTPMetricsAddr: with DASHBOARD_METRICS_ADDR set, /metrics is
// served there and is not on the public port.
func TestHTTPMetricsAddr(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MetricsAddr = "127.0.0.1:0"
	s := startServer(t, cfg, false)
	if resp, _ := s.get(t, "/metrics"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the public address: got %d, want 404", resp.StatusCode)
	}
	if s.metricsAddr == "" || s.metricsAddr == s.addr {
		t.Fatalf("got metrics address %q beside %q, want an address of its own", s.metricsAddr, s.addr)
	}
	resp, err := http.Get("http://" + s.metricsAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "\ndashboard_sse_clients ") {
		t.Errorf("GET /metrics on the metrics address: got %d %q, want 200 with dashboard_sse_clients", resp.StatusCode, trim(string(body)))
	}
	for _, path := range []string{"/", "/d/x", "/healthz"} {
		resp, err := http.Get("http://" + s.metricsAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s on the metrics address: got %d, want 404", path, resp.StatusCode)
		}
	}
	// The public site still serves.
	if resp, _ := s.get(t, "/healthz"); resp.StatusCode != http.StatusOK {
		t.Errorf("GET /healthz: got %d, want 200", resp.StatusCode)
	}
	// A metrics address that is taken stops the start at once, naming
	// the variable.
	taken := cfg
	taken.MetricsAddr = s.metricsAddr
	err = serve(context.Background(), taken, slog.New(slog.DiscardHandler), serveOptions{})
	if err == nil || !strings.Contains(err.Error(), "DASHBOARD_METRICS_ADDR") {
		t.Errorf("serve with a taken metrics address: got %v, want an error naming DASHBOARD_METRICS_ADDR", err)
	}
}
