package main

import (
	"bytes"
	"context"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/panel"
)

// The status label's tests: it says "live" only while the stream delivers,
// "stale" when the stream stays open but nothing comes, goes back to live on
// its own, and "last change" is the page's own record of when the data
// changed. Streams are held back by a real TCP proxy between Chromium and
// the server (streamProxy), never by a mock of either.

// statesScript records every state the status label takes, from the first
// moment of each document, in window.__states.
const statesScript = `window.__states = [];
new MutationObserver((records) => {
	for (const r of records) {
		if (r.target.id === 'status') window.__states.push(r.target.getAttribute('data-state'));
	}
}).observe(document, {subtree: true, attributes: true, attributeFilter: ['data-state']});`

// recordStates installs statesScript in the tab of ctx.
func recordStates(t *testing.T, ctx context.Context) {
	t.Helper()
	call(t, ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: statesScript})
}

// navigateURL loads an absolute address in the tab and waits for the load
// event.
func navigateURL(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("navigating to %s: %v", url, err)
	}
}

// TestBrowserStatusRestart: the server is gone for longer than a quick
// reconnect, so that the page has given up on a few stream attempts and the
// long-poll stands in (the state in which the page used to poll for five
// minutes); a new server on the same address makes the page live again on
// the stream, within its retry time, and the long-poll stops. Throughout,
// the label never says live while no server runs.
func TestBrowserStatusRestart(t *testing.T) {
	cfg := testConfig(t)
	s1, stop := startStoppable(t, cfg, false)
	setupCounts(t, s1, "restart", 1, "a")
	ctx := newBrowser(t)
	recordStates(t, ctx)
	navigate(t, ctx, s1, "/d/restart")
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, "live")

	if err := stop(); err != nil {
		t.Fatalf("stopping the first server: %v", err)
	}
	waitStatus(t, ctx, "reconnecting")
	eval[chromedp.Void](t, ctx, `window.__states = []`)
	// Several stream attempts failed: the long-poll stands in, and fails
	// too while no server runs.
	waitJS(t, ctx, "the long-poll to stand in", `window.DashboardApp.transport() === 'poll'`)
	conn, err := pgx.Connect(ctx, cfg.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, `INSERT INTO items_a (v) VALUES ('x')`); err != nil {
		t.Fatal(err)
	}
	conn.Close(ctx)
	if got := eval[[]string](t, ctx, `window.__states`); slicesHas(got, "live") || slicesHas(got, "polling") {
		t.Errorf("states while no server ran: %v, want neither live nor polling", got)
	}

	cfg.Addr = s1.addr
	s2 := startServer(t, cfg, false)
	waitStatus(t, ctx, "live")
	waitStreams(t, ctx, s2, 1)
	waitStat(t, ctx, "a", "2")
	if eval[bool](t, ctx, `window.DashboardPoll.running()`) {
		t.Error("the long-poll still runs with the stream live")
	}
	if got := eval[string](t, ctx, `window.DashboardApp.transport()`); got != "sse" {
		t.Errorf("transport: got %q, want sse", got)
	}
	insert(t, s2, "a")
	waitStat(t, ctx, "a", "3")
}

// TestBrowserStatusStale: the stream's connection stays open but its
// heartbeats stop coming (a proxy holds them back). The label says stale,
// not live, and the long-poll does not stand in yet; then the page gives the
// silent connection up, opens a new stream by itself and is live again, and
// updates arrive on it.
func TestBrowserStatusStale(t *testing.T) {
	cfg := testConfig(t)
	cfg.Heartbeat = 500 * time.Millisecond
	s := startServer(t, cfg, false)
	setupCounts(t, s, "stale", 1, "a")
	p := newStreamProxy(t, s.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/stale")
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, "live")
	if got := p.streams.Load(); got != 1 {
		t.Fatalf("got %d streams through the proxy, want 1", got)
	}

	p.holdOpen()
	waitStatus(t, ctx, "stale")
	if got := eval[string](t, ctx, `document.getElementById('status').textContent`); got != "stale" {
		t.Errorf("status text: got %q, want stale", got)
	}
	if eval[bool](t, ctx, `window.DashboardPoll.running()`) {
		t.Error("the long-poll stands in for a stream that is only stale")
	}
	waitStatus(t, ctx, "live")
	if got := p.streams.Load(); got != 2 {
		t.Errorf("got %d streams through the proxy, want 2 (the held one and a new one)", got)
	}
	insert(t, s, "a")
	waitStat(t, ctx, "a", "2")
}

// TestBrowserStatusHeldBack: a proxy holds back the body of every stream
// from the start (a buffering proxy): the response head arrives, but no
// event does. The page must never say live; the long-poll stands
// in and says polling, and delivers updates. Once the proxy lets the stream
// through, the page is live on it and the long-poll stops.
func TestBrowserStatusHeldBack(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCounts(t, s, "held", 1, "a")
	p := newStreamProxy(t, s.addr)
	p.holdAll(true)
	ctx := newBrowser(t)
	recordStates(t, ctx)
	navigateURL(t, ctx, p.URL+"/d/held")
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, "polling")
	insert(t, s, "a")
	waitStat(t, ctx, "a", "2")
	if got := eval[[]string](t, ctx, `window.__states`); slicesHas(got, "live") {
		t.Errorf("states while every stream was held back: %v, want no live", got)
	}

	p.holdAll(false)
	waitStatus(t, ctx, "live")
	waitJS(t, ctx, "the long-poll to stop", `!window.DashboardPoll.running()`)
	insert(t, s, "a")
	waitStat(t, ctx, "a", "3")
}

// TestBrowserLastChange: "last change" is formatted in the page, in the
// browser's time zone (Asia/Kolkata here, so that neither UTC nor the
// server's zone could pass): first from the time the server put on the page
// (when its board last changed, not the time of the page load), then from
// the moment an update with a new version arrived. The rule of the format
// (the date is added when the change was not today) is checked on fixed
// instants.
func TestBrowserLastChange(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	id := setupCounts(t, s, "changes", 1, "a")
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetTimezoneOverride, emulation.SetTimezoneOverrideParams{TimezoneID: "Asia/Kolkata"})
	kolkata := time.FixedZone("IST", 5*3600+1800) // no daylight saving since 1945

	navigate(t, ctx, s, "/d/changes")
	waitStat(t, ctx, "a", "1")
	// Nothing changed since the page was drawn, so the board's time is the
	// one the page got.
	changed := s.hub.Board(panel.ViewKey{Dashboard: id}).ChangedAt()

	for _, tt := range []struct {
		name, at, now, want string
	}{
		{"same day", "2026-03-14T06:33:04Z", "2026-03-14T10:00:00Z", "last change 12:03:04"},
		{"padding", "2026-03-14T03:31:02.9Z", "2026-03-14T03:31:05Z", "last change 09:01:02"},
		{"yesterday in the zone", "2026-03-14T18:29:59Z", "2026-03-14T18:30:00Z", "last change 2026-03-14 23:59:59"},
		{"today in the zone, yesterday in UTC", "2026-03-14T23:00:00Z", "2026-03-15T01:00:00Z", "last change 04:30:00"},
		{"last year", "2025-12-31T18:29:00Z", "2026-01-01T00:00:00Z", "last change 2025-12-31 23:59:00"},
	} {
		got := eval[string](t, ctx, `window.DashboardPoll.changeText(Date.parse(`+strconv.Quote(tt.at)+`), Date.parse(`+strconv.Quote(tt.now)+`))`)
		if got != tt.want {
			t.Errorf("%s: changeText(%s, %s) = %q, want %q", tt.name, tt.at, tt.now, got, tt.want)
		}
	}

	// lastChange returns the instant #data-age shows and checks its text.
	lastChange := func() time.Time {
		t.Helper()
		dt := eval[string](t, ctx, `document.getElementById('data-age').getAttribute('datetime')`)
		at, err := time.Parse(time.RFC3339Nano, dt)
		if err != nil {
			t.Fatalf("data-age datetime %q: %v", dt, err)
		}
		local := at.In(kolkata)
		want := "last change " + local.Format("15:04:05")
		if local.Format(time.DateOnly) != time.Now().In(kolkata).Format(time.DateOnly) {
			want = "last change " + local.Format(time.DateTime)
		}
		if got := eval[string](t, ctx, `document.getElementById('data-age').textContent`); got != want {
			t.Errorf("data-age text: got %q, want %q (datetime %s)", got, want, dt)
		}
		return at
	}
	if first, want := lastChange(), changed.Truncate(time.Millisecond); !first.Equal(want) {
		t.Errorf("first paint: last change %v, want the board's %v", first, want)
	}

	waitStatus(t, ctx, "live")
	before := time.Now()
	insert(t, s, "a")
	waitStat(t, ctx, "a", "2")
	after := lastChange()
	if after.Before(before.Truncate(time.Millisecond)) || after.After(time.Now()) {
		t.Errorf("after an update: last change %v, want between the insert (%v) and now", after, before)
	}
}

func slicesHas(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// streamProxy is a TCP proxy in front of a test server. It forwards every
// connection both ways, and can hold back the body of event streams (the
// connections that carry a request for /events) while keeping them open: a
// proxy that buffers, or a network path that went silent.
type streamProxy struct {
	URL     string
	streams atomic.Int64 // event streams opened through the proxy

	ln     net.Listener
	target string
	wg     sync.WaitGroup

	mu      sync.Mutex
	cond    *sync.Cond
	holdNew bool // hold streams opened from now on
	conns   map[*proxyConn]bool
	closed  bool
}

// proxyConn is one proxied connection.
type proxyConn struct {
	client, server net.Conn
	// Guarded by streamProxy.mu:
	stream bool // it carries an event stream
	held   bool // what the server sends on it waits
	ended  bool // a side closed
}

// newStreamProxy starts a proxy to target (host:port), closed with the test.
func newStreamProxy(t *testing.T, target string) *streamProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &streamProxy{URL: "http://" + ln.Addr().String(), ln: ln, target: target, conns: map[*proxyConn]bool{}}
	p.cond = sync.NewCond(&p.mu)
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// holdOpen holds back what the server sends on the streams open now; the
// streams opened later pass.
func (p *streamProxy) holdOpen() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		if c.stream {
			c.held = true
		}
	}
}

// holdAll holds back every stream, open or to come (true), or lets them
// all through, with what they held (false).
func (p *streamProxy) holdAll(hold bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.holdNew = hold
	for c := range p.conns {
		if c.stream {
			c.held = hold
		}
	}
	p.cond.Broadcast()
}

func (p *streamProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.client.Close()
		c.server.Close()
	}
	p.cond.Broadcast()
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *streamProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		c := &proxyConn{client: client, server: server}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns[c] = true
		p.mu.Unlock()
		p.wg.Add(1)
		go p.serve(c)
	}
}

// serve forwards one connection until either side closes it. Each request
// the client sends is looked at: once one asks for /events, the connection
// is an event stream (the server closes it when the stream ends), and what
// the server sends on it may be held back.
func (p *streamProxy) serve(c *proxyConn) {
	defer p.wg.Done()
	defer func() {
		p.mu.Lock()
		delete(p.conns, c)
		p.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 32<<10)
		for {
			n, err := c.client.Read(buf)
			if n > 0 {
				line, _, _ := bytes.Cut(buf[:n], []byte("\r\n"))
				if f := strings.Fields(string(line)); len(f) == 3 && f[0] == "GET" && strings.Contains(f[1], "/events") {
					p.mu.Lock()
					c.stream, c.held = true, p.holdNew
					p.mu.Unlock()
					p.streams.Add(1)
				}
				if _, err := c.server.Write(buf[:n]); err != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		p.end(c)
	}()
	buf := make([]byte, 32<<10)
	headSent := false // of the stream's response
	for {
		n, err := c.server.Read(buf)
		out := buf[:n]
		if n > 0 && !headSent {
			// A buffering proxy sends the response head at once and holds
			// the body: the head of a stream always passes.
			p.mu.Lock()
			stream := c.stream
			p.mu.Unlock()
			if i := bytes.Index(out, []byte("\r\n\r\n")); stream && i >= 0 {
				headSent = true
				if _, err := c.client.Write(out[:i+4]); err != nil {
					break
				}
				out = out[i+4:]
			}
		}
		if len(out) > 0 {
			if !p.wait(c) {
				break
			}
			if _, err := c.client.Write(out); err != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.end(c)
	<-done
}

// end closes both sides of c and wakes its forwarding if it is held.
func (p *streamProxy) end(c *proxyConn) {
	c.client.Close()
	c.server.Close()
	p.mu.Lock()
	c.ended = true
	p.cond.Broadcast()
	p.mu.Unlock()
}

// wait blocks while c is held; false means c or the proxy is closing.
func (p *streamProxy) wait(c *proxyConn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c.held && !c.ended && !p.closed {
		p.cond.Wait()
	}
	return !c.ended && !p.closed
}
