package main

import (
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/input"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"
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
// time and a guide at the point, the plot's height, in the stretched plot; when the value changes in the database the
// tooltip under the still pointer shows the new value.
func TestBrowserChartGapsAndHover(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1600, Height: 900, DeviceScaleFactor: 1})
	navigate(t, ctx, s, "/d/charts")
	waitJS(t, ctx, "the time series", `document.querySelector('#panel-ts svg.plot')`)

	// 12:00-12:01 | NULL | 12:03-12:05 | 15 minutes missing | 12:20-12:21.
	lines := eval[[]int](t, ctx, `[...document.querySelectorAll('#panel-ts polyline.line')].map((l) => l.points.numberOfItems)`)
	if len(lines) != 3 || lines[0] != 2 || lines[1] != 3 || lines[2] != 2 {
		t.Fatalf("got polylines with %v points, want three lines of 2, 3 and 2 points", lines)
	}

	// The point at 12:04 is the second of the middle line; move the mouse
	// to its x, halfway down the plot (stretched: its screen matrix maps
	// its units to pixels).
	at := eval[[]float64](t, ctx, `(() => {
		const svg = document.querySelector('#panel-ts svg.plot');
		const pt = document.querySelectorAll('#panel-ts polyline.line')[1].points.getItem(1);
		const p = new DOMPoint(pt.x, svg.viewBox.baseVal.height / 2).matrixTransform(svg.getScreenCTM());
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
	guide := eval[[]float64](t, ctx, `(() => {
		const g = document.querySelector('#panel-ts svg.plot > line.guide');
		const r = g.getBoundingClientRect(), p = g.ownerSVGElement.getBoundingClientRect();
		return [g.x1.baseVal.value, r.height / p.height, getComputedStyle(g).vectorEffect === 'non-scaling-stroke' ? 1 : 0];
	})()`)
	if d := guide[0] - at[2]; d > 1 || d < -1 {
		t.Errorf("guide at x %v, want the point's x %v", guide[0], at[2])
	}
	if guide[1] < 0.99 || guide[2] != 1 {
		t.Errorf("guide spans %.2f of the plot's height, non-scaling stroke %v; want the whole height and a stroke that keeps its width", guide[1], guide[2] == 1)
	}

	// The panel is redrawn under the still pointer.
	s.exec(t, `UPDATE samples SET v = 4321 WHERE at = '2026-03-14 12:04Z'`)
	waitJS(t, ctx, "the tooltip to follow the update", tipShows("$4,321"))

	// Leaving the chart hides the tooltip and the guide.
	call(t, ctx, input.DispatchMouseEvent, input.DispatchMouseEventParams{Type: input.DispatchMouseEventTypeMouseMoved, X: 5, Y: 5})
	waitJS(t, ctx, "the tooltip to hide", `document.querySelector('.chart-tip').hidden && !document.querySelector('line.guide')`)
}

// TestBrowserChartClipSurvivesUpdates: a chart with max cuts its marks off
// at the top of the plot (the plot svg's own overflow), and still does
// after updates, which htmx morphs into the page: the marks stay SVG
// elements of the plot svg, drawn, and the plot still clips.
func TestBrowserChartClipSurvivesUpdates(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1600, Height: 900, DeviceScaleFactor: 1})
	navigate(t, ctx, s, "/d/charts")
	clipped := `(() => {
		const plots = document.querySelectorAll('#panel-capped svg');
		const box = plots[0];
		const lines = document.querySelectorAll('#panel-capped polyline.line');
		if (plots.length !== 1 || !(box instanceof SVGSVGElement) || !box.classList.contains('plot') || lines.length !== 3) return false;
		const b = box.getBoundingClientRect();
		return [...lines].every((l) => l instanceof SVGPolylineElement && l.ownerSVGElement === box && l.getBBox().width > 0) &&
			b.height > 0 && b.width > 0 && getComputedStyle(box).overflow === 'hidden';
	})()`
	waitJS(t, ctx, "the capped chart's marks in its clipping plot svg", clipped)
	middle := `document.querySelectorAll('#panel-capped polyline.line')[1].getAttribute('points')`
	for i, v := range []string{"2", "9", "4321"} {
		before := eval[string](t, ctx, middle)
		s.exec(t, `UPDATE samples SET v = `+v+` WHERE at = '2026-03-14 12:04Z'`)
		waitJS(t, ctx, "the capped chart to redraw for "+v, middle+` !== `+strconv.Quote(before))
		waitJS(t, ctx, "the marks still SVG, drawn and clipped after update "+strconv.Itoa(i+1), clipped)
	}
}

// TestBrowserChartKeyboard: a chart takes the focus from the keyboard and
// then shows its newest point's value; the arrow keys move along the
// points, and Escape hides the tooltip.
func TestBrowserChartKeyboard(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupCharts(t, s)
	ctx := newBrowser(t)
	call(t, ctx, emulation.SetDeviceMetricsOverride, emulation.SetDeviceMetricsOverrideParams{Width: 1600, Height: 900, DeviceScaleFactor: 1})
	navigate(t, ctx, s, "/d/charts")
	waitJS(t, ctx, "the time series", `document.querySelector('#panel-ts svg[data-hover]')`)
	tipShows := func(at, value string) string {
		return `(() => {
			const tip = document.querySelector('.chart-tip');
			return !!tip && !tip.hidden && tip.textContent.includes(` + strconv.Quote(at) + `) && tip.textContent.includes(` + strconv.Quote(value) + `);
		})()`
	}
	// Tab from the page's start to the first chart with hover data.
	for range 40 {
		if eval[bool](t, ctx, `document.activeElement === document.querySelector('#panel-ts svg[data-hover]')`) {
			break
		}
		if _, err := chromedp.Run(ctx, chromedp.KeyEvent(kb.Tab)); err != nil {
			t.Fatal(err)
		}
	}
	waitJS(t, ctx, "the newest point, 12:21 $8, on focus", tipShows("12:21", "$8"))
	for _, step := range []struct{ key, at, value string }{
		{kb.ArrowLeft, "12:20", "$6"},
		{kb.ArrowLeft, "12:05", "$4"},
		{kb.Home, "12:00", "$3"},
		{kb.ArrowRight, "12:01", "$5"},
		{kb.End, "12:21", "$8"},
	} {
		if _, err := chromedp.Run(ctx, chromedp.KeyEvent(step.key)); err != nil {
			t.Fatal(err)
		}
		waitJS(t, ctx, "the point at "+step.at, tipShows(step.at, step.value))
	}
	if _, err := chromedp.Run(ctx, chromedp.KeyEvent(kb.Escape)); err != nil {
		t.Fatal(err)
	}
	waitJS(t, ctx, "Escape to hide the tooltip", `document.querySelector('.chart-tip').hidden`)
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
		const svg = document.querySelector('#panel-ts svg.plot');
		svg.scrollIntoView({block: 'center'});
		const pt = document.querySelectorAll('#panel-ts polyline.line')[1].points.getItem(1);
		const p = new DOMPoint(pt.x, svg.viewBox.baseVal.height / 2).matrixTransform(svg.getScreenCTM());
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

// setupChartFit creates a dashboard "fit" of two charts drawn for several
// grid columns: a width-3 time series of a day of half-hourly readings and
// a width-2 bar chart of seven products with long names, both two rows
// high.
func setupChartFit(t *testing.T, s *testServer) {
	t.Helper()
	s.exec(t, `CREATE TABLE readings (at timestamptz PRIMARY KEY, v numeric NOT NULL)`)
	s.exec(t, `INSERT INTO readings
		SELECT TIMESTAMPTZ '2026-03-14 00:00Z' + i * interval '30 minutes', round((1200 + 800 * sin(i / 5.0))::numeric, 1)
		FROM generate_series(0, 47) AS i`)
	s.exec(t, `CREATE TABLE sold (product text PRIMARY KEY, units int NOT NULL)`)
	s.exec(t, `INSERT INTO sold VALUES ('Headset', 42), ('Keyboard', 57), ('Laptop stand', 18), ('Monitor arm', 33),
		('Wireless mouse', 71), ('USB-C dock', 25), ('Webcam', 12)`)
	s.exec(t, `WITH d AS (
			INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('fit', 'Fit', 'public') RETURNING id
		)
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, width, height, options)
		SELECT d.id, p.slug, p.title, p.kind, p.sql, p.pos, p.width, 2, '{}'::jsonb
		FROM d, (VALUES
			('day', 'Readings', 'timeseries', 'SELECT at, v FROM readings ORDER BY at', 0, 3),
			('sold', 'Units sold', 'bar', 'SELECT product, units FROM sold ORDER BY product', 1, 2)
		) AS p(slug, title, kind, sql, pos, width)`)
	awaitDashboard(t, s, "fit", "readings", "sold")
}

// chartTextJS describes the visible labels of a chart: per label its
// class (yl, xl or vl), computed font size, box, and for a y label how far
// its middle is from where its grid line is drawn (its --y of the plot's
// height), for the checks of TestBrowserChartFit.
const chartTextJS = `((id) => {
	const plot = document.querySelector('#' + id + ' svg.plot').getBoundingClientRect();
	return [...document.querySelectorAll('#' + id + ' .chart :is(.yl, .xl, .vl) > span')]
		.filter((l) => l.getClientRects().length > 0 && getComputedStyle(l).visibility === 'visible')
		.map((l) => {
			const r = l.getBoundingClientRect();
			const y = plot.top + parseFloat(l.style.getPropertyValue('--y')) / 100 * plot.height;
			return {kind: l.parentElement.className, text: l.textContent, size: parseFloat(getComputedStyle(l).fontSize),
				left: r.left, right: r.right, top: r.top, bottom: r.bottom, off: (r.top + r.bottom) / 2 - y};
		});
})`

// chartLabel is one label as chartTextJS describes it.
type chartLabel struct {
	Kind, Text               string
	Size                     float64
	Left, Right, Top, Bottom float64
	Off                      float64 // a y label's middle less its grid line's y
}

// plotFitJS measures how a chart's plot fills its panel: the panel
// body's content width less the y labels' column, the plot svg's width,
// and the width its line or bars span on screen.
const plotFitJS = `((id) => {
	const body = document.querySelector('#' + id + ' .panel-body');
	const cs = getComputedStyle(body);
	const inner = body.clientWidth - parseFloat(cs.paddingLeft) - parseFloat(cs.paddingRight);
	const yl = document.querySelector('#' + id + ' .chart .yl').getBoundingClientRect().width;
	const plot = document.querySelector('#' + id + ' svg.plot').getBoundingClientRect();
	const marks = [...document.querySelectorAll('#' + id + ' svg.plot :is(.line, .bar)')].map((m) => m.getBoundingClientRect());
	const left = Math.min(...marks.map((r) => r.left)), right = Math.max(...marks.map((r) => r.right));
	return [inner - yl, plot.width, right - left, plot.height];
})`

// TestBrowserChartFit: chart text is HTML sized by the stylesheet, and the
// plot stretches to its panel. On a phone (390x844) a width-3 time series
// and a width-2 bar chart show every visible label (axes and bar values)
// at 16 px or more, three or more on each axis, each inside its panel, and
// no two visible labels of an axis overlap; at 390x844, 1600x900 and in kiosk mode
// at 3840x2160 the plot's svg is as wide as the panel body less the y
// labels' column and the marks span it (no letterboxing), and each y label
// is level with its grid line.
func TestBrowserChartFit(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	setupChartFit(t, s)
	ctx := newBrowser(t)
	for _, v := range []struct {
		viewport
		path string
	}{{phone, "/d/fit"}, {desktop, "/d/fit"}, {tv, "/d/fit?kiosk"}} {
		setViewport(t, ctx, v.viewport)
		openPage(t, ctx, s, v.path)
		waitJS(t, ctx, "both charts", `document.querySelectorAll('svg.plot').length === 2`)
		for _, id := range []string{"panel-day", "panel-sold"} {
			at := v.path + " " + id + " at " + strconv.FormatInt(v.width, 10) + "x" + strconv.FormatInt(v.height, 10)
			fit := eval[[]float64](t, ctx, plotFitJS+`('`+id+`')`)
			if math.Abs(fit[0]-fit[1]) > 3 || fit[1] < 100 {
				t.Errorf("%s: plot %.1f px wide, want the panel body less the y labels, %.1f px", at, fit[1], fit[0])
			}
			// Bars sit in bands, 10% of a band from either edge.
			if fit[2] < 0.9*fit[1]-1 || fit[3] < 50 {
				t.Errorf("%s: marks span %.1f px of a %.1fx%.1f px plot, want the plot's width", at, fit[2], fit[1], fit[3])
			}
			labels := eval[[]chartLabel](t, ctx, chartTextJS+`('`+id+`')`)
			for _, l := range labels {
				if l.Kind == "yl" && math.Abs(l.Off) > 1 {
					t.Errorf("%s: y label %q %.1f px off its grid line, want on it", at, l.Text, l.Off)
				}
			}
			if v.viewport != phone {
				continue
			}
			box := eval[[]float64](t, ctx, `(() => {
				const r = document.getElementById('`+id+`').getBoundingClientRect();
				return [r.left, r.right];
			})()`)
			var xs, ys []chartLabel
			for _, l := range labels {
				if l.Size < 16 {
					t.Errorf("%s: %s label %q at %gpx, want at least 16px", at, l.Kind, l.Text, l.Size)
				}
				if l.Left < box[0] || l.Right > box[1] {
					t.Errorf("%s: %s label %q at %.1f-%.1f, want it inside the panel, %.1f-%.1f", at, l.Kind, l.Text, l.Left, l.Right, box[0], box[1])
				}
				switch l.Kind {
				case "xl":
					xs = append(xs, l)
				case "yl":
					ys = append(ys, l)
				}
			}
			if len(xs) < 3 || len(ys) < 3 {
				t.Errorf("%s: %d x and %d y labels shown, want 3 or more of each", at, len(xs), len(ys))
			}
			// The y labels, lowest first.
			for i := 1; i < len(ys); i++ {
				if ys[i].Bottom > ys[i-1].Top+0.5 {
					t.Errorf("%s: y labels %q (%.1f-%.1f) and %q (%.1f-%.1f) overlap", at,
						ys[i-1].Text, ys[i-1].Top, ys[i-1].Bottom, ys[i].Text, ys[i].Top, ys[i].Bottom)
				}
			}
			for i := 1; i < len(xs); i++ {
				if xs[i].Left < xs[i-1].Right-0.5 {
					t.Errorf("%s: x labels %q (%.1f-%.1f) and %q (%.1f-%.1f) overlap", at,
						xs[i-1].Text, xs[i-1].Left, xs[i-1].Right, xs[i].Text, xs[i].Left, xs[i].Right)
				}
			}
		}
	}
}
