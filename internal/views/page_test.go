package views

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/a-h/templ"
	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

func renderDoc(t *testing.T, c templ.Component) (string, *html.Node) {
	t.Helper()
	var buf bytes.Buffer
	if err := c.Render(context.Background(), &buf); err != nil {
		t.Fatalf("render: %v", err)
	}
	doc, err := html.Parse(strings.NewReader(buf.String()))
	if err != nil {
		t.Fatalf("parse: %v", err)
	}
	return buf.String(), doc
}

func byID(doc *html.Node, id string) *html.Node {
	var found *html.Node
	walk([]*html.Node{doc}, func(n *html.Node) {
		if v, ok := attr(n, "id"); ok && v == id && found == nil {
			found = n
		}
	})
	return found
}

func TestDashboardPageSSE(t *testing.T) {
	t.Parallel()
	p := samplePage()
	delete(p.Results, 3) // a panel without a result yet
	p.Heartbeat = 15 * time.Second
	p.ChangedAt = time.Date(2026, 3, 14, 12, 3, 4, 500_000_000, time.FixedZone("CET", 3600))
	out, doc := renderDoc(t, Dashboard(p))
	if !strings.HasPrefix(out, "<!doctype html>") {
		t.Errorf("got %q…, want a doctype first", out[:20])
	}
	head := out[:strings.Index(out, "</head>")]
	if !strings.Contains(head, `<noscript><meta http-equiv="refresh" content="60"></noscript>`) {
		t.Errorf("head %q: want the noscript refresh", head)
	}
	if !strings.Contains(head, `<link rel="stylesheet" href="/static/dashboard.1.css">`) {
		t.Errorf("head %q: want the stylesheet", head)
	}
	if strings.Contains(out, "htmx-config") {
		t.Errorf("want no htmx-config meta (it would restrict extensions)")
	}
	// The extension and page scripts are deferred; htmx is a classic script
	// at the end of the body, so that it starts at DOMContentLoaded, after
	// the extension (TestBrowserSlowExtension).
	var srcs []string
	for _, s := range find([]*html.Node{doc}, "script", "") {
		src, _ := attr(s, "src")
		srcs = append(srcs, src)
		_, deferred := attr(s, "defer")
		if isHTMX := src == "/static/htmx.2.js"; deferred == isHTMX {
			t.Errorf("script %s: deferred %v, want %v", src, deferred, !isHTMX)
		}
		if s.FirstChild != nil {
			t.Errorf("script %s: want no inline content", src)
		}
	}
	if got, want := strings.Join(srcs, " "), "/static/hx-sse.3.js /static/app.4.js /static/poll.5.js /static/htmx.2.js"; got != want {
		t.Errorf("scripts: got %q, want %q", got, want)
	}
	if body := out[strings.Index(out, "<body"):]; !strings.HasSuffix(strings.TrimSpace(body),
		`<script src="/static/htmx.2.js"></script></body></html>`) {
		t.Errorf("want htmx as the last element of the body")
	}
	live := byID(doc, "live")
	if live == nil {
		t.Fatal("no #live element")
	}
	for k, want := range map[string]string{
		"hx-sse:connect": "/d/ops/events?lastEventId=0%2F16B3748-9f86d081",
		"hx-swap":        "none",
		"data-poll-url":  "/d/ops/poll",
		"data-version":   "0/16B3748-9f86d081",
		"data-transport": "sse",
	} {
		if got, _ := attr(live, k); got != want {
			t.Errorf("#live %s: got %q, want %q", k, got, want)
		}
	}
	// Until the scripts run, and for good without them, the page says it
	// is a snapshot; the scripts learn the heartbeat interval and the time
	// of the last change from the status line (never from a fragment).
	status := byID(doc, "status")
	if st, _ := attr(status, "data-state"); st != "snapshot" {
		t.Errorf("status: got %q, want snapshot", st)
	}
	if got, want := text(status), "snapshot, reloads every 60 s"; got != want {
		t.Errorf("status text: got %q, want %q", got, want)
	}
	if got, _ := attr(status, "data-heartbeat"); got != "15000" {
		t.Errorf("status data-heartbeat: got %q, want 15000", got)
	}
	age := byID(doc, "data-age")
	if v, _ := attr(age, "data-version"); v != p.Version {
		t.Errorf("data-age version: got %q, want %q", v, p.Version)
	}
	if got, _ := attr(age, "datetime"); got != "2026-03-14T11:03:04.500Z" {
		t.Errorf("data-age datetime: got %q, want the time in UTC, 2026-03-14T11:03:04.5Z", got)
	}
	grid := byID(doc, "grid")
	if grid == nil || grid.Data != "main" {
		t.Fatal("no <main id=grid>")
	}
	var ids []string
	for _, s := range find([]*html.Node{grid}, "section", "panel") {
		id, _ := attr(s, "id")
		ids = append(ids, id)
	}
	if got := strings.Join(ids, " "); got != "panel-p1 panel-p2 panel-p3 panel-p4 panel-p5" {
		t.Errorf("panels: got %q, want in Dashboard.Panels order", got)
	}
	if !strings.Contains(text(byID(doc, "panel-p3")), "Waiting for data") {
		t.Errorf("panel without result: want waiting state")
	}
	checkSafe(t, out, 4, nil)
}

func TestDashboardPagePoll(t *testing.T) {
	t.Parallel()
	p := samplePage()
	p.Transport = "poll"
	p.NoScriptRefresh = 0
	out, doc := renderDoc(t, Dashboard(p))
	live := byID(doc, "live")
	if _, ok := attr(live, "hx-sse:connect"); ok {
		t.Errorf("poll transport: want no hx-sse:connect")
	}
	if got, _ := attr(live, "data-transport"); got != "poll" {
		t.Errorf("data-transport: got %q, want poll", got)
	}
	if st, _ := attr(byID(doc, "status"), "data-state"); st != "snapshot" {
		t.Errorf("status: got %q, want snapshot", st)
	}
	if got := text(byID(doc, "status")); got != "snapshot" {
		t.Errorf("status text without a refresh: got %q, want snapshot", got)
	}
	if _, ok := attr(byID(doc, "data-age"), "datetime"); ok {
		t.Errorf("data-age: want no datetime when the time of the last change is unknown")
	}
	if strings.Contains(out, "noscript") {
		t.Errorf("NoScriptRefresh 0: want no meta refresh")
	}
}

func TestDashboardPageEmpty(t *testing.T) {
	t.Parallel()
	out, _ := renderDoc(t, Dashboard(DashboardPage{Dashboard: &panel.Dashboard{Slug: "x", Title: "X"}}))
	if !strings.Contains(out, "no panels yet") {
		t.Errorf("got %q, want an empty state", out)
	}
	// Nil dashboard must not panic.
	renderDoc(t, Dashboard(DashboardPage{}))
}

func TestIndexPage(t *testing.T) {
	t.Parallel()
	out, _ := renderDoc(t, Index(IndexPage{}))
	if !strings.Contains(out, "No dashboards yet") {
		t.Errorf("empty index: got %q", out)
	}
	_, doc := renderDoc(t, Index(IndexPage{Dashboards: []*panel.Dashboard{
		{Slug: "ops", Title: "Operations", Description: "Live numbers"},
		{Slug: "sales", Title: "Sales"},
	}}))
	links := find([]*html.Node{doc}, "a", "")
	if len(links) != 2 {
		t.Fatalf("got %d links, want 2", len(links))
	}
	if href, _ := attr(links[0], "href"); href != "/d/ops" || !strings.Contains(text(links[0]), "Live numbers") {
		t.Errorf("first link: got %q %q", href, text(links[0]))
	}
	if len(find([]*html.Node{doc}, "span", "dash-desc")) != 1 {
		t.Errorf("want one description")
	}
	if len(find([]*html.Node{doc}, "script", "")) != 0 {
		t.Errorf("index: want no scripts")
	}
}

func TestErrorPage(t *testing.T) {
	t.Parallel()
	out, doc := renderDoc(t, ErrorPage(404, "Not found", "No dashboard is called that."))
	if !strings.Contains(text(doc), "404") || !strings.Contains(text(doc), "No dashboard is called that.") {
		t.Errorf("got %q", out)
	}
	if strings.Contains(out, "stylesheet") {
		t.Errorf("ErrorPage: want no stylesheet link")
	}
	out, _ = renderDoc(t, StyledErrorPage(Assets{CSS: "/static/a.css"}, 500, "Error", ""))
	if !strings.Contains(out, `href="/static/a.css"`) || strings.Contains(out, "error-message") {
		t.Errorf("styled: got %q", out)
	}
}

// TestIconLinked checks that every kind of page links the site icon in its
// head, as an SVG at the path it was given.
func TestIconLinked(t *testing.T) {
	t.Parallel()
	a := Assets{CSS: "/static/a.css", Icon: "/static/icon.0123456789.svg"}
	for name, c := range map[string]templ.Component{
		"index": Index(IndexPage{Assets: a}),
		"error": StyledErrorPage(a, 500, "Error", ""),
	} {
		_, doc := renderDoc(t, c)
		var icons []*html.Node
		for _, l := range find([]*html.Node{doc}, "link", "") {
			if rel, _ := attr(l, "rel"); rel == "icon" {
				icons = append(icons, l)
			}
		}
		if len(icons) != 1 {
			t.Fatalf("%s: got %d icon links, want 1", name, len(icons))
		}
		href, _ := attr(icons[0], "href")
		typ, _ := attr(icons[0], "type")
		if href != a.Icon || typ != "image/svg+xml" || icons[0].Parent.Data != "head" {
			t.Errorf("%s: got icon link href %q type %q in <%s>, want %q, image/svg+xml, in <head>", name, href, typ, icons[0].Parent.Data, a.Icon)
		}
	}
}

// TestWatchingText: what the status line says of who is watching (the
// same words static/poll.js draws from the presence event and headers).
func TestWatchingText(t *testing.T) {
	for _, tt := range []struct {
		w    Watching
		want string
	}{
		{Watching{}, "0 watching"},
		{Watching{Count: 12}, "12 watching"},
		{Watching{Count: 12, Labels: []string{"lobby TV", "ops laptop"}}, "12 watching: lobby TV, ops laptop"},
		{Watching{Count: 30, Labels: []string{"a", "b"}, More: 3}, "30 watching: a, b and 3 more"},
	} {
		if got := tt.w.Text(); got != tt.want {
			t.Errorf("%+v: got %q, want %q", tt.w, got, tt.want)
		}
	}
}
