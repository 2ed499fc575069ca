package main

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/wire"
)

// The drain's tests (docs/architecture.md, "Drain"): readiness turns false
// and new work is refused with 503 at the same moment (Connection: close on
// HTTP/1.1 only),
// open streams are told to reconnect with delays spread over 0.5-5 s, waiting
// long-polls answer at once, and the process exits within
// DASHBOARD_SHUTDOWN_TIMEOUT even with a client that never reads.

// TestDrainRefusesNewWork: once the server drains, /readyz says so and
// every request but health, readiness and metrics gets 503 with
// Retry-After; over HTTP/1.1 the answer closes the connection, over HTTP/2
// (h2c) it does not, and the connection keeps serving.
func TestDrainRefusesNewWork(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.H2C = true
	s := newContractFixture(t, cfg)
	resp, _ := s.get(t, "/readyz")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz before the drain: got %d, want 200", resp.StatusCode)
	}
	s.site.Drain()

	resp, body := s.get(t, "/readyz")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "draining") {
		t.Errorf("/readyz while draining: got %d %q, want 503 saying draining", resp.StatusCode, body)
	}
	for _, path := range []string{"/healthz", "/metrics"} {
		if resp, _ := s.get(t, path); resp.StatusCode != http.StatusOK {
			t.Errorf("%s while draining: got %d, want 200", path, resp.StatusCode)
		}
	}

	h1 := &http.Client{Transport: &http.Transport{}}
	t.Cleanup(h1.CloseIdleConnections)
	for _, path := range []string{"/", "/d/ops", "/d/ops/events", "/d/ops/poll?wait=0", "/d/ops/panels/p1.csv", "/static/nothing"} {
		resp := get(t, h1, s.URL+path)
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("HTTP/1.1 %s while draining: got %d, want 503", path, resp.StatusCode)
		}
		if resp.Header.Get("Retry-After") == "" {
			t.Errorf("HTTP/1.1 %s: no Retry-After", path)
		}
		if !resp.Close { // net/http reads Connection: close into Close
			t.Errorf("HTTP/1.1 %s: the connection stays open, want Connection: close", path)
		}
		if got := resp.Header.Get("X-Dashboard-Draining"); got != "1" {
			t.Errorf("HTTP/1.1 %s: X-Dashboard-Draining %q, want 1", path, got)
		}
	}

	// h2c with prior knowledge: the same refusal, and the connection
	// stays up (a Connection: close would have become a GOAWAY): the next
	// request reuses it. Go's HTTP/2 strips a Connection header on both
	// sides, so reuse is what tells.
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	h2 := &http.Client{Transport: &http.Transport{Protocols: &p, TLSClientConfig: &tls.Config{}}}
	t.Cleanup(h2.CloseIdleConnections)
	for i, path := range []string{"/d/ops", "/d/ops/poll?wait=0", "/healthz"} {
		var reused bool
		ctx := httptrace.WithClientTrace(context.Background(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) { reused = info.Reused },
		})
		req, _ := http.NewRequestWithContext(ctx, "GET", s.URL+path, nil)
		resp, err := h2.Do(req)
		if err != nil {
			t.Fatalf("h2c %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.ProtoMajor != 2 {
			t.Fatalf("h2c %s: got HTTP/%d, want 2", path, resp.ProtoMajor)
		}
		want := http.StatusServiceUnavailable
		if path == "/healthz" {
			want = http.StatusOK
		}
		if resp.StatusCode != want {
			t.Errorf("h2c %s: got %d, want %d", path, resp.StatusCode, want)
		}
		if i > 0 && !reused {
			t.Errorf("h2c %s: a new connection, want the first one still open (no GOAWAY)", path)
		}
	}
}

// get fetches url with client and reads the body.
func get(t *testing.T, client *http.Client, url string) *http.Response {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// TestDrainSpreadsStreams: 200 open streams are each told to reconnect
// with a retry inside [500, 5000] ms, and the retries differ between
// clients and cover most of that range. While the server drains, after the
// streams heard their goodbye, /readyz says draining and a new request gets
// 503 with Retry-After and Connection: close, and a waiting long-poll has
// had an answer marked as the drain's.
func TestDrainSpreadsStreams(t *testing.T) {
	t.Parallel()
	const n = 200
	inDrain, checked := make(chan struct{}), make(chan struct{})
	s, stop := startStoppable(t, testConfig(t), false, func(o *serveOptions) {
		o.drained = func() {
			close(inDrain)
			select {
			case <-checked:
			case <-time.After(contractWait):
			}
		}
	})
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	createDashboard(t, s.pool, "ops", true, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	awaitDashboard(t, s, "ops", "t")
	streams := make([]*sseClient, n)
	var cur hub.Version
	for i := range streams {
		streams[i] = openSSE(t, nil, s.URL+"/d/ops/events")
		cur = wantUpdate(t, streams[i].nextUpdate(t), "#heading", "#grid")
	}
	type answer struct {
		code             int
		draining, closes bool
	}
	polled := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL+"/d/ops/poll?wait=50", nil)
		req.Header.Set("If-None-Match", `"`+cur.String()+`"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- answer{}
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		polled <- answer{resp.StatusCode, resp.Header.Get("X-Dashboard-Draining") == "1", resp.Close}
	}()
	eventually(t, "the long-poll waiting", func() bool { return promValue(t, s, "dashboard_longpoll_waiting") == 1 })

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	retries := make([]int, len(streams))
	for i, c := range streams {
		retry, sawReconnect := 0, false
		for {
			m, err := c.nextWithin(contractWait)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatalf("stream %d: got %v, want a goodbye and the end", i, err)
			}
			if m.event == "reconnect" {
				sawReconnect = true
				retry, _ = strconv.Atoi(m.retry)
			}
		}
		if !sawReconnect {
			t.Fatalf("stream %d ended without the reconnect event", i)
		}
		retries[i] = retry
	}
	select {
	case <-inDrain:
	case <-time.After(contractWait):
		t.Fatal("the server did not reach the end of its drain")
	}
	if code, head := rawGet(t, dial(t, s.addr), "/readyz"); code != http.StatusServiceUnavailable || !strings.Contains(head, "draining") {
		t.Errorf("/readyz while draining: got %d %q, want 503 draining", code, head)
	}
	code, head := rawGet(t, dial(t, s.addr), "/d/ops")
	if code != http.StatusServiceUnavailable || !strings.Contains(head, "\r\nConnection: close\r\n") ||
		!strings.Contains(head, "\r\nRetry-After: ") {
		t.Errorf("a page while draining: got %d\n%s\nwant 503 with Connection: close and Retry-After", code, head)
	}
	close(checked)
	select {
	case a := <-polled:
		if a.code != http.StatusNotModified || !a.draining || !a.closes {
			t.Errorf("long-poll at the drain: got %+v, want 304 marked draining, closing its connection", a)
		}
	case <-time.After(contractWait):
		t.Fatal("long-poll not answered at the drain")
	}
	if err := <-stopped; err != nil {
		t.Fatalf("serve returned %v", err)
	}

	slices.Sort(retries)
	if retries[0] < wire.GoodbyeMinRetry || retries[len(retries)-1] > wire.GoodbyeMaxRetry {
		t.Fatalf("retries from %d to %d ms, want all inside [%d, %d]", retries[0], retries[len(retries)-1],
			wire.GoodbyeMinRetry, wire.GoodbyeMaxRetry)
	}
	// A uniform draw misses a given tenth of the range in 200 draws with
	// probability 0.9^200 (about 7e-10); bunched retries miss several.
	var tenths [10]int
	for _, r := range retries {
		tenths[min(9, (r-wire.GoodbyeMinRetry)*10/(wire.GoodbyeMaxRetry-wire.GoodbyeMinRetry))]++
	}
	for i, c := range tenths {
		if c == 0 {
			t.Errorf("no stream's retry in tenth %d of the range; by tenth: %v", i, tenths)
		}
	}
	if d := len(slices.Compact(slices.Clone(retries))); d < n/2 {
		t.Errorf("only %d distinct retries among %d streams, want them to differ", d, n)
	}
	t.Logf("%d streams: retries from %d to %d ms, by tenth of the range %v", len(retries), retries[0], retries[len(retries)-1], tenths)
}

// dial opens a TCP connection to addr, closed with the test.
func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// rawGet sends one HTTP/1.1 GET for path on c and returns the status and
// the response head as the server wrote it, followed by the body when the
// head gives its length.
func rawGet(t *testing.T, c net.Conn, path string) (int, string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(contractWait))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	r := bufio.NewReader(c)
	var head strings.Builder
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("GET %s: reading the head: %v (got %q)", path, err, head.String())
		}
		head.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	f := strings.Fields(head.String())
	if len(f) < 2 {
		t.Fatalf("GET %s: head %q", path, head.String())
	}
	code, _ := strconv.Atoi(f[1])
	out := head.String()
	if _, v, ok := strings.Cut(out, "\r\nContent-Length: "); ok {
		n, _ := strconv.Atoi(v[:strings.Index(v, "\r\n")])
		body := make([]byte, n)
		if _, err := io.ReadFull(r, body); err != nil {
			t.Fatalf("GET %s: reading the body: %v", path, err)
		}
		out += string(body)
	}
	return code, out
}

// TestSIGTERMDrainsAndExits runs the real binary and sends it SIGTERM
// while a stream reads, a client that never reads has a stream whose
// socket is full, and a long-poll waits. The reading stream gets its
// goodbye, the long-poll its answer, and the process exits with status 0
// well before a generous bound, although the write timeout (30 s) alone
// would have kept the full socket for longer.
func TestSIGTERMDrainsAndExits(t *testing.T) {
	t.Parallel()
	bin := filepath.Join(t.TempDir(), "dashboard")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	dbURL := pgtest.NewDB(t)
	const grace = 3 * time.Second
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(), "DATABASE_URL="+dbURL, "DASHBOARD_ADDR=127.0.0.1:0", "DASHBOARD_LOG_LEVEL=debug",
		"DASHBOARD_SHUTDOWN_TIMEOUT="+grace.String(), "DASHBOARD_WRITE_TIMEOUT=30s", "DASHBOARD_LISTENER_PING=1s",
		"DASHBOARD_BATCH_WINDOW=10ms")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	var logs syncBuffer
	addrCh := make(chan string, 1)
	var readLogs sync.WaitGroup
	readLogs.Add(1)
	go func() {
		defer readLogs.Done()
		re := regexp.MustCompile(`url=http://([0-9.:]+)/`)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.Write([]byte(sc.Text() + "\n"))
			if m := re.FindStringSubmatch(sc.Text()); m != nil && strings.Contains(sc.Text(), "dashboard serving") {
				addrCh <- m[1]
			}
		}
	}()
	go func() {
		readLogs.Wait()
		exitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("server logs:\n%s", logs.String())
		}
	})
	var addr string
	select {
	case addr = <-addrCh:
	case <-exited:
		t.Fatalf("the server exited at start: %v\n%s", exitErr, logs.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("the server did not start within 60s\n%s", logs.String())
	}
	s := &testServer{running: &running{addr: addr}, URL: "http://" + addr, logs: &logs}
	eventually(t, "the server ready", func() bool {
		resp, err := http.Get(s.URL + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	pool, err := pgxpool.New(context.Background(), dbURL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if _, err := pool.Exec(context.Background(), `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`); err != nil {
		t.Fatal(err)
	}
	// About 1 MB per frame, so that one frame fills a socket that is not
	// read.
	createDashboard(t, pool, "big", true, [3]string{"rows", "table",
		`SELECT g AS i, repeat(md5(g::text || (SELECT count(*) FROM t)::text), 62) AS s FROM generate_series(1, 500) g`})
	var reader *sseClient
	eventually(t, "the dashboard served", func() bool {
		resp, err := http.Get(s.URL + "/d/big")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	reader = openSSE(t, nil, s.URL+"/d/big/events")
	cur := wantUpdate(t, reader.nextUpdate(t), "#heading", "#grid")

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	stuck, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stuck.Close()
	if _, err := io.WriteString(stuck, "GET /d/big/events HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "two streams open", func() bool { return promValue(t, s, "dashboard_sse_clients") == 2 })

	polled := make(chan int, 1)
	go func() {
		req, _ := http.NewRequest("GET", s.URL+"/d/big/poll?wait=50", nil)
		req.Header.Set("If-None-Match", `"`+cur.String()+`"`)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			polled <- 0
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		polled <- resp.StatusCode
	}()
	eventually(t, "the long-poll waiting", func() bool { return promValue(t, s, "dashboard_longpoll_waiting") == 1 })

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	retry := ""
	for {
		m, err := reader.nextWithin(contractWait)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("reading stream: got %v, want a goodbye and the end", err)
		}
		if m.event == "reconnect" {
			retry = m.retry
		}
	}
	if ms, err := strconv.Atoi(retry); err != nil || ms < wire.GoodbyeMinRetry || ms > wire.GoodbyeMaxRetry {
		t.Errorf("goodbye retry %q, want a number inside [%d, %d]", retry, wire.GoodbyeMinRetry, wire.GoodbyeMaxRetry)
	}
	select {
	case code := <-polled:
		if code != http.StatusNotModified {
			t.Errorf("long-poll at SIGTERM: got %d, want 304", code)
		}
	case <-time.After(contractWait):
		t.Fatal("long-poll not answered at SIGTERM")
	}
	// Generous: the bound is the timeout, and the test only asks that the
	// process does not wait for the write timeout or for ever.
	const bound = grace + 10*time.Second
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("exit: %v, want status 0", exitErr)
		}
	case <-time.After(bound):
		t.Fatalf("the process did not exit within %v of SIGTERM", bound)
	}
	took := time.Since(start)
	if !strings.Contains(logs.String(), "dashboard stopped") {
		t.Errorf("the log does not say the server stopped")
	}
	t.Logf("exited %v after SIGTERM (DASHBOARD_SHUTDOWN_TIMEOUT=%v)", took, grace)
}
