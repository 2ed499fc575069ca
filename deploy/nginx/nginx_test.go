// Package nginx_test runs deploy/nginx/dashboard.conf as shipped in front of
// three dashboard servers, one primary PostgreSQL and one streaming standby,
// all started by the test, and checks the contract of docs/architecture.md,
// "Behind a load balancer": a client may land on any server on any
// reconnect, never shows an older state than it had, and converges to the
// newest one.
package nginx_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/wire"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

const (
	slug        = "counter"
	sseViewers  = 30
	pollViewers = 10
	servers     = 3
	// perIPLimit is DASHBOARD_MAX_STREAMS_PER_IP on every server.
	perIPLimit = 2
	// wait bounds every "must happen eventually" of the test; nothing
	// is asserted about how fast.
	wait = 60 * time.Second
	// heartbeat is each server's DASHBOARD_HEARTBEAT, short so that
	// nginx's read timeout is exercised against it many times.
	heartbeat = 2 * time.Second
)

// TestThreeServersBehindNginx: three servers behind nginx (the shipped
// config), SSE and long-poll viewers through nginx over HTTP/2, a counter
// that only grows. Every viewer's sequence of shown values must never go
// down and must reach the final value after each fault: a server killed
// with SIGKILL mid-stream, another drained with SIGTERM, the standby's
// replay paused and resumed. Then every viewer shows the exact number
// watching, counted across the three servers (issue 16, item 5), and the
// labels of the tokens in use if it holds one; the servers agree on the
// version, the per-address stream limit sees the real client address
// through nginx, and the panel queries per commit do not grow with viewers.
func TestThreeServersBehindNginx(t *testing.T) {
	nginxBin := findNginx(t)
	dir := t.TempDir()
	bin := buildDashboard(t, dir)

	db := pgtest.NewDB(t)
	primary := pgtest.Server(t)
	standby := pgtest.NewStandby(t, primary)
	dbCfg, err := pgx.ParseConfig(db)
	if err != nil {
		t.Fatal(err)
	}
	// The standby's connection string is in keyword form; the setting takes
	// postgres:// URLs.
	sb, err := pgx.ParseConfig(standby.ConnString(dbCfg.Database))
	if err != nil {
		t.Fatal(err)
	}
	readURL := (&url.URL{Scheme: "postgres", User: url.User(sb.User), Path: "/" + sb.Database,
		RawQuery: url.Values{"host": {sb.Host}, "port": {strconv.Itoa(int(sb.Port))}, "sslmode": {"disable"}}.Encode()}).String()

	// The schema once, with the binary's own migrate, then the counter
	// table, its triggers and the dashboard. Servers start with
	// DASHBOARD_MIGRATE=false: the schema is there.
	runDashboard(t, bin, []string{"DATABASE_URL=" + db}, "migrate")
	exec1(t, db, `CREATE TABLE counter (n bigint NOT NULL)`)
	exec1(t, db, `INSERT INTO counter VALUES (0)`)
	exec1(t, db, `SELECT dashboard.watch('public.counter')`)
	exec1(t, db, `WITH d AS (
		INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('`+slug+`', 'Counter', 'public') RETURNING id)
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, options)
		SELECT id, 'n', 'N', 'stat', 'SELECT n FROM counter', 0, '{"decimals": 0}' FROM d`)
	// Two viewers hold a token of the (public) dashboard: they see who
	// is watching with the tokens' labels; the public sees only the
	// count. Made before the servers start, so that every server has
	// them.
	tv, laptop := createToken(t, db, "lobby TV"), createToken(t, db, "ops laptop")

	var srv [servers]*server
	for i := range srv {
		srv[i] = &server{name: fmt.Sprintf("server%d", i+1), bin: bin, port: freePort(t),
			log: filepath.Join(dir, fmt.Sprintf("server%d.log", i+1)),
			env: []string{
				"DATABASE_URL=" + db,
				"DASHBOARD_READ_DATABASE_URL=" + readURL,
				"DASHBOARD_MIGRATE=false",
				"DASHBOARD_TRUSTED_PROXY_CIDRS=127.0.0.1/32",
				"DASHBOARD_HEARTBEAT=" + heartbeat.String(),
				"DASHBOARD_SHUTDOWN_TIMEOUT=5s",
				"DASHBOARD_MAX_STREAMS_PER_IP=" + strconv.Itoa(perIPLimit),
				"DASHBOARD_LOG_LEVEL=debug",
			}}
		t.Cleanup(func() { srv[i].stop(t) })
	}
	for _, s := range srv {
		s.start(t)
	}
	for _, s := range srv {
		s.awaitReady(t)
	}
	ng := startNginx(t, nginxBin, dir, srv[:])
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range srv {
				t.Logf("%s log (tail):\n%s", s.name, tail(s.log, 40))
			}
			t.Logf("nginx error log (tail):\n%s", tail(filepath.Join(dir, "error.log"), 40))
		}
	})

	// Made before the viewers' context, so that it is closed after the
	// loop that uses it has ended (clean-ups run last in, first out).
	w := newWriter(t, db)

	// Viewers, each from an address of its own: the servers count streams
	// per client address, which they learn from nginx's X-Forwarded-For.
	// Were they to see nginx's own address instead, the limit of 2 per
	// address would refuse all but 6 of the 30 streams.
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	var viewers []*viewer
	for i := range sseViewers {
		v := newViewer(ctx, fmt.Sprintf("sse%d", i+1), ng.client(t, fmt.Sprintf("127.0.1.%d", i+1)))
		if i == sseViewers-1 {
			v.token = tv
		}
		viewers = append(viewers, v)
		wg.Add(1)
		go func() { defer wg.Done(); v.sse(v.ctx, ng.url) }()
	}
	for i := range pollViewers {
		v := newViewer(ctx, fmt.Sprintf("poll%d", i+1), ng.client(t, fmt.Sprintf("127.0.2.%d", i+1)))
		if i == 0 {
			v.token = laptop
		}
		viewers = append(viewers, v)
		wg.Add(1)
		go func() { defer wg.Done(); v.longPoll(v.ctx, ng.url) }()
	}
	converge(t, "start", viewers, w.value(t))

	// Database load: K commits, each awaited by every viewer before the
	// next, so none is merged with another (the worst case). The servers'
	// panel queries are counted on their /metrics.
	const commits = 10
	before := queries(t, srv[:])
	for range commits {
		n := w.step(t)
		converge(t, "load", viewers, n)
	}
	ran := int(queries(t, srv[:]) - before)
	// Per commit: one query on each server for the one affected panel,
	// and at most one more for the resume contract: a long-poll answered
	// by one server asks again, through nginx, on another that may still
	// be querying that commit; it then waits for a refresh that started
	// after it arrived, one query that server runs once for all such
	// clients. A cost per viewer would be 40 a commit.
	limit := 2 * servers * commits
	t.Logf("database load: %d panel queries on %d servers for %d commits with %d SSE and %d long-poll viewers (at most %d allowed)",
		ran, servers, commits, sseViewers, pollViewers, limit)
	if ran > limit {
		t.Errorf("database load: got %d panel queries for %d commits, want at most %d (%d servers, one panel), whatever the viewers",
			ran, commits, limit, servers)
	}

	// The counter grows 20 times a second from here on, except while the
	// test reads its final value.
	w.run(ctx, &wg, 50*time.Millisecond)
	awhile := func() { time.Sleep(time.Second) }

	// (a) A server dies mid-stream: its viewers reconnect through nginx to
	// the others, with the version they had.
	awhile()
	reconnects := moved(viewers)
	srv[0].kill(t)
	awhile()
	converge(t, "after SIGKILL", viewers, w.hold(t))
	w.release()
	if moved(viewers) == reconnects {
		t.Fatal("no event stream reconnected after a server was killed: the fault missed every viewer")
	}

	// (b) Another drains: its streams are told to reconnect elsewhere.
	awhile()
	reconnects = moved(viewers)
	srv[1].terminate(t)
	awhile()
	converge(t, "after SIGTERM", viewers, w.hold(t))
	w.release()
	if moved(viewers) == reconnects {
		t.Fatal("no event stream reconnected after a server stopped: the fault missed every viewer")
	}
	srv[0].start(t)
	srv[1].start(t)
	srv[0].awaitReady(t)
	srv[1].awaitReady(t)
	awhile()
	converge(t, "after the restarts", viewers, w.hold(t))
	w.release()

	// (c) The standby stops replaying while commits go on, then catches
	// up.
	standby.PauseReplay(t)
	awhile()
	awhile()
	standby.ResumeReplay(t)
	awhile()
	final := w.hold(t)
	converge(t, "after the standby's pause", viewers, final)

	// Who is watching (issue 16, item 5): every viewer, stream or
	// long-poll, shows the exact count across the three servers once the
	// faults have settled (a killed server's streams stop counting when
	// its rows expire); the token holders also see both tokens' labels,
	// one of a stream and one of a long-poll client, whichever servers
	// they reached.
	labels := []string{"lobby TV", "ops laptop"}
	watching(t, "after the faults", viewers, sseViewers+pollViewers, labels)
	// Five streams end (a long-poll client counts for 30 s after its last
	// request, so streams are the ones that leave): every remaining
	// viewer shows five fewer.
	for _, v := range viewers[:5] {
		v.stop()
	}
	watching(t, "after five streams ended", viewers[5:], sseViewers+pollViewers-5, labels)
	for _, v := range viewers {
		if err := v.presenceFailure(); err != nil {
			t.Error(err)
		}
	}

	// Settled: the same state has the same version on every server.
	sameETag(t, srv[:], final)

	// Only GET and HEAD get through nginx.
	req, err := http.NewRequest(http.MethodPost, ng.url+"/d/"+slug+"/events", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	if resp, body := do(t, ng.client(t, "127.0.0.4"), req); resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST through nginx: got %d, Allow %q (%q), want 405, Allow \"GET, HEAD\"", resp.StatusCode, resp.Header.Get("Allow"), body)
	}

	// Per-address limits through nginx: 2 streams per server from
	// 127.0.0.2, 6 in all (nginx moves a 503 on to the next server), then
	// refused; 127.0.0.3 still gets one.
	perAddress(t, ng, srv[:])

	for _, v := range viewers {
		if err := v.failure(); err != nil {
			t.Error(err)
		}
		t.Logf("%s: %d values shown, %d (re)connects", v.name, v.shown(), v.connects.Load())
		// A long-poll asks again when it got a new value, a new count or
		// its wait ran out. Servers whose counts differ for a round must
		// not make it ask back to back (it did, hundreds of times, while
		// a count that differed from the page's was answered at once).
		if strings.HasPrefix(v.name, "poll") {
			if n, shown := v.connects.Load(), int64(v.shown()); n > 2*shown+30 {
				t.Errorf("%s: %d requests for %d values shown: the long-poll asks back to back", v.name, n, shown)
			}
		}
	}
}

// moved is how many times the SSE viewers have (re)connected in all.
func moved(viewers []*viewer) int64 {
	var n int64
	for _, v := range viewers {
		if strings.HasPrefix(v.name, "sse") {
			n += v.connects.Load()
		}
	}
	return n
}

// converge waits until every viewer shows want, failing the test with what
// each one shows if one does not within wait. Before that it fails on any
// viewer that went backwards.
func converge(t *testing.T, when string, viewers []*viewer, want int64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		behind := 0
		for _, v := range viewers {
			if err := v.failure(); err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			if v.last.Load() < want {
				behind++
			}
		}
		if behind == 0 {
			return
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, v := range viewers {
				fmt.Fprintf(&b, " %s=%d", v.name, v.last.Load())
			}
			t.Fatalf("%s: %d viewers do not show %d after %v:%s", when, behind, want, wait, b.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// sameETag checks that ?wait=0 on each server, directly, gives the same
// ETag for the view, once each of them shows want.
func sameETag(t *testing.T, srv []*server, want int64) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		tags := make([]string, len(srv))
		values := make([]int64, len(srv))
		for i, s := range srv {
			resp, body := get(t, http.DefaultClient, s.url()+"/d/"+slug+"/poll?wait=0", nil)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%s: GET /d/%s/poll?wait=0: got %d %q, want 200", s.name, slug, resp.StatusCode, body)
			}
			tags[i] = resp.Header.Get("ETag")
			values[i], _ = statValue(body)
		}
		agree := tags[0] != ""
		for i := range srv {
			agree = agree && tags[i] == tags[0] && values[i] == want
		}
		if agree {
			t.Logf("every server: ETag %s for %d", tags[0], want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("servers still disagree after %v: ETags %q showing %v, want one ETag showing %d", wait, tags, values, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// perAddress opens streams from 127.0.0.2 through nginx until every server
// holds perIPLimit of them, then checks that one more is refused and that
// 127.0.0.3 still gets one.
func perAddress(t *testing.T, ng *nginx, srv []*server) {
	t.Helper()
	from2 := ng.client(t, "127.0.0.2")
	url := ng.url + "/d/" + slug + "/events"
	refusedBefore := limitRefused(t, srv)
	for i := range perIPLimit * len(srv) {
		s := openStream(t, from2, url)
		if s.StatusCode != http.StatusOK || s.ProtoMajor != 2 {
			t.Fatalf("stream %d from 127.0.0.2: got %d over %s, want 200 over HTTP/2 (%d per server, %d servers)", i+1, s.StatusCode, s.Proto, perIPLimit, len(srv))
		}
	}
	if s := openStream(t, from2, url); s.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("stream %d from 127.0.0.2: got %d, want 503: every server holds %d from that address", perIPLimit*len(srv)+1, s.StatusCode, perIPLimit)
	}
	// nginx asked every server before it gave up.
	if got := limitRefused(t, srv) - refusedBefore; got < float64(len(srv)) {
		t.Errorf("per-address refusals on the servers: got %v, want at least %d (one per server)", got, len(srv))
	}
	if s := openStream(t, ng.client(t, "127.0.0.3"), url); s.StatusCode != http.StatusOK {
		t.Fatalf("a stream from 127.0.0.3: got %d, want 200: the limit is per address", s.StatusCode)
	}
}

// openStream opens an event stream, reads its status, and leaves it open
// until the test ends.
func openStream(t *testing.T, c *http.Client, url string) *http.Response {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		cancel()
		t.Fatalf("GET %s: %v", url, err)
	}
	t.Cleanup(func() { cancel(); resp.Body.Close() })
	return resp
}

// viewer is one client through nginx. It records the values it showed; a
// value below the last one is the failure this test exists to catch. It
// also shows who is watching, as a page does.
type viewer struct {
	name     string
	client   *http.Client
	token    string // a token's secret, sent as the page's cookie; "" for the public
	last     atomic.Int64
	connects atomic.Int64
	ctx      context.Context
	stop     context.CancelFunc

	mu     sync.Mutex
	values []int64
	err    error
	// Who is watching as last shown (-1 before any), the labels with it,
	// and the first wrong presence message.
	watching   int
	labels     []string
	presenceOK error
}

func newViewer(parent context.Context, name string, client *http.Client) *viewer {
	ctx, stop := context.WithCancel(parent)
	return &viewer{name: name, client: client, ctx: ctx, stop: stop, watching: -1}
}

// request is a GET of path as this viewer's page makes it.
func (v *viewer) request(ctx context.Context, url string) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		panic(err)
	}
	if v.token != "" {
		req.AddCookie(&http.Cookie{Name: "dashboard_token", Value: v.token})
	}
	return req
}

// showWatching records who is watching as the server said it. A public
// viewer given labels is wrong.
func (v *viewer) showWatching(p wire.Presence, how string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.token == "" && (len(p.Labels) > 0 || p.More > 0) && v.presenceOK == nil {
		v.presenceOK = fmt.Errorf("%s (public) got token labels %q (%s); only token holders may see them", v.name, p.Labels, how)
	}
	v.watching, v.labels = p.Watching, p.Labels
}

// shows is who is watching as last shown.
func (v *viewer) shows() (int, []string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.watching, v.labels
}

func (v *viewer) presenceFailure() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.presenceOK
}

func (v *viewer) show(n int64, how string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if len(v.values) > 0 && n < v.values[len(v.values)-1] && v.err == nil {
		v.err = fmt.Errorf("%s showed %d after %d (%s): older than what it had", v.name, n, v.values[len(v.values)-1], how)
	}
	v.values = append(v.values, n)
	if n > v.last.Load() {
		v.last.Store(n)
	}
}

func (v *viewer) failure() error {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.err
}

func (v *viewer) shown() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.values)
}

// sse is an EventSource: it follows retry:, reconnects with Last-Event-ID,
// and shows the counter of every message.
func (v *viewer) sse(ctx context.Context, base string) {
	retry := time.Second
	lastID := ""
	for ctx.Err() == nil {
		v.connects.Add(1)
		req := v.request(ctx, base+"/d/"+slug+"/events")
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := v.client.Do(req)
		if err == nil {
			if resp.StatusCode == http.StatusOK {
				lastID, retry = v.read(resp.Body, lastID, retry)
			}
			resp.Body.Close()
		}
		select {
		case <-ctx.Done():
		case <-time.After(retry):
		}
	}
}

// read parses one stream's messages (the WHATWG event stream format) until
// it ends, and returns the last event ID and retry delay it was left with.
func (v *viewer) read(body io.Reader, lastID string, retry time.Duration) (string, time.Duration) {
	r := bufio.NewReader(body)
	var data []string
	event := ""
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return lastID, retry
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if line == "" {
			switch {
			case len(data) == 0:
			case event == "presence":
				// The page's presence handler: JSON, drawn outside
				// every fragment.
				var p wire.Presence
				if err := json.Unmarshal([]byte(strings.Join(data, "\n")), &p); err != nil {
					v.mu.Lock()
					if v.presenceOK == nil {
						v.presenceOK = fmt.Errorf("%s: presence event %q: %v", v.name, data, err)
					}
					v.mu.Unlock()
				} else {
					v.showWatching(p, "presence event")
				}
			default:
				if n, ok := statValue(strings.Join(data, "\n")); ok {
					v.show(n, "event stream, id "+lastID)
				}
			}
			data, event = data[:0], ""
			continue
		}
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch field {
		case "data":
			data = append(data, value)
		case "event":
			event = value
		case "id":
			if !strings.Contains(value, "\x00") {
				lastID = value
			}
		case "retry":
			if ms, err := strconv.Atoi(value); err == nil && ms >= 0 {
				retry = time.Duration(ms) * time.Millisecond
			}
		}
	}
}

// longPoll is the page's long-poll loop (static/poll.js): If-None-Match
// with the last ETag, the page's client id and the count it shows; 200
// shows the body, 304 asks again, anything else waits a moment. Both show
// who is watching from the headers.
func (v *viewer) longPoll(ctx context.Context, base string) {
	etag := ""
	client := "nginx-test-" + v.name + "-client" // 16 to 64 of [A-Za-z0-9_-]
	for ctx.Err() == nil {
		v.connects.Add(1)
		req := v.request(ctx, base+"/d/"+slug+"/poll?wait=10")
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		req.Header.Set("X-Dashboard-Client", client)
		if n, _ := v.shows(); n >= 0 {
			req.Header.Set(wire.WatchingHeader, strconv.Itoa(n))
		}
		resp, err := v.client.Do(req)
		if err == nil {
			body, rerr := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusNotModified {
				v.watchingHeaders(resp.Header)
			}
			switch {
			case rerr != nil:
			case resp.StatusCode == http.StatusOK:
				if n, ok := statValue(string(body)); ok {
					v.show(n, "long-poll, ETag "+resp.Header.Get("ETag"))
				}
				etag = resp.Header.Get("ETag")
				continue
			case resp.StatusCode == http.StatusNotModified:
				continue
			}
		}
		select {
		case <-ctx.Done():
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// watchingHeaders shows who is watching from a long-poll answer's headers,
// as poll.js does.
func (v *viewer) watchingHeaders(h http.Header) {
	n, err := strconv.Atoi(h.Get(wire.WatchingHeader))
	if err != nil {
		v.mu.Lock()
		if v.presenceOK == nil {
			v.presenceOK = fmt.Errorf("%s: long-poll answer with %s %q", v.name, wire.WatchingHeader, h.Get(wire.WatchingHeader))
		}
		v.mu.Unlock()
		return
	}
	p := wire.Presence{Watching: n}
	if raw := h.Get(wire.WatchingLabelsHeader); raw != "" {
		var l struct {
			Labels []string `json:"labels"`
			More   int      `json:"more"`
		}
		dec, err := url.PathUnescape(raw)
		if err == nil {
			err = json.Unmarshal([]byte(dec), &l)
		}
		if err != nil {
			v.mu.Lock()
			if v.presenceOK == nil {
				v.presenceOK = fmt.Errorf("%s: %s %q: %v", v.name, wire.WatchingLabelsHeader, raw, err)
			}
			v.mu.Unlock()
			return
		}
		p.Labels, p.More = l.Labels, l.More
	}
	v.showWatching(p, "long-poll headers")
}

// watching waits until every viewer shows want watching, and each token
// holder the labels; it fails the test with what each shows if they do not
// within wait.
func watching(t *testing.T, when string, viewers []*viewer, want int, labels []string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		off := 0
		var b strings.Builder
		for _, v := range viewers {
			n, ls := v.shows()
			if n != want || v.token != "" && !slices.Equal(ls, labels) {
				off++
			}
			fmt.Fprintf(&b, " %s=%d", v.name, n)
			if v.token != "" {
				fmt.Fprintf(&b, "%q", ls)
			}
		}
		if off == 0 {
			t.Logf("%s: every viewer shows %d watching", when, want)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d viewers do not show %d watching (holders: labels %q) after %v:%s", when, off, want, labels, wait, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// createToken makes a token of the dashboard labelled label and returns
// its secret.
func createToken(t *testing.T, db, label string) string {
	t.Helper()
	pool, err := pgxpool.New(t.Context(), db)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	secret, _, err := access.Create(t.Context(), pool, slug, label, 0, nil)
	if err != nil {
		t.Fatalf("creating token %q: %v", label, err)
	}
	return secret
}

// statValue returns the number a stat panel shows in html (digits only:
// the panel groups thousands).
func statValue(html string) (int64, bool) {
	const open = `class="stat-value">`
	i := strings.Index(html, open)
	if i < 0 {
		return 0, false
	}
	s := html[i+len(open):]
	if j := strings.IndexByte(s, '<'); j >= 0 {
		s = s[:j]
	}
	digits := strings.Map(func(r rune) rune {
		if r >= '0' && r <= '9' {
			return r
		}
		return -1
	}, s)
	n, err := strconv.ParseInt(digits, 10, 64)
	return n, err == nil
}

// writer commits to the counter: step by step, or in a loop that hold
// pauses and release resumes.
type writer struct {
	conn   *pgx.Conn
	mu     sync.Mutex // held for each use of conn
	paused bool       // the loop skips its commits; under mu
}

func newWriter(t *testing.T, url string) *writer {
	t.Helper()
	conn, err := pgx.Connect(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return &writer{conn: conn}
}

func (w *writer) step(t *testing.T) int64 {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	if err := w.conn.QueryRow(context.Background(), `UPDATE counter SET n = n + 1 RETURNING n`).Scan(&n); err != nil {
		t.Fatalf("counting: %v", err)
	}
	return n
}

func (w *writer) value(t *testing.T) int64 {
	t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	var n int64
	if err := w.conn.QueryRow(context.Background(), `SELECT n FROM counter`).Scan(&n); err != nil {
		t.Fatalf("reading the counter: %v", err)
	}
	return n
}

// run commits every interval until ctx ends. A failed commit ends the loop;
// the next converge then fails on the value hold reads.
func (w *writer) run(ctx context.Context, wg *sync.WaitGroup, interval time.Duration) {
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			w.mu.Lock()
			var err error
			if !w.paused {
				_, err = w.conn.Exec(ctx, `UPDATE counter SET n = n + 1`)
			}
			w.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
}

// hold pauses the loop's commits and returns the final value.
func (w *writer) hold(t *testing.T) int64 {
	t.Helper()
	w.mu.Lock()
	w.paused = true
	w.mu.Unlock()
	return w.value(t)
}

// release resumes the loop's commits.
func (w *writer) release() {
	w.mu.Lock()
	w.paused = false
	w.mu.Unlock()
}

// server is one dashboard serve process.
type server struct {
	name, bin, log string
	port           int
	env            []string

	cmd    *exec.Cmd
	exited chan struct{}
}

func (s *server) url() string { return "http://127.0.0.1:" + strconv.Itoa(s.port) }

func (s *server) start(t *testing.T) {
	t.Helper()
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(s.bin, "serve")
	cmd.Env = append(cleanEnv(), s.env...)
	cmd.Env = append(cmd.Env, "DASHBOARD_ADDR=127.0.0.1:"+strconv.Itoa(s.port))
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", s.name, err)
	}
	s.cmd, s.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(s.exited)
}

func (s *server) awaitReady(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(s.url() + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("%s exited while starting:\n%s", s.name, tail(s.log, 30))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v (last: %v):\n%s", s.name, wait, err, tail(s.log, 30))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill ends the process with SIGKILL: nothing is told to anyone.
func (s *server) kill(t *testing.T) {
	t.Helper()
	s.cmd.Process.Kill()
	<-s.exited
}

// terminate sends SIGTERM and waits for the process to exit, which it must
// within its DASHBOARD_SHUTDOWN_TIMEOUT (5 s) and a margin.
func (s *server) terminate(t *testing.T) {
	t.Helper()
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(wait):
		t.Fatalf("%s still running %v after SIGTERM", s.name, wait)
	}
}

// stop ends the process by its PID, if it runs.
func (s *server) stop(t *testing.T) {
	if s.cmd == nil {
		return
	}
	select {
	case <-s.exited:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(15 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
}

// queries is the sum of the panel queries the servers ran
// (dashboard_refresh_queries_total, every outcome), from their /metrics.
func queries(t *testing.T, srv []*server) float64 {
	return metricSum(t, srv, "dashboard_refresh_queries_total{", true)
}

// limitRefused is the sum of the servers' per-address stream refusals.
func limitRefused(t *testing.T, srv []*server) float64 {
	// A labelled counter appears at its first refusal.
	return metricSum(t, srv, `dashboard_limit_refused_total{limit="streams_per_ip"}`, false)
}

// metricSum adds up the samples whose lines start with prefix on the
// servers' /metrics; with required, it fails the test when there is none.
func metricSum(t *testing.T, srv []*server, prefix string, required bool) float64 {
	t.Helper()
	var sum float64
	found := 0
	for _, s := range srv {
		_, body := get(t, http.DefaultClient, s.url()+"/metrics", nil)
		for _, line := range strings.Split(body, "\n") {
			if !strings.HasPrefix(line, prefix) {
				continue
			}
			f := strings.Fields(line)
			x, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err != nil {
				t.Fatalf("%s /metrics: %q: %v", s.name, line, err)
			}
			sum += x
			found++
		}
	}
	if found == 0 && required {
		t.Fatalf("no metric %s on the servers' /metrics", prefix)
	}
	return sum
}

// nginx is the running proxy: its address and how to reach it.
type nginx struct {
	url  string
	pool *x509.CertPool
}

// client returns an HTTP client that connects to nginx from the local
// address ip (any address in 127.0.0.0/8 is this machine's on Linux), with
// HTTP/2 over TLS as a browser would, trusting only the test's
// certificate.
func (n *nginx) client(t *testing.T, ip string) *http.Client {
	t.Helper()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	tr := &http.Transport{
		DialContext:       d.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: n.pool, ServerName: "localhost"},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// startNginx renders dashboard.conf for the servers and a free port, and
// runs nginx on it in the foreground until the test ends.
func startNginx(t *testing.T, bin, dir string, srv []*server) *nginx {
	t.Helper()
	certFile, keyFile, pool := selfSigned(t, dir)
	port := freePort(t)
	var addrs []string
	for _, s := range srv {
		addrs = append(addrs, "127.0.0.1:"+strconv.Itoa(s.port))
	}
	shipped, err := os.ReadFile("dashboard.conf")
	if err != nil {
		t.Fatal(err)
	}
	site := render(t, string(shipped), addrs, fmt.Sprintf("listen 127.0.0.1:%d ssl http2;", port), certFile, keyFile)
	siteFile := filepath.Join(dir, "dashboard.conf")
	if err := os.WriteFile(siteFile, []byte(site), 0o600); err != nil {
		t.Fatal(err)
	}
	// The main configuration Debian's nginx.conf would be: the test's own
	// folder for temporary files and logs, root as the workers' user when
	// the test runs as root (the folder is closed to others).
	var main strings.Builder
	if os.Geteuid() == 0 {
		main.WriteString("user root;\n")
	}
	fmt.Fprintf(&main, `worker_processes 1;
events { worker_connections 4096; }
http {
	log_format upstream '$remote_addr "$request" $status upstream=$upstream_addr/$upstream_status $request_time';
	access_log %[1]s/access.log upstream;
	client_body_temp_path %[1]s/body;
	proxy_temp_path %[1]s/proxy;
	fastcgi_temp_path %[1]s/fastcgi;
	uwsgi_temp_path %[1]s/uwsgi;
	scgi_temp_path %[1]s/scgi;
	include %[2]s;
}
`, dir, siteFile)
	mainFile := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(mainFile, []byte(main.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	global := fmt.Sprintf("daemon off; pid %s/nginx.pid; error_log %s/error.log info;", dir, dir)
	if out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", mainFile, "-g", global).CombinedOutput(); err != nil {
		t.Fatalf("nginx -t: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", mainFile, "-g", global)
	out, err := os.Create(filepath.Join(dir, "nginx.out"))
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting nginx: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); out.Close(); close(exited) }()
	t.Cleanup(func() {
		// SIGTERM to the master, by its PID: a fast shutdown that ends
		// its workers too.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	ng := &nginx{url: fmt.Sprintf("https://127.0.0.1:%d", port), pool: pool}
	c := ng.client(t, "127.0.0.1")
	deadline := time.Now().Add(wait)
	for {
		resp, err := c.Get(ng.url + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK && resp.ProtoMajor == 2 {
				return ng
			}
			err = fmt.Errorf("%s %d", resp.Proto, resp.StatusCode)
		}
		select {
		case <-exited:
			t.Fatalf("nginx exited:\n%s\n%s", tail(filepath.Join(dir, "nginx.out"), 20), tail(filepath.Join(dir, "error.log"), 20))
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("nginx does not answer /healthz over HTTP/2 after %v: %v", wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// The strings of dashboard.conf that renderers replace, as its header
// documents.
const (
	upstreamBegin = "\t# upstream servers: begin\n"
	upstreamEnd   = "\t# upstream servers: end\n"
	listenLine    = "listen 443 ssl http2;"
	certPath      = "/etc/ssl/dashboard/fullchain.pem"
	keyPath       = "/etc/ssl/dashboard/privkey.pem"
)

// render fills in dashboard.conf by plain text replacement, failing when a
// placeholder is missing from its directives or in them more than once, so
// that the shipped file and its renderers cannot drift apart. (The header
// comment names them too; they are replaced there as well, harmlessly.)
// Each of addrs gets a server line with the parameters of the shipped
// file's first one, so that what the file says about failures is what is
// tested.
func render(t *testing.T, conf string, addrs []string, listen, cert, key string) string {
	t.Helper()
	for _, p := range []string{upstreamBegin, upstreamEnd} {
		if n := strings.Count(conf, p); n != 1 {
			t.Fatalf("dashboard.conf: %q occurs %d times, want once", p, n)
		}
	}
	var directives strings.Builder
	for _, line := range strings.Split(conf, "\n") {
		line, _, _ = strings.Cut(line, "#")
		directives.WriteString(line + "\n")
	}
	for _, p := range []string{listenLine, certPath, keyPath} {
		if n := strings.Count(directives.String(), p); n != 1 {
			t.Fatalf("dashboard.conf: %q occurs %d times outside comments, want once", p, n)
		}
	}
	i := strings.Index(conf, upstreamBegin) + len(upstreamBegin)
	j := strings.Index(conf, upstreamEnd)
	if j < i {
		t.Fatalf("dashboard.conf: %q before %q", upstreamEnd, upstreamBegin)
	}
	first, _, _ := strings.Cut(strings.TrimSpace(conf[i:j]), "\n")
	f := strings.Fields(strings.TrimSuffix(first, ";"))
	if len(f) < 2 || f[0] != "server" {
		t.Fatalf("dashboard.conf: the first upstream line is %q, want server ADDRESS [PARAMETERS];", first)
	}
	var upstreams strings.Builder
	for _, a := range addrs {
		fmt.Fprintf(&upstreams, "\t%s;\n", strings.Join(append([]string{"server", a}, f[2:]...), " "))
	}
	conf = conf[:i] + upstreams.String() + conf[j:]
	return strings.NewReplacer(listenLine, listen, certPath, cert, keyPath, key).Replace(conf)
}

// TestRenderReplacesPlaceholders: the rendered file has the test's values
// and none of the shipped ones it replaces.
func TestRenderReplacesPlaceholders(t *testing.T) {
	shipped, err := os.ReadFile("dashboard.conf")
	if err != nil {
		t.Fatal(err)
	}
	got := render(t, string(shipped), []string{"127.0.0.1:1", "127.0.0.1:3"}, "listen 127.0.0.1:2 ssl http2;", "/c.pem", "/k.pem")
	for _, want := range []string{"\tserver 127.0.0.1:1 max_fails=0;\n\tserver 127.0.0.1:3 max_fails=0;\n\t# upstream servers: end", "listen 127.0.0.1:2 ssl http2;", "ssl_certificate /c.pem;", "ssl_certificate_key /k.pem;"} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered file lacks %q", want)
		}
	}
	for _, gone := range []string{"server 127.0.0.1:8081", listenLine, certPath, keyPath} {
		if strings.Contains(got, gone) {
			t.Errorf("rendered file still has %q", gone)
		}
	}
}

// selfSigned writes a self-signed certificate for localhost and 127.0.0.1
// and its key, and returns their paths and a pool that trusts it.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pool
}

// findNginx returns nginx's path. Without nginx the test is skipped, except
// in CI (CI set), where it fails so that CI can never pass by skipping.
func findNginx(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("nginx")
	if err != nil {
		if _, serr := os.Stat("/usr/sbin/nginx"); serr == nil {
			return "/usr/sbin/nginx"
		}
		if os.Getenv("CI") == "" {
			t.Skipf("no nginx (%v); install Debian's nginx, or set CI to make this a failure", err)
		}
		t.Fatalf("no nginx: %v (.ci/run installs it)", err)
	}
	return p
}

// buildDashboard builds cmd/dashboard into dir.
func buildDashboard(t *testing.T, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "dashboard")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/livedash/dashboard/cmd/dashboard").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// runDashboard runs one subcommand of the binary to its end.
func runDashboard(t *testing.T, bin string, env []string, args ...string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(cleanEnv(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("dashboard %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// cleanEnv is the test's environment without settings of the program, so
// that a developer's DASHBOARD_* or DATABASE_URL cannot change the test.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DASHBOARD_") && !strings.HasPrefix(kv, "DATABASE_URL=") {
			env = append(env, kv)
		}
	}
	return env
}

// exec1 runs one statement on its own connection.
func exec1(t *testing.T, url, sql string) {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// get fetches url and returns the response with its body read.
func get(t *testing.T, c *http.Client, url string, header http.Header) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return do(t, c, req)
}

// do sends req and returns the response with its body read.
func do(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	url := req.URL.String()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp, string(body)
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// tail returns the last n lines of the file at path.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// TestViewerCatchesBackwards: the check the multi-server test rests on
// fails a viewer that shows a smaller value after a larger one, and only
// then.
func TestViewerCatchesBackwards(t *testing.T) {
	v := &viewer{name: "v"}
	for _, n := range []int64{1, 2, 2, 5} {
		v.show(n, "test")
	}
	if err := v.failure(); err != nil {
		t.Fatalf("1 2 2 5: got %v, want no failure", err)
	}
	v.show(4, "test")
	if err := v.failure(); err == nil || !strings.Contains(err.Error(), "showed 4 after 5") {
		t.Fatalf("5 then 4: got %v, want a failure naming 4 after 5", err)
	}
	if got := v.last.Load(); got != 5 {
		t.Errorf("last: got %d, want 5", got)
	}
}

// TestStatValue: the counter read from a stat panel's markup, thousands
// grouped as the panel groups them.
func TestStatValue(t *testing.T) {
	for _, c := range []struct {
		html string
		want int64
		ok   bool
	}{
		{`<text y="1" class="stat-value">0</text>`, 0, true},
		{`<text class="stat-value">12,345</text>`, 12345, true},
		{`<p class="empty">No data</p>`, 0, false},
		{`<text class="stat-value null">NULL</text>`, 0, false},
	} {
		got, ok := statValue(c.html)
		if got != c.want || ok != c.ok {
			t.Errorf("statValue(%q): got %d, %v, want %d, %v", c.html, got, ok, c.want, c.ok)
		}
	}
}
