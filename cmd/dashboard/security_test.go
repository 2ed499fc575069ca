package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/config"
)

// This file tests what hostile clients and hostile data can do: access
// control, token exchange and revocation, escaping, limits and slowloris.

// noRedirect is a client that returns redirects instead of following them.
var noRedirect = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// securityFixture is a server with table t, the public dashboard "ops",
// the private dashboards "secret" and "other", and identity headers
// trusted only from 10.0.0.0/8 (so never from the tests' 127.0.0.1).
type securityFixture struct {
	*testServer
	secretID int64
}

func newSecurityFixture(t *testing.T, cfg config.Config) *securityFixture {
	t.Helper()
	s := startServer(t, cfg, false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY, v text NOT NULL DEFAULT '')`)
	createDashboard(t, s.pool, "ops", true, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	id := createDashboard(t, s.pool, "secret", false, [3]string{"p1", "stat", "SELECT count(*) AS n FROM t"})
	createDashboard(t, s.pool, "other", false, [3]string{"p1", "stat", "SELECT 1 AS n"})
	for _, slug := range []string{"ops", "secret", "other"} {
		awaitDashboard(t, s, slug, "t")
	}
	return &securityFixture{s, id}
}

// token creates a token for slug ("" for every dashboard) and waits until
// the server's token store has it.
func (s *securityFixture) token(t testing.TB, slug string) (string, int64) {
	t.Helper()
	secret, tok, err := access.Create(context.Background(), s.pool, slug, "test "+slug, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	if slug == "" {
		slug = "secret"
	}
	s.awaitStatus(t, "/d/"+slug+"/poll?wait=0", http.StatusOK, cookie(secret)...)
	return secret, tok.ID
}

// status answers method path with the header name/value pairs; streams are
// closed once their headers arrived.
func (s *testServer) status(t testing.TB, method, path string, header ...string) int {
	t.Helper()
	req, err := http.NewRequest(method, s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		io.Copy(io.Discard, resp.Body)
	}
	return resp.StatusCode
}

// awaitStatus waits until GET path answers want, for changes that reach
// the server through the change feed (token expiry, revocation).
func (s *testServer) awaitStatus(t testing.TB, path string, want int, header ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("GET %s answering %d", path, want), func() bool {
		return s.status(t, "GET", path, header...) == want
	})
}

func cookie(secret string) []string { return []string{"Cookie", "dashboard_token=" + secret} }

func TestHostileRequests(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TrustedProxyCIDRs = []string{"10.0.0.0/8"}
	cfg.UserHeader = "X-Forwarded-User"
	s := newSecurityFixture(t, cfg)

	valid, _ := s.token(t, "secret")
	forOther, _ := s.token(t, "other")
	expired, expiredID := s.token(t, "secret")
	revoked, revokedID := s.token(t, "secret")
	s.exec(t, `UPDATE dashboard.access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, expiredID)
	if err := access.Revoke(context.Background(), s.pool, revokedID); err != nil {
		t.Fatal(err)
	}
	for _, secret := range []string{expired, revoked} {
		s.awaitStatus(t, "/d/secret", http.StatusNotFound, cookie(secret)...)
	}
	if got := s.status(t, "GET", "/d/secret", cookie(valid)...); got != http.StatusOK {
		t.Fatalf("valid token: got %d, want 200", got)
	}
	bigHeader := strings.Repeat("a", 64<<10)

	type request struct {
		method, path string
		header       []string
		raw          string // sent as is instead, when set
	}
	private := []string{"/d/secret", "/d/secret/events", "/d/secret/poll"}
	var cases []struct {
		name string
		req  request
		want int
	}
	add := func(name string, want int, reqs ...request) {
		for _, r := range reqs {
			cases = append(cases, struct {
				name string
				req  request
				want int
			}{name, r, want})
		}
	}
	onPrivate := func(header ...string) []request {
		var out []request
		for _, p := range private {
			out = append(out, request{method: "GET", path: p, header: header})
		}
		return out
	}
	add("unknown dashboard", 404, request{method: "GET", path: "/d/nope"},
		request{method: "GET", path: "/d/nope/events"}, request{method: "GET", path: "/d/nope/poll"})
	add("private without token", 404, onPrivate()...)
	add("invalid token", 404, onPrivate(cookie("garbage")...)...)
	add("invalid token, well formed", 404, onPrivate(cookie(access.NewSecret())...)...)
	add("expired token", 404, onPrivate(cookie(expired)...)...)
	add("revoked token", 404, onPrivate(cookie(revoked)...)...)
	add("token of another dashboard", 404, onPrivate(cookie(forOther)...)...)
	add("forged identity from an untrusted address", 404, onPrivate("X-Forwarded-User", "admin")...)
	add("token exchange refused", 404,
		request{method: "GET", path: "/d/secret?token=garbage"},
		request{method: "GET", path: "/d/secret?token=" + expired},
		request{method: "GET", path: "/d/secret?token=" + revoked},
		request{method: "GET", path: "/d/secret?token=" + forOther},
		request{method: "GET", path: "/d/nope?token=" + valid},
		request{method: "GET", path: "/d/secret?token=%ff%00"})
	add("valid token", 200, onPrivate(cookie(valid)...)...)
	add("valid token beside garbage cookies", 200, request{method: "GET", path: "/d/secret",
		header: []string{"Cookie", "dashboard_token=garbage; dashboard_token=" + valid + "; x=%ff"}})
	add("malformed Last-Event-ID", 200,
		request{method: "GET", path: "/d/ops/events", header: []string{"Last-Event-ID", "garbage"}},
		request{method: "GET", path: "/d/ops/events", header: []string{"Last-Event-ID", strings.Repeat("9", 20000)}},
		request{method: "GET", path: "/d/ops/events?lastEventId=%ff%00%0a"})
	add("malformed If-None-Match", 200,
		request{method: "GET", path: "/d/ops/poll", header: []string{"If-None-Match", "garbage"}},
		request{method: "GET", path: "/d/ops/poll?wait=0", header: []string{"If-None-Match", `W/"", "", W/`}})
	add("64 KB header", http.StatusRequestHeaderFieldsTooLarge,
		request{method: "GET", path: "/d/ops", header: []string{"X-Big", bigHeader}},
		request{method: "GET", path: "/d/ops/events", header: []string{"Cookie", "dashboard_token=" + bigHeader}})
	add("path traversal under /static/", 404,
		request{raw: "GET /static/../go.mod HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", method: "GET", path: "/go.mod"},
		request{method: "GET", path: "/static/..%2f..%2fgo.mod"},
		request{method: "GET", path: "/static/%2e%2e/%2e%2e/go.mod"},
		request{method: "GET", path: "/static/..\\..\\go.mod"},
		request{method: "GET", path: "/static/vendor/%00"})
	add("wrong method", 405,
		request{method: "POST", path: "/d/ops"}, request{method: "PUT", path: "/d/ops/events"},
		request{method: "DELETE", path: "/d/secret"}, request{method: "POST", path: "/d/ops/poll"},
		request{method: "PATCH", path: "/"})
	add("invalid UTF-8 and NUL in the query", 200,
		request{method: "GET", path: "/?q=%ff%fe%00"},
		request{method: "GET", path: "/d/ops?transport=%ff%00"},
		request{method: "GET", path: "/d/ops/poll?x=%ff&y=%00"})
	add("invalid UTF-8 and NUL in ?wait=", 400,
		request{method: "GET", path: "/d/ops/poll?wait=%ff"},
		request{method: "GET", path: "/d/ops/poll?wait=1%00"})
	add("raw NUL in the request line", 400,
		request{raw: "GET /d/ops?x=\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		request{raw: "GET /d/\x00 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"})
	add("raw invalid UTF-8 in the query", 200,
		request{raw: "GET /d/ops?x=\xff\xfe HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"})
	add("raw invalid UTF-8 in the path", 404,
		request{raw: "GET /d/\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		request{raw: "GET /d/secret\xff HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"})

	for _, c := range cases {
		var got int
		if c.req.raw != "" {
			got = rawStatus(t, s.addr, c.req.raw)
			if got >= 300 && got < 400 && c.req.path != "" {
				// The mux cleans the path first; the clean path must
				// not serve anything.
				got = s.status(t, c.req.method, c.req.path)
			}
		} else {
			got = s.status(t, c.req.method, c.req.path, c.req.header...)
		}
		if got != c.want {
			t.Errorf("%s: %s %.80q: got %d, want %d", c.name, c.req.method, c.req.path+c.req.raw, got, c.want)
		}
		// The server still serves others afterwards.
		if st := s.status(t, "GET", "/d/ops/poll?wait=0"); st != http.StatusOK {
			t.Fatalf("after %s: GET /d/ops/poll answered %d, want 200", c.name, st)
		}
	}
}

func TestTokenExchangeAndRevocation(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	s := newSecurityFixture(t, cfg)
	secret, id := s.token(t, "secret")

	resp, err := noRedirect.Get(s.URL + "/d/secret?token=" + secret + "&transport=poll")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/d/secret?transport=poll" {
		t.Fatalf("token exchange: got %d to %q, want 303 to /d/secret?transport=poll", resp.StatusCode, resp.Header.Get("Location"))
	}
	if got := resp.Header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("token exchange Cache-Control: got %q, want no-store", got)
	}
	var c *http.Cookie
	for _, k := range resp.Cookies() {
		if k.Name == "dashboard_token" {
			c = k
		}
	}
	if c == nil {
		t.Fatalf("token exchange set no dashboard_token cookie: %q", resp.Header.Values("Set-Cookie"))
	}
	if c.Value != secret || !c.HttpOnly || c.SameSite != http.SameSiteLaxMode || c.Path != "/d/secret" || c.MaxAge <= 0 {
		t.Errorf("got cookie %q, want the token, HttpOnly, SameSite=Lax, Path=/d/secret, a max age", c.String())
	}
	for _, p := range []string{"/d/secret", "/d/secret/events", "/d/secret/poll"} {
		if got := s.status(t, "GET", p, cookie(secret)...); got != http.StatusOK {
			t.Errorf("GET %s with the cookie: got %d, want 200", p, got)
		}
		if got := s.status(t, "GET", p); got != http.StatusNotFound {
			t.Errorf("GET %s without the cookie: got %d, want 404", p, got)
		}
	}

	// The index lists only what the caller may see.
	_, body := s.get(t, "/")
	if !strings.Contains(body, `href="/d/ops"`) || strings.Contains(body, "/d/secret") || strings.Contains(body, "/d/other") {
		t.Errorf("anonymous index: got %q, want ops only", trim(body))
	}
	everywhere, _ := s.token(t, "")
	resp, err = noRedirect.Get(s.URL + "/d/other?token=" + everywhere)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || !strings.Contains(resp.Header.Get("Set-Cookie"), "Path=/;") {
		t.Errorf("site-wide token exchange: got %d %q, want 303 with a cookie for /", resp.StatusCode, resp.Header.Get("Set-Cookie"))
	}
	_, body = s.get(t, "/", cookie(everywhere)...)
	if !strings.Contains(body, "/d/secret") || !strings.Contains(body, "/d/other") {
		t.Errorf("index with a site-wide token: got %q, want every dashboard", trim(body))
	}

	// Revocation closes an open stream, by a plain DELETE and by Revoke.
	for _, how := range []struct {
		name   string
		revoke func(id int64)
	}{
		{"DELETE", func(id int64) { s.exec(t, "DELETE FROM dashboard.access_tokens WHERE id = $1", id) }},
		{"access.Revoke", func(id int64) {
			if err := access.Revoke(context.Background(), s.pool, id); err != nil {
				t.Fatal(err)
			}
		}},
		{"expiry", func(id int64) {
			s.exec(t, "UPDATE dashboard.access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1", id)
		}},
	} {
		// The first case revokes the exchanged token, the others fresh ones.
		sec, tokID := secret, id
		if how.name != "DELETE" {
			sec, tokID = s.token(t, "secret")
		}
		stream := openSSE(t, nil, s.URL+"/d/secret/events", cookie(sec)...)
		if stream.resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: stream with token: got %d, want 200", how.name, stream.resp.StatusCode)
		}
		stream.nextUpdate(t)
		start := time.Now()
		how.revoke(tokID)
		for {
			_, err := stream.line(contractWait)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: got %v, want the stream closed", how.name, err)
			}
		}
		t.Logf("%s: stream closed %v after the token was revoked", how.name, time.Since(start))
		if got := s.status(t, "GET", "/d/secret/events", cookie(sec)...); got != http.StatusNotFound {
			t.Errorf("%s: reconnect with the revoked token: got %d, want 404", how.name, got)
		}
	}
}

func TestTrustedProxy(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TrustedProxyCIDRs = []string{"127.0.0.1/32"}
	cfg.UserHeader = "X-Forwarded-User"
	s := newSecurityFixture(t, cfg)
	for _, p := range []string{"/d/secret", "/d/secret/events", "/d/secret/poll"} {
		if got := s.status(t, "GET", p, "X-Forwarded-User", "alice"); got != http.StatusOK {
			t.Errorf("GET %s from the trusted proxy: got %d, want 200", p, got)
		}
		for _, user := range []string{"", "   "} {
			if got := s.status(t, "GET", p, "X-Forwarded-User", user); got != http.StatusNotFound {
				t.Errorf("GET %s with user %q: got %d, want 404", p, user, got)
			}
		}
	}
	_, body := s.get(t, "/", "X-Forwarded-User", "alice")
	if !strings.Contains(body, "/d/secret") {
		t.Errorf("index for a proxy user: got %q, want the private dashboards", trim(body))
	}
	// The same header from an address outside the range: see
	// TestHostileRequests (10.0.0.0/8 configured, requests from 127.0.0.1).
}

// TestHostileData renders values that attack the page.
func TestHostileData(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	id := createDashboard(t, s.pool, "evil", true,
		[3]string{"tbl", "table", `SELECT '<script>alert(1)</script>' AS html,
			'<svg onload=alert(1)><circle/></svg>' AS svg,
			'javascript:alert(1)' AS url,
			'"><img src=x onerror=alert(1)>' AS attr,
			'\xff'::bytea AS bin,
			1 AS "<b>col</b>"`},
		[3]string{"big", "stat", `SELECT repeat('A', 1000000) AS big`},
		[3]string{"feed", "feed", `SELECT now() AS t, '<script>alert(3)</script>' AS msg`},
		[3]string{"bars", "bar", `SELECT '<script>alert(2)</script>' AS label, 1 AS v`})
	s.exec(t, `UPDATE dashboard.dashboards SET title = '<script>alert(4)</script>', description = '<img src=x onerror=alert(5)>' WHERE id = $1`, id)
	awaitDashboard(t, s, "evil")
	eventually(t, "the hostile title in the catalog", func() bool {
		return strings.Contains(s.engine.Snapshot().Dashboard("evil").Title, "alert(4)")
	})

	check := func(what, body string) {
		t.Helper()
		for _, bad := range []string{"<script>alert", "<svg onload", "<img src=x", "<b>col</b>", `href="javascript:`,
			strings.Repeat("A", 2100)} {
			if strings.Contains(body, bad) {
				t.Errorf("%s contains %.40q unescaped", what, bad)
			}
		}
		if len(body) > 200<<10 {
			t.Errorf("%s is %d bytes, want the 1 MB value cut", what, len(body))
		}
	}
	resp, page := s.get(t, "/d/evil")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /d/evil: got %d", resp.StatusCode)
	}
	check("page", page)
	for _, want := range []string{"&lt;script&gt;alert(1)&lt;/script&gt;", `\xff`, "…"} {
		if !strings.Contains(page, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	t.Logf("page with a 1 MB value: %d bytes", len(page))
	_, poll := s.get(t, "/d/evil/poll")
	check("long-poll body", poll)
	stream := openSSE(t, nil, s.URL+"/d/evil/events")
	check("SSE frame", stream.nextUpdate(t).body())
}

func TestLimits(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxStreams = 2
	cfg.MaxStreamsIP = 1
	cfg.MaxLongPoll = 1
	s := newContractFixture(t, cfg)
	events := s.URL + "/d/ops/events"
	from := func(ip string) *http.Client {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}
	}
	want503 := func(what string, c *sseClient) {
		t.Helper()
		if c.resp.StatusCode != http.StatusServiceUnavailable || c.resp.Header.Get("Retry-After") == "" {
			t.Errorf("%s: got %d with Retry-After %q, want 503 with Retry-After", what, c.resp.StatusCode, c.resp.Header.Get("Retry-After"))
		}
		c.close()
	}
	a := openSSE(t, from("127.0.0.1"), events)
	a.nextUpdate(t)
	want503("second stream from one address", openSSE(t, from("127.0.0.1"), events))
	b := openSSE(t, from("127.0.0.2"), events)
	if b.resp.StatusCode != http.StatusOK {
		t.Fatalf("stream from another address: got %d, want 200", b.resp.StatusCode)
	}
	want503("third stream overall", openSSE(t, from("127.0.0.3"), events))
	b.close()
	eventually(t, "a stream slot free", func() bool { return promValue(t, s.testServer, "dashboard_sse_clients") == 1 })
	c := openSSE(t, from("127.0.0.3"), events)
	if c.resp.StatusCode != http.StatusOK {
		t.Errorf("stream after one closed: got %d, want 200", c.resp.StatusCode)
	}

	cur := currentVersion(t, s.testServer, "ops")
	waiting := pollInBackground(s.testServer, "ops", cur, 30)
	eventually(t, "a long-poll waiting", func() bool { return promValue(t, s.testServer, "dashboard_longpoll_waiting") == 1 })
	resp, body := s.get(t, "/d/ops/poll?wait=0")
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("second long-poll: got %d %q with Retry-After %q, want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
	}
	insertRow(t, s.testServer)
	if got := <-waiting; got != http.StatusOK {
		t.Errorf("waiting long-poll after a write: got %d, want 200", got)
	}
}

// TestSlowloris holds 200 connections that send headers slowly and 2,000
// idle ones, while a token viewer of a private dashboard gets every update.
func TestSlowloris(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	secret, _ := s.token(t, "secret")

	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	dial := func() net.Conn {
		c, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatalf("dial %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		return c
	}
	var slow []net.Conn
	for i := 0; i < 200; i++ {
		c := dial()
		fmt.Fprintf(c, "GET /d/secret/events HTTP/1.1\r\nHost: x\r\n")
		slow = append(slow, c)
	}
	for i := 0; i < 2000; i++ {
		dial()
	}
	// One goroutine drips a header line into every slow connection.
	stop := make(chan struct{})
	dripped := make(chan struct{})
	go func() {
		defer close(dripped)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for _, c := range slow {
				c.SetWriteDeadline(time.Now().Add(time.Second))
				fmt.Fprintf(c, "X-Drip-%d: a\r\n", n)
			}
		}
	}()
	defer func() { close(stop); <-dripped }()

	start := time.Now()
	viewer := openSSE(t, nil, s.URL+"/d/secret/events", cookie(secret)...)
	if viewer.resp.StatusCode != http.StatusOK {
		t.Fatalf("viewer: got %d, want 200", viewer.resp.StatusCode)
	}
	viewer.nextUpdate(t)
	t.Logf("viewer connected and got the state %v after 2,200 hostile connections", time.Since(start))
	for i := 0; i < 5; i++ {
		at := time.Now()
		insertRow(t, s.testServer)
		wantUpdate(t, viewer.nextUpdate(t), "#panel-p1")
		t.Logf("update %d: %v from commit to client", i+1, time.Since(at))
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("viewer needed %v for its state and 5 updates, want well under 10s", d)
	}
	if got := s.status(t, "GET", "/healthz"); got != http.StatusOK {
		t.Errorf("/healthz: got %d, want 200", got)
	}
}

// fromAddr is a client whose connections come from the loopback address ip.
func fromAddr(ip string) *http.Client {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, CheckRedirect: noRedirect.CheckRedirect}
}

// TestSecurityForwardedFor: behind a trusted proxy, the per-address
// stream limit counts the client named by X-Forwarded-For, not the proxy;
// from any other peer the header is ignored.
func TestSecurityForwardedFor(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TrustedProxyCIDRs = []string{"127.0.0.1/32"}
	cfg.MaxStreamsIP = 1
	s := newContractFixture(t, cfg)
	events := s.URL + "/d/ops/events"
	proxy, other := fromAddr("127.0.0.1"), fromAddr("127.0.0.2")
	for _, tt := range []struct {
		name   string
		client *http.Client
		xff    string
		want   int
	}{
		{"first client behind the proxy", proxy, "203.0.113.1", 200},
		{"second client behind the proxy", proxy, "203.0.113.2", 200},
		{"first client again, a forged hop in front", proxy, "198.51.100.7, 203.0.113.1", 503},
		{"first client through a second trusted proxy", proxy, "203.0.113.1, 127.0.0.1", 503},
		{"IPv6 client behind the proxy", proxy, "[2001:db8::1]:443", 200},
		{"garbage header: counted as the proxy", proxy, "garbage", 200},
		{"garbage header again: the proxy's slot is taken", proxy, "not, an, address", 503},
		{"untrusted peer", other, "203.0.113.3", 200},
		{"untrusted peer naming another client: ignored", other, "203.0.113.4", 503},
	} {
		c := openSSE(t, tt.client, events, "X-Forwarded-For", tt.xff)
		if c.resp.StatusCode != tt.want {
			t.Errorf("%s (X-Forwarded-For %q): got %d, want %d", tt.name, tt.xff, c.resp.StatusCode, tt.want)
		}
		if c.resp.StatusCode != 200 {
			c.close()
		}
	}
}

// tokenCookieOf returns the dashboard_token cookie resp sets, or nil.
func tokenCookieOf(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == "dashboard_token" {
			return c
		}
	}
	return nil
}

// TestSecurityTokenLinkCrossSite: a kiosk link opened from another site
// (web mail, chat, a wiki) lands on the dashboard. The browser sends the
// exchanged cookie on the redirect's follow-up GET only if it is
// SameSite=Lax, since that GET belongs to a navigation another site
// started; the redirect keeps every other query parameter, in order.
// Behind a trusted TLS-terminating proxy the cookie is Secure.
func TestSecurityTokenLinkCrossSite(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.TrustedProxyCIDRs = []string{"127.0.0.1/32"}
	s := newSecurityFixture(t, cfg)
	secret, _ := s.token(t, "secret")
	crossSite := []string{"Sec-Fetch-Site", "cross-site", "Sec-Fetch-Mode", "navigate", "Sec-Fetch-Dest", "document",
		"Referer", "https://mail.example.com/"}

	for _, tt := range []struct {
		name   string
		client *http.Client
		header []string
		secure bool
	}{
		{"plain http", fromAddr("127.0.0.1"), nil, false},
		{"https at the trusted proxy", fromAddr("127.0.0.1"), []string{"X-Forwarded-Proto", "https"}, true},
		{"X-Forwarded-Proto from an untrusted peer", fromAddr("127.0.0.2"), []string{"X-Forwarded-Proto", "https"}, false},
	} {
		req, _ := http.NewRequest("GET", s.URL+"/d/secret?var-region=eu&token="+secret+"&transport=poll&from=now-6h&var-region=us", nil)
		for i := 0; i+1 < len(crossSite); i += 2 {
			req.Header.Set(crossSite[i], crossSite[i+1])
		}
		for i := 0; i+1 < len(tt.header); i += 2 {
			req.Header.Set(tt.header[i], tt.header[i+1])
		}
		resp, err := tt.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		const want = "/d/secret?var-region=eu&transport=poll&from=now-6h&var-region=us"
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("%s: got %d to %q, want 303 to %s", tt.name, resp.StatusCode, resp.Header.Get("Location"), want)
		}
		c := tokenCookieOf(resp)
		if c == nil {
			t.Fatalf("%s: no dashboard_token cookie in %q", tt.name, resp.Header.Values("Set-Cookie"))
		}
		if c.SameSite != http.SameSiteLaxMode || !c.HttpOnly || c.Path != "/d/secret" || c.Secure != tt.secure {
			t.Errorf("%s: got cookie %q, want HttpOnly, SameSite=Lax, Path=/d/secret, Secure %v", tt.name, c.String(), tt.secure)
		}
		// The follow-up GET of the same navigation, with the cookie a
		// browser sends there for SameSite=Lax.
		follow, _ := http.NewRequest("GET", s.URL+resp.Header.Get("Location"), nil)
		for i := 0; i+1 < len(crossSite); i += 2 {
			follow.Header.Set(crossSite[i], crossSite[i+1])
		}
		follow.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
		fresp, err := tt.client.Do(follow)
		if err != nil {
			t.Fatal(err)
		}
		fresp.Body.Close()
		if fresp.StatusCode != http.StatusOK {
			t.Errorf("%s: follow-up GET with the cookie: got %d, want 200", tt.name, fresp.StatusCode)
		}
	}
}

// TestSecurityPublicDashboardInvalidToken: a stale or mistyped kiosk link
// to a public dashboard shows the dashboard. The answer is a 303 to the
// address without the token (so the bad token leaves the address bar and
// bookmarks) and sets no cookie; on a private dashboard it stays 404.
func TestSecurityPublicDashboardInvalidToken(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	forOther, _ := s.token(t, "other")
	expired, expiredID := s.token(t, "secret")
	s.exec(t, `UPDATE dashboard.access_tokens SET expires_at = now() - interval '1 minute' WHERE id = $1`, expiredID)
	s.awaitStatus(t, "/d/secret", http.StatusNotFound, cookie(expired)...)
	for _, bad := range []string{"garbage", "%ff%00", access.NewSecret(), expired, forOther} {
		resp, err := noRedirect.Get(s.URL + "/d/ops?transport=poll&token=" + bad + "&from=now-1h")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		const want = "/d/ops?transport=poll&from=now-1h"
		if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != want {
			t.Errorf("public dashboard, token %.12q: got %d to %q, want 303 to %s", bad, resp.StatusCode, resp.Header.Get("Location"), want)
			continue
		}
		if c := tokenCookieOf(resp); c != nil {
			t.Errorf("public dashboard, token %.12q: got cookie %q, want none", bad, c.String())
		}
		if got := s.status(t, "GET", resp.Header.Get("Location")); got != http.StatusOK {
			t.Errorf("public dashboard, token %.12q: the clean URL answered %d, want 200", bad, got)
		}
		if got := s.status(t, "GET", "/d/secret?token="+bad); got != http.StatusNotFound {
			t.Errorf("private dashboard, token %.12q: got %d, want 404", bad, got)
		}
	}
}

// TestSecurityRequestBody: every route is GET or HEAD, so a request with
// a body is refused at once with 400 and the connection closed, before
// anything waits on the body. A client that announces a body and drips it
// one byte at a time can then hold no connection. The client waits on the
// answer with a generous bound; nothing here measures speed.
func TestSecurityRequestBody(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	for _, tt := range []struct {
		name, head string
		drip       string // sent every 100 ms until the server closes
		want       int
	}{
		{"page", "GET /d/ops HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"private page", "GET /d/secret HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"stream", "GET /d/ops/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"long-poll", "GET /d/ops/poll?wait=30 HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"index, chunked", "GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", "1\r\na\r\n", 400},
		{"HEAD of the stream", "HEAD /d/ops/events HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"metrics", "GET /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
		{"POST: wrong method", "POST /d/ops HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 405},
		{"unknown route", "GET /nope HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n", "a", 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn, err := net.Dial("tcp", s.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tt.head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			dripped := make(chan struct{})
			go func() {
				defer close(dripped)
				tick := time.NewTicker(100 * time.Millisecond)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					conn.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := io.WriteString(conn, tt.drip); err != nil {
						return
					}
				}
			}()
			defer func() { close(stop); <-dripped }()

			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			br := bufio.NewReader(conn)
			method, _, _ := strings.Cut(tt.head, " ")
			resp, err := http.ReadResponse(br, &http.Request{Method: method})
			if err != nil {
				t.Fatalf("reading the answer: %v", err)
			}
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatalf("reading the answer's body: %v", err)
			}
			// ReadResponse moves Connection: close to resp.Close.
			if resp.StatusCode != tt.want || !resp.Close {
				t.Errorf("got %d, closing %v (%q), want %d with Connection: close",
					resp.StatusCode, resp.Close, trim(string(body)), tt.want)
			}
			// Then the server closes the connection: end of stream, or a
			// reset if it closed while drip bytes were still unread.
			n, err := br.Read(make([]byte, 1))
			var ne net.Error
			if n > 0 || err == nil || errors.As(err, &ne) && ne.Timeout() {
				t.Errorf("after the answer: got %d bytes, %v; want the connection closed", n, err)
			}
		})
	}
}

// TestSecurityMetricsNamePrivateDashboards: /metrics on the public port
// names no dashboard, so that scraping it cannot find private slugs, even
// after a private dashboard was viewed over every transport.
func TestSecurityMetricsNamePrivateDashboards(t *testing.T) {
	t.Parallel()
	s := newSecurityFixture(t, testConfig(t))
	const slug = "hidden-7f3a9c"
	createDashboard(t, s.pool, slug, false, [3]string{"hp1", "stat", "SELECT count(*) AS n FROM t"})
	awaitDashboard(t, s.testServer, slug, "t")
	secret, _ := s.token(t, slug)
	if got := s.status(t, "GET", "/d/"+slug, cookie(secret)...); got != http.StatusOK {
		t.Fatalf("private page with its token: got %d, want 200", got)
	}
	stream := openSSE(t, nil, s.URL+"/d/"+slug+"/events", cookie(secret)...)
	stream.nextUpdate(t)
	insertRow(t, s.testServer)
	stream.nextUpdate(t)
	currentVersion(t, s.testServer, slug, cookie(secret)...)
	s.status(t, "GET", "/d/"+slug+"/poll?wait=0&token=garbage")

	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.Contains(line, slug) || strings.Contains(line, "hp1") {
			t.Errorf("/metrics names the private dashboard or its panel: %q", line)
		}
		name, labels, ok := strings.Cut(line, "{")
		if ok && !strings.HasPrefix(line, "#") {
			for _, key := range []string{"dashboard=", "slug=", "panel=", "view="} {
				if strings.Contains(labels, key) {
					t.Errorf("metric %s has a %s label: %q", name, strings.TrimSuffix(key, "="), line)
				}
			}
		}
	}
}
