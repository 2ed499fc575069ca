package main

import (
	"context"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/pgtest"
)

// presenceServer starts a server on url that shares who is watching every
// 100 ms; crash leaves its rows behind when it stops, as a killed server
// does.
func presenceServer(t *testing.T, url string, crash bool) (*testServer, func() error) {
	t.Helper()
	return startStoppable(t, configFor(url), false, func(o *serveOptions) {
		o.presenceInterval = 100 * time.Millisecond
		o.presenceCrash = crash
	})
}

var watchingSpan = regexp.MustCompile(`<span id="watching"[^>]*>([^<]*)</span>`)

// watchingOnPage is what the page at path says of who is watching.
func watchingOnPage(t *testing.T, s *testServer, path string, header ...string) string {
	t.Helper()
	resp, body := s.get(t, path, header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d", path, resp.StatusCode)
	}
	m := watchingSpan.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("GET %s: no #watching on the page", path)
	}
	return m[1]
}

var pageVersion = regexp.MustCompile(`id="live"[^>]*data-version="([^"]+)"`)

// versionOnPage is the version the page at path shows; reading it counts
// no viewer.
func versionOnPage(t *testing.T, s *testServer, path string) string {
	t.Helper()
	_, body := s.get(t, path)
	m := pageVersion.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("GET %s: no version on the page", path)
	}
	return m[1]
}

// pollWatching is a long-poll client's conditional GET (wait=0): it
// counts the client, and returns the watching headers of the 304.
func pollWatching(t *testing.T, s *testServer, version, client string, header ...string) (count, labels string) {
	t.Helper()
	resp, body := s.get(t, "/d/ops/poll?wait=0", append([]string{"If-None-Match", `"` + version + `"`,
		"X-Dashboard-Client", client}, header...)...)
	if resp.StatusCode != http.StatusNotModified {
		t.Fatalf("long-poll of the current version: got %d %q, want 304", resp.StatusCode, trim(body))
	}
	labels = resp.Header.Get("X-Dashboard-Watching-Labels")
	if labels != "" {
		dec, err := url.PathUnescape(labels)
		if err != nil {
			t.Fatalf("labels header %q: %v", labels, err)
		}
		labels = dec
	}
	return resp.Header.Get("X-Dashboard-Watching"), labels
}

// waitPresence reads the stream until a presence event with data want
// arrives. Any update (a message with an id) fails the test: joins and
// leaves never send panels.
func waitPresence(t *testing.T, c *sseClient, want string) {
	t.Helper()
	deadline := time.Now().Add(contractWait)
	var seen []string
	for {
		m, err := c.nextWithin(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for presence %s: %v (presence seen: %q)", want, err, seen)
		}
		if m.hasID {
			t.Fatalf("waiting for presence %s: got an update %q, want none", want, trim(m.body()))
		}
		if m.event != "presence" {
			continue
		}
		if m.hasID || len(m.data) != 1 {
			t.Fatalf("presence event %q: want one data line and no id", m.lines)
		}
		if m.body() == want {
			return
		}
		seen = append(seen, m.body())
	}
}

// TestPresenceAcrossServers: two servers on one database, streams and
// long-polls on both. Every page, stream and long-poll answer counts the
// viewers of both servers exactly; a token's holder also sees the labels of
// the tokens in use and the public does not; a viewer leaving lowers the
// count; a killed server's streams stop counting once its rows expire. None
// of it changes the dashboard's version or sends a panel.
func TestPresenceAcrossServers(t *testing.T) {
	t.Parallel()
	db := pgtest.NewDB(t)
	s1, _ := presenceServer(t, db, false)
	s2, kill2 := presenceServer(t, db, true)
	createDashboard(t, s1.pool, "ops", true, [3]string{"p1", "stat", "SELECT 1 AS n"})
	awaitDashboard(t, s1, "ops")
	awaitDashboard(t, s2, "ops")
	ctx := context.Background()
	tv, _, err := access.Create(ctx, s1.pool, "ops", "lobby TV", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	laptop, _, err := access.Create(ctx, s1.pool, "ops", "ops laptop", 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tvCookie := []string{"Cookie", tokenCookieName + "=" + tv}
	laptopCookie := []string{"Cookie", tokenCookieName + "=" + laptop}
	eventually(t, "both servers to know the tokens", func() bool {
		return s1.tokensKnow(t, tv) && s2.tokensKnow(t, tv) && s1.tokensKnow(t, laptop) && s2.tokensKnow(t, laptop)
	})

	v := versionOnPage(t, s1, "/d/ops")
	eventually(t, "both servers to show the same version", func() bool { return versionOnPage(t, s2, "/d/ops") == v })
	frames1, frames2 := promValue(t, s1, "dashboard_frames_sent_total"), promValue(t, s2, "dashboard_frames_sent_total")

	public := openSSE(t, nil, s1.URL+"/d/ops/events", "Last-Event-ID", v)
	holder := openSSE(t, nil, s2.URL+"/d/ops/events", "Last-Event-ID", v, tvCookie[0], tvCookie[1])
	for _, c := range []*sseClient{public, holder} {
		if c.resp.StatusCode != http.StatusOK {
			t.Fatalf("opening a stream: got %d", c.resp.StatusCode)
		}
	}
	polls := func() (publicCount, holderCount, holderLabels string) {
		publicCount, publicLabels := pollWatching(t, s1, v, "public-poll-client-0001")
		if publicLabels != "" {
			t.Fatalf("a public long-poll got labels %s, want only the count", publicLabels)
		}
		holderCount, holderLabels = pollWatching(t, s2, v, "holder-poll-client-0001", laptopCookie...)
		return publicCount, holderCount, holderLabels
	}
	polls()

	labels := `["lobby TV","ops laptop"]`
	waitPresence(t, public, `{"watching":4}`)
	waitPresence(t, holder, `{"watching":4,"labels":`+labels+`}`)
	eventually(t, "every page and long-poll to count 4", func() bool {
		pc, hc, hl := polls()
		return pc == "4" && hc == "4" && hl == `{"labels":`+labels+`,"more":0}` &&
			watchingOnPage(t, s1, "/d/ops") == "4 watching" &&
			watchingOnPage(t, s2, "/d/ops", tvCookie...) == "4 watching: lobby TV, ops laptop"
	})

	// A long-poll page that shows 4 waits (up to 50 s); when the count
	// changes it is answered with the new count, not after its wait.
	early := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest("GET", s1.URL+"/d/ops/poll?wait=50", nil)
		req.Header.Set("If-None-Match", `"`+v+`"`)
		req.Header.Set("X-Dashboard-Client", "public-poll-client-0001")
		req.Header.Set("X-Dashboard-Watching", "4")
		resp, err := (&http.Client{Timeout: contractWait}).Do(req)
		if err != nil {
			early <- err.Error()
			return
		}
		resp.Body.Close()
		early <- resp.Status + " " + resp.Header.Get("X-Dashboard-Watching")
	}()
	eventually(t, "the long-poll to wait", func() bool { return promValue(t, s1, "dashboard_longpoll_waiting") == 1 })

	// The public stream leaves.
	public.close()
	if got := <-early; got != "304 Not Modified 3" {
		t.Errorf("a long-poll page showing 4: got %q, want 304 with the new count 3", got)
	}
	waitPresence(t, holder, `{"watching":3,"labels":`+labels+`}`)
	eventually(t, "the pages to count 3", func() bool {
		polls()
		return watchingOnPage(t, s1, "/d/ops") == "3 watching" && watchingOnPage(t, s2, "/d/ops") == "3 watching"
	})

	// Nothing of this was a change of the dashboard.
	for _, s := range []*testServer{s1, s2} {
		if got := versionOnPage(t, s, "/d/ops"); got != v {
			t.Errorf("server %s: version %s after joins and leaves, want %s", s.addr, got, v)
		}
	}
	if got := promValue(t, s1, "dashboard_frames_sent_total"); got != frames1 {
		t.Errorf("server 1 sent %v frames for joins and leaves, want none", got-frames1)
	}
	if got := promValue(t, s2, "dashboard_frames_sent_total"); got != frames2 {
		t.Errorf("server 2 sent %v frames for joins and leaves, want none", got-frames2)
	}

	// Server 2 is killed: its stream counts until its row expires, then
	// the two long-poll clients are left (a long-poll client counts for
	// 30 s after it was last seen, whichever server saw it: it asks
	// another server next).
	holder.close()
	if err := kill2(); err != nil {
		t.Fatalf("server 2: %v", err)
	}
	var left int
	if err := s1.pool.QueryRow(ctx, "SELECT count(*) FROM dashboard.presence WHERE server = $1", s2.presence.Server()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Errorf("rows of the killed server: got %d, want 1 (they expire, nobody deletes them)", left)
	}
	eventually(t, "the killed server's stream to expire", func() bool {
		pollWatching(t, s1, v, "public-poll-client-0001")
		return watchingOnPage(t, s1, "/d/ops") == "2 watching"
	})
}

// tokenCookieName is the web package's token cookie.
const tokenCookieName = "dashboard_token"

// tokensKnow reports whether the server takes secret for ops yet: on a
// public dashboard the ?token= exchange sets the cookie only for a valid
// token. It counts no viewer.
func (s *testServer) tokensKnow(t *testing.T, secret string) bool {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(s.URL + "/d/ops?token=" + url.QueryEscape(secret))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return len(resp.Cookies()) > 0
}

// TestTokenCreatePlaylistRefusesOlderServer: a playlist's token is refused
// while a feed slot is held by a session that no server row names (a
// server from before 0011, which would read the token as one of every
// dashboard), with a message that says why and what to do; --force
// overrides; a server of this release alone does not stop it.
func TestTokenCreatePlaylistRefusesOlderServer(t *testing.T) {
	db := pgtest.NewDB(t)
	s, _ := presenceServer(t, db, false)
	t.Setenv("DATABASE_URL", db)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	s.exec(t, `INSERT INTO dashboard.playlists (slug, title) VALUES ('lobby', 'Lobby')`)

	// This release's server holds slot 0 and is registered.
	if out := runOK(t, "token", "create", "--playlist", "lobby", "--label", "lobby TV"); !strings.Contains(out, "/p/lobby?token=") {
		t.Errorf("with only this release's server: printed %q, want the link", out)
	}

	older, err := s.pool.Acquire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer older.Release()
	var pid int32
	if err := older.QueryRow(context.Background(),
		"SELECT pg_backend_pid() FROM (SELECT pg_advisory_lock(dashboard.slot_key(3))) l").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	err, out, _ := runErr(t, "token", "create", "--playlist", "lobby", "--label", "hall TV")
	if err == nil {
		t.Fatalf("beside an older server: printed %q, want a refusal", out)
	}
	for _, want := range []string{"older release", "feed slot 3", "Upgrade or drain", "--force"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("refusal %q does not say %q", err, want)
		}
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM dashboard.access_tokens WHERE label = 'hall TV'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("the refused token was stored")
	}
	if out := runOK(t, "token", "create", "--playlist", "lobby", "--label", "hall TV", "--force"); !strings.Contains(out, "/p/lobby?token=") {
		t.Errorf("with --force: printed %q, want the link", out)
	}

	if _, err := older.Exec(context.Background(), "SELECT pg_advisory_unlock(dashboard.slot_key(3))"); err != nil {
		t.Fatal(err)
	}
	if out := runOK(t, "token", "create", "--playlist", "lobby", "--label", "desk"); !strings.Contains(out, "/p/lobby?token=") {
		t.Errorf("once the older server is gone: printed %q, want the link", out)
	}
}

// TestBrowserWatching: a page shows how many watch, from the stream's
// presence event: two windows on one dashboard both say "2 watching"; a
// third on the long-poll makes three, shown by all, its own from the
// long-poll's header; once a window closes, the others say "2 watching".
func TestBrowserWatching(t *testing.T) {
	s, _ := presenceServer(t, pgtest.NewDB(t), false)
	setupCounts(t, s, "shared", 1, "a")
	first := newBrowser(t)
	second, closeSecond := chromedp.NewContext(first)
	t.Cleanup(closeSecond)
	if err := chromedp.Do(second); err != nil {
		t.Fatalf("opening a second window: %v", err)
	}
	navigate(t, first, s, "/d/shared")
	navigate(t, second, s, "/d/shared")
	waitStreams(t, first, s, 2)
	const text = `document.getElementById('watching').textContent`
	for _, ctx := range []context.Context{first, second} {
		waitJS(t, ctx, "2 watching", text+` === '2 watching'`)
	}
	// A long-poll page counts too, and shows the count from the
	// long-poll's header.
	third, closeThird := chromedp.NewContext(first)
	t.Cleanup(closeThird)
	if err := chromedp.Do(third); err != nil {
		t.Fatalf("opening a third window: %v", err)
	}
	navigate(t, third, s, "/d/shared?transport=poll")
	for _, ctx := range []context.Context{first, second, third} {
		waitJS(t, ctx, "3 watching", text+` === '3 watching'`)
	}
	closeSecond()
	waitJS(t, first, "2 watching", text+` === '2 watching'`)
	waitJS(t, third, "2 watching", text+` === '2 watching'`)
}
