package views

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

func f64(v float64) *float64 { return &v }

// series builds a one-column time series at minute offsets; NaN stands for
// NULL.
func series(name string, minutes []int, vals []float64) *panel.Result {
	r := &panel.Result{Columns: []string{"t", name}}
	for i, m := range minutes {
		v := num(vals[i])
		if math.IsNaN(vals[i]) {
			v = null()
		}
		r.Rows = append(r.Rows, []panel.Value{tm(t0.Add(time.Duration(m) * time.Minute)), v})
	}
	return r
}

// TestSegments: a NULL breaks a line, and so does a step longer than the
// limit; a step exactly at the limit does not.
func TestSegments(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	tests := []struct {
		name  string
		xs    []float64
		ys    []float64
		limit float64
		want  []int // points per run
	}{
		{"regular", []float64{0, 1, 2, 3}, []float64{1, 2, 3, 4}, 2, []int{4}},
		{"null", []float64{0, 1, 2, 3, 4}, []float64{1, 2, nan, 4, 5}, 2, []int{2, 2}},
		{"leading and trailing nulls", []float64{0, 1, 2, 3}, []float64{nan, 2, 3, nan}, 2, []int{2}},
		{"long step", []float64{0, 1, 2, 5, 6}, []float64{1, 1, 1, 1, 1}, 2, []int{3, 2}},
		{"step at the limit", []float64{0, 1, 3, 4}, []float64{1, 1, 1, 1}, 2, []int{4}},
		{"no limit", []float64{0, 1, 100}, []float64{1, 1, 1}, math.Inf(1), []int{3}},
		{"limit unset", []float64{0, 1, 100}, []float64{1, 1, 1}, 0, []int{3}},
		{"lone point", []float64{0, 1, 2}, []float64{nan, 1, nan}, 2, []int{1}},
		{"all null", []float64{0, 1}, []float64{nan, nan}, 2, nil},
	}
	for _, tt := range tests {
		var pts []point
		for i, x := range tt.xs {
			pts = append(pts, point{x: x, y: tt.ys[i], ok: !math.IsNaN(tt.ys[i])})
		}
		var got []int
		for _, run := range segments(pts, tt.limit) {
			got = append(got, len(run))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got runs %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestMedianStep: the default gap is twice the median step, so that one
// late sample does not break a line but a stretch of missing ones does.
func TestMedianStep(t *testing.T) {
	t.Parallel()
	tests := []struct {
		xs   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{5}, 0},
		{[]float64{0, 10}, 10},
		{[]float64{0, 60, 120, 180, 600, 660}, 60},
		{[]float64{0, 1, 11}, 1},   // the lower middle of an even count
		{[]float64{0, 0, 0, 5}, 5}, // repeated x values are no step
	}
	for _, tt := range tests {
		var pts []point
		for _, x := range tt.xs {
			pts = append(pts, point{x: x, ok: true})
		}
		if got := medianStep(pts); got != tt.want {
			t.Errorf("medianStep(%v): got %v, want %v", tt.xs, got, tt.want)
		}
	}
}

// TestTimeseriesGaps: rendered lines break at a NULL and at a long step by
// default, and the gap option moves or removes the step rule.
func TestTimeseriesGaps(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	minutes := []int{0, 1, 2, 3, 10, 11, 12}
	tests := []struct {
		name      string
		vals      []float64
		gap       string
		wantLines int
		wantDots  int
		wantNote  bool
	}{
		{"default breaks at the long step", []float64{1, 2, 3, 4, 5, 6, 7}, "", 2, 0, false},
		{"null and step", []float64{1, nan, 3, 4, 5, 6, 7}, "", 2, 1, false},
		{"gap wider than the step", []float64{1, 2, 3, 4, 5, 6, 7}, "10m", 1, 0, false},
		{"gap none", []float64{1, 2, 3, 4, 5, 6, 7}, "none", 1, 0, false},
		{"gap none keeps null breaks", []float64{1, 2, nan, 4, 5, 6, 7}, "none", 2, 0, false},
		{"gap narrower than every step", []float64{1, 2, 3, 4, 5, 6, 7}, "30s", 0, 7, false},
		{"bad gap falls back to the default", []float64{1, 2, 3, 4, 5, 6, 7}, "later", 2, 0, true},
	}
	for _, tt := range tests {
		d := def(panel.Timeseries, panel.Options{Gap: tt.gap})
		out := render(t, d, series("v", minutes, tt.vals))
		nodes := parseFragment(t, out)
		if got := len(find(nodes, "polyline", "line")); got != tt.wantLines {
			t.Errorf("%s: got %d lines, want %d", tt.name, got, tt.wantLines)
		}
		if got := len(find(nodes, "path", "dot")); got != tt.wantDots {
			t.Errorf("%s: got %d dots, want %d", tt.name, got, tt.wantDots)
		}
		notes := find(nodes, "p", "chart-note")
		if (len(notes) == 1) != tt.wantNote {
			t.Errorf("%s: got notes %d, want note %v", tt.name, len(notes), tt.wantNote)
		}
		if tt.wantNote && !strings.Contains(text(notes[0]), `"later"`) {
			t.Errorf("%s: note %q does not name the bad value", tt.name, text(notes[0]))
		}
	}
}

// TestValueAxis: the axis of counts and money starts at zero, other data
// get an automatic range, whole numbers get whole ticks, and min and max
// fix the ends (ignored, with a note, when min is not below max).
func TestValueAxis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		vals      []float64
		o         panel.Options
		zero      bool // includeZero, as bars ask
		wantLo    float64
		wantHi    float64
		wantTicks []float64
		wantNote  bool
	}{
		{"counts start at zero", []float64{95, 100, 103}, panel.Options{}, false, 0, 150, []float64{0, 50, 100, 150}, false},
		{"money starts at zero", []float64{95.5, 100.25, 103}, panel.Options{Prefix: "$"}, false, 0, 150, nil, false},
		{"money by unit", []float64{95.5, 103.5}, panel.Options{Unit: " €"}, false, 0, 150, nil, false},
		{"yen", []float64{95.5, 103.5}, panel.Options{Prefix: "¥"}, false, 0, 150, nil, false},
		{"measures are automatic", []float64{95.5, 100.25, 103}, panel.Options{Unit: " ms"}, false, 94, 104, nil, false},
		{"negative counts are automatic", []float64{-3, 5, 7}, panel.Options{}, false, -5, 10, nil, false},
		{"small counts get whole ticks", []float64{0, 1, 2}, panel.Options{}, false, 0, 2, []float64{0, 1, 2}, false},
		{"one count", []float64{1, 1}, panel.Options{}, false, 0, 1, []float64{0, 1}, false},
		{"fractions may get half ticks", []float64{0, 1.5, 2}, panel.Options{}, false, 0, 2, []float64{0, 0.5, 1, 1.5, 2}, false},
		{"bars include zero", []float64{95.5, 103.5}, panel.Options{Unit: " ms"}, true, 0, 150, nil, false},
		{"min", []float64{95.5, 103.5}, panel.Options{Min: f64(90)}, false, 90, 105, nil, false},
		{"max below the data", []float64{5, 7, 30}, panel.Options{Max: f64(10)}, false, 0, 10, []float64{0, 2, 4, 6, 8, 10}, false},
		{"min and max", []float64{5, 7, 30}, panel.Options{Min: f64(0), Max: f64(7)}, false, 0, 7, []float64{0, 2, 4, 6}, false},
		{"fractional max keeps fractional ticks", []float64{1, 2}, panel.Options{Max: f64(2.5)}, false, 0, 2.5, []float64{0, 0.5, 1, 1.5, 2, 2.5}, false},
		{"min above max is ignored", []float64{1, 5}, panel.Options{Min: f64(10), Max: f64(2)}, false, 0, 5, nil, true},
	}
	for _, tt := range tests {
		s := newValueStats()
		for _, v := range tt.vals {
			s.add(v)
		}
		a, note := valueAxis(s, tt.o, tt.zero)
		if a.Lo() != tt.wantLo || a.Hi() != tt.wantHi {
			t.Errorf("%s: got axis %v..%v (ticks %v), want %v..%v", tt.name, a.Lo(), a.Hi(), a.Ticks, tt.wantLo, tt.wantHi)
		}
		if tt.wantTicks != nil && !reflect.DeepEqual(a.Ticks, tt.wantTicks) {
			t.Errorf("%s: got ticks %v, want %v", tt.name, a.Ticks, tt.wantTicks)
		}
		if (note != "") != tt.wantNote {
			t.Errorf("%s: got note %q, want one: %v", tt.name, note, tt.wantNote)
		}
		if s.integer {
			for _, tick := range a.Ticks {
				if tick != math.Trunc(tick) && tt.o.Max == nil {
					t.Errorf("%s: tick %v of whole-numbered data is not whole", tt.name, tick)
				}
			}
		}
	}
}

// TestTimeseriesAxisRendered: a count chart's rendered y labels start at 0
// and never show a fraction.
func TestTimeseriesAxisRendered(t *testing.T) {
	t.Parallel()
	out := render(t, def(panel.Timeseries, panel.Options{}), series("n", []int{0, 1, 2, 3}, []float64{2, 3, 3, 2}))
	var labels []string
	for _, n := range find(find(parseFragment(t, out), "div", "yl"), "span", "") {
		labels = append(labels, text(n))
	}
	if want := []string{"0", "1", "2", "3"}; !reflect.DeepEqual(labels, want) {
		t.Errorf("y labels: got %v, want %v", labels, want)
	}
}

// TestChartLegend: a legend only when it tells series apart (more than
// one), and for bars with thresholds, a key to the threshold colours
// instead.
func TestChartLegend(t *testing.T) {
	t.Parallel()
	two := &panel.Result{Columns: []string{"t", "a", "b"}, Rows: [][]panel.Value{
		{tm(t0), num(1), num(2)}, {tm(t0.Add(time.Minute)), num(3), num(4)},
	}}
	oneBar := &panel.Result{Columns: []string{"k", "a"}, Rows: [][]panel.Value{{txt("x"), num(1)}, {txt("y"), num(5)}}}
	th := &panel.Thresholds{Base: "blue", Steps: []panel.Step{{Value: 3, Color: "red", Label: "high"}}}
	tests := []struct {
		name string
		kind panel.Kind
		o    panel.Options
		r    *panel.Result
		want []string
	}{
		{"one series", panel.Timeseries, panel.Options{}, series("v", []int{0, 1}, []float64{1, 2}), nil},
		{"two series", panel.Timeseries, panel.Options{}, two, []string{"a", "b"}},
		{"one bar series", panel.Bar, panel.Options{}, oneBar, nil},
		{"two bar series", panel.Bar, panel.Options{}, &panel.Result{Columns: []string{"k", "a", "b"}, Rows: [][]panel.Value{{txt("x"), num(1), num(2)}}}, []string{"a", "b"}},
		{"bar thresholds", panel.Bar, panel.Options{Thresholds: th}, oneBar, []string{"< 3", "≥ 3 high"}},
	}
	for _, tt := range tests {
		var got []string
		for _, li := range find(parseFragment(t, render(t, def(tt.kind, tt.o), tt.r)), "li", "") {
			got = append(got, text(li))
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: got legend %q, want %q", tt.name, got, tt.want)
		}
	}
}

// TestBarLabels: every bar is labelled while labels fit whole or
// shortened to a readable length; past that, labels are thinned on purpose
// to every k-th, and each shortened label carries its full text as a title.
func TestBarLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cats      []string
		band      float64
		wantEvery int
		wantRunes int
	}{
		{"all fit", []string{"mon", "tue", "wed"}, 60, 1, 3},
		{"shortened", []string{"Monday", "Tuesday", "Wednesday"}, 50, 1, 6},
		{"capped", []string{strings.Repeat("x", 40)}, 500, 1, maxLabelRunes},
		{"thinned to every 2nd", []string{"2026-03-14", "2026-03-15"}, 30, 2, 7},
		{"thinned to every 3rd", []string{"2026-03-14", "2026-03-15"}, 15, 3, 5},
		{"short labels never thinned", []string{"a", "b"}, 14, 1, 1},
	}
	for _, tt := range tests {
		every, runes := barLabels(tt.cats, tt.band)
		if every != tt.wantEvery || runes != tt.wantRunes {
			t.Errorf("%s: got every %d, %d runes; want every %d, %d runes", tt.name, every, runes, tt.wantEvery, tt.wantRunes)
		}
		// Whatever is shown fits its room.
		if room := float64(every)*tt.band - 6; float64(runes)*fontW > room {
			t.Errorf("%s: %d runes do not fit %v units", tt.name, runes, room)
		}
	}

	// Rendered: seven weekdays in a narrow panel are all labelled, and a
	// shortened one names itself in full on hover.
	days := []string{"Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"}
	r := &panel.Result{Columns: []string{"day", "n"}}
	for i, d := range days {
		r.Rows = append(r.Rows, []panel.Value{txt(d), num(float64(i + 1))})
	}
	d := def(panel.Bar, panel.Options{})
	d.Width = 1
	nodes := parseFragment(t, render(t, d, r))
	labels := find(find(nodes, "div", "xl"), "span", "")
	if len(labels) != len(days) {
		t.Fatalf("got %d labels, want all %d", len(labels), len(days))
	}
	for i, l := range labels {
		title, ok := attr(l, "title")
		if ok && title != days[i] {
			t.Errorf("label %d: title %q, want %q", i, title, days[i])
		}
		if !ok && text(l) != days[i] {
			t.Errorf("label %d: %q shortened without a title", i, text(l))
		}
	}
}

// TestBarThresholds: each bar takes the class of the step its value
// reaches (base below every step), and its title names the step, so that
// colour is not the only cue.
func TestBarThresholds(t *testing.T) {
	t.Parallel()
	th := &panel.Thresholds{Steps: []panel.Step{{Value: 50, Color: "orange"}, {Value: 100, Color: "red", Label: "too many"}}}
	r := &panel.Result{Columns: []string{"queue", "jobs"}, Rows: [][]panel.Value{
		{txt("a"), num(10)}, {txt("b"), num(50)}, {txt("c"), num(99.5)}, {txt("d"), num(100)}, {txt("e"), null()},
	}}
	bars := find(parseFragment(t, render(t, def(panel.Bar, panel.Options{Thresholds: th}), r)), "rect", "bar")
	want := []struct{ class, title string }{
		{"th-green", "a · jobs: 10 (< 50)"},
		{"th-orange", "b · jobs: 50 (≥ 50)"},
		{"th-orange", "c · jobs: 99.5 (≥ 50)"},
		{"th-red", "d · jobs: 100 (too many)"},
	}
	if len(bars) != len(want) {
		t.Fatalf("got %d bars, want %d", len(bars), len(want))
	}
	for i, b := range bars {
		if !hasClass(b, want[i].class) {
			c, _ := attr(b, "class")
			t.Errorf("bar %d: class %q, want %s", i, c, want[i].class)
		}
		if got := text(b); got != want[i].title {
			t.Errorf("bar %d: title %q, want %q", i, got, want[i].title)
		}
	}
	// Without thresholds, no threshold class.
	for _, b := range find(parseFragment(t, render(t, def(panel.Bar, panel.Options{}), r)), "rect", "bar") {
		if c, _ := attr(b, "class"); strings.Contains(c, "th-") {
			t.Errorf("bar without thresholds: class %q", c)
		}
	}
}

// TestChartsNoRows: a chart whose query returned no rows says so.
func TestChartsNoRows(t *testing.T) {
	t.Parallel()
	for _, k := range []panel.Kind{panel.Timeseries, panel.Bar} {
		out := render(t, def(k, panel.Options{}), &panel.Result{Columns: []string{"t", "v"}})
		if e := find(parseFragment(t, out), "p", "empty"); len(e) != 1 || text(e[0]) != "No rows yet" {
			t.Errorf("%s: got %q, want No rows yet", k, out)
		}
	}
}

// TestMinMaxClip: with min or max set, the plot svg clips the marks (class
// clip, overflow hidden in the stylesheet) without an id (a clipPath needs
// one, and htmx's morph rebuilds SVG elements with ids as HTML); without,
// it does not, so a line on the plot's edge is drawn whole. Either way
// every mark is in the one plot svg, in its units.
func TestMinMaxClip(t *testing.T) {
	t.Parallel()
	r := series("v", []int{0, 1, 2}, []float64{1, 50, 2})
	out := render(t, def(panel.Timeseries, panel.Options{Max: f64(10)}), r)
	nodes := parseFragment(t, out)
	plots := find(nodes, "svg", "plot")
	if len(plots) != 1 || !hasClass(plots[0], "clip") {
		t.Fatalf("want one plot svg of class clip: %s", out)
	}
	if n := len(find(plots, "polyline", "line")); n != 1 {
		t.Errorf("got %d lines in the plot, want 1", n)
	}
	if strings.Contains(out, "clipPath") || strings.Contains(out, "url(#") || len(find(plots, "svg", "")) != 1 {
		t.Errorf("want no clip path, no id reference and no nested svg: %s", out)
	}
	walk(plots, func(n *html.Node) {
		if _, ok := attr(n, "id"); ok {
			t.Errorf("an element with an id in the plot: %s", out)
		}
	})
	plots = find(parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r)), "svg", "plot")
	if len(plots) != 1 || hasClass(plots[0], "clip") {
		t.Errorf("no min or max: want one plot svg that does not clip")
	}
}

// TestHoverData: the hover attribute holds, per point, its x, its time as
// the tooltip shows it and each series' exact value (empty for NULL), with
// the panel's prefix and unit once.
func TestHoverData(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"t", "p50", "p99"}, Rows: [][]panel.Value{
		{tm(t0), num(1234.5), num(2)},
		{tm(t0.Add(5 * time.Minute)), null(), num(3.25)},
		{tm(t0.Add(10 * time.Minute)), num(7), num(4)},
	}}
	svg := find(parseFragment(t, render(t, def(panel.Timeseries, panel.Options{Unit: " ms"}), r)), "svg", "plot")[0]
	h, ok := attr(svg, "data-hover")
	if !ok {
		t.Fatal("no data-hover on the chart")
	}
	lines := strings.Split(h, "\n")
	if len(lines) != 5 {
		t.Fatalf("got %d hover lines, want 5: %q", len(lines), h)
	}
	if xs := strings.Fields(lines[0]); len(xs) != 2+3 {
		t.Errorf("x line: got %q, want top, bottom and 3 x", lines[0])
	}
	want := []string{
		"2026-03-14\t12:00\t12:05\t12:10",
		"\t ms",
		"p50\t1,234.5\t\t7",
		"p99\t2\t3.25\t4",
	}
	if !reflect.DeepEqual(lines[1:], want) {
		t.Errorf("hover: got %q, want %q", lines[1:], want)
	}
}

// TestHoverDataOnAxis: NULLs before the first value and after the last lie
// off the x axis and get no hover entry.
func TestHoverDataOnAxis(t *testing.T) {
	t.Parallel()
	nan := math.NaN()
	r := series("v", []int{0, 1, 2, 3, 4}, []float64{nan, 1, 2, 3, nan})
	svg := find(parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r)), "svg", "plot")[0]
	h, _ := attr(svg, "data-hover")
	lines := strings.Split(h, "\n")
	if got, want := lines[1], "2026-03-14\t12:01\t12:02\t12:03"; got != want {
		t.Errorf("hover times: got %q, want %q", got, want)
	}
}

// TestHoverLabels: times in the hover data are exact and compact: the date
// once when all share it, seconds only when some point has them, dates
// alone for daily buckets; in the dashboard's zone.
func TestHoverLabels(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Skip(err)
	}
	at := func(ts ...time.Time) []float64 {
		var xs []float64
		for _, x := range ts {
			xs = append(xs, timeUnix(x))
		}
		return xs
	}
	day := 24 * time.Hour
	tests := []struct {
		name   string
		xs     []float64
		kind   panel.ValueKind
		loc    *time.Location
		head   string
		labels []string
	}{
		{"one day", at(t0, t0.Add(time.Hour)), panel.Time, nil, "2026-03-14", []string{"12:00", "13:00"}},
		{"seconds", at(t0, t0.Add(90*time.Second)), panel.Time, nil, "2026-03-14", []string{"12:00:00", "12:01:30"}},
		{"days", at(t0.Add(-12*time.Hour), t0.Add(12*time.Hour)), panel.Time, nil, "", []string{"2026-03-14", "2026-03-15"}},
		{"across days", at(t0, t0.Add(day)), panel.Time, nil, "", []string{"2026-03-14 12:00", "2026-03-15 12:00"}},
		{"zone", at(t0), panel.Time, berlin, "2026-03-14", []string{"13:00"}},
		{"numbers", []float64{1, 2.5, 12345}, panel.Number, nil, "", []string{"1", "2.5", "12,345"}},
	}
	for _, tt := range tests {
		head, labels := hoverLabels(tt.xs, tt.kind, tt.loc)
		if head != tt.head || !reflect.DeepEqual(labels, tt.labels) {
			t.Errorf("%s: got %q %q, want %q %q", tt.name, head, labels, tt.head, tt.labels)
		}
	}
}

// TestHoverDataBounded: points that fall on the same whole x share one
// hover entry, so the attribute stays within the plot's width.
func TestHoverDataBounded(t *testing.T) {
	t.Parallel()
	r := &panel.Result{Columns: []string{"t", "v"}}
	for i := range 5000 {
		r.Rows = append(r.Rows, []panel.Value{tm(t0.Add(time.Duration(i) * time.Second)), num(float64(i % 7))})
	}
	svg := find(parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), r)), "svg", "plot")[0]
	h, _ := attr(svg, "data-hover")
	xs := strings.Fields(strings.SplitN(h, "\n", 2)[0])
	if n := len(xs) - 2; n > 721 || n < 100 {
		t.Errorf("got %d hover points for a 720-unit chart, want at most one per whole unit (0 to 720)", n)
	}
	// The newest point of the last pixel is the one shown.
	last := strings.Split(strings.Split(h, "\n")[3], "\t")
	if got, want := last[len(last)-1], ftoa(float64(4999%7)); got != want {
		t.Errorf("last hover value: got %q, want %q", got, want)
	}
}

// TestPct: label positions are percentages to a hundredth, written as
// plain numbers (the stylesheet multiplies them by 1% or 1cqw).
func TestPct(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want string
	}{
		{0, "0"}, {1, "100"}, {0.5, "50"}, {1.0 / 3, "33.33"}, {2.0 / 3, "66.67"}, {-0.000001, "0"}, {0.123456, "12.35"},
	}
	for _, tt := range tests {
		if got := pct(tt.v); got != tt.want {
			t.Errorf("pct(%v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

// styleVars reads the custom properties of an element's style attribute.
func styleVars(t *testing.T, n *html.Node) map[string]float64 {
	t.Helper()
	st, _ := attr(n, "style")
	out := map[string]float64{}
	for _, decl := range strings.Split(st, ";") {
		k, v, ok := strings.Cut(strings.TrimSpace(decl), ":")
		if !ok {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil {
			t.Fatalf("style %q: %s is not a number", st, k)
		}
		out[k] = f
	}
	return out
}

// TestChartLabelPlaces: the HTML labels sit where the plot draws what they
// label. Each y label's --y is its grid line's y in percent of the plot's
// height (from the top); x labels lie on the plot (0-100) in order, no
// closer than the room --w of the row (to the hundredth they are written
// to); a bar's value label is at the top
// of its bar and the middle of it; the plot's viewBox is the panel's cells
// and the chart names its longest y label's length in --yw.
func TestChartLabelPlaces(t *testing.T) {
	t.Parallel()
	ts := find(parseFragment(t, render(t, def(panel.Timeseries, panel.Options{}), series("v", []int{0, 10, 20, 30, 40, 50, 60}, []float64{3, 1500, 7, 9, 2, 4, 6}))), "div", "chart")[0]
	nodes := []*html.Node{ts}
	plot := find(nodes, "svg", "plot")[0]
	if vb, _ := attr(plot, "viewBox"); vb != "0 0 720 150" {
		t.Fatalf("viewBox %q, want 0 0 720 150 (two cells wide, one high)", vb)
	}
	if ar, _ := attr(plot, "preserveAspectRatio"); ar != "none" {
		t.Errorf("preserveAspectRatio %q, want none: the plot stretches", ar)
	}
	grid, _ := attr(find(nodes, "path", "gl")[0], "d")
	var gridYs []float64
	for _, seg := range strings.Split(strings.TrimPrefix(grid, "M"), "M") {
		var y float64
		if _, err := fmt.Sscanf(seg, "0 %gH720", &y); err != nil {
			t.Fatalf("grid path %q: %v", grid, err)
		}
		gridYs = append(gridYs, y)
	}
	ys := find(find(nodes, "div", "yl"), "span", "")
	if len(ys) != len(gridYs) || len(ys) < 3 {
		t.Fatalf("%d y labels for %d grid lines, want one each (3 or more)", len(ys), len(gridYs))
	}
	longest := 0
	for i, l := range ys {
		if got, want := styleVars(t, l)["--y"], gridYs[i]/150*100; math.Abs(got-want) > 0.01 {
			t.Errorf("y label %q at --y %v, want its grid line's %v", text(l), got, want)
		}
		longest = max(longest, len([]rune(text(l))))
	}
	if got := styleVars(t, ts)["--yw"]; got != float64(longest) {
		t.Errorf("--yw %v, want the longest y label's %d characters", got, longest)
	}
	row := find(nodes, "div", "xl")[0]
	room := styleVars(t, row)["--w"]
	xs := find([]*html.Node{row}, "span", "")
	if len(xs) < 3 || room <= 0 {
		t.Fatalf("%d x labels with room %v, want 3 or more and a room", len(xs), room)
	}
	for i, l := range xs {
		x := styleVars(t, l)["--x"]
		if x < 0 || x > 100 {
			t.Errorf("x label %q at %v, want on the plot (0-100)", text(l), x)
		}
		if i > 0 {
			// Both are rounded to a hundredth.
			if prev := styleVars(t, xs[i-1])["--x"]; x-prev < room-0.011 {
				t.Errorf("x labels %q and %q %v apart, want at least the room %v", text(xs[i-1]), text(l), x-prev, room)
			}
		}
	}

	r := &panel.Result{Columns: []string{"k", "n"}, Rows: [][]panel.Value{{txt("a"), num(10)}, {txt("b"), num(40)}}}
	bar := find(parseFragment(t, render(t, def(panel.Bar, panel.Options{}), r)), "div", "chart")[0]
	if !hasClass(bar, "vals") {
		t.Errorf("bar chart with value labels: want class vals (room above the tallest)")
	}
	rects := find([]*html.Node{bar}, "rect", "bar")
	vals := find(find([]*html.Node{bar}, "div", "vl"), "span", "")
	if len(rects) != 2 || len(vals) != 2 {
		t.Fatalf("%d bars and %d value labels, want 2 each", len(rects), len(vals))
	}
	for i, b := range rects {
		var x, y, w float64
		for k, p := range map[string]*float64{"x": &x, "y": &y, "width": &w} {
			v, _ := attr(b, k)
			*p, _ = strconv.ParseFloat(v, 64)
		}
		at := styleVars(t, vals[i])
		if math.Abs(at["--x"]-(x+w/2)/720*100) > 0.01 || math.Abs(at["--y"]-y/150*100) > 0.01 {
			t.Errorf("value label %q at %v, want the top middle of its bar (%v %v %v)", text(vals[i]), at, x, y, w)
		}
	}
}
