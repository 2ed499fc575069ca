package views

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"
	"golang.org/x/net/html/atom"

	"github.com/livedash/dashboard/internal/panel"
)

func render(t testing.TB, d *panel.Def, r *panel.Result) string {
	t.Helper()
	var b strings.Builder
	if err := Panel(Place{Dashboard: "dash"}, d, r).Render(context.Background(), &b); err != nil {
		t.Fatalf("rendering panel: %v", err)
	}
	return b.String()
}

// parseFragment parses a panel as it would be swapped into a page body.
func parseFragment(t testing.TB, s string) []*html.Node {
	t.Helper()
	body := &html.Node{Type: html.ElementNode, Data: "body", DataAtom: atom.Body}
	nodes, err := html.ParseFragment(strings.NewReader(s), body)
	if err != nil {
		t.Fatalf("parsing output: %v", err)
	}
	return nodes
}

func walk(nodes []*html.Node, f func(*html.Node)) {
	var rec func(*html.Node)
	rec = func(n *html.Node) {
		f(n)
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			rec(c)
		}
	}
	for _, n := range nodes {
		rec(n)
	}
}

// find returns the elements named tag with the class cls (any class when
// cls is empty).
func find(nodes []*html.Node, tag, cls string) []*html.Node {
	var out []*html.Node
	walk(nodes, func(n *html.Node) {
		if n.Type == html.ElementNode && n.Data == tag && (cls == "" || hasClass(n, cls)) {
			out = append(out, n)
		}
	})
	return out
}

func attr(n *html.Node, key string) (string, bool) {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val, true
		}
	}
	return "", false
}

func hasClass(n *html.Node, cls string) bool {
	v, _ := attr(n, "class")
	for _, c := range strings.Fields(v) {
		if c == cls {
			return true
		}
	}
	return false
}

func text(n *html.Node) string {
	var b strings.Builder
	walk([]*html.Node{n}, func(n *html.Node) {
		if n.Type == html.TextNode {
			b.WriteString(n.Data)
		}
	})
	return b.String()
}

func TestPanelKinds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		kind  panel.Kind
		opts  panel.Options
		check func(t *testing.T, nodes []*html.Node, out string)
	}{
		{panel.Stat, panel.Options{Delta: true, Sparkline: true}, func(t *testing.T, nodes []*html.Node, out string) {
			if got := text(find(nodes, "text", "stat-value")[0]); got != "12.3k" {
				t.Errorf("stat value: got %q, want %q", got, "12.3k")
			}
			d := find(nodes, "p", "stat-delta")
			if len(d) != 1 || !hasClass(d[0], "delta-up") || !strings.HasPrefix(text(d[0]), "▲ +11k") {
				t.Errorf("stat delta: got %q, want ▲ +11k… with class delta-up", out)
			}
			if len(find(nodes, "polyline", "")) != 1 {
				t.Errorf("sparkline: got %q, want one polyline", out)
			}
		}},
		{panel.Table, panel.Options{}, func(t *testing.T, nodes []*html.Node, out string) {
			if got := len(find(nodes, "th", "")); got != 4 {
				t.Errorf("header cells: got %d, want 4", got)
			}
			if got := len(find(nodes, "tr", "")); got != 3 {
				t.Errorf("rows: got %d, want 3", got)
			}
			nums := find(nodes, "td", "num")
			if len(nums) != 1 || text(nums[0]) != "1,234,567" {
				t.Errorf("numeric cell: got %q, want one right-aligned 1,234,567", out)
			}
			if th := find(nodes, "th", "num"); len(th) != 1 || text(th[0]) != "count" {
				t.Errorf("numeric header: got %q, want count marked num", out)
			}
			if len(find(nodes, "time", "")) != 2 {
				t.Errorf("time cells: got %q, want two <time>", out)
			}
		}},
		{panel.Timeseries, panel.Options{}, func(t *testing.T, nodes []*html.Node, out string) {
			if got := len(find(nodes, "polyline", "line")); got != 2 {
				t.Errorf("lines: got %d, want 2", got)
			}
			if !hasClass(find(nodes, "polyline", "line")[1], "s1") {
				t.Errorf("second series: want colour class s1 in %q", out)
			}
			legend := find(nodes, "li", "")
			if len(legend) != 2 || text(legend[0]) != "p50" || text(legend[1]) != "p99" {
				t.Errorf("legend: got %q, want p50, p99", out)
			}
			yl := find(nodes, "div", "yl")[0]
			if n := len(find([]*html.Node{yl}, "span", "")); n < 4 || n > 6 {
				t.Errorf("y ticks: got %d, want 4-6", n)
			}
			xl := text(find(nodes, "div", "xl")[0])
			if !strings.Contains(xl, "12:00") || !strings.Contains(xl, "12:30") {
				t.Errorf("x labels: got %q, want 15:04 times", xl)
			}
			if vb, _ := attr(find(nodes, "svg", "plot")[0], "viewBox"); vb != "0 0 720 150" {
				t.Errorf("viewBox: got %q, want 0 0 720 150", vb)
			}
		}},
		{panel.Bar, panel.Options{}, func(t *testing.T, nodes []*html.Node, out string) {
			if got := len(find(nodes, "rect", "bar")); got != 6 {
				t.Errorf("bars: got %d, want 6", got)
			}
			xl := text(find(nodes, "div", "xl")[0])
			if xl != "northsoutheast" {
				t.Errorf("category labels: got %q, want north south east", xl)
			}
		}},
		{panel.Feed, panel.Options{}, func(t *testing.T, nodes []*html.Node, out string) {
			items := find(nodes, "li", "")
			if len(items) != defaultFeedLimit {
				t.Fatalf("feed items: got %d, want %d", len(items), defaultFeedLimit)
			}
			if got := text(find(nodes, "span", "feed-main")[0]); got != "user0" {
				t.Errorf("first item: got %q, want user0 (order given)", got)
			}
			tm := find(nodes, "time", "")[0]
			if dt, _ := attr(tm, "datetime"); dt != "2026-03-14T12:00:00Z" || text(tm) != "Mar 14 12:00:00" {
				t.Errorf("feed time: got %q %q", dt, text(tm))
			}
		}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			t.Parallel()
			d := def(tt.kind, tt.opts)
			out := render(t, d, samples()[tt.kind])
			nodes := parseFragment(t, out)
			sec := find(nodes, "section", "panel")
			if len(sec) != 1 {
				t.Fatalf("got %d panel sections, want 1", len(sec))
			}
			if id, _ := attr(sec[0], "id"); id != d.DOMID() {
				t.Errorf("id: got %q, want %q", id, d.DOMID())
			}
			if !hasClass(sec[0], "kind-"+string(tt.kind)) {
				t.Errorf("class: want kind-%s in %q", tt.kind, out)
			}
			if st, ok := attr(sec[0], "style"); ok || !hasClass(sec[0], "w2") || !hasClass(sec[0], "h1") {
				t.Errorf("span: got style %q and classes %q, want the size classes w2 h1 and no inline style", st, out)
			}
			if got := text(find(nodes, "h2", "")[0]); got != d.Title {
				t.Errorf("title: got %q, want %q", got, d.Title)
			}
			tt.check(t, nodes, out)
		})
	}
}

func TestDeterministic(t *testing.T) {
	t.Parallel()
	for _, k := range panel.Kinds {
		d := def(k, panel.Options{Delta: true, Sparkline: true, Stacked: true})
		r := samples()[k]
		a, b := render(t, d, r), render(t, d, samples()[k])
		if a != b {
			t.Errorf("%s: two renders differ:\n%s\n%s", k, a, b)
		}
	}
	page := func() []byte {
		p := samplePage()
		var buf bytes.Buffer
		if err := Dashboard(p).Render(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		return buf.Bytes()
	}
	first := page()
	for range 20 {
		if !bytes.Equal(first, page()) {
			t.Fatal("two dashboard renders differ")
		}
	}
}

func samplePage() DashboardPage {
	d := &panel.Dashboard{ID: 1, Slug: "ops", Title: "Operations", Description: "Live numbers"}
	res := map[int64]*panel.Result{}
	for i, k := range panel.Kinds {
		df := def(k, panel.Options{})
		df.ID, df.Slug = int64(i+1), "p"+fmt.Sprint(i+1)
		d.Panels = append(d.Panels, df)
		res[df.ID] = samples()[k]
	}
	return DashboardPage{
		Dashboard: d, Results: res, Version: "0/16B3748-9f86d081", Transport: "sse", NoScriptRefresh: 60,
		Assets: Assets{CSS: "/static/dashboard.1.css", HTMX: "/static/htmx.2.js", SSE: "/static/hx-sse.3.js", App: "/static/app.4.js", Poll: "/static/poll.5.js"},
	}
}

var hostile = []string{
	`<script>alert(1)</script>`,
	`<img src=x onerror=alert(1)>`,
	`</svg>`,
	`javascript:alert(1)`,
	`</hx-partial>`,
	`"><svg onload=alert(1)>`,
	`'--></style></title></textarea><script>x</script>`,
}

// checkSafe fails when out contains markup that did not come from the
// views: script elements beyond allowed, event handler attributes,
// javascript: URLs, or any raw hostile string.
func checkSafe(t testing.TB, out string, allowedScripts int, raw []string) {
	t.Helper()
	for _, s := range raw {
		if s == "</svg>" {
			continue // our own charts end so; balance is checked below
		}
		if strings.ContainsAny(s, `<>"'&`) && strings.Contains(out, s) {
			t.Errorf("output contains unescaped %q", s)
		}
	}
	doc, err := html.Parse(strings.NewReader(out))
	if err != nil {
		t.Fatalf("parsing: %v", err)
	}
	scripts := 0
	walk([]*html.Node{doc}, func(n *html.Node) {
		if n.Type != html.ElementNode {
			return
		}
		switch n.Data {
		case "script":
			scripts++
		case "img", "iframe", "object", "embed", "style", "hx-partial", "textarea":
			t.Errorf("unexpected <%s> element", n.Data)
		}
		for _, a := range n.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("event handler attribute %s=%q on <%s>", a.Key, a.Val, n.Data)
			}
			switch a.Key {
			case "href", "src", "action", "hx-sse:connect", "data-poll-url", "xlink:href":
				if strings.HasPrefix(strings.ToLower(strings.TrimSpace(a.Val)), "javascript:") {
					t.Errorf("javascript URL in %s on <%s>", a.Key, n.Data)
				}
			}
		}
	})
	if scripts != allowedScripts {
		t.Errorf("got %d script elements, want %d", scripts, allowedScripts)
	}
	// Tokenizing must see every svg we opened closed by us: as many
	// </svg> end tags as <svg> start tags.
	z := html.NewTokenizer(strings.NewReader(out))
	open := 0
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		name, _ := z.TagName()
		if string(name) == "svg" {
			switch tt {
			case html.StartTagToken:
				open++
			case html.EndTagToken:
				open--
			}
		}
	}
	if open != 0 {
		t.Errorf("unbalanced svg tags: %d", open)
	}
}

func TestEscaping(t *testing.T) {
	t.Parallel()
	for _, h := range hostile {
		v := txt(h)
		results := map[panel.Kind]*panel.Result{
			panel.Stat:       {Columns: []string{h}, Rows: [][]panel.Value{{v}}},
			panel.Table:      {Columns: []string{h, h}, Rows: [][]panel.Value{{v, num(1)}}},
			panel.Timeseries: {Columns: []string{"t", h, "v"}, Rows: [][]panel.Value{{tm(t0), v, num(1)}, {tm(t0.Add(time.Minute)), v, num(2)}}},
			panel.Bar:        {Columns: []string{h, h}, Rows: [][]panel.Value{{v, num(3)}, {v, num(-2)}}},
			panel.Feed:       {Columns: []string{"t", h, h}, Rows: [][]panel.Value{{tm(t0), v, v}}},
		}
		for _, k := range panel.Kinds {
			d := def(k, panel.Options{Prefix: h, Unit: h})
			d.Title = h
			r := results[k]
			r.Notice = h
			checkSafe(t, render(t, d, r), 0, hostile)
			checkSafe(t, render(t, d, &panel.Result{Err: h}), 0, hostile)
		}
		// Wide timeseries with a hostile series name.
		d := def(panel.Timeseries, panel.Options{})
		checkSafe(t, render(t, d, &panel.Result{Columns: []string{"t", h}, Rows: [][]panel.Value{{tm(t0), num(1)}, {tm(t0.Add(time.Hour)), num(2)}}}), 0, hostile)

		p := samplePage()
		p.Dashboard.Title, p.Dashboard.Description, p.Version = h, h, h
		var buf bytes.Buffer
		if err := Dashboard(p).Render(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		checkSafe(t, buf.String(), 4, hostile)
		buf.Reset()
		if err := Index(IndexPage{Dashboards: []*panel.Dashboard{{Slug: h, Title: h, Description: h}}}).Render(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		checkSafe(t, buf.String(), 0, hostile)
		buf.Reset()
		if err := ErrorPage(404, h, h).Render(context.Background(), &buf); err != nil {
			t.Fatal(err)
		}
		checkSafe(t, buf.String(), 0, hostile)
	}
}

func TestPanelError(t *testing.T) {
	t.Parallel()
	for _, k := range panel.Kinds {
		out := render(t, def(k, panel.Options{}), &panel.Result{Err: `relation "orders" does not exist`, Notice: "run dashboard.watch"})
		nodes := parseFragment(t, out)
		box := find(nodes, "div", "panel-error")
		if len(box) != 1 || !strings.Contains(text(box[0]), `relation "orders" does not exist`) {
			t.Errorf("%s: got %q, want the error message in .panel-error", k, out)
		}
		if n := find(nodes, "p", "notice"); len(n) != 1 || text(n[0]) != "run dashboard.watch" {
			t.Errorf("%s: got %q, want the notice", k, out)
		}
	}
}

func TestEmptyStates(t *testing.T) {
	t.Parallel()
	empties := []*panel.Result{
		{},
		{Columns: []string{"a", "b"}},
		{Columns: []string{"t", "v"}, Rows: [][]panel.Value{{null(), null()}}},
	}
	for _, k := range panel.Kinds {
		for i, r := range empties {
			out := render(t, def(k, panel.Options{Sparkline: true, Delta: true}), r)
			nodes := parseFragment(t, out)
			if k == panel.Stat && i == 2 {
				// A null value is a value: shown as a dash.
				if v := find(nodes, "text", "stat-value"); len(v) != 1 || !hasClass(v[0], "null") {
					t.Errorf("stat null: got %q", out)
				}
				continue
			}
			if k == panel.Table && i == 2 {
				continue // a row of nulls is a row
			}
			if len(find(nodes, "p", "empty")) != 1 {
				t.Errorf("%s %d: got %q, want an empty state", k, i, out)
			}
			if len(find(nodes, "svg", "plot")) != 0 {
				t.Errorf("%s %d: got a chart for no data", k, i)
			}
		}
	}
	// No result yet.
	out := render(t, def(panel.Stat, panel.Options{}), nil)
	if !strings.Contains(out, "Waiting for data") {
		t.Errorf("nil result: got %q, want waiting state", out)
	}
}

func TestTruncatedNote(t *testing.T) {
	t.Parallel()
	r := samples()[panel.Table]
	r.Truncated = true
	out := render(t, def(panel.Table, panel.Options{}), r)
	if !strings.Contains(out, `class="note truncated"`) || !strings.Contains(out, "first 2 rows") {
		t.Errorf("got %q, want a truncated note", out)
	}
}

func TestTimeseriesNulls(t *testing.T) {
	t.Parallel()
	// Newest first, as SQL often orders; one null splits the line, and a
	// point isolated between nulls becomes a dot.
	r := &panel.Result{Columns: []string{"t", "v"}}
	vals := []panel.Value{num(1), num(2), null(), num(4), null(), num(6), num(7), num(8)}
	for i := len(vals) - 1; i >= 0; i-- {
		r.Rows = append(r.Rows, []panel.Value{tm(t0.Add(time.Duration(i) * time.Minute)), vals[i]})
	}
	nodes := parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r))
	lines := find(nodes, "polyline", "line")
	if len(lines) != 2 {
		t.Fatalf("got %d polylines, want 2", len(lines))
	}
	p0, _ := attr(lines[0], "points")
	p1, _ := attr(lines[1], "points")
	if n := len(strings.Fields(p0)); n != 2 {
		t.Errorf("first segment: got %d points, want 2", n)
	}
	if n := len(strings.Fields(p1)); n != 3 {
		t.Errorf("second segment: got %d points, want 3", n)
	}
	if !strings.HasPrefix(p0, "") || xOfPoint(p0, 0) >= xOfPoint(p0, 1) {
		t.Errorf("points not in time order: %q", p0)
	}
	if n := len(find(nodes, "path", "dot")); n != 1 {
		t.Errorf("got %d dots, want 1 for the isolated point", n)
	}
}

func xOfPoint(points string, i int) float64 {
	var x, y float64
	fmt.Sscanf(strings.Fields(points)[i], "%g,%g", &x, &y)
	return x
}

func TestTimeseriesLongForm(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"t", "host", "load"}}
	for i := range 4 {
		at := tm(t0.Add(time.Duration(i) * time.Hour))
		r.Rows = append(r.Rows, []panel.Value{at, txt("web-2"), num(float64(i))}, []panel.Value{at, txt("web-1"), num(float64(2 * i))})
	}
	nodes := parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r))
	if n := len(find(nodes, "polyline", "line")); n != 2 {
		t.Errorf("got %d lines, want 2", n)
	}
	legend := find(nodes, "li", "")
	if len(legend) != 2 || text(legend[0]) != "web-2" || text(legend[1]) != "web-1" {
		t.Errorf("legend: want web-2, web-1 in order of appearance")
	}
}

func TestTimeseriesNumericX(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"x", "y"}, Rows: [][]panel.Value{{num(0), num(1)}, {num(50), num(3)}, {num(100), num(2)}}}
	nodes := parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r))
	if got := text(find(nodes, "div", "xl")[0]); got != "020406080100" {
		t.Errorf("x labels: got %q", got)
	}
	// A text first column cannot be an x axis.
	r = &panel.Result{Columns: []string{"x", "y"}, Rows: [][]panel.Value{{txt("a"), num(1)}}}
	if out := render(t, def(panel.Timeseries, panel.Options{}), r); !strings.Contains(out, "must be a time or a number") {
		t.Errorf("text x: got %q", out)
	}
}

func TestBarNegatives(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"team", "delta"}, Rows: [][]panel.Value{{txt("a"), num(30)}, {txt("b"), num(-20)}, {txt("c"), num(-45)}}}
	for _, stacked := range []bool{false, true} {
		nodes := parseFragment(t, render(t, def(panel.Bar, panel.Options{Stacked: stacked}), r))
		zero := find(nodes, "path", "zero")
		if len(zero) != 1 {
			t.Fatalf("stacked=%v: got %d zero lines, want 1", stacked, len(zero))
		}
		var zy float64
		d, _ := attr(zero[0], "d")
		if _, err := fmt.Sscanf(d, "M0 %gH", &zy); err != nil {
			t.Fatalf("zero line %q: %v", d, err)
		}
		bars := find(nodes, "rect", "bar")
		if len(bars) != 3 {
			t.Fatalf("got %d bars, want 3", len(bars))
		}
		for i, b := range bars {
			var y, h float64
			ys, _ := attr(b, "y")
			hs, _ := attr(b, "height")
			fmt.Sscan(ys, &y)
			fmt.Sscan(hs, &h)
			if h <= 0 {
				t.Errorf("bar %d: height %v, want > 0", i, h)
			}
			if i == 0 && y+h != zy {
				t.Errorf("positive bar %d: bottom %v, want on zero line %v", i, y+h, zy)
			}
			if i > 0 && y != zy {
				t.Errorf("negative bar %d: top %v, want on zero line %v", i, y, zy)
			}
		}
		labels := text(find(nodes, "div", "yl")[0])
		if !strings.Contains(labels, "-") {
			t.Errorf("y labels %q: want negative ticks", labels)
		}
	}
}

func TestBarStacked(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"day", "a", "b"}, Rows: [][]panel.Value{{txt("mon"), num(10), num(20)}}}
	nodes := parseFragment(t, render(t, def(panel.Bar, panel.Options{Stacked: true}), r))
	bars := find(nodes, "rect", "bar")
	if len(bars) != 2 {
		t.Fatalf("got %d bars, want 2", len(bars))
	}
	x0, _ := attr(bars[0], "x")
	x1, _ := attr(bars[1], "x")
	y0, _ := attr(bars[0], "y")
	if x0 != x1 {
		t.Errorf("stacked bars: x %s and %s, want equal", x0, x1)
	}
	var top0, bottom1, y1, h1 float64
	fmt.Sscan(y0, &top0)
	ys, _ := attr(bars[1], "y")
	hs, _ := attr(bars[1], "height")
	fmt.Sscan(ys, &y1)
	fmt.Sscan(hs, &h1)
	bottom1 = y1 + h1
	if d := bottom1 - top0; d > 0.11 || d < -0.11 {
		t.Errorf("second bar bottom %v, want on first bar top %v", bottom1, top0)
	}
}

func TestStatOptions(t *testing.T) {
	t.Parallel()
	two := 2
	tests := []struct {
		rows  []float64
		o     panel.Options
		value string
		delta string
	}{
		{[]float64{42}, panel.Options{}, "42", ""},
		{[]float64{0.5, 0.25}, panel.Options{Unit: "%", Delta: true}, "0.25%", "▼ -0.25% (-50%)"},
		{[]float64{4_500_000}, panel.Options{Prefix: "$"}, "$4.5M", ""},
		{[]float64{1234.5678}, panel.Options{Decimals: &two}, "1,234.57", ""},
		{[]float64{100, 100}, panel.Options{Delta: true}, "100", "= 0"},
		{[]float64{0, 5}, panel.Options{Delta: true, Unit: " ms"}, "5 ms", "▲ +5 ms"},
		{[]float64{-12345}, panel.Options{Prefix: "$"}, "-$12.3k", ""},
		{[]float64{1540000.5, 1540321.25}, panel.Options{Prefix: "$", Decimals: &two, Delta: true}, "$1,540,321.25", "▲ +$320.75 (<0.1%)"},
		{[]float64{1e6, 1e6 - 1}, panel.Options{Delta: true}, "1M", "▼ -1 (<0.1%)"},
	}
	for _, tt := range tests {
		r := &panel.Result{Columns: []string{"v"}}
		for _, f := range tt.rows {
			r.Rows = append(r.Rows, []panel.Value{num(f)})
		}
		nodes := parseFragment(t, render(t, def(panel.Stat, tt.o), r))
		if got := text(find(nodes, "text", "stat-value")[0]); got != tt.value {
			t.Errorf("%v %+v: value got %q, want %q", tt.rows, tt.o, got, tt.value)
		}
		got := ""
		if d := find(nodes, "p", "stat-delta"); len(d) == 1 {
			got = text(d[0])
		}
		if got != tt.delta {
			t.Errorf("%v %+v: delta got %q, want %q", tt.rows, tt.o, got, tt.delta)
		}
	}
}

func TestFeedLimit(t *testing.T) {
	t.Parallel()
	nodes := parseFragment(t, render(t, def(panel.Feed, panel.Options{Limit: 3}), samples()[panel.Feed]))
	if n := len(find(nodes, "li", "")); n != 3 {
		t.Errorf("got %d items, want 3", n)
	}
}

func TestUnknownKind(t *testing.T) {
	t.Parallel()
	out := render(t, def("pie", panel.Options{}), samples()[panel.Table])
	if !strings.Contains(out, "kind-unknown") || !strings.Contains(out, "Unknown panel kind") {
		t.Errorf("got %q", out)
	}
}

// TestCSVLink: each panel links its data as CSV in the view it is drawn
// for, and the link depends only on that view (a grid the page draws and
// one the hub sends carry the same link).
func TestCSVLink(t *testing.T) {
	d := def(panel.Stat, panel.Options{})
	for _, tc := range []struct {
		at   Place
		want string
	}{
		{Place{Dashboard: "ops"}, "/d/ops/panels/" + d.Slug + ".csv"},
		{Place{Dashboard: "sales", View: "from=now-6h&to=now&var-note=a+%26+b&var-region"},
			"/d/sales/panels/" + d.Slug + ".csv?from=now-6h&to=now&var-note=a+%26+b&var-region"},
	} {
		var b strings.Builder
		if err := Panel(tc.at, d, nil).Render(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		links := find(parseFragment(t, b.String()), "a", "panel-csv")
		if len(links) != 1 {
			t.Fatalf("%+v: got %d CSV links, want 1", tc.at, len(links))
		}
		if href, _ := attr(links[0], "href"); href != tc.want {
			t.Errorf("%+v: got href %q, want %q", tc.at, href, tc.want)
		}
	}
	page := samplePage()
	page.View = "var-x=1"
	var b strings.Builder
	if err := Dashboard(page).Render(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `.csv?var-x=1"`) {
		t.Error("the page's panels do not link the page's view")
	}
}
