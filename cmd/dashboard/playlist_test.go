package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"
	"github.com/livedash/dashboard/internal/access"
)

// The playlist tests run the real program: /p/{slug} and its rotation,
// the tokens scoped to a playlist, and a kiosk in Chromium rotating through
// two fixture dashboards whose values are inserted by SQL.

// createPlaylist adds a playlist rotating every interval seconds through
// items, each "dashboard" or "dashboard?var-name=value&...", and waits until
// the server's catalog has it. It returns the playlist's id.
func createPlaylist(t *testing.T, s *testServer, slug string, interval int, items ...string) int64 {
	t.Helper()
	var id int64
	if err := s.pool.QueryRow(context.Background(),
		`INSERT INTO dashboard.playlists (slug, title, interval_seconds) VALUES ($1, $2, $3) RETURNING id`,
		slug, "Playlist "+slug, interval).Scan(&id); err != nil {
		t.Fatalf("creating playlist %s: %v", slug, err)
	}
	for i, it := range items {
		dash, query, _ := strings.Cut(it, "?")
		q, err := url.ParseQuery(query)
		if err != nil {
			t.Fatal(err)
		}
		vars := map[string][]string{}
		for k, v := range q {
			vars[strings.TrimPrefix(k, "var-")] = v
		}
		s.exec(t, `INSERT INTO dashboard.playlist_items (playlist_id, position, dashboard, variables) VALUES ($1, $2, $3, $4)`,
			id, i, dash, vars)
	}
	awaitPlaylist(t, s, slug, len(items))
	return id
}

// awaitPlaylist waits until the server's catalog has the playlist with n
// items.
func awaitPlaylist(t *testing.T, s *testServer, slug string, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("playlist %s with %d items in the catalog", slug, n), func() bool {
		snap := s.engine.Snapshot()
		if snap == nil {
			return false
		}
		p := snap.Playlist(slug)
		return p != nil && len(p.Items) == n
	})
}

// noRedirects is a client that returns redirects instead of following them.
var noRedirects = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

// getRaw fetches path without following redirects, with the cookies given.
func getRaw(t *testing.T, s *testServer, path string, cookies ...*http.Cookie) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest("GET", s.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := noRedirects.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp, string(body)
}

// TestPlaylistRedirects: /p/{slug}?item=N answers the kiosk page of item N
// with its variables and the parameters of the playlist's address; a
// dashboard deleted from under the playlist is skipped, positions past the
// end wrap round, the page of an item carries the next step in its script
// element, a playlist with nothing to show says so (and looks again), and
// an unknown one is 404.
func TestPlaylistRedirects(t *testing.T) {
	cfg := testConfig(t)
	cfg.PlaylistMinInterval = 2 * time.Second
	s := startServer(t, cfg, false)
	setupCounts(t, s, "one", 1, "a")
	setupCounts(t, s, "two", 1, "b")
	setupCounts(t, s, "three", 1, "c")
	createPlaylist(t, s, "wall", 1, "one", "two?var-region=eu", "three")
	createPlaylist(t, s, "ghost", 1, "nosuch")
	createPlaylist(t, s, "later", 1, "nosuch", "three")
	awaitPlaylist(t, s, "later", 2)

	// The index lists a playlist for what it would show: not one whose
	// only item names no dashboard, and one whose first item does not
	// exist (yet) for the dashboard after it.
	if resp, body := getRaw(t, s, "/"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `href="/p/later"`) ||
		!strings.Contains(body, `href="/p/wall"`) || strings.Contains(body, `/p/ghost`) {
		t.Errorf("index: got %d, want 200 listing /p/wall and /p/later, not /p/ghost:\n%s", resp.StatusCode, body)
	}

	location := func(path string) string {
		t.Helper()
		resp, body := getRaw(t, s, path)
		if resp.StatusCode != http.StatusSeeOther {
			t.Fatalf("GET %s: got %d, want 303\n%s", path, resp.StatusCode, body)
		}
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("GET %s: got Cache-Control %q, want no-store", path, cc)
		}
		return resp.Header.Get("Location")
	}
	for _, tt := range []struct{ path, want string }{
		{"/p/wall", "/d/one?kiosk&playlist=wall&item=0"},
		{"/p/wall?item=1&theme=dark", "/d/two?kiosk&theme=dark&var-region=eu&playlist=wall&item=1"},
		{"/p/wall?item=2&var-region=us&from=now-1h", "/d/three?kiosk&playlist=wall&item=2"},
		{"/p/wall?item=3", "/d/one?kiosk&playlist=wall&item=0"},
		// Past the end wraps round, so that a kiosk skipping a refused
		// last item does not land on the first one for ever.
		{"/p/wall?item=4", "/d/two?kiosk&var-region=eu&playlist=wall&item=1"},
		{"/p/wall?item=8", "/d/three?kiosk&playlist=wall&item=2"},
		{"/p/wall?item=-1", "/d/one?kiosk&playlist=wall&item=0"},
		{"/p/wall?item=x", "/d/one?kiosk&playlist=wall&item=0"},
	} {
		if got := location(tt.path); got != tt.want {
			t.Errorf("GET %s: got Location %q, want %q", tt.path, got, tt.want)
		}
	}

	// The page of an item loads playlist.js with the next step; the
	// playlist's interval (1s) is raised to the server's minimum (2s).
	_, body := s.get(t, "/d/two?kiosk&theme=dark&var-region=eu&playlist=wall&item=1")
	step := regexp.MustCompile(`<script id="playlist" src="(/static/playlist\.[^"]+\.js)" data-next="([^"]*)" data-seconds="(\d+)" defer>`).FindStringSubmatch(body)
	if step == nil {
		t.Fatalf("page of item 1: no playlist script element in\n%s", body)
	}
	if want := "/p/wall?item=2&amp;theme=dark"; step[2] != want {
		t.Errorf("page of item 1: got data-next %q, want %q", step[2], want)
	}
	if step[3] != "2" {
		t.Errorf("page of item 1: got data-seconds %s, want 2 (the server's minimum)", step[3])
	}
	if resp, _ := s.get(t, step[1]); resp.StatusCode != http.StatusOK {
		t.Errorf("GET %s: got %d, want 200", step[1], resp.StatusCode)
	}
	// A page shown on its own has no step.
	if _, body := s.get(t, "/d/two"); strings.Contains(body, "playlist") {
		t.Errorf("page of a dashboard shown on its own mentions a playlist:\n%s", body)
	}

	// Deleted from under the playlist: skipped.
	s.exec(t, "DELETE FROM dashboard.dashboards WHERE slug = 'two'")
	eventually(t, "dashboard two gone from the catalog", func() bool { return s.engine.Snapshot().Dashboard("two") == nil })
	if got, want := location("/p/wall?item=1"), "/d/three?kiosk&playlist=wall&item=2"; got != want {
		t.Errorf("after deleting two: GET /p/wall?item=1: got Location %q, want %q", got, want)
	}
	// The page of the deleted item's successor goes on from its position.
	if _, body := s.get(t, "/d/three?kiosk&playlist=wall&item=2"); !strings.Contains(body, `data-next="/p/wall?item=3"`) {
		t.Errorf("page of item 2: want data-next /p/wall?item=3 in\n%s", body)
	}

	// Emptied: a page that says so and refreshes itself.
	s.exec(t, "DELETE FROM dashboard.playlist_items")
	awaitPlaylist(t, s, "wall", 0)
	resp, body := getRaw(t, s, "/p/wall?item=1")
	if resp.StatusCode != http.StatusOK || !strings.Contains(body, `id="playlist-empty"`) ||
		!strings.Contains(body, `<meta http-equiv="refresh" content="2">`) {
		t.Errorf("empty playlist: got %d, want 200 with the empty message and a refresh every 2s\n%s", resp.StatusCode, body)
	}
	if resp, _ := getRaw(t, s, "/p/nosuch"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /p/nosuch: got %d, want 404", resp.StatusCode)
	}
}

// TestPlaylistToken: a token scoped to a playlist, exchanged at the
// playlist's address, becomes a cookie for the whole site that opens the
// playlist and exactly the private dashboards its items name, and follows
// the playlist as it is edited. The CLI prints its kiosk link.
func TestPlaylistToken(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, false)
	for _, slug := range []string{"one", "two", "three"} {
		createDashboard(t, s.pool, slug, false, [3]string{"p", "stat", "SELECT 1 AS n"})
		awaitDashboard(t, s, slug)
	}
	createPlaylist(t, s, "wall", 30, "one", "two")
	secret, tok, err := access.CreateForPlaylist(t.Context(), s.pool, "wall", "lobby TV", 0)
	if err != nil {
		t.Fatal(err)
	}
	if tok.Playlist != "wall" || tok.Dashboard != "" {
		t.Errorf("token: got playlist %q dashboard %q, want wall and none", tok.Playlist, tok.Dashboard)
	}
	eventually(t, "the token in the server's set", func() bool {
		resp, _ := getRaw(t, s, "/p/wall?token="+secret)
		return resp.StatusCode == http.StatusSeeOther
	})

	if resp, _ := getRaw(t, s, "/p/wall"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /p/wall without the token: got %d, want 404 (its dashboards are private)", resp.StatusCode)
	}
	if resp, _ := getRaw(t, s, "/p/wall?token=dbt_"+strings.Repeat("A", 43)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /p/wall with an unknown token: got %d, want 404", resp.StatusCode)
	}
	resp, _ := getRaw(t, s, "/p/wall?theme=dark&token="+secret)
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/p/wall?theme=dark" {
		t.Fatalf("token exchange: got %d to %q, want 303 to /p/wall?theme=dark", resp.StatusCode, resp.Header.Get("Location"))
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "dashboard_token" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Path != "/" || !cookie.HttpOnly || cookie.Value != secret {
		t.Fatalf("token exchange: got cookie %+v, want the secret, HttpOnly, for path /", cookie)
	}
	if resp, _ := getRaw(t, s, "/p/wall", cookie); resp.Header.Get("Location") != "/d/one?kiosk&playlist=wall&item=0" {
		t.Errorf("GET /p/wall with the cookie: got %d to %q, want the first item", resp.StatusCode, resp.Header.Get("Location"))
	}
	status := func(path string) int {
		resp, _ := getRaw(t, s, path, cookie)
		return resp.StatusCode
	}
	for path, want := range map[string]int{"/d/one": 200, "/d/two": 200, "/d/three": 404} {
		if got := status(path); got != want {
			t.Errorf("GET %s with the playlist's token: got %d, want %d", path, got, want)
		}
	}
	// The index lists what the token opens, no more, and the playlist;
	// without the token it lists neither its dashboards nor the playlist.
	if _, body := getRaw(t, s, "/", cookie); !strings.Contains(body, "/d/one") || strings.Contains(body, "/d/three") ||
		!strings.Contains(body, `href="/p/wall"`) {
		t.Errorf("index with the playlist's token: want one, two and the playlist listed, not three:\n%s", body)
	}
	if _, body := getRaw(t, s, "/"); strings.Contains(body, "/p/wall") || strings.Contains(body, "/d/one") {
		t.Errorf("index without a token lists the private playlist or its dashboards:\n%s", body)
	}

	// Edited: two leaves the playlist, three joins it. The stream open on
	// two ends, and the token opens three and no longer two.
	stream := openSSE(t, nil, s.URL+"/d/two/events", "Cookie", "dashboard_token="+secret)
	if stream.resp.StatusCode != http.StatusOK {
		t.Fatalf("stream on two with the playlist's token: got %d, want 200", stream.resp.StatusCode)
	}
	stream.nextUpdate(t)
	s.exec(t, "UPDATE dashboard.playlist_items SET dashboard = 'three' WHERE dashboard = 'two'")
	// Heartbeats keep coming while it is open: bound the whole wait.
	for deadline := time.Now().Add(contractWait); ; {
		_, err := stream.line(time.Until(deadline))
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("stream on two after two left the playlist: got %v, want it closed", err)
		}
	}
	eventually(t, "the token to follow the playlist", func() bool { return status("/d/three") == 200 })
	if got := status("/d/two"); got != 404 {
		t.Errorf("GET /d/two after it left the playlist: got %d, want 404", got)
	}

	// The CLI: token create --playlist prints the playlist's kiosk link,
	// and token list names the playlist.
	t.Setenv("DATABASE_URL", cfg.DatabaseURL)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	out := runOK(t, "token", "create", "--playlist", "wall", "--label", "hall TV")
	if !regexp.MustCompile(`http://127\.0\.0\.1:8080/p/wall\?token=dbt_\S+`).MatchString(out) {
		t.Errorf("token create --playlist printed %q, want a link to /p/wall", out)
	}
	if list := runOK(t, "token", "list"); !regexp.MustCompile(`playlist wall\s+hall TV`).MatchString(list) {
		t.Errorf("token list printed %q, want the token's scope as playlist wall", list)
	}
	// A forced theme goes into the link and through the token's redirect
	// and the playlist's to the first dashboard's kiosk page.
	out = runOK(t, "token", "create", "--playlist", "wall", "--label", "dark TV", "--theme", "dark")
	link := regexp.MustCompile(`http://127\.0\.0\.1:8080(/p/wall\?theme=dark&token=dbt_\S+)`).FindStringSubmatch(out)
	if link == nil {
		t.Fatalf("token create --playlist --theme dark printed %q, want a link to /p/wall?theme=dark&token=…", out)
	}
	// The server learns of the new token when its token set reloads.
	eventually(t, "the server to know the new token", func() bool {
		jar, _ := cookiejar.New(nil)
		resp, err = (&http.Client{Jar: jar}).Get(s.URL + link[1])
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode != http.StatusNotFound
	})
	if q := resp.Request.URL.Query(); resp.StatusCode != 200 || resp.Request.URL.Path != "/d/one" || q.Get("theme") != "dark" || !q.Has("kiosk") || q.Has("token") {
		t.Errorf("the dark TV's link ended on %d %s, want 200 on /d/one (the first item) in kiosk mode with theme=dark and no token", resp.StatusCode, resp.Request.URL)
	}
	for _, args := range [][]string{
		{"token", "create", "--playlist", "wall", "--label", "x", "--view", "var-a=1"},
		{"token", "create", "--playlist", "wall", "--label", "x", "--theme", "sepia"},
		{"token", "create", "--playlist", "nosuch", "--label", "x"},
		{"token", "create", "one", "--playlist", "wall", "--label", "x"},
		{"token", "create", "--all", "--playlist", "wall", "--label", "x"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("dashboard %s: got no error, want one", strings.Join(args, " "))
		}
	}
}

// TestBrowserPlaylistRotates: a kiosk on a playlist of two fixture
// dashboards shows the first, updates it live after an INSERT, rotates to
// the second and back to the first (with the data inserted meanwhile), and
// the server never holds more than two streams for it, sampled all along.
// The step to the next dashboard is held in the browser while the live
// update is checked, so no wait depends on the interval.
func TestBrowserPlaylistRotates(t *testing.T) {
	cfg := testConfig(t)
	cfg.PlaylistMinInterval = time.Second
	s := startServer(t, cfg, false)
	setupCounts(t, s, "one", 1, "a")
	setupCounts(t, s, "two", 5, "b")
	createPlaylist(t, s, "wall", 1, "one", "two")

	// Sample the server's open streams until the test ends.
	var most atomic.Int64
	var sampleErr atomic.Value
	stop := make(chan struct{})
	var sampling sync.WaitGroup
	sampling.Add(1)
	go func() {
		defer sampling.Done()
		for {
			n, err := sseClients(s)
			if err != nil {
				sampleErr.Store(err)
				return
			}
			if int64(n) > most.Load() {
				most.Store(int64(n))
			}
			select {
			case <-stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()
	defer func() {
		close(stop)
		sampling.Wait()
		if err, _ := sampleErr.Load().(error); err != nil {
			t.Errorf("sampling open streams: %v", err)
		}
		if n := most.Load(); n > 2 || n < 1 {
			t.Errorf("open streams: got at most %d at a time, want 1 or 2", n)
		}
	}()

	ctx := newBrowser(t)
	// Hold the page's step to item 1 (its HEAD request) until released.
	var holding atomic.Bool
	holding.Store(true)
	held := make(chan *pausedRequest, 1)
	intercept(t, ctx, "*/p/wall?item=*", func(p *pausedRequest) bool {
		if !holding.Load() {
			return false
		}
		held <- p
		return true
	})

	navigate(t, ctx, s, "/p/wall")
	waitLocation(t, ctx, "/d/one?kiosk&playlist=wall&item=0")
	waitStat(t, ctx, "a", "1")
	waitStreams(t, ctx, s, 1)
	waitStatus(t, ctx, "live")
	var step *pausedRequest
	select {
	case step = <-held:
	case <-time.After(waitTimeout):
		t.Fatalf("no step to the next dashboard within %v\npage state: %s", waitTimeout, pageState(ctx))
	}
	if !strings.HasSuffix(step.url, "/p/wall?item=1") {
		t.Errorf("step: got %s, want /p/wall?item=1", step.url)
	}
	insert(t, s, "a")
	waitStat(t, ctx, "a", "2")

	// Let it go: two, then one again, with the count inserted above.
	holding.Store(false)
	close(step.resume)
	waitLocation(t, ctx, "/d/two?kiosk&playlist=wall&item=1")
	waitStat(t, ctx, "b", "5")
	waitLocation(t, ctx, "/d/one?kiosk&playlist=wall&item=0")
	waitStat(t, ctx, "a", "2")
	waitLocation(t, ctx, "/d/two?kiosk&playlist=wall&item=1")
	waitStat(t, ctx, "b", "5")
}

// sseClients reads dashboard_sse_clients from the server's /metrics,
// without a *testing.T, for a goroutine.
func sseClients(s *testServer) (float64, error) {
	resp, err := http.Get(s.URL + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, "dashboard_sse_clients "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("no dashboard_sse_clients on /metrics")
}

// TestPlaylistFileApplied: `dashboard apply` of a folder with a playlist
// file reaches a running server at once (the playlist tables notify),
// `diff --exit-code` then finds nothing, and `export` writes the playlist
// back as <slug>.playlist.yaml.
func TestPlaylistFileApplied(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, false)
	t.Setenv("DATABASE_URL", cfg.DatabaseURL)
	folder := t.TempDir()
	writeFile(t, folder, "ops.yaml", "slug: ops\ntitle: Ops\npanels:\n  - {slug: one, title: One, kind: stat, sql: SELECT 1}\n")
	writeFile(t, folder, "wall.yaml", "playlist: wall\ntitle: Wall\ninterval: 20s\ndashboards:\n  - dashboard: ops\n")
	if out := runOK(t, "apply", folder); !strings.Contains(out, "+ playlist wall (wall.yaml)\n") ||
		!strings.Contains(out, ": 1 dashboards, 1 panels, 1 playlists\n") {
		t.Errorf("apply printed %q, want the playlist added and counted", out)
	}
	awaitPlaylist(t, s, "wall", 1)
	if resp, _ := getRaw(t, s, "/p/wall"); resp.Header.Get("Location") != "/d/ops?kiosk&playlist=wall&item=0" {
		t.Errorf("GET /p/wall: got %d to %q, want the kiosk page of ops", resp.StatusCode, resp.Header.Get("Location"))
	}
	if out := runOK(t, "diff", "--exit-code", folder); !strings.Contains(out, "no differences") {
		t.Errorf("diff after apply printed %q, want no differences", out)
	}
	out := t.TempDir()
	runOK(t, "export", "wall", "-o", out)
	if got := readFileText(t, out, "wall.playlist.yaml"); got != "# yaml-language-server: $schema=playlist.schema.json\nplaylist: wall\ntitle: Wall\ninterval: 20s\ndashboards:\n  - dashboard: ops\n" {
		t.Errorf("exported playlist:\n%s", got)
	}
}

func writeFile(t *testing.T, dir, name, text string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFileText(t *testing.T, dir, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestBrowserPlaylistSurvives: a kiosk keeps rotating when a dashboard is
// deleted from under its playlist (never showing it again), shows the
// empty playlist's message when the playlist is emptied, and comes back by
// itself, without a script, when the playlist is filled again.
func TestBrowserPlaylistSurvives(t *testing.T) {
	cfg := testConfig(t)
	cfg.PlaylistMinInterval = time.Second
	s := startServer(t, cfg, false)
	setupCounts(t, s, "one", 1, "a")
	setupCounts(t, s, "two", 2, "b")
	setupCounts(t, s, "three", 3, "c")
	id := createPlaylist(t, s, "wall", 1, "one", "two", "three")

	ctx := newBrowser(t)
	var mu sync.Mutex
	var shown []string // the dashboards the kiosk was sent to, in order
	err := chromedp.Listen(ctx, func(ev any) {
		if e, ok := ev.(*network.EventRequestWillBeSent); ok && e.Type == network.ResourceTypeDocument {
			if u, err := url.Parse(e.Request.URL); err == nil && strings.HasPrefix(u.Path, "/d/") {
				mu.Lock()
				shown = append(shown, strings.TrimPrefix(u.Path, "/d/"))
				mu.Unlock()
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, s, "/p/wall")
	waitLocation(t, ctx, "/d/two?")
	s.exec(t, "DELETE FROM dashboard.dashboards WHERE slug = 'two'")
	eventually(t, "dashboard two gone from the catalog", func() bool { return s.engine.Snapshot().Dashboard("two") == nil })
	mu.Lock()
	deletedAt := len(shown)
	mu.Unlock()
	// Round twice more: three, one, three, one.
	for _, d := range []string{"/d/three?", "/d/one?", "/d/three?", "/d/one?"} {
		waitLocation(t, ctx, d)
	}
	mu.Lock()
	after := slices.Clone(shown[deletedAt:])
	mu.Unlock()
	if slices.Contains(after, "two") {
		t.Errorf("after two was deleted the kiosk was sent to %v, want two never", after)
	}

	s.exec(t, "DELETE FROM dashboard.playlist_items WHERE playlist_id = $1", id)
	waitAcrossLoads(t, ctx, "the empty playlist's message", `document.getElementById('playlist-empty') !== null`)
	waitStreams(t, ctx, s, 0)
	s.exec(t, "INSERT INTO dashboard.playlist_items (playlist_id, position, dashboard) VALUES ($1, 0, 'three')", id)
	waitLocation(t, ctx, "/d/three?kiosk&playlist=wall&item=0")
	waitStat(t, ctx, "c", "3")
}

// TestBrowserPlaylistServerDown: when the server is down at the moment of
// a step, the kiosk stays on its dashboard (the same document: it never
// lands on the browser's error page) and rotates on once a server is back
// on the address.
func TestBrowserPlaylistServerDown(t *testing.T) {
	cfg := testConfig(t)
	cfg.PlaylistMinInterval = time.Second
	s1, stop := startStoppable(t, cfg, false)
	setupCounts(t, s1, "one", 1, "a")
	setupCounts(t, s1, "two", 2, "b")
	createPlaylist(t, s1, "wall", 1, "one", "two")

	ctx := newBrowser(t)
	held := make(chan *pausedRequest, 1)
	var holding atomic.Bool
	holding.Store(true)
	intercept(t, ctx, "*/p/wall?item=*", func(p *pausedRequest) bool {
		if !holding.Load() {
			return false
		}
		held <- p
		return true
	})
	// The failures of requests for a step (/p/wall?item=...), not of the
	// stream, which fails too when the server stops.
	failed := make(chan string, 16)
	var stepsMu sync.Mutex
	steps := map[network.RequestID]string{}
	err := chromedp.Listen(ctx, func(ev any) {
		stepsMu.Lock()
		defer stepsMu.Unlock()
		switch e := ev.(type) {
		case *network.EventRequestWillBeSent:
			if strings.Contains(e.Request.URL, "/p/wall?item=") {
				steps[e.RequestID] = e.Request.URL
			}
		case *network.EventLoadingFailed:
			if u, ok := steps[e.RequestID]; ok {
				select {
				case failed <- u + ": " + e.ErrorText:
				default:
				}
			}
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	navigate(t, ctx, s1, "/p/wall")
	waitLocation(t, ctx, "/d/one?kiosk&playlist=wall&item=0")
	waitStat(t, ctx, "a", "1")
	eval[chromedp.Void](t, ctx, `window.__sameDocument = 1`)
	var step *pausedRequest
	select {
	case step = <-held:
	case <-time.After(waitTimeout):
		t.Fatalf("no step to the next dashboard within %v", waitTimeout)
	}
	if err := stop(); err != nil {
		t.Fatalf("stopping the server: %v", err)
	}
	holding.Store(false)
	close(step.resume)
	// The step fails, and the page, still there, tries again: a page that
	// had gone would have left the browser's error page, which asks
	// nothing.
	for _, what := range []string{"the step", "the step tried again"} {
		select {
		case e := <-failed:
			t.Logf("%s failed as it should: %s", what, e)
		case <-time.After(waitTimeout):
			t.Fatalf("%s: no failed request for the next dashboard with the server down", what)
		}
	}
	if !eval[bool](t, ctx, `window.__sameDocument === 1 && location.pathname === '/d/one'`) {
		t.Fatalf("with the server down the kiosk left its dashboard: now at %s", eval[string](t, ctx, `location.href`))
	}

	cfg.Addr = s1.addr
	s2 := startServer(t, cfg, false)
	awaitPlaylist(t, s2, "wall", 2)
	waitLocation(t, ctx, "/d/two?kiosk&playlist=wall&item=1")
	waitStat(t, ctx, "b", "2")
}

// waitAcrossLoads waits until the JavaScript expression is true in the
// tab, on whatever page it shows: unlike waitJS it tries again when the
// tab navigates meanwhile (the empty playlist's page refreshes itself).
func waitAcrossLoads(t *testing.T, ctx context.Context, what, expr string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool]("document.readyState === 'complete' && !!("+expr+")"))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s (%s): timed out after %v (%v)", what, expr, waitTimeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
