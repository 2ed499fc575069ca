package views

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

// TestDashboardScreenModes: kiosk mode and a forced theme are a class and
// an attribute of <html>; kiosk draws no pickers; a full-screen panel's page
// has a rule that hides the other panels, a way back and the panel's title
// first. None of them changes the grid, which every viewer of the view
// shares: its bytes are those of the plain page.
func TestDashboardScreenModes(t *testing.T) {
	t.Parallel()
	base := samplePage()
	base.Pickers = []Picker{{Name: "region", Options: []string{"eu", "us"}, Chosen: []string{"eu"}}}
	plain, _ := renderDoc(t, Dashboard(base))
	grid := func(out string) string {
		i, j := strings.Index(out, `<main id="grid"`), strings.Index(out, "</main>")
		if i < 0 || j < i {
			t.Fatalf("no grid in %q", out)
		}
		return out[i:j]
	}
	for _, tt := range []struct {
		name      string
		edit      func(*DashboardPage)
		htmlAttrs map[string]string
		pickers   bool
		style     string // in <head>
		back      string
		title     string
	}{
		{"plain", func(*DashboardPage) {}, map[string]string{"lang": "en"}, true, "", "", "Operations"},
		{"kiosk", func(p *DashboardPage) { p.Kiosk = true }, map[string]string{"class": "kiosk"}, false, "", "", "Operations"},
		{"theme", func(p *DashboardPage) { p.Theme = "dark" }, map[string]string{"data-theme": "dark"}, true, "", "", "Operations"},
		{"kiosk and theme", func(p *DashboardPage) { p.Kiosk, p.Theme = true, "light" },
			map[string]string{"class": "kiosk", "data-theme": "light"}, false, "", "", "Operations"},
		{"panel", func(p *DashboardPage) { p.Panel, p.Back = "p2", "/d/ops?var-region=eu" }, map[string]string{"lang": "en"}, false,
			`<style>#grid > .panel:not(#panel-p2) { display: none; }</style>`, "/d/ops?var-region=eu",
			base.Dashboard.Panels[1].Title + " — Operations"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := samplePage()
			p.Pickers = base.Pickers
			tt.edit(&p)
			out, doc := renderDoc(t, Dashboard(p))
			root := find([]*html.Node{doc}, "html", "")[0]
			for k, want := range tt.htmlAttrs {
				if got, _ := attr(root, k); got != want {
					t.Errorf("<html %s>: got %q, want %q", k, got, want)
				}
			}
			if _, ok := attr(root, "data-theme"); ok != (tt.htmlAttrs["data-theme"] != "") {
				t.Errorf("<html data-theme>: present %v, want %v", ok, !ok)
			}
			if got := byID(doc, "pickers") != nil; got != tt.pickers {
				t.Errorf("pickers drawn: %v, want %v", got, tt.pickers)
			}
			head := out[:strings.Index(out, "</head>")]
			if tt.style != "" && !strings.Contains(head, tt.style) || tt.style == "" && strings.Contains(out, "<style") {
				t.Errorf("head %q: want style %q", head, tt.style)
			}
			var backs []string
			for _, a := range find([]*html.Node{doc}, "a", "back") {
				href, _ := attr(a, "href")
				backs = append(backs, href)
			}
			if want := []string{tt.back}; tt.back == "" && len(backs) > 0 || tt.back != "" && !slices.Equal(backs, want) {
				t.Errorf("way back %q, want %q", backs, tt.back)
			}
			if got := text(find([]*html.Node{doc}, "title", "")[0]); got != tt.title {
				t.Errorf("title %q, want %q", got, tt.title)
			}
			if grid(out) != grid(plain) {
				t.Errorf("the grid differs from the plain page's, want the same bytes for every viewer")
			}
		})
	}
}

// TestDashboardThemeKeptByPickers: the pickers form carries a forced theme
// in a hidden field, so that a new choice keeps it, and none without one.
func TestDashboardThemeKeptByPickers(t *testing.T) {
	t.Parallel()
	for _, theme := range []string{"", "dark"} {
		p := samplePage()
		p.Theme = theme
		p.Pickers = []Picker{{Name: "region", Options: []string{"eu", "us"}, Chosen: []string{"eu"}}}
		_, doc := renderDoc(t, Dashboard(p))
		var got []string
		for _, in := range find([]*html.Node{byID(doc, "pickers")}, "input", "") {
			if n, _ := attr(in, "name"); n == "theme" {
				v, _ := attr(in, "value")
				got = append(got, v)
			}
		}
		if theme == "" && len(got) != 0 || theme != "" && (len(got) != 1 || got[0] != theme) {
			t.Errorf("theme %q: the form's theme fields hold %q, want %q", theme, got, theme)
		}
	}
}

// TestPanelFullScreenLink: every panel links to itself full screen in the
// view it is drawn for.
func TestPanelFullScreenLink(t *testing.T) {
	t.Parallel()
	d := def(panel.Stat, panel.Options{})
	d.Slug = "orders"
	for _, tt := range []struct {
		at   Place
		want string
	}{
		{Place{Dashboard: "sales"}, "/d/sales/panels/orders"},
		{Place{Dashboard: "sales", View: "var-region=Europe&var-region=Latin+America"}, "/d/sales/panels/orders?var-region=Europe&var-region=Latin+America"},
	} {
		_, doc := renderDoc(t, Panel(tt.at, d, nil))
		links := find([]*html.Node{doc}, "a", "panel-full")
		if len(links) != 1 {
			t.Fatalf("%+v: %d full-screen links, want 1", tt.at, len(links))
		}
		if got, _ := attr(links[0], "href"); got != tt.want {
			t.Errorf("%+v: full-screen link %q, want %q", tt.at, got, tt.want)
		}
	}
}

// TestSoloStyle: the rule of a full-screen panel's page names the panel by
// its id; a slug outside the catalog's format gets no rule at all, rather
// than one that could break out of the style element.
func TestSoloStyle(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ slug, want string }{
		{"orders", `<style>#grid > .panel:not(#panel-orders) { display: none; }</style>`},
		{"7-day-revenue", `<style>#grid > .panel:not(#panel-7-day-revenue) { display: none; }</style>`},
		{"", ""},
		{"-orders", ""},
		{"Orders", ""},
		{"a) { } body { display: none", ""},
		{"a</style><script>", ""},
		{strings.Repeat("a", 64), ""},
	} {
		if got := soloStyle(tt.slug); got != tt.want {
			t.Errorf("soloStyle(%q) = %q, want %q", tt.slug, got, tt.want)
		}
	}
}

// TestWithQuery: query strings are appended with ? and &, empty ones left
// out.
func TestWithQuery(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		queries []string
		want    string
	}{
		{nil, "/d/x"},
		{[]string{""}, "/d/x"},
		{[]string{"kiosk"}, "/d/x?kiosk"},
		{[]string{"", "kiosk"}, "/d/x?kiosk"},
		{[]string{"var-a=1", "kiosk&theme=dark"}, "/d/x?var-a=1&kiosk&theme=dark"},
	} {
		if got := WithQuery("/d/x", tt.queries...); got != tt.want {
			t.Errorf("WithQuery(%q) = %q, want %q", tt.queries, got, tt.want)
		}
	}
}
