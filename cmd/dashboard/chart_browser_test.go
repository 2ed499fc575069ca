package main

import (
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
)

// setupCharts creates the chart fixture: a table of samples a minute
// apart with a NULL at 12:02 and a stretch missing between 12:05 and
// 12:20, a table of queue lengths, and a dashboard "charts" with a time
// series of the samples in dollars, a bar chart of the queues with thresholds
// and the samples again with the value axis capped at 10.
func setupCharts(t *testing.T, s *testServer) {
	t.Helper()
	s.exec(t, `CREATE TABLE samples (at timestamptz PRIMARY KEY, v numeric)`)
	s.exec(t, `INSERT INTO samples VALUES
		('2026-03-14 12:00Z', 3), ('2026-03-14 12:01Z', 5), ('2026-03-14 12:02Z', NULL),
		('2026-03-14 12:03Z', 7), ('2026-03-14 12:04Z', 1234.5), ('2026-03-14 12:05Z', 4),
		('2026-03-14 12:20Z', 6), ('2026-03-14 12:21Z', 8)`)
	s.exec(t, `CREATE TABLE queues (name text PRIMARY KEY, jobs int NOT NULL)`)
	s.exec(t, `INSERT INTO queues VALUES ('mail', 3), ('billing', 120)`)
	s.exec(t, `WITH d AS (
			INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('charts', 'Charts', 'public') RETURNING id
		)
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, width, options)
		SELECT d.id, p.slug, p.title, p.kind, p.sql, p.pos, 2, p.options::jsonb
		FROM d, (VALUES
			('ts', 'Samples', 'timeseries', 'SELECT at, v FROM samples ORDER BY at', 0, '{"prefix": "$"}'),
			('queues', 'Queues', 'bar', 'SELECT name, jobs FROM queues ORDER BY name', 1,
			 '{"thresholds": {"base": "green", "steps": [{"value": 100, "color": "red", "label": "backlog"}]}}'),
			('capped', 'Samples up to 10', 'timeseries', 'SELECT at, v FROM samples ORDER BY at', 2, '{"max": 10}')
		) AS p(slug, title, kind, sql, pos, options)`)
	awaitDashboard(t, s, "charts", "samples", "queues")
}

// TestBrowserChartGapsAndHover: in Chromium at 1600x900, a series with a
// NULL and a long missing stretch is drawn as three separate lines; moving
// the mouse to a point's x shows a tooltip with that point's exact value and
// time and a guide at the point; when the value changes in the database the
// tooltip under the still pointer shows the new value.
func TestBrowserChartGapsAndHover(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1600, Height: 900, DeviceScaleFactor: 1})
	navigate(t, ctx, s, "/d/charts")
	waitJS(t, ctx, "the time series", `document.querySelector('#panel-ts svg.chart')`)

	// 12:00-12:01 | NULL | 12:03-12:05 | 15 minutes missing | 12:20-12:21.
	lines := eval[[]int](t, ctx, `[...document.querySelectorAll('#panel-ts polyline.line')].map((l) => l.points.numberOfItems)`)
	if len(lines) != 3 || lines[0] != 2 || lines[1] != 3 || lines[2] != 2 {
		t.Fatalf("got polylines with %v points, want three lines of 2, 3 and 2 points", lines)
	}

	// The point at 12:04 is the second of the middle line; move the mouse
	// to its x, halfway down the plot.
	at := eval[[]float64](t, ctx, `(() => {
		const svg = document.querySelector('#panel-ts svg.chart');
		const pt = document.querySelectorAll('#panel-ts polyline.line')[1].points.getItem(1);
		const axis = svg.querySelector('.axis').y1.baseVal.value;
		const p = new DOMPoint(pt.x, axis / 2).matrixTransform(svg.getScreenCTM());
		return [p.x, p.y, pt.x];
	})()`)
	call(t, ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: at[0], Y: at[1]})
	tipShows := func(want string) string {
		return `(() => {
			const tip = document.querySelector('.chart-tip');
			return tip && !tip.hidden && tip.textContent.includes('12:04') && tip.textContent.includes(` + strconv.Quote(want) + `);
		})()`
	}
	waitJS(t, ctx, "a tooltip with 12:04 and $1,234.5", tipShows("$1,234.5"))
	tip := eval[string](t, ctx, `document.querySelector('.chart-tip').innerText`)
	if !strings.Contains(tip, "2026-03-14 12:04") {
		t.Errorf("tooltip %q: want the date and time 2026-03-14 12:04", tip)
	}
	guide := eval[float64](t, ctx, `document.querySelector('#panel-ts line.guide').x1.baseVal.value`)
	if d := guide - at[2]; d > 1 || d < -1 {
		t.Errorf("guide at x %v, want the point's x %v", guide, at[2])
	}

	// The panel is redrawn under the still pointer.
	s.exec(t, `UPDATE samples SET v = 4321 WHERE at = '2026-03-14 12:04Z'`)
	waitJS(t, ctx, "the tooltip to follow the update", tipShows("$4,321"))

	// Leaving the chart hides the tooltip and the guide.
	call(t, ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: 5, Y: 5})
	waitJS(t, ctx, "the tooltip to hide", `document.querySelector('.chart-tip').hidden && !document.querySelector('line.guide')`)
}

// TestBrowserChartClipSurvivesUpdates: a chart with max cuts its marks off
// at the top of the plot, and still does after updates, which htmx morphs
// into the page: the marks stay SVG, drawn and inside the plot.
func TestBrowserChartClipSurvivesUpdates(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1600, Height: 900, DeviceScaleFactor: 1})
	navigate(t, ctx, s, "/d/charts")
	clipped := `(() => {
		const box = document.querySelector('#panel-capped svg.marks');
		const lines = document.querySelectorAll('#panel-capped svg.marks polyline.line');
		if (!(box instanceof SVGSVGElement) || lines.length !== 3) return false;
		const b = box.getBoundingClientRect();
		return [...lines].every((l) => l instanceof SVGPolylineElement && l.getBBox().width > 0) &&
			b.height > 0 && getComputedStyle(box).overflow !== 'visible';
	})()`
	waitJS(t, ctx, "the capped chart's marks in a clipping svg", clipped)
	middle := `document.querySelectorAll('#panel-capped polyline.line')[1].getAttribute('points')`
	for i, v := range []string{"2", "9", "4321"} {
		before := eval[string](t, ctx, middle)
		s.exec(t, `UPDATE samples SET v = `+v+` WHERE at = '2026-03-14 12:04Z'`)
		waitJS(t, ctx, "the capped chart to redraw for "+v, middle+` !== `+strconv.Quote(before))
		waitJS(t, ctx, "the marks still SVG, drawn and clipped after update "+strconv.Itoa(i+1), clipped)
	}
}

// TestBrowserChartTap: on a phone (390x844, touch), tapping a point shows
// its value, and the tooltip stays when the finger lifts, until a tap
// elsewhere.
func TestBrowserChartTap(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 390, Height: 844, DeviceScaleFactor: 2, Mobile: true})
	call(t, ctx, emulation.SetTouchEmulationEnabled, emulation.SetTouchEmulationEnabledParams{Enabled: true, MaxTouchPoints: 1})
	navigate(t, ctx, s, "/d/charts")
	waitJS(t, ctx, "the time series", `document.querySelectorAll('#panel-ts polyline.line').length === 3`)
	at := eval[[]float64](t, ctx, `(() => {
		const svg = document.querySelector('#panel-ts svg.chart');
		svg.scrollIntoView({block: 'center'});
		const pt = document.querySelectorAll('#panel-ts polyline.line')[1].points.getItem(1);
		const axis = svg.querySelector('.axis').y1.baseVal.value;
		const p = new DOMPoint(pt.x, axis / 2).matrixTransform(svg.getScreenCTM());
		return [p.x, p.y];
	})()`)
	tap := func(x, y float64) {
		t.Helper()
		call(t, ctx, input.DispatchTouchEvent, input.DispatchTouchEventParams{
			Type: input.DispatchTouchEventTypeTouchStart, TouchPoints: []*input.TouchPoint{{X: x, Y: y}},
		})
		call(t, ctx, input.DispatchTouchEvent, input.DispatchTouchEventParams{
			Type: input.DispatchTouchEventTypeTouchEnd, TouchPoints: []*input.TouchPoint{},
		})
	}
	tap(at[0], at[1])
	waitJS(t, ctx, "a tooltip with $1,234.5", `(() => {
		const tip = document.querySelector('.chart-tip');
		return tip && !tip.hidden && tip.textContent.includes('$1,234.5');
	})()`)
	// The finger has lifted (the touchEnd was handled before the call
	// returned): the tooltip is still there.
	if eval[bool](t, ctx, `document.querySelector('.chart-tip').hidden`) {
		t.Errorf("tooltip hidden when the finger lifted, want it shown until a tap elsewhere")
	}
	// A tap on the bar chart's title, outside the time series.
	title := eval[[]float64](t, ctx, `(() => {
		const r = document.querySelector('#panel-queues .panel-title').getBoundingClientRect();
		return [r.x + r.width / 2, r.y + r.height / 2];
	})()`)
	tap(title[0], title[1])
	waitJS(t, ctx, "the tooltip to hide", `document.querySelector('.chart-tip').hidden`)
}

// TestBrowserBarThresholds: a bar whose value reaches a threshold step is
// filled with the step's theme colour, one below every step with the base
// colour, and each says its step in words.
func TestBrowserBarThresholds(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/charts")
	waitJS(t, ctx, "the bar chart", `document.querySelectorAll('#panel-queues rect.bar').length === 2`)
	got := eval[[]string](t, ctx, `(() => {
		const css = getComputedStyle(document.documentElement);
		const probe = (name) => {
			// The theme colour as the browser computes a fill from it.
			const r = document.createElementNS('http://www.w3.org/2000/svg', 'rect');
			r.style.fill = css.getPropertyValue(name);
			document.querySelector('#panel-queues svg').appendChild(r);
			const fill = getComputedStyle(r).fill;
			r.remove();
			return fill;
		};
		const bars = [...document.querySelectorAll('#panel-queues rect.bar')];
		return [
			getComputedStyle(bars[0]).fill, probe('--red'), bars[0].textContent,
			getComputedStyle(bars[1]).fill, probe('--green'), bars[1].textContent,
		];
	})()`)
	// Bars in name order: billing (120, backlog), mail (3).
	if got[0] != got[1] || !strings.Contains(got[2], "backlog") {
		t.Errorf("billing: fill %s, title %q; want red %s and the step's label", got[0], got[2], got[1])
	}
	if got[3] != got[4] || !strings.Contains(got[5], "< 100") {
		t.Errorf("mail: fill %s, title %q; want green %s and < 100", got[3], got[5], got[4])
	}
	if got[1] == got[4] {
		t.Fatalf("red and green compute to the same colour %s", got[1])
	}

	// Crossing the threshold changes the colour.
	s.exec(t, `UPDATE queues SET jobs = 150 WHERE name = 'mail'`)
	waitJS(t, ctx, "mail to turn red", `(() => {
		const bars = document.querySelectorAll('#panel-queues rect.bar');
		return bars.length === 2 && getComputedStyle(bars[1]).fill === getComputedStyle(bars[0]).fill;
	})()`)
}
