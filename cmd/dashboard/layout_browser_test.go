package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/config"
)

// This file tests the screens of docs/screens.md in a real Chromium: the
// phone and desktop layouts, kiosk mode, the forced theme, the kiosk token
// link and the full-screen panel. The pages are the demo's (sales, ops) and
// a fixture dashboard whose values are inserted by SQL, so that what it
// shows is known.

// fixtureSlug is the fixture dashboard's slug.
const fixtureSlug = "fixture"

// fixturePanels are the fixture's panels, one or more of each kind.
var fixturePanels = []struct {
	slug, title, kind, sql, options string
	width, height                   int
}{
	{"events", "Events", "stat", `SELECT count(*) AS events FROM fx_events`, `{"decimals": 0}`, 1, 1},
	{"revenue", "Revenue per day", "stat", `SELECT amount AS revenue FROM fx_revenue ORDER BY day`,
		`{"prefix": "$", "decimals": 0, "sparkline": true, "delta": true}`, 1, 1},
	{"orders-by-product", "Orders by product", "bar", `SELECT product, orders FROM fx_products ORDER BY product`,
		`{"decimals": 0}`, 2, 2},
	{"latest", "Latest events", "feed", `SELECT at, title, detail FROM fx_events ORDER BY at DESC, id DESC LIMIT 10`,
		`{"limit": 10}`, 2, 1},
	{"latency", "Latency by service", "timeseries", `SELECT at, service, ms FROM fx_latency ORDER BY at, service`,
		`{"unit": " ms", "decimals": 0}`, 2, 2},
	{"customers", "Top customers", "table",
		`SELECT name, region, orders, revenue, last_order FROM fx_customers WHERE :region = 'all' OR region = :region ORDER BY revenue DESC`,
		`{}`, 2, 2},
}

// fixtureSQL creates the fixture's tables with fixed values: times are
// fixed instants, so every run draws the same panels.
const fixtureSQL = `
CREATE TABLE fx_events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, at timestamptz NOT NULL,
	title text NOT NULL, detail text NOT NULL);
INSERT INTO fx_events (at, title, detail)
SELECT TIMESTAMPTZ '2026-03-02 09:00:00+00' + i * interval '7 minutes', 'Order #' || (1000 + i),
	(ARRAY['Europe', 'North America', 'Asia Pacific'])[1 + i % 3] || ', ' || (2 + i % 4) || ' items'
FROM generate_series(1, 8) AS i;

CREATE TABLE fx_revenue (day date PRIMARY KEY, amount numeric NOT NULL);
INSERT INTO fx_revenue SELECT DATE '2026-02-01' + i, round((12000 + 400 * i + 1500 * sin(i))::numeric, 2)
FROM generate_series(0, 27) AS i;

CREATE TABLE fx_products (product text PRIMARY KEY, orders int NOT NULL);
INSERT INTO fx_products VALUES ('Headset', 42), ('Keyboard', 57), ('Laptop stand', 18), ('Monitor', 33),
	('Mouse', 71), ('USB-C dock', 25), ('Webcam', 12);

CREATE TABLE fx_latency (at timestamptz NOT NULL, service text NOT NULL, ms double precision NOT NULL);
INSERT INTO fx_latency
SELECT TIMESTAMPTZ '2026-03-02 08:00:00+00' + i * interval '5 minutes', s.service,
	round((60 + 25 * s.k + 15 * sin(i / 4.0 + s.k))::numeric, 1)
FROM generate_series(0, 35) AS i, (VALUES ('api', 0), ('web', 1), ('worker', 2)) AS s (service, k);

CREATE TABLE fx_customers (name text PRIMARY KEY, region text NOT NULL, orders int NOT NULL,
	revenue numeric NOT NULL, last_order timestamptz NOT NULL);
INSERT INTO fx_customers VALUES
	('Acme Corporation', 'eu', 128, 48210.50, '2026-03-02 09:41:00+00'),
	('Globex', 'us', 97, 35120.00, '2026-03-02 09:12:00+00'),
	('Initech', 'us', 61, 21980.75, '2026-03-02 08:55:00+00'),
	('Umbrella', 'eu', 44, 15400.20, '2026-03-02 07:30:00+00'),
	('Hooli', 'us', 38, 12990.00, '2026-03-01 22:05:00+00'),
	('Stark Industries', 'eu', 21, 9870.40, '2026-03-01 18:45:00+00');
`

// fixtureVariables is the fixture's one variable: a region, which the
// customers table filters on.
const fixtureVariables = `[{"name": "region", "label": "Region", "kind": "list", "options": ["all", "eu", "us"], "default": ["all"]}]`

// createFixture creates the fixture dashboard on s and waits until the
// server has it with its tables watched.
func createFixture(t testing.TB, s *testServer, public bool) {
	t.Helper()
	s.exec(t, fixtureSQL)
	vis := "public"
	if !public {
		vis = "private"
	}
	err := pgx.BeginFunc(context.Background(), s.pool, func(tx pgx.Tx) error {
		ctx := context.Background()
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO dashboard.dashboards (slug, title, description, visibility, variables)
			VALUES ($1, 'Fixture', 'Every panel kind, with values inserted by SQL.', $2, $3) RETURNING id`,
			fixtureSlug, vis, fixtureVariables).Scan(&id); err != nil {
			return fmt.Errorf("creating the fixture dashboard: %w", err)
		}
		for i, p := range fixturePanels {
			if _, err := tx.Exec(ctx, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, options, width, height, position)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`, id, p.slug, p.title, p.kind, p.sql, p.options, p.width, p.height, i); err != nil {
				return fmt.Errorf("creating panel %s: %w", p.slug, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	awaitDashboard(t, s, fixtureSlug, "fx_events", "fx_revenue", "fx_products", "fx_latency", "fx_customers")
}

// viewport is a screen size in CSS pixels, at a device pixel ratio of 1.
type viewport struct {
	name          string
	width, height int64
}

var (
	phone   = viewport{"phone", 390, 844}
	desktop = viewport{"desktop", 1600, 900}
	fullHD  = viewport{"1080p", 1920, 1080}
	tv      = viewport{"tv", 3840, 2160}
)

// setViewport sizes the tab's viewport; a phone-sized one is emulated as a
// mobile device, so that the page's viewport meta applies.
func setViewport(t *testing.T, ctx context.Context, v viewport) {
	t.Helper()
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: v.width, Height: v.height, DeviceScaleFactor: 1, Mobile: v.width < 600,
	})
}

// setColorScheme emulates the device's prefers-color-scheme.
func setColorScheme(t *testing.T, ctx context.Context, scheme string) {
	t.Helper()
	call(t, ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
		Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}},
	})
}

// openPage navigates to path and waits until every panel has its first
// data (none says it is waiting).
func openPage(t *testing.T, ctx context.Context, s *testServer, path string) {
	t.Helper()
	navigate(t, ctx, s, path)
	waitJS(t, ctx, "every panel of "+path+" to have data",
		`document.querySelectorAll('#grid > .panel').length > 0 && ![...document.querySelectorAll('#grid > .panel .empty')].some((e) => e.textContent.startsWith('Waiting'))`)
}

// layoutPages are the pages every layout is checked on.
var layoutPages = []string{"/d/sales", "/d/ops", "/d/" + fixtureSlug}

// smallTextJS lists the rendered HTML text smaller than 16 px, and form
// controls as well; a chart's labels are HTML and counted. SVG text (a
// stat's value, sized to fit its panel) is left out.
const smallTextJS = `(() => {
	const out = new Map(); // one example per kind of element and size
	const check = (el, what) => {
		if (el.getClientRects().length === 0) return;
		const size = parseFloat(getComputedStyle(el).fontSize);
		const key = el.tagName.toLowerCase() + (el.className ? '.' + String(el.className).replace(/ /g, '.') : '') + ' ' + size + 'px';
		if (size < 16 && !out.has(key)) out.set(key, key + ': ' + what);
	};
	const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
	for (let n = walker.nextNode(); n; n = walker.nextNode()) {
		const text = n.textContent.trim();
		const el = n.parentElement;
		if (!text || !el || el.closest('svg, noscript, script, style, datalist, select')) continue;
		check(el, text.slice(0, 40));
	}
	for (const el of document.querySelectorAll('input:not([type=hidden]), select, button')) check(el, el.name || el.textContent.trim());
	return [...out.values()];
})()`

// TestLayoutPhone: at 390x844 the demo's pages and the fixture's have no
// horizontal scroll (scrollWidth <= innerWidth), show one column, and no
// text is smaller than 16 px, the charts' axis labels included (HTML, with
// no SVG text in a chart).
func TestLayoutPhone(t *testing.T) {
	s := startServer(t, testConfig(t), true)
	createFixture(t, s, true)
	ctx := newBrowser(t)
	setViewport(t, ctx, phone)
	for _, path := range layoutPages {
		openPage(t, ctx, s, path)
		if got := eval[[]int](t, ctx, `[document.documentElement.scrollWidth, window.innerWidth]`); got[0] > got[1] {
			t.Errorf("%s at 390x844: scrollWidth %d > innerWidth %d, want no horizontal scroll", path, got[0], got[1])
		}
		if got := eval[float64](t, ctx, `parseFloat(getComputedStyle(document.body).fontSize)`); got < 16 {
			t.Errorf("%s at 390x844: body text %gpx, want at least 16px", path, got)
		}
		if small := eval[[]string](t, ctx, smallTextJS); len(small) > 0 {
			t.Errorf("%s at 390x844: text under 16px, want none:\n%s", path, strings.Join(small, "\n"))
		}
		if got := eval[[]int](t, ctx, `[document.querySelectorAll('.chart :is(.xl, .yl) > span').length, document.querySelectorAll('.chart text').length]`); got[0] == 0 || got[1] > 0 {
			t.Errorf("%s at 390x844: %d HTML axis labels and %d SVG texts in charts, want HTML labels only", path, got[0], got[1])
		}
		lefts := eval[[]float64](t, ctx, `[...document.querySelectorAll('#grid > .panel')].map((p) => Math.round(p.getBoundingClientRect().left))`)
		if len(slices.Compact(slices.Clone(lefts))) != 1 {
			t.Errorf("%s at 390x844: panels start at x = %v, want one column", path, lefts)
		}
	}
}

// kioskFitJS lists what keeps a kiosk page from fitting its viewport: a
// document larger than the viewport, a panel not shown or outside it, and a
// panel squashed below an eighth of its height (a dashboard must fit and
// stay readable).
const kioskFitJS = `(() => {
	const vw = window.innerWidth, vh = window.innerHeight, de = document.documentElement, bad = [];
	if (de.scrollHeight > vh) bad.push('document scrollHeight ' + de.scrollHeight + ' > innerHeight ' + vh);
	if (de.scrollWidth > vw) bad.push('document scrollWidth ' + de.scrollWidth + ' > innerWidth ' + vw);
	for (const p of document.querySelectorAll('#grid > .panel')) {
		if (p.getClientRects().length === 0) {
			// A full-screen panel's page hides the others.
			if (!document.body.classList.contains('page-panel')) bad.push(p.id + ' not shown');
			continue;
		}
		const r = p.getBoundingClientRect();
		if (r.left < 0 || r.top < 0 || r.right > vw + 0.5 || r.bottom > vh + 0.5)
			bad.push(p.id + ' at ' + [r.left, r.top, r.right, r.bottom].map(Math.round).join(',') + ', outside ' + vw + 'x' + vh);
		if (r.height < vh / 8) bad.push(p.id + ' only ' + Math.round(r.height) + 'px high');
	}
	return bad;
})()`

// chromeJS lists the chrome a kiosk page shows although it must not: the
// pickers, the home link, the description, the CSV and full-screen links,
// and the status label's text (its dot may stay).
const chromeJS = `(() => {
	const shown = [];
	if (document.getElementById('pickers')) shown.push('#pickers');
	for (const sel of ['.home', '.desc', '.panel-csv', '.panel-full', '.back'])
		for (const el of document.querySelectorAll(sel)) if (el.getClientRects().length > 0) { shown.push(sel); break; }
	const st = document.getElementById('status');
	if (st && parseFloat(getComputedStyle(st).fontSize) > 0) shown.push('#status label');
	return shown;
})()`

// TestLayoutKiosk: with ?kiosk, each demo page and the fixture fit the
// viewport at 1920x1080 and 3840x2160 with no scrolling, every panel inside
// it; no chrome is shown; type is sized from the viewport (twice as large at
// 3840x2160 as at 1920x1080, the charts' axis labels too); and kiosk is not
// part of the view: the stream, the long-poll and the panels' links are
// those of the plain page.
func TestLayoutKiosk(t *testing.T) {
	s := startServer(t, testConfig(t), true)
	createFixture(t, s, true)
	ctx := newBrowser(t)
	titleSize := map[string]map[string]float64{}
	chartSize := map[string]map[string]float64{} // of a chart's x labels
	for _, v := range []viewport{fullHD, tv} {
		setViewport(t, ctx, v)
		for _, path := range layoutPages {
			openPage(t, ctx, s, path+"?kiosk")
			if bad := eval[[]string](t, ctx, kioskFitJS); len(bad) > 0 {
				t.Errorf("%s?kiosk at %dx%d does not fit:\n%s", path, v.width, v.height, strings.Join(bad, "\n"))
			}
			if shown := eval[[]string](t, ctx, chromeJS); len(shown) > 0 {
				t.Errorf("%s?kiosk at %dx%d shows %v, want no chrome", path, v.width, v.height, shown)
			}
			if !eval[bool](t, ctx, `document.getElementById('status').getBoundingClientRect().width > 0`) {
				t.Errorf("%s?kiosk at %dx%d: no status dot", path, v.width, v.height)
			}
			if titleSize[path] == nil {
				titleSize[path] = map[string]float64{}
				chartSize[path] = map[string]float64{}
			}
			titleSize[path][v.name] = eval[float64](t, ctx, `parseFloat(getComputedStyle(document.querySelector('.panel-title')).fontSize)`)
			chartSize[path][v.name] = eval[float64](t, ctx, `parseFloat(getComputedStyle(document.querySelector('.chart .xl > span')).fontSize)`)
		}
	}
	for path, sizes := range titleSize {
		if r := sizes[tv.name] / sizes[fullHD.name]; math.Abs(r-2) > 0.1 {
			t.Errorf("%s?kiosk: panel titles %gpx at 3840x2160 and %gpx at 1920x1080, want twice the size", path, sizes[tv.name], sizes[fullHD.name])
		}
	}
	for path, sizes := range chartSize {
		if r := sizes[tv.name] / sizes[fullHD.name]; math.Abs(r-2) > 0.1 {
			t.Errorf("%s?kiosk: chart labels %gpx at 3840x2160 and %gpx at 1920x1080, want twice the size", path, sizes[tv.name], sizes[fullHD.name])
		}
	}

	// The same view as the plain page: what the page asks the server for
	// and what its panels link to do not mention kiosk.
	links := `[document.getElementById('live').getAttribute('hx-sse:connect').replace(/lastEventId=[^&]*/, ''),
		document.getElementById('live').getAttribute('data-poll-url'),
		...[...document.querySelectorAll('.panel-csv, .panel-full')].map((a) => a.getAttribute('href'))]`
	openPage(t, ctx, s, "/d/sales")
	plain := eval[[]string](t, ctx, links)
	openPage(t, ctx, s, "/d/sales?kiosk&theme=dark")
	if kiosk := eval[[]string](t, ctx, links); !slices.Equal(kiosk, plain) {
		t.Errorf("kiosk page asks for and links to %v, want the plain page's %v", kiosk, plain)
	}
}

// themeJS is every custom property the stylesheet defines, as computed on
// <html>, with the used colour scheme and the body's background.
const themeJS = `(() => {
	const names = new Set();
	const walk = (rules) => {
		for (const r of rules) {
			if (r.style) for (const p of r.style) if (p.startsWith('--')) names.add(p);
			if (r.cssRules) walk(r.cssRules);
		}
	};
	for (const sheet of document.styleSheets) walk(sheet.cssRules);
	const cs = getComputedStyle(document.documentElement), out = {};
	for (const n of names) out[n] = cs.getPropertyValue(n).trim();
	out['color-scheme'] = cs.colorScheme;
	out['body background'] = getComputedStyle(document.body).backgroundColor;
	return out;
})()`

// TestLayoutForcedTheme: ?theme=dark draws the dark theme whatever the
// device prefers, and ?theme=light the light one: every custom property of
// the stylesheet and the body's background are those the device's own dark
// (light) preference gives. An unknown theme or kiosk value is a 400 that
// says what is accepted.
func TestLayoutForcedTheme(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	createFixture(t, s, true)
	ctx := newBrowser(t)
	setViewport(t, ctx, fullHD)
	theme := func(scheme, query string) map[string]string {
		t.Helper()
		setColorScheme(t, ctx, scheme)
		openPage(t, ctx, s, "/d/"+fixtureSlug+query)
		return eval[map[string]string](t, ctx, themeJS)
	}
	dark, light := theme("dark", "?kiosk"), theme("light", "?kiosk")
	if dark["body background"] == light["body background"] {
		t.Fatalf("the device's dark and light preferences both give a background of %s, want them to differ", dark["body background"])
	}
	for _, tt := range []struct {
		scheme, query string
		want          map[string]string
	}{
		{"light", "?kiosk&theme=dark", dark},
		{"dark", "?kiosk&theme=dark", dark},
		{"dark", "?kiosk&theme=light", light},
		{"light", "?kiosk&theme=light", light},
	} {
		got := theme(tt.scheme, tt.query)
		// The forced theme is also the colour scheme of the browser's own
		// parts (scroll bars, form controls).
		if want := strings.TrimPrefix(tt.query, "?kiosk&theme="); got["color-scheme"] != want {
			t.Errorf("%s with the device preferring %s: color-scheme %q, want %q", tt.query, tt.scheme, got["color-scheme"], want)
		}
		for name, want := range tt.want {
			if name != "color-scheme" && got[name] != want {
				t.Errorf("%s with the device preferring %s: %s is %q, want %q", tt.query, tt.scheme, name, got[name], want)
			}
		}
	}

	for _, tt := range []struct{ query, want string }{
		{"?theme=blue", `theme must be dark or light (or left out to follow the device); got &#34;blue&#34;`},
		{"?kiosk&theme=dark&theme=light", "theme is given 2 times"},
		{"?kiosk=sometimes", `kiosk takes no value, or true or false; got &#34;sometimes&#34;`},
	} {
		resp, body := s.get(t, "/d/"+fixtureSlug+tt.query)
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(body, tt.want) {
			t.Errorf("GET %s: got %d %q, want 400 saying %q", tt.query, resp.StatusCode, trim(body), tt.want)
		}
	}
	for _, query := range []string{"?kiosk=0", "?kiosk=false&theme="} {
		openPage(t, ctx, s, "/d/"+fixtureSlug+query)
		if eval[bool](t, ctx, `document.documentElement.classList.contains('kiosk') || document.documentElement.hasAttribute('data-theme')`) {
			t.Errorf("%s: got a kiosk page or a forced theme, want neither", query)
		}
	}
}

// TestLayoutKioskToken: `token create --kiosk --theme dark --view
// var-region=eu` prints a link whose cookie redirect keeps ?kiosk, the
// variable and the theme, on the dashboard and on a full-screen panel; the
// page it lands on is the kiosk page of that view.
func TestLayoutKioskToken(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, false)
	createFixture(t, s, false)
	useDatabase(t, cfg)

	out := runOK(t, "token", "create", fixtureSlug, "--label", "lobby TV", "--kiosk", "--theme", "dark", "--view", "var-region=eu")
	link := regexp.MustCompile(`http://127\.0\.0\.1:8080(/d/fixture\?kiosk&var-region=eu&theme=dark&token=dbt_\S+)`).FindStringSubmatch(out)
	if link == nil {
		t.Fatalf("token create --kiosk printed %q, want a link with kiosk, the view and the theme before the token", out)
	}
	path := link[1]
	secret := path[strings.Index(path, "token=")+len("token="):]
	panelPath := strings.Replace(path, "/d/fixture?", "/d/fixture/panels/customers?", 1)
	for _, tt := range []struct{ path, want string }{
		{path, "/d/fixture?kiosk&var-region=eu&theme=dark"},
		{panelPath, "/d/fixture/panels/customers?kiosk&var-region=eu&theme=dark"},
	} {
		// The token reaches the server through the change feed.
		eventually(t, "the token to be accepted", func() bool { return s.status(t, "GET", tt.path) == http.StatusSeeOther })
		resp, err := noRedirect.Get(s.URL + tt.path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if got := resp.Header.Get("Location"); got != tt.want {
			t.Errorf("GET %s: redirected to %q, want %q", tt.path, got, tt.want)
		}
		if c := resp.Cookies(); len(c) != 1 || c[0].Value != secret {
			t.Errorf("GET %s: cookies %v, want the token's", tt.path, c)
		}
	}

	ctx := newBrowser(t)
	setViewport(t, ctx, fullHD)
	navigate(t, ctx, s, path)
	waitLocation(t, ctx, "/d/fixture?kiosk&var-region=eu&theme=dark")
	if got := eval[string](t, ctx, `location.search`); got != "?kiosk&var-region=eu&theme=dark" {
		t.Errorf("the link landed on %q, want ?kiosk&var-region=eu&theme=dark", got)
	}
	if !eval[bool](t, ctx, `document.documentElement.classList.contains('kiosk') && document.documentElement.dataset.theme === 'dark'`) {
		t.Errorf("the link's page is not in kiosk mode with the dark theme")
	}
	if got := eval[string](t, ctx, `document.getElementById('live').getAttribute('data-poll-url')`); !strings.Contains(got, "var-region=eu") {
		t.Errorf("the link's page polls %q, want the view with region eu", got)
	}
	waitJS(t, ctx, "the customers of region eu only",
		`[...document.querySelectorAll('#panel-customers tbody tr')].map((r) => r.cells[1].textContent).join() === 'eu,eu,eu'`)

	for _, args := range [][]string{
		{"token", "create", "--all", "--label", "x", "--kiosk"},
		{"token", "create", fixtureSlug, "--label", "x", "--theme", "blue"},
		{"token", "create", fixtureSlug, "--label", "x", "--view", "kiosk&var-region=eu"},
		{"token", "create", fixtureSlug, "--label", "x", "--view", "var-region=%zz"},
	} {
		if err := run(context.Background(), args, io.Discard, io.Discard); err == nil {
			t.Errorf("dashboard %s: got no error, want one", strings.Join(args, " "))
		}
	}
}

// useDatabase points the commands that run() starts in this test at cfg's
// database, with links printed on 127.0.0.1:8080.
func useDatabase(t *testing.T, cfg config.Config) {
	t.Helper()
	t.Setenv("DATABASE_URL", cfg.DatabaseURL)
	t.Setenv("DASHBOARD_ADDR", "127.0.0.1:8080")
	t.Setenv("DASHBOARD_PUBLIC_URL", "")
}

// TestLayoutFullScreenPanel: /d/{slug}/panels/{panel} shows that one panel,
// filling the viewport below the header, in the view of its address, with a
// link back to the dashboard at the same address; it is live (an INSERT
// reaches it, and so does a change of the dashboard's layout, which sends
// the grid whole, without showing the other panels). A panel that does not
// exist is a 404.
func TestLayoutFullScreenPanel(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	createFixture(t, s, true)
	ctx := newBrowser(t)
	setViewport(t, ctx, desktop)
	visible := `[...document.querySelectorAll('#grid > .panel')].filter((p) => p.getClientRects().length > 0).map((p) => p.id)`

	// From the dashboard, by the panel's full-screen link.
	openPage(t, ctx, s, "/d/fixture?var-region=us")
	href := eval[string](t, ctx, `document.querySelector('#panel-events .panel-full').getAttribute('href')`)
	if href != "/d/fixture/panels/events?var-region=us" {
		t.Errorf("full-screen link %q, want /d/fixture/panels/events?var-region=us", href)
	}
	openPage(t, ctx, s, href)
	if got := eval[[]string](t, ctx, visible); !slices.Equal(got, []string{"panel-events"}) {
		t.Errorf("full-screen page shows %v, want only panel-events", got)
	}
	fill := eval[[]float64](t, ctx, `(() => {
		const r = document.getElementById('panel-events').getBoundingClientRect();
		return [r.width / innerWidth, r.height / innerHeight, r.bottom - innerHeight, document.documentElement.scrollHeight - innerHeight];
	})()`)
	if fill[0] < 0.9 || fill[1] < 0.7 || fill[2] > 0.5 || fill[3] > 0 {
		t.Errorf("full-screen panel: %.2f of the width and %.2f of the height, %.0fpx past the bottom, page %.0fpx taller than the viewport; want it to fill the viewport and no more",
			fill[0], fill[1], fill[2], fill[3])
	}
	if got := eval[string](t, ctx, `document.querySelector('.top .back').getAttribute('href')`); got != "/d/fixture?var-region=us" {
		t.Errorf("way back %q, want /d/fixture?var-region=us", got)
	}
	if got := eval[string](t, ctx, `document.title`); got != "Events — Fixture" {
		t.Errorf("title %q, want Events — Fixture", got)
	}
	if got := eval[string](t, ctx, `document.getElementById('live').getAttribute('data-poll-url')`); got != "/d/fixture/poll?var-region=us" {
		t.Errorf("full-screen page polls %q, want the dashboard's view /d/fixture/poll?var-region=us", got)
	}

	waitStreams(t, ctx, s, 1)
	waitStatus(t, ctx, "live")
	s.exec(t, `INSERT INTO fx_events (at, title, detail) VALUES ('2026-03-02 10:30:00+00', 'Order #1100', 'Europe, 1 item')`)
	waitStat(t, ctx, "events", "9")
	// A layout change sends the grid whole; the page still shows one panel.
	s.exec(t, `UPDATE dashboard.panels SET title = CASE slug WHEN 'events' THEN 'Events today' ELSE title END,
		width = CASE slug WHEN 'latest' THEN 4 ELSE width END WHERE slug IN ('events', 'latest')`)
	waitJS(t, ctx, "the new title", `document.querySelector('#panel-events .panel-title').textContent === 'Events today'`)
	waitJS(t, ctx, "the new layout", `document.getElementById('panel-latest').classList.contains('w4')`)
	if got := eval[[]string](t, ctx, visible); !slices.Equal(got, []string{"panel-events"}) {
		t.Errorf("after a layout change the full-screen page shows %v, want only panel-events", got)
	}

	// Kiosk mode: no way back shown, as no other chrome.
	openPage(t, ctx, s, "/d/fixture/panels/latency?kiosk")
	if shown := eval[[]string](t, ctx, chromeJS); len(shown) > 0 {
		t.Errorf("full-screen panel in kiosk mode shows %v, want no chrome", shown)
	}
	if bad := eval[[]string](t, ctx, kioskFitJS); len(bad) > 0 {
		t.Errorf("full-screen panel in kiosk mode does not fit:\n%s", strings.Join(bad, "\n"))
	}

	resp, body := s.get(t, "/d/fixture/panels/nope")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "No such panel") {
		t.Errorf("GET /d/fixture/panels/nope: got %d %q, want 404 No such panel", resp.StatusCode, trim(body))
	}
}
