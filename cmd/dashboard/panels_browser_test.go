package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/jackc/pgx/v5"
)

// These browser tests drive the stat and table panels of a fixture
// dashboard whose values come from rows the test inserts, at the screen
// sizes the product is used at: a phone, a desk and a wall TV.

// screen is a viewport the panels must read right at.
type screen struct {
	name          string
	width, height int64
	mobile        bool
}

var screens = []screen{
	{"phone", 390, 844, true},
	{"desktop", 1600, 900, false},
	{"full HD", 1920, 1080, false},
	{"4K TV", 3840, 2160, false},
}

// setScreen makes the viewport of the page in the tab s, as a device of that
// size would show it.
func setScreen(t *testing.T, ctx context.Context, s screen) {
	t.Helper()
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{
		Width: s.width, Height: s.height, DeviceScaleFactor: 1, Mobile: s.mobile,
	})
	waitJS(t, ctx, "the viewport to be "+s.name, fmt.Sprintf(`innerWidth === %d && innerHeight === %d`, s.width, s.height))
}

// fixturePanel is one panel of a fixture dashboard.
type fixturePanel struct {
	slug, kind, sql string
	width, height   int
	options         string // jsonb
}

// createPanels adds a public dashboard with panels, in one transaction,
// and waits until the catalog holds it with all of them.
func createPanels(t *testing.T, s *testServer, slug string, panels ...fixturePanel) {
	t.Helper()
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var id int64
		if err := tx.QueryRow(ctx, `INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ($1, $2, 'public') RETURNING id`,
			slug, "Dashboard "+slug).Scan(&id); err != nil {
			return fmt.Errorf("creating dashboard: %w", err)
		}
		for i, p := range panels {
			if _, err := tx.Exec(ctx, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, width, height, options)
				VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)`,
				id, p.slug, "Panel "+p.slug, p.kind, p.sql, i, p.width, p.height, p.options); err != nil {
				return fmt.Errorf("creating panel %s: %w", p.slug, err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "dashboard "+slug+" with its panels in the catalog", func() bool {
		snap := s.engine.Snapshot()
		d := snap.Dashboard(slug)
		return d != nil && len(d.Panels) == len(panels)
	})
}

// boxCheck is what the page reports about a stat value and the panel body
// that holds it, in CSS pixels.
type boxCheck struct {
	Text    string     `json:"text"`
	Value   [4]float64 `json:"value"`   // left, top, right, bottom of the value's text
	Content [4]float64 `json:"content"` // the panel body's content box
	Panel   [4]float64 `json:"panel"`   // the panel's box, which clips its content
	Chars   int        `json:"chars"`   // characters the SVG text lays out
}

// statBoxExpr reports a stat panel's value box and the content box of its
// panel body.
func statBoxExpr(panelSlug string) string {
	return fmt.Sprintf(`(() => {
		const panel = document.getElementById('panel-%s');
		const body = panel.querySelector('.panel-body');
		const v = body.querySelector('.stat-value');
		const cs = getComputedStyle(body);
		const px = (p) => parseFloat(cs.getPropertyValue(p)) || 0;
		const b = body.getBoundingClientRect(), r = v.getBoundingClientRect(), p = panel.getBoundingClientRect();
		return JSON.stringify({
			text: v.textContent,
			value: [r.left, r.top, r.right, r.bottom],
			content: [b.left + px('border-left-width') + px('padding-left'), b.top + px('border-top-width') + px('padding-top'),
				b.right - px('border-right-width') - px('padding-right'), b.bottom - px('border-bottom-width') - px('padding-bottom')],
			panel: [p.left, p.top, p.right, p.bottom],
			chars: v.getNumberOfChars(),
		});
	})()`, panelSlug)
}

// inside reports whether box a lies within box b, give or take half a
// pixel of rounding.
func inside(a, b [4]float64) bool {
	const eps = 0.5
	return a[0] >= b[0]-eps && a[1] >= b[1]-eps && a[2] <= b[2]+eps && a[3] <= b[3]+eps
}

// TestBrowserStatValueFits: a 15-character stat value in a panel one
// column wide is shown whole at every screen size: its text is all there
// (no ellipsis), every character is laid out, and its box lies inside the
// panel body's content box, so nothing is cut, and it is at least as tall
// as body text.
func TestBrowserStatValueFits(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE fit_values (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, amount numeric, label text)`)
	s.exec(t, `INSERT INTO fit_values (amount, label) VALUES (123456789.5, 'WMWMWMWMWMWMWMW'), (123456789.25, 'WMWMWMWMWMWMWMW')`)
	createPanels(t, s, "fit",
		fixturePanel{"money", "stat", "SELECT amount FROM fit_values ORDER BY id DESC LIMIT 1", 1, 1, `{"prefix": "$", "decimals": 2}`},
		fixturePanel{"label", "stat", "SELECT label FROM fit_values ORDER BY id DESC LIMIT 1", 1, 1, `{}`},
		fixturePanel{"trend", "stat", "SELECT amount FROM fit_values ORDER BY id", 1, 1,
			`{"prefix": "$", "decimals": 2, "delta": true, "sparkline": true,
			  "thresholds": {"steps": [{"value": 100000000, "color": "red", "label": "over budget"}]}}`},
	)
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/fit")
	want := map[string]string{"money": "$123,456,789.25", "label": "WMWMWMWMWMWMWMW", "trend": "$123,456,789.25"}
	for p, v := range want {
		if len([]rune(v)) != 15 {
			t.Fatalf("fixture: %q is not 15 characters", v)
		}
		waitStat(t, ctx, p, v)
	}
	for _, sc := range screens {
		setScreen(t, ctx, sc)
		for p, v := range want {
			var b boxCheck
			if err := json.Unmarshal([]byte(eval[string](t, ctx, statBoxExpr(p))), &b); err != nil {
				t.Fatal(err)
			}
			if b.Text != v || b.Chars != 15 {
				t.Errorf("%s, panel %s: shows %q (%d characters laid out), want %q whole", sc.name, p, b.Text, b.Chars, v)
			}
			if !inside(b.Value, b.Content) || !inside(b.Value, b.Panel) {
				t.Errorf("%s, panel %s: value box %v is not inside the panel body's content box %v (panel %v)",
					sc.name, p, b.Value, b.Content, b.Panel)
			}
			if h := b.Value[3] - b.Value[1]; h < 16 {
				t.Errorf("%s, panel %s: value %v px high, want at least 16", sc.name, p, h)
			}
		}
		// The threshold cue, the delta and the sparkline beside the value
		// stay in the panel and readable.
		ok := eval[bool](t, ctx, `(() => {
			const body = document.querySelector('#panel-trend .panel-body').getBoundingClientRect();
			const sp = document.querySelector('#panel-trend .spark').getBoundingClientRect();
			const texts = ['.stat-delta', '.stat-level'].map((c) => document.querySelector('#panel-trend ' + c));
			return texts.every((e) => {
				const r = e.getBoundingClientRect();
				return parseFloat(getComputedStyle(e).fontSize) >= 16 && r.height > 0 &&
					r.bottom <= body.bottom + 0.5 && r.right <= body.right + 0.5;
			}) && texts[1].textContent === 'over budget' && sp.height >= 16 && sp.bottom <= body.bottom + 0.5;
		})()`)
		if !ok {
			t.Errorf("%s: the trend panel's cue, delta or sparkline is cut or too small: %s", sc.name,
				eval[string](t, ctx, `document.querySelector('#panel-trend .panel-body').outerHTML`))
		}
	}
}

// TestBrowserStatThresholds: a stat value takes the colour of the highest
// threshold step it reaches as rows arrive, and says so in words too.
func TestBrowserStatThresholds(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE load_samples (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, v int NOT NULL)`)
	s.exec(t, `INSERT INTO load_samples (v) VALUES (50)`)
	createPanels(t, s, "levels",
		fixturePanel{"load", "stat", "SELECT sum(v) AS load FROM load_samples", 1, 1,
			`{"unit": "%", "thresholds": {"base": "green", "steps": [{"value": 80, "color": "orange"}, {"value": 95, "color": "red", "label": "high"}]}}`},
	)
	awaitDashboard(t, s, "levels", "load_samples")
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/levels")
	waitStreams(t, ctx, s, 1)
	waitStatus(t, ctx, "live")

	// colourOf is the colour a theme colour name resolves to in this page.
	colourOf := func(name string) string {
		return eval[string](t, ctx, fmt.Sprintf(`(() => {
			const d = document.createElement('div');
			d.style.color = 'var(--%s)';
			document.body.append(d);
			const c = getComputedStyle(d).color;
			d.remove();
			return c;
		})()`, name))
	}
	steps := []struct {
		add          int
		value, class string
		cue          string
	}{
		{0, "50%", "green", "< 80%"},
		{30, "80%", "orange", "≥ 80%"}, // at a step's value is at the step
		{14, "94%", "orange", "≥ 80%"},
		{1, "95%", "red", "high"},
		{-60, "35%", "green", "< 80%"},
	}
	for _, st := range steps {
		if st.add != 0 {
			s.exec(t, `INSERT INTO load_samples (v) VALUES ($1)`, st.add)
		}
		waitStat(t, ctx, "load", st.value)
		want := colourOf(st.class)
		waitJS(t, ctx, st.value+" drawn in "+st.class, fmt.Sprintf(`(() => {
			const v = document.querySelector('#panel-load .stat-value');
			return v.classList.contains('th-%s') && getComputedStyle(v).fill === %q;
		})()`, st.class, want))
		if got := eval[string](t, ctx, `(document.querySelector('#panel-load .stat-level') || {}).textContent`); got != st.cue {
			t.Errorf("at %s: cue %q, want %q", st.value, got, st.cue)
		}
	}
}

// TestBrowserTableKeepsScrollAndFocus: a long table scrolls inside its
// panel under a sticky header, and an update that arrives over the stream
// morphs the table in place: the position the viewer scrolled to, the
// focus and the nodes themselves survive it, and survive a change of the
// dashboard's layout (the grid's partial) too. Over the long-poll
// (poll.js, which replaces panels whole) the position and the focus
// survive as well.
func TestBrowserTableKeepsScrollAndFocus(t *testing.T) {
	for _, transport := range []string{"sse", "poll"} {
		t.Run(transport, func(t *testing.T) { testTableKeepsScrollAndFocus(t, transport) })
	}
}

func testTableKeepsScrollAndFocus(t *testing.T, transport string) {
	// Over the stream the very nodes survive (morph); over the long-poll
	// they are new, in the same place.
	sameNodes := transport == "sse"
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE orders (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, customer text NOT NULL, amount numeric NOT NULL)`)
	s.exec(t, `INSERT INTO orders (customer, amount) SELECT 'customer ' || i, i * 1.5 FROM generate_series(1, 200) AS i`)
	createPanels(t, s, "orders",
		fixturePanel{"list", "table", "SELECT id, customer, amount FROM orders ORDER BY id", 2, 2,
			`{"decimals": 2, "columns": [{"name": "amount", "prefix": "$"}]}`},
	)
	awaitDashboard(t, s, "orders", "orders")
	ctx := newBrowser(t)
	if sameNodes {
		navigate(t, ctx, s, "/d/orders")
		setScreen(t, ctx, screens[1])
		waitStreams(t, ctx, s, 1)
		waitStatus(t, ctx, "live")
	} else {
		navigate(t, ctx, s, "/d/orders?transport=poll")
		setScreen(t, ctx, screens[1])
		waitStatus(t, ctx, "polling")
	}
	const rowsJS = `document.querySelectorAll('#panel-list tbody tr').length`
	waitJS(t, ctx, "200 rows", rowsJS+` === 200`)
	if got := eval[string](t, ctx, `document.querySelector('#panel-list tbody tr td').textContent`); got != "1" {
		t.Errorf("id column: got %q, want 1 (an integer column gets no decimals)", got)
	}

	// Scroll the table by hand, focus it, and mark its nodes.
	top := eval[float64](t, ctx, `(() => {
		const w = document.querySelector('#panel-list .table-wrap');
		if (w.scrollHeight <= w.clientHeight + 600) return -1;
		w.scrollTop = 600;
		w.focus();
		w.__marker = 1;
		return w.scrollTop;
	})()`)
	if top != 600 {
		t.Fatalf("the table does not scroll inside its panel (scrollTop %v)", top)
	}
	stickyJS := `(() => {
		const w = document.querySelector('#panel-list .table-wrap').getBoundingClientRect();
		const th = document.querySelector('#panel-list thead th').getBoundingClientRect();
		return Math.abs(th.top - w.top) < 1;
	})()`
	if !eval[bool](t, ctx, stickyJS) {
		t.Errorf("the header scrolled away with the rows, want it to stick to the top of the table")
	}

	s.exec(t, `INSERT INTO orders (customer, amount) VALUES ('late customer', 12.5)`)
	waitJS(t, ctx, "the new row", rowsJS+` === 201`)

	got := eval[string](t, ctx, `(() => {
		const w = document.querySelector('#panel-list .table-wrap');
		return JSON.stringify({top: w.scrollTop, same: w.__marker === 1, focused: document.activeElement === w});
	})()`)
	var after struct {
		Top     float64 `json:"top"`
		Same    bool    `json:"same"`
		Focused bool    `json:"focused"`
	}
	if err := json.Unmarshal([]byte(got), &after); err != nil {
		t.Fatal(err)
	}
	if after.Top != 600 || after.Same != sameNodes || !after.Focused {
		t.Errorf("after the update: scrollTop %v (want 600), same scroll container %v (want %v), focused %v; want position and focus kept",
			after.Top, after.Same, sameNodes, after.Focused)
	}
	if !eval[bool](t, ctx, stickyJS) {
		t.Errorf("after the update, the header no longer sticks to the top of the table")
	}
	last := eval[string](t, ctx, `[...document.querySelectorAll('#panel-list tbody tr:last-child td')].map((td) => td.textContent).join('|')`)
	if last != "201|late customer|$12.50" {
		t.Errorf("new row: got %q, want 201|late customer|$12.50", last)
	}

	// A new panel changes the layout: the heading and the whole grid come
	// in their partials, and are morphed too, so the table survives with
	// its position and the focus.
	s.exec(t, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position)
		SELECT id, 'count', 'Orders', 'stat', 'SELECT count(*) FROM orders', 1 FROM dashboard.dashboards WHERE slug = 'orders'`)
	waitStat(t, ctx, "count", "201")
	if !eval[bool](t, ctx, `(() => {
		const w = document.querySelector('#panel-list .table-wrap');
		return (w.__marker === 1) === `+strconv.FormatBool(sameNodes)+` && w.scrollTop === 600 && document.activeElement === w;
	})()`) {
		t.Errorf("after a layout change, the table lost its scroll position or the focus")
	}
}

// TestBrowserPhoneNoSideScroll: on a phone, a table wider than the screen
// scrolls sideways inside its panel, and the page itself never scrolls
// sideways.
func TestBrowserPhoneNoSideScroll(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE events (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, host text, message text, at timestamptz)`)
	s.exec(t, `INSERT INTO events (host, message, at)
		SELECT 'host-with-a-rather-long-name-' || i, repeat('a long message without end ', 8), '2026-03-14 12:00:00+00'::timestamptz + i * interval '1 minute'
		FROM generate_series(1, 30) AS i`)
	createPanels(t, s, "phone",
		fixturePanel{"wide", "table", "SELECT id, host, message, at, id * 1000 AS big, host AS again FROM events ORDER BY id", 4, 2, `{}`},
		fixturePanel{"total", "stat", "SELECT count(*) FROM events", 1, 1, `{}`},
	)
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/phone")
	setScreen(t, ctx, screens[0])
	waitJS(t, ctx, "the table", `document.querySelectorAll('#panel-wide tbody tr').length === 30`)
	got := eval[string](t, ctx, `(() => {
		const w = document.querySelector('#panel-wide .table-wrap');
		return JSON.stringify({page: document.documentElement.scrollWidth, inner: innerWidth,
			tableWidth: w.scrollWidth, wrapWidth: w.clientWidth});
	})()`)
	var m struct {
		Page       float64 `json:"page"`
		Inner      float64 `json:"inner"`
		TableWidth float64 `json:"tableWidth"`
		WrapWidth  float64 `json:"wrapWidth"`
	}
	if err := json.Unmarshal([]byte(got), &m); err != nil {
		t.Fatal(err)
	}
	if m.Page > m.Inner {
		t.Errorf("the page is %v px wide on a %v px screen: it scrolls sideways", m.Page, m.Inner)
	}
	if m.TableWidth <= m.WrapWidth {
		t.Fatalf("fixture: the table (%v px) is not wider than its panel (%v px)", m.TableWidth, m.WrapWidth)
	}
	left := eval[float64](t, ctx, `(() => {
		const w = document.querySelector('#panel-wide .table-wrap');
		w.scrollLeft = 200;
		return w.scrollLeft;
	})()`)
	if left != 200 {
		t.Errorf("the table does not scroll sideways inside its panel: scrollLeft %v, want 200", left)
	}
	if sx := eval[float64](t, ctx, `scrollX`); sx != 0 {
		t.Errorf("the page scrolled sideways by %v px", sx)
	}
}
