package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livedash/dashboard/internal/config"
)

// The drain and the rolling upgrade as a viewer's browser lives them: a
// real Chromium, real servers, and between them a TCP proxy that the test
// points at one server or the other (a load balancer's choice), never a
// mock of either.

// switchProxy forwards every connection to the server it points at when
// the connection is made, and records what passes: each request line a
// client sends, each response head and each goodbye (a retry field
// followed by the reconnect event) a server sends, with the time it passed.
type switchProxy struct {
	URL string
	ln  net.Listener
	wg  sync.WaitGroup

	mu        sync.Mutex
	target    string
	conns     map[net.Conn]bool
	requests  []proxied
	responses []proxied
	goodbyes  []proxied
	closed    bool
}

// proxied is one request line (path set), response head (status set,
// retry the Retry-After in seconds, -1 without one) or goodbye (retry set,
// in ms) that passed the proxy.
type proxied struct {
	at     time.Time
	target string
	path   string
	status int
	retry  int
}

func newSwitchProxy(t *testing.T, target string) *switchProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &switchProxy{URL: "http://" + ln.Addr().String(), ln: ln, target: target, conns: map[net.Conn]bool{}}
	p.wg.Add(1)
	go p.accept()
	t.Cleanup(p.close)
	return p
}

// point sends new connections to target; with cut, the open ones are
// closed too (the old server went away at once).
func (p *switchProxy) point(target string, cut bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.target = target
	if cut {
		for c := range p.conns {
			c.Close()
		}
	}
}

// requestsFor returns the requests whose path starts with prefix.
func (p *switchProxy) requestsFor(prefix string) []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []proxied
	for _, r := range p.requests {
		if strings.HasPrefix(r.path, prefix) {
			out = append(out, r)
		}
	}
	return out
}

// responsesSeen returns the response heads that passed, in order.
func (p *switchProxy) responsesSeen() []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxied(nil), p.responses...)
}

func (p *switchProxy) goodbyesSeen() []proxied {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxied(nil), p.goodbyes...)
}

func (p *switchProxy) close() {
	p.ln.Close()
	p.mu.Lock()
	p.closed = true
	for c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

func (p *switchProxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		target := p.target
		p.mu.Unlock()
		server, err := net.Dial("tcp", target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			client.Close()
			server.Close()
			return
		}
		p.conns[client], p.conns[server] = true, true
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(client, server, target, true)
		go p.pipe(server, client, target, false)
	}
}

var (
	requestLine = regexp.MustCompile(`(?m)^(?:GET|HEAD) (\S+) HTTP/1\.1\r$`)
	goodbye     = regexp.MustCompile(`retry: (\d+)\nevent: reconnect\n`)
	// A response head as net/http writes it: in one piece.
	responseHead = regexp.MustCompile(`(?s)HTTP/1\.1 (\d{3}) .*?\r\n\r\n`)
	retryAfter   = regexp.MustCompile(`(?mi)^Retry-After: (\d+)\r$`)
)

// pipe copies from one side to the other until either closes, and records
// what it sees (up or down: from the client, or from the server).
func (p *switchProxy) pipe(from, to net.Conn, target string, up bool) {
	defer p.wg.Done()
	defer func() {
		from.Close()
		to.Close()
		p.mu.Lock()
		delete(p.conns, from)
		delete(p.conns, to)
		p.mu.Unlock()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := from.Read(buf)
		if n > 0 {
			now := time.Now()
			chunk := buf[:n]
			p.mu.Lock()
			if up {
				for _, m := range requestLine.FindAllSubmatch(chunk, -1) {
					p.requests = append(p.requests, proxied{at: now, target: target, path: string(m[1])})
				}
			} else {
				for _, m := range responseHead.FindAllSubmatch(chunk, -1) {
					r := proxied{at: now, target: target, retry: -1}
					r.status, _ = strconv.Atoi(string(m[1]))
					if ra := retryAfter.FindSubmatch(m[0]); ra != nil {
						r.retry, _ = strconv.Atoi(string(ra[1]))
					}
					p.responses = append(p.responses, r)
				}
			}
			if !up && bytes.Contains(chunk, []byte("event: reconnect")) {
				for _, m := range goodbye.FindAllSubmatch(chunk, -1) {
					ms, _ := strconv.Atoi(string(m[1]))
					p.goodbyes = append(p.goodbyes, proxied{at: now, target: target, retry: ms})
				}
			}
			p.mu.Unlock()
			if _, err := to.Write(chunk); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// TestBrowserDrainReconnectsSpread: a page is live on server A through the
// proxy; the proxy now sends new connections to B, and A drains. The page
// hears its goodbye, waits the retry it carried (inside 0.5-5 s, not cut
// short by the page's own cap), reconnects, lands on B, and shows data
// committed after the drain.
func TestBrowserDrainReconnectsSpread(t *testing.T) {
	cfg := testConfig(t)
	a, stopA := startStoppable(t, cfg, false)
	setupCounts(t, a, "drain", 1, "a")
	b := startServer(t, cfg, false)
	awaitDashboard(t, b, "drain")
	p := newSwitchProxy(t, a.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/drain")
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, "live")

	p.point(b.addr, false)
	if err := stopA(); err != nil {
		t.Fatalf("draining A: %v", err)
	}
	eventually(t, "the goodbye through the proxy", func() bool { return len(p.goodbyesSeen()) > 0 })
	bye := p.goodbyesSeen()
	if len(bye) != 1 || bye[0].target != a.addr {
		t.Fatalf("goodbyes through the proxy: %+v, want one from A", bye)
	}
	retry := time.Duration(bye[0].retry) * time.Millisecond
	if retry < 500*time.Millisecond || retry > 5*time.Second {
		t.Errorf("the goodbye's retry %v, want inside [0.5 s, 5 s]", retry)
	}
	waitStatus(t, ctx, "live")
	var again []proxied
	for _, r := range p.requestsFor("/d/drain/events") {
		if r.at.After(bye[0].at) {
			again = append(again, r)
		}
	}
	if len(again) == 0 || again[0].target != b.addr {
		t.Fatalf("stream requests after the goodbye: %+v, want the first to B (%s)", again, b.addr)
	}
	// The page received the goodbye after the proxy passed it, so its
	// reconnect cannot come sooner than the retry after that. Not a
	// timing bound on the server: setTimeout never fires early.
	waited := again[0].at.Sub(bye[0].at)
	if waited < retry {
		t.Errorf("the page reconnected %v after the goodbye, want at least its retry %v", waited, retry)
	}
	if waited > retry+waitTimeout {
		t.Errorf("the page reconnected %v after the goodbye, want soon after its retry %v", waited, retry)
	}
	t.Logf("goodbye retry %v, reconnected after %v", retry, waited)

	insert(t, b, "a")
	waitStat(t, ctx, "a", "2")
}

// TestBrowserDrainLongPoll: a page on the long-poll (forced) waits on A;
// A drains and answers at once, marked as a drain's answer. The page asks
// again only after a pause drawn from 0.5-5 s, lands on B and shows data
// committed after the drain. The pause's draw is checked over many
// samples in the page itself.
func TestBrowserDrainLongPoll(t *testing.T) {
	cfg := testConfig(t)
	a, stopA := startStoppable(t, cfg, false)
	setupCounts(t, a, "drainpoll", 1, "a")
	b := startServer(t, cfg, false)
	awaitDashboard(t, b, "drainpoll")
	p := newSwitchProxy(t, a.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/drainpoll?transport=poll")
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, "polling")
	eventually(t, "a long-poll waiting on A", func() bool { return promValue(t, a, "dashboard_longpoll_waiting") == 1 })

	p.point(b.addr, false)
	drained := time.Now()
	if err := stopA(); err != nil {
		t.Fatalf("draining A: %v", err)
	}
	insert(t, b, "a")
	waitStat(t, ctx, "a", "2")
	var next []proxied
	for _, r := range p.requestsFor("/d/drainpoll/poll") {
		if r.at.After(drained) {
			next = append(next, r)
		}
	}
	if len(next) == 0 || next[0].target != b.addr {
		t.Fatalf("long-polls after the drain: %+v, want the first to B", next)
	}
	if waited := next[0].at.Sub(drained); waited < 500*time.Millisecond {
		t.Errorf("the page asked again %v after the drain began, want at least 0.5 s", waited)
	}

	// The pause itself: uniform over 0.5-5 s, not bunched.
	got := eval[[]int](t, ctx, `Array.from({length: 1000}, () => window.DashboardPoll.drainDelay())`)
	var tenths [10]int
	for _, d := range got {
		if d < 500 || d > 5000 {
			t.Fatalf("drainDelay() = %d, want inside [500, 5000]", d)
		}
		tenths[min(9, (d-500)*10/4500)]++
	}
	for i, c := range tenths {
		if c == 0 {
			t.Errorf("no pause in tenth %d of 0.5-5 s among 1000 draws: %v", i, tenths)
		}
	}
}

// TestBrowserLongPollRefusedPause: the pause poll.js (and app.js through it)
// takes after a refusal, drawn many times in the page itself. A 503
// marked X-Dashboard-Draining gets the drain's spread, 0.5-5 s, whatever
// its Retry-After and however many came before. Any other (a busy server)
// waits its Retry-After plus 1 s doubling with each refusal in a row, of
// which the upper half is random, up to 30 s: so every pause is at least
// the Retry-After, and each one is at least as long as any before it
// until the cap.
func TestBrowserLongPollRefusedPause(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, false)
	setupCounts(t, s, "refused", 1, "a")
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/refused?transport=poll")
	waitStatus(t, ctx, "polling")

	draw := func(draining bool, retryAfter string, n, times int) []int {
		t.Helper()
		return eval[[]int](t, ctx, fmt.Sprintf(`Array.from({length: %d}, () => window.DashboardPoll.refusedDelay(%t, %s, %d))`,
			times, draining, strconv.Quote(retryAfter), n))
	}

	var tenths [10]int
	for _, d := range draw(true, "30", 9, 1000) {
		if d < 500 || d > 5000 {
			t.Fatalf("a drain's pause %d ms, want inside [500, 5000] (its Retry-After and the refusals before do not count)", d)
		}
		tenths[min(9, (d-500)*10/4500)]++
	}
	for i, c := range tenths {
		if c == 0 {
			t.Errorf("no drain's pause in tenth %d of 0.5-5 s among 1000 draws: %v", i, tenths)
		}
	}

	longest := 0
	for n := 1; n <= 8; n++ {
		g := min(30000, 1000<<(n-1))
		lo, hi := 3000+g/2, 3000+g
		got := draw(false, "3", n, 200)
		first, last := slices.Min(got), slices.Max(got)
		if first < lo || last > hi {
			t.Errorf("busy refusal %d in a row with Retry-After 3: pauses %d-%d ms, want inside [%d, %d]", n, first, last, lo, hi)
		}
		if 1000<<(n-1) <= 30000 && first < longest { // once capped, the ranges overlap
			t.Errorf("busy refusal %d in a row: a pause of %d ms, shorter than one of %d ms after the refusal before", n, first, longest)
		}
		if first == last {
			t.Errorf("busy refusal %d in a row: every pause %d ms, want jitter", n, first)
		}
		longest = max(longest, last)
	}

	// Retry-After as the server may write it, or not.
	for _, tt := range []struct {
		retryAfter string
		lo, hi     int
	}{
		{"", 500, 1000},
		{"soon", 500, 1000},
		{"-4", 500, 1000},
		{" 2 ", 2500, 3000},
		{"86400", 30500, 31000}, // honoured up to 30 s
	} {
		for _, d := range draw(false, tt.retryAfter, 1, 50) {
			if d < tt.lo || d > tt.hi {
				t.Errorf("first busy refusal with Retry-After %q: pause %d ms, want inside [%d, %d]", tt.retryAfter, d, tt.lo, tt.hi)
				break
			}
		}
	}
	// An HTTP date 20 s ahead (whole seconds: up to 1 s less, and the
	// evaluation takes a moment).
	d := eval[int](t, ctx, `window.DashboardPoll.refusedDelay(false, new Date(Date.now() + 20000).toUTCString(), 1)`)
	if d < 18500 || d > 21000 {
		t.Errorf("first busy refusal with Retry-After an HTTP date 20 s ahead: pause %d ms, want about 20.5 s", d)
	}
}

// TestBrowserLongPollBusy: a server whose only long-poll slot is taken
// (DASHBOARD_MAX_LONGPOLLS 1) refuses the page's long-polls with 503 and
// a Retry-After, not marked as a drain's. The page asks again no sooner
// than that Retry-After plus a backoff that doubles with each refusal in
// a row (0.5 s, 1 s, 2 s at the least), and once the slot is free it is
// polling again and shows new data. Lower bounds only: setTimeout never
// fires early, and the page gets each answer after the proxy passed it.
func TestBrowserLongPollBusy(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxLongPoll = 1
	s := startServer(t, cfg, false)
	setupCounts(t, s, "busy", 1, "a")
	holder := pollInBackground(s, "busy", currentVersion(t, s, "busy"), 55)
	eventually(t, "the one long-poll slot taken", func() bool { return promValue(t, s, "dashboard_longpoll_waiting") == 1 })
	p := newSwitchProxy(t, s.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/busy?transport=poll")
	waitStat(t, ctx, "a", "1")

	checkBusyBackoff(t, p, "/d/busy/poll")
	if got := eval[string](t, ctx, `document.getElementById('status').getAttribute('data-state')`); got != "reconnecting" {
		t.Errorf("status while refused: %q, want reconnecting", got)
	}

	insert(t, s, "a")
	if got := <-holder; got != http.StatusOK {
		t.Fatalf("the long-poll holding the slot: got %d, want 200", got)
	}
	waitStat(t, ctx, "a", "2")
	waitStatus(t, ctx, "polling")
}

// checkBusyBackoff waits until the page's requests for path were refused
// three times with 503 and asked for again, and checks that each came no
// sooner than the refusal's Retry-After plus 0.5 s, 1 s, 2 s.
func checkBusyBackoff(t *testing.T, p *switchProxy, path string) {
	t.Helper()
	const refusals = 3
	refused := func() []proxied {
		var out []proxied
		for _, r := range p.responsesSeen() {
			if r.status == http.StatusServiceUnavailable {
				out = append(out, r)
			}
		}
		return out
	}
	// Three refusals take up to 3 × 5 s of Retry-After (the server draws
	// 1-5 s) plus 0.5 + 1 + 2 s of backoff and its random upper half:
	// more than contractWait.
	deadline := time.Now().Add(3*contractWait + 30*time.Second)
	for len(refused()) < refusals || len(p.requestsFor(path)) <= refusals {
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s refused %d times and asked for again: got %d refusals", path, refusals, len(refused()))
		}
		time.Sleep(20 * time.Millisecond)
	}
	asked := p.requestsFor(path)
	for i, r := range refused()[:refusals] {
		if r.retry < 1 {
			t.Fatalf("refusal %d: Retry-After %d, want one of at least 1 s", i+1, r.retry)
		}
		least := time.Duration(r.retry)*time.Second + (500*time.Millisecond)<<i
		if waited := asked[i+1].at.Sub(r.at); waited < least {
			t.Errorf("refusal %d (Retry-After %d s): the page asked again after %v, want at least %v", i+1, r.retry, waited, least)
		} else {
			t.Logf("refusal %d (Retry-After %d s): asked again after %v", i+1, r.retry, waited)
		}
	}
}

// TestBrowserStreamBusy: the same for the stream. The server's one stream
// slot is taken (DASHBOARD_MAX_STREAMS 1); each first request of the
// page's stream is refused with 503 and a Retry-After, and app.js opens
// the next one no sooner than that plus 0.5 s, 1 s, 2 s, while the
// long-poll stands in. Once the slot is free the page is live again.
func TestBrowserStreamBusy(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxStreams = 1
	s := startServer(t, cfg, false)
	setupCounts(t, s, "sbusy", 1, "a")
	held := openSSE(t, nil, s.URL+"/d/sbusy/events")
	if held.resp.StatusCode != http.StatusOK {
		t.Fatalf("the stream taking the one slot: got %d", held.resp.StatusCode)
	}
	p := newSwitchProxy(t, s.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/sbusy")
	waitStat(t, ctx, "a", "1")

	checkBusyBackoff(t, p, "/d/sbusy/events")
	waitStatus(t, ctx, "polling")

	held.close()
	eventually(t, "the stream slot free", func() bool { return promValue(t, s, "dashboard_sse_clients") == 0 })
	waitStatus(t, ctx, "live")
	insert(t, s, "a")
	waitStat(t, ctx, "a", "2")
}

// TestBrowserRollingUpgrade: two servers of different releases on one
// database, behind the proxy. A page drawn by A (release "a"), with an
// earlier script's record naming A and B in its sessionStorage (read as
// no pairs), meets B when the proxy switches: it reloads exactly once, is
// then live on B and shows B's updates. Switched back to A and then to B within the minute,
// it does not reload again (no loop between two releases): it carries on
// with the full state each server sends. Then the page is loaded from A
// again (as when the round robin answers the reload with another server
// of the old release) and meets B once more after the minute between
// reloads has passed (#live's data-reload-every set to 0 stands for that,
// with no waiting): still no reload, since this tab reloaded for B
// already (pair A -> B). A third release C, which the tab has not met,
// reloads it once more. Then the rollbacks: the page drawn by C meets B
// (pair C -> B, new): one reload; drawn by B, it meets A (pair B -> A,
// new): one reload, then live on A; switched to B, A, C and A again past
// the minute, it reloads no more (A -> B and A -> C already tried).
func TestBrowserRollingUpgrade(t *testing.T) {
	t.Run("sse", func(t *testing.T) { rollingUpgrade(t, "") })
	t.Run("poll", func(t *testing.T) { rollingUpgrade(t, "?transport=poll") })
}

// rollingUpgrade is TestBrowserRollingUpgrade with the page's query (the
// stream, or the long-poll forced, whose answers carry the release in
// X-Dashboard-Release).
func rollingUpgrade(t *testing.T, query string) {
	cfg := testConfig(t)
	const relA, relB, relC = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb", "cccccccccccccccc"
	a := startRelease(t, cfg, relA)
	setupCounts(t, a, "upgrade", 1, "a")
	b := startRelease(t, cfg, relB)
	awaitDashboard(t, b, "upgrade")
	c := startRelease(t, cfg, relC)
	awaitDashboard(t, c, "upgrade")
	p := newSwitchProxy(t, a.addr)
	ctx := newBrowser(t)
	navigateURL(t, ctx, p.URL+"/d/upgrade"+query)
	live := "live"
	if query != "" {
		live = "polling"
	}
	waitStat(t, ctx, "a", "1")
	waitStatus(t, ctx, live)
	release := `document.getElementById('live').getAttribute('data-release')`
	if got := eval[string](t, ctx, release); got != relA {
		t.Fatalf("data-release: got %q, want A's %q", got, relA)
	}
	pages := func() int { return len(p.requestsFor("/d/upgrade")) - len(p.requestsFor("/d/upgrade/")) }

	// An earlier script's record (the releases reloaded for and from)
	// holds no pairs: it stops nothing.
	oldRecord := `sessionStorage.setItem('dashboard.releaseReload:/d/upgrade', JSON.stringify({releases: [` +
		strconv.Quote(relA) + `, ` + strconv.Quote(relB) + `], at: 1})), true`
	eval[bool](t, ctx, oldRecord)

	// A long-poll in flight may be sent again on a new connection by the
	// browser itself and then waits on B: the commit ends the wait, and
	// the answer names B's release.
	p.point(b.addr, true)
	insert(t, b, "a")
	waitThroughReload(t, ctx, "the page reloaded from B", release+` === `+strconv.Quote(relB))
	waitStatus(t, ctx, live)
	waitStat(t, ctx, "a", "2")
	if got := pages(); got != 2 {
		t.Fatalf("page loads: got %d, want 2 (the first and one reload)", got)
	}

	// Back to A, then B again, within the minute: no second reload.
	p.point(a.addr, true)
	insert(t, a, "a")
	waitStat(t, ctx, "a", "3")
	waitStatus(t, ctx, live)
	p.point(b.addr, true)
	insert(t, b, "a")
	waitStat(t, ctx, "a", "4")
	waitStatus(t, ctx, live)
	if got := pages(); got != 2 {
		t.Errorf("page loads after switching back and forth: got %d, want still 2", got)
	}
	if got := eval[string](t, ctx, release); got != relB {
		t.Errorf("data-release: got %q, want B's %q (the page drawn after the one reload)", got, relB)
	}

	// The page drawn by A again, in the same tab, and the minute between
	// reloads over: meeting B is no reason to reload any more.
	minuteOver := `document.getElementById('live').setAttribute('data-reload-every', '0'), true`
	p.point(a.addr, true)
	navigateURL(t, ctx, p.URL+"/d/upgrade"+query)
	waitThroughReload(t, ctx, "the page drawn by A again", release+` === `+strconv.Quote(relA))
	waitStatus(t, ctx, live)
	eval[bool](t, ctx, minuteOver)
	p.point(b.addr, true)
	insert(t, b, "a")
	waitStat(t, ctx, "a", "5")
	waitStatus(t, ctx, live)
	if got := pages(); got != 3 {
		t.Fatalf("page loads after B came back past the minute: got %d, want 3 (the first, one reload, ours from A)", got)
	}
	if got := eval[string](t, ctx, release); got != relA {
		t.Errorf("data-release: got %q, want still A's %q (no reload for B again)", got, relA)
	}

	// A release the tab has not met reloads it, once.
	eval[bool](t, ctx, minuteOver)
	p.point(c.addr, true)
	insert(t, c, "a")
	waitThroughReload(t, ctx, "the page reloaded from C", release+` === `+strconv.Quote(relC))
	waitStatus(t, ctx, live)
	waitStat(t, ctx, "a", "6")
	if got := pages(); got != 4 {
		t.Errorf("page loads after C: got %d, want 4 (one reload for C)", got)
	}

	// Rollbacks: C is rolled back to B, then B to A. The page drawn by C
	// meets B (pair C -> B, new): one reload, into B. That page, drawn by
	// B, meets A (pair B -> A, new): one reload, then live on A.
	eval[bool](t, ctx, minuteOver)
	p.point(b.addr, true)
	insert(t, b, "a")
	waitThroughReload(t, ctx, "the page rolled back to B", release+` === `+strconv.Quote(relB))
	waitStatus(t, ctx, live)
	waitStat(t, ctx, "a", "7")
	if got := pages(); got != 5 {
		t.Fatalf("page loads after the rollback to B: got %d, want 5 (one reload, into B)", got)
	}
	eval[bool](t, ctx, minuteOver)
	p.point(a.addr, true)
	insert(t, a, "a")
	waitThroughReload(t, ctx, "the page rolled back to A", release+` === `+strconv.Quote(relA))
	waitStatus(t, ctx, live)
	waitStat(t, ctx, "a", "8")
	if got := pages(); got != 6 {
		t.Fatalf("page loads after the rollback to A: got %d, want 6 (one reload, into A)", got)
	}

	// No loop: the page, drawn by A, the minute over, meets B and C again
	// (A -> B and A -> C already tried) and A between them: no reload.
	for i, s := range []*testServer{b, a, c, a} {
		eval[bool](t, ctx, minuteOver)
		p.point(s.addr, true)
		insert(t, s, "a")
		waitStat(t, ctx, "a", strconv.Itoa(9+i))
		waitStatus(t, ctx, live)
	}
	if got := pages(); got != 6 {
		t.Errorf("page loads after switching among A, B and C past the minute: got %d, want still 6", got)
	}
	if got := eval[string](t, ctx, release); got != relA {
		t.Errorf("data-release: got %q, want still A's %q", got, relA)
	}
}

// startRelease is startServer with the release identity set to release.
func startRelease(t *testing.T, cfg config.Config, release string) *testServer {
	t.Helper()
	s, stop := startStoppable(t, cfg, false, func(o *serveOptions) { o.release = release })
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve returned %v", err)
		}
	})
	return s
}

// waitThroughReload waits until expr is true in the tab's page, trying again
// while the page navigates (an evaluation fails when its document goes).
func waitThroughReload(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.readyState === 'complete' && !!(`+expr+`)`))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%s): %v\npage state: %s", what, expr, err, pageState(ctx))
		}
		time.Sleep(10 * time.Millisecond)
	}
}
