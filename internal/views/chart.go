package views

import (
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/a-h/templ"

	"github.com/livedash/dashboard/internal/panel"
)

// Chart geometry. A chart is HTML around one SVG: the plot, in its own
// units (cellW × cellH per grid cell of the panel), which CSS stretches to
// fill the room the panel has (preserveAspectRatio="none"); its lines keep
// their width (vector-effect: non-scaling-stroke). The text (axis and value
// labels) is HTML placed by percentages of the plot, so it keeps the
// stylesheet's size on a phone and on a TV. The units are about the pixels
// of a desktop at 12 px type, which the label thinning assumes.
const (
	cellW = 360
	cellH = 150
	fontW = 7 // average glyph width of axis labels at 12 units
	// padRight is left out of the width the x labels are thinned for:
	// the last label may reach past the plot.
	padRight = 16
	// paletteSize is the number of distinct series colours in the
	// stylesheet (classes s0 … s9).
	paletteSize = 10
)

// chart is everything a chart draws, already formatted so that the
// template only copies strings: the plot's marks in its units, the labels
// in percentages of the plot.
type chart struct {
	ViewBox string // of the plot svg
	// YWidth is the style of the chart: --yw, the characters of the
	// longest y label, which the stylesheet sizes their column by.
	YWidth  templ.SafeCSS
	YLabels []chartText // value axis labels, Y set
	Grid    string      // path of the horizontal grid lines
	XLabels []chartText // X set
	// XRoom is the style of the x labels' row: --w, the room of one
	// label (the distance between two) in percent of the plot's width, a
	// number as --x and --y are.
	XRoom templ.SafeCSS
	Axis  string // path of the bottom axis line
	Zero  string // path of the zero line; empty for none
	// Clip, when set, keeps the marks inside the plot: a panel's min or
	// max can cut values off.
	Clip   bool
	Lines  []polyline
	Dots   []dot
	Bars   []rect
	Values []chartText // value labels above bars, X and Y set
	// Hover is the data-hover attribute of the plot, what static/chart.js
	// shows under the pointer (see hoverData); empty for none.
	Hover  string
	Legend []legendItem
	Empty  string // shown instead of the chart when set
	// Note explains an option the chart could not use.
	Note string
}

// chartText is an HTML label of a chart at X (percent of the plot's
// width from its left, a number) and Y (percent of its height from its
// top);
// Title, when set, is its full text, shown on hover because Text is
// shortened.
type chartText struct{ X, Y, Text, Title string }

// Style is the label's position as the custom properties --x and --y,
// which the stylesheet places it by.
func (t chartText) Style() templ.SafeCSS {
	switch {
	case t.X == "":
		return templ.SafeCSS("--y:" + t.Y)
	case t.Y == "":
		return templ.SafeCSS("--x:" + t.X)
	}
	return templ.SafeCSS("--x:" + t.X + ";--y:" + t.Y)
}

type polyline struct{ Class, Points string }

type dot struct{ Class, X, Y string }

type rect struct{ Class, X, Y, W, H, Title string }

type legendItem struct{ Class, Name string }

// seriesClass is the colour class of the i-th series.
func seriesClass(i int) string { return "s" + strconv.Itoa(i%paletteSize) }

// frame is the plot: its viewBox, whose edges are the plot's edges, and
// room, its width in units less the y labels' column, for thinning the x
// labels.
type frame struct {
	w, h                     float64 // viewBox
	left, right, top, bottom float64 // plot edges: 0, w, 0, h
	room                     float64
	yWidth                   templ.SafeCSS // the chart's --yw
}

func newFrame(def *panel.Def, yLabels []string) frame {
	w := float64(cellW * clampSpan(def.Width))
	h := float64(cellH * clampSpan(def.Height))
	longest := 1
	for _, l := range yLabels {
		longest = max(longest, utf8.RuneCountInString(l))
	}
	return frame{
		w: w, h: h, right: w, bottom: h,
		room:   w - math.Min(float64(longest*fontW+10), w/3) - padRight,
		yWidth: templ.SafeCSS("--yw:" + strconv.Itoa(longest)),
	}
}

func (f frame) viewBox() string {
	return "0 0 " + coord(f.w) + " " + coord(f.h)
}

func (f frame) y(a axis, v float64) float64 {
	return f.bottom - (v-a.Lo())/(a.Hi()-a.Lo())*(f.bottom-f.top)
}

// xPct and yPct are a plot coordinate as a percentage of the plot's
// width or height, for the HTML labels.
func (f frame) xPct(x float64) string { return pct(x / f.w) }
func (f frame) yPct(y float64) string { return pct(y / f.h) }

// pct writes a fraction as a percentage to a hundredth (a pixel on a 4K
// screen), a number without the sign: the stylesheet multiplies it by 1%
// or by 1cqw.
func pct(v float64) string {
	r := math.Round(v*1e4) / 100
	if r == 0 {
		r = 0 // no "-0"
	}
	return strconv.FormatFloat(r, 'f', -1, 64)
}

// hline is the path of a horizontal line across the plot at y.
func (f frame) hline(y float64) string { return "M0 " + coord(y) + "H" + coord(f.w) }

// yAxis fills the grid lines, labels and bottom axis for a.
func (f frame) yAxis(c *chart, a axis, labels []string) {
	var grid strings.Builder
	for i, t := range a.Ticks {
		y := f.y(a, t)
		grid.WriteString(f.hline(y))
		c.YLabels = append(c.YLabels, chartText{Y: f.yPct(y), Text: labels[i]})
	}
	c.Grid = grid.String()
	c.Axis = f.hline(f.bottom)
	if a.Lo() < 0 && a.Hi() > 0 {
		c.Zero = f.hline(f.y(a, 0))
	}
	c.ViewBox = f.viewBox()
	c.YWidth = f.yWidth
}

// xRoom is the style of the x labels' row: the smallest distance between
// two labels at xs (plot units), the room of one; the plot's width for a
// single label.
func (f frame) xRoom(xs []float64) templ.SafeCSS {
	room := f.w
	for i := 1; i < len(xs); i++ {
		room = math.Min(room, xs[i]-xs[i-1])
	}
	return templ.SafeCSS("--w:" + f.xPct(room))
}

func axisLabels(a axis, o panel.Options) []string {
	out := make([]string, len(a.Ticks))
	for i, t := range a.Ticks {
		out[i] = a.label(t, o)
	}
	return out
}

// point is one (x, y) sample; ok is false for a gap (null value).
type point struct {
	x, y float64
	ok   bool
}

// line is one named series of a time series chart, in x order.
type line struct {
	name string
	pts  []point
}

// timeseriesChart reads a result in wide form (x, series…) or long form
// (x, series name, value) and lays out the line chart.
func timeseriesChart(def *panel.Def, r *panel.Result, loc *time.Location) chart {
	if len(r.Columns) < 2 {
		return chart{Empty: "A time series needs a time or number column followed by value columns."}
	}
	if len(r.Rows) == 0 {
		return chart{Empty: noRows}
	}
	xKind, ok := xKindOf(r)
	if !ok {
		return chart{Empty: "The first column must be a time or a number."}
	}
	var lines []line
	axisLoc := loc
	if xKind == panel.Time && xDates(r) {
		axisLoc = time.UTC // wall clock readings: no zone to move them to
	}
	if isLongForm(r) {
		lines = longLines(r, xKind, loc)
	} else {
		lines = wideLines(r, xKind)
	}
	if len(lines) == 0 {
		return chart{Empty: "No numeric columns to draw."}
	}
	// Ranges over real points only.
	xlo, xhi := math.Inf(1), math.Inf(-1)
	ys := newValueStats()
	xInteger := true
	for _, l := range lines {
		for _, p := range l.pts {
			if !p.ok {
				continue
			}
			xlo, xhi = math.Min(xlo, p.x), math.Max(xhi, p.x)
			xInteger = xInteger && p.x == math.Trunc(p.x)
			ys.add(p.y)
		}
	}
	if ys.n == 0 {
		return chart{Empty: "No values to draw yet: every value is NULL."}
	}
	var c chart
	if len(lines) > 1 {
		for i, l := range lines {
			c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: l.name})
		}
	}
	o := def.Options
	ya, note := valueAxis(ys, o, false)
	labels := axisLabels(ya, o)
	f := newFrame(def, labels)
	f.yAxis(&c, ya, labels)
	c.Clip = o.Min != nil || o.Max != nil

	// The x axis spans the data exactly; a single instant sits in the middle.
	xspan := xhi - xlo
	xOf := func(x float64) float64 {
		if xspan == 0 {
			return (f.left + f.right) / 2
		}
		return f.left + (x-xlo)/xspan*(f.right-f.left)
	}
	maxTicks := max(2, int(f.room/75))
	var tickXs []float64
	tick := func(x float64, text string) {
		tickXs = append(tickXs, xOf(x))
		c.XLabels = append(c.XLabels, chartText{X: f.xPct(xOf(x)), Text: text})
	}
	if xKind == panel.Time {
		lo, hi := unixTime(xlo), unixTime(xhi)
		for _, t := range timeTicks(lo, hi, maxTicks, axisLoc) {
			tick(timeUnix(t.T), t.Label)
		}
		if len(c.XLabels) == 0 {
			tick(xlo, formatTime(lo, axisLoc))
		}
	} else {
		xa := niceAxis(xlo, xhi)
		if xInteger {
			xa = integerAxis(xlo, xhi)
		}
		for _, t := range xa.Ticks {
			if t < xlo || t > xhi {
				continue
			}
			tick(t, xa.label(t, panel.Options{}))
		}
	}
	c.XRoom = f.xRoom(tickXs)

	limit, err := panel.ParseGap(o.Gap, xKind == panel.Time)
	if err != nil {
		note = joinNotes(note, "Option "+err.Error()+"; lines break at steps over twice the median step.")
	}
	for i, l := range lines {
		cls := seriesClass(i)
		gap := limit
		if gap == 0 {
			gap = 2 * medianStep(l.pts)
		}
		for _, run := range segments(l.pts, gap) {
			// The points as "x,y x,y …", a point on the same spot as the
			// one before it left out.
			pts := make([]byte, 0, len(run)*12)
			var last []byte
			n := 0
			for _, p := range run {
				start := len(pts)
				if n > 0 {
					pts = append(pts, ' ')
				}
				xy := len(pts)
				pts = appendCoord(pts, xOf(p.x))
				pts = append(pts, ',')
				pts = appendCoord(pts, f.y(ya, p.y))
				if n > 0 && string(pts[xy:]) == string(last) {
					pts = pts[:start]
					continue // same spot as the previous point
				}
				last = pts[xy:]
				n++
			}
			if n == 1 {
				x, y, _ := strings.Cut(string(pts), ",")
				c.Dots = append(c.Dots, dot{Class: cls, X: x, Y: y})
			} else {
				c.Lines = append(c.Lines, polyline{Class: cls, Points: string(pts)})
			}
		}
	}
	c.Hover = hoverData(f, lines, xOf, xKind, axisLoc, o)
	c.Note = note
	return c
}

// noRows is what a chart says when its query returned no rows.
const noRows = "No rows yet"

// joinNotes puts two notes in one, either of which may be empty.
func joinNotes(a, b string) string {
	if a == "" || b == "" {
		return a + b
	}
	return a + " " + b
}

// valueStats describes the values a chart draws on its value axis.
type valueStats struct {
	lo, hi  float64
	n       int
	integer bool // every value is a whole number
}

func newValueStats() valueStats {
	return valueStats{lo: math.Inf(1), hi: math.Inf(-1), integer: true}
}

// add counts v in the range and in the kind of the data.
func (s *valueStats) add(v float64) {
	s.lo, s.hi = math.Min(s.lo, v), math.Max(s.hi, v)
	s.n++
	s.integer = s.integer && v == math.Trunc(v)
}

// isMoney reports whether a panel's numbers are money: its prefix or unit
// holds a currency sign ($ € £ ¥ or any other of Unicode's currency
// symbols).
func isMoney(o panel.Options) bool {
	return strings.IndexFunc(o.Prefix+o.Unit, func(r rune) bool { return unicode.Is(unicode.Sc, r) }) >= 0
}

// valueAxis is the value (y) axis of a chart over the values s, for a panel
// with options o. Counts and money start at zero, so that a bar or a line
// is as tall as what it measures: the axis includes zero when every value
// is ≥ 0 and the values are whole numbers or the panel is in a currency
// (or always, with includeZero, as bars need). Other data get an automatic
// range around the values. Whole-numbered data get whole-numbered ticks.
// The options min and max fix the ends; note says why they were ignored
// when min is not below max.
func valueAxis(s valueStats, o panel.Options, includeZero bool) (a axis, note string) {
	lo, hi := s.lo, s.hi
	if s.n == 0 {
		lo, hi = 0, 1
	}
	if includeZero || (lo >= 0 && (s.integer || isMoney(o))) {
		lo, hi = math.Min(lo, 0), math.Max(hi, 0)
	}
	minV, maxV := o.Min, o.Max
	if minV != nil && maxV != nil && !(*minV < *maxV) {
		note = "Options min (" + ftoaPlain(*minV) + ") and max (" + ftoaPlain(*maxV) + ") are ignored: min must be below max."
		minV, maxV = nil, nil
	}
	integer := s.integer
	if minV != nil {
		lo, hi = *minV, math.Max(hi, *minV)
		integer = integer && *minV == math.Trunc(*minV)
	}
	if maxV != nil {
		lo, hi = math.Min(lo, *maxV), *maxV
		integer = integer && *maxV == math.Trunc(*maxV)
	}
	return chooseAxis(lo, hi, integer).clampTo(minV, maxV), note
}

// ftoaPlain writes an option's number as the operator wrote it.
func ftoaPlain(v float64) string { return strconv.FormatFloat(v, 'g', -1, 64) }

// medianStep is the median step between consecutive x values of pts (in x
// order), the lower of the two middle ones for an even count, counting
// only steps forward; 0 without any.
func medianStep(pts []point) float64 {
	steps := make([]float64, 0, len(pts))
	for i := 1; i < len(pts); i++ {
		if d := pts[i].x - pts[i-1].x; d > 0 {
			steps = append(steps, d)
		}
	}
	if len(steps) == 0 {
		return 0
	}
	slices.Sort(steps)
	return steps[(len(steps)-1)/2]
}

// segments splits a series (in x order) into the runs of points its line
// joins: a NULL ends a run, and so does a step longer than limit (0 or
// less: no limit). A line never bridges missing data.
func segments(pts []point, limit float64) [][]point {
	var out [][]point
	start := -1
	for i, p := range pts {
		switch {
		case !p.ok:
			if start >= 0 {
				out = append(out, pts[start:i])
			}
			start = -1
			continue
		case start >= 0 && limit > 0 && p.x-pts[i-1].x > limit:
			out = append(out, pts[start:i])
			start = i
		case start < 0:
			start = i
		}
	}
	if start >= 0 {
		out = append(out, pts[start:])
	}
	return out
}

// hoverData is what static/chart.js shows under the pointer, as one
// attribute: lines separated by "\n", fields by "\t".
//
//	top bottom x0 x1 …           plot top and bottom, then each point's x (plot units, whole)
//	head \t label0 \t label1 …   the x values: head (a date all share, or empty) and one label each
//	prefix \t unit                 the panel's, written once instead of around every value
//	name \t v0 \t v1 …            one line per series: its name and value at each x (empty: none)
//
// Values are formatted exactly (not abbreviated, the panel's decimals);
// the script puts the prefix and unit around them as affix does, a minus
// sign first. Points that fall on the same whole x share one entry, the
// newest, so the attribute never grows beyond the plot's width. Tabs and
// newlines in names become spaces.
func hoverData(f frame, lines []line, xOf func(float64) float64, xKind panel.ValueKind, loc *time.Location, o panel.Options) string {
	// Every x of every series, in order, one per whole plot unit; NULLs
	// before or after every value lie off the axis and are left out.
	var xs []float64
	var px []int
	for _, l := range lines {
		for _, p := range l.pts {
			if at := xOf(p.x); at >= f.left-0.5 && at <= f.right+0.5 {
				xs = append(xs, p.x)
			}
		}
	}
	slices.Sort(xs)
	var kept []float64
	for i, x := range xs {
		if i+1 < len(xs) && (xs[i+1] == x || math.Round(xOf(xs[i+1])) == math.Round(xOf(x))) {
			continue // keep the newest of a pixel
		}
		kept = append(kept, x)
		px = append(px, int(math.Round(xOf(x))))
	}
	var b strings.Builder
	b.Grow(len(kept) * (5 + 8 + 8*len(lines)))
	b.WriteString(strconv.Itoa(int(math.Round(f.top))))
	b.WriteByte(' ')
	b.WriteString(strconv.Itoa(int(math.Round(f.bottom))))
	for _, x := range px {
		b.WriteByte(' ')
		b.WriteString(strconv.Itoa(x))
	}
	b.WriteByte('\n')
	head, labels := hoverLabels(kept, xKind, loc)
	b.WriteString(head)
	for _, l := range labels {
		b.WriteByte('\t')
		b.WriteString(l)
	}
	b.WriteByte('\n')
	b.WriteString(oneLine(o.Prefix))
	b.WriteByte('\t')
	b.WriteString(oneLine(o.Unit))
	for _, l := range lines {
		b.WriteByte('\n')
		b.WriteString(oneLine(l.name))
		// Both in x order: walk them together. A point between two kept
		// x values belongs to the next one (the newest of its pixel).
		j := 0
		for _, x := range kept {
			at := -1 // the newest point of l at or before x since the last kept one
			for ; j < len(l.pts) && l.pts[j].x <= x; j++ {
				at = j
			}
			b.WriteByte('\t')
			if at >= 0 && l.pts[at].ok {
				b.WriteString(formatBare(l.pts[at].y, o.Decimals, false))
			}
		}
	}
	return b.String()
}

// hoverLabels are the x values as the tooltip shows them: exact times in
// loc (to the second only when some time has seconds, dates alone for
// midnights), with the date once in head when all share it; numbers
// unabbreviated.
func hoverLabels(xs []float64, xKind panel.ValueKind, loc *time.Location) (head string, labels []string) {
	labels = make([]string, len(xs))
	if xKind != panel.Time {
		for i, x := range xs {
			labels[i] = formatBare(x, nil, false)
		}
		return "", labels
	}
	loc = zoneOr(loc)
	ts := make([]time.Time, len(xs))
	midnights, seconds, fraction := true, false, false
	for i, x := range xs {
		t := unixTime(x).In(loc)
		ts[i] = t
		midnights = midnights && t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0
		seconds = seconds || t.Second() != 0
		fraction = fraction || t.Nanosecond() != 0
	}
	clock := "15:04"
	switch {
	case fraction:
		clock = "15:04:05.000"
	case seconds:
		clock = "15:04:05"
	}
	layout := time.DateOnly + " " + clock
	switch {
	case midnights:
		layout = time.DateOnly
	case len(ts) > 0 && sameDay(ts[0], ts[len(ts)-1]):
		head, layout = ts[0].Format(time.DateOnly), clock
	}
	for i, t := range ts {
		labels[i] = t.Format(layout)
	}
	return head, labels
}

func sameDay(a, b time.Time) bool {
	ay, am, ad := a.Date()
	by, bm, bd := b.Date()
	return ay == by && am == bm && ad == bd
}

// oneLine replaces the tabs and newlines that separate hover fields.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\t\n\r") {
		return s
	}
	return strings.Map(func(r rune) rune {
		if r == '\t' || r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
}

// unixTime and timeUnix convert between instants and the float x axis
// (seconds since the epoch, with nanoseconds).
func unixTime(x float64) time.Time {
	sec := math.Floor(x)
	return time.Unix(int64(sec), int64(math.Round((x-sec)*1e9))).UTC()
}

func timeUnix(t time.Time) float64 {
	return float64(t.Unix()) + float64(t.Nanosecond())/1e9
}

// xDates reports whether the first column holds dates or timestamps without
// time zone (its first non-null value is one), which the axis lays out as
// they are, in UTC, whatever the zone.
func xDates(r *panel.Result) bool {
	for _, row := range r.Rows {
		if len(row) > 0 && row[0].Kind != panel.Null {
			return isWall(row[0])
		}
	}
	return false
}

// xKindOf is the kind of the first column: Time or Number, from its first
// non-null cell.
func xKindOf(r *panel.Result) (panel.ValueKind, bool) {
	for _, row := range r.Rows {
		if len(row) == 0 {
			continue
		}
		switch row[0].Kind {
		case panel.Null:
			continue
		case panel.Time:
			return panel.Time, true
		case panel.Number:
			return panel.Number, true
		default:
			return 0, false
		}
	}
	return panel.Time, true // no rows: nothing to draw
}

// xOfValue is the x coordinate of a cell of the first column.
func xOfValue(v panel.Value, kind panel.ValueKind) (float64, bool) {
	if v.Kind != kind {
		return 0, false
	}
	if kind == panel.Time {
		return timeUnix(v.Time), true
	}
	return numeric(v)
}

// isLongForm reports whether r is (x, series name, value): three columns
// whose second holds text and never numbers.
func isLongForm(r *panel.Result) bool {
	if len(r.Columns) != 3 {
		return false
	}
	text := false
	for _, row := range r.Rows {
		if len(row) < 2 {
			continue
		}
		switch row[1].Kind {
		case panel.Text:
			text = true
		case panel.Number, panel.Bool, panel.Time:
			return false
		}
	}
	return text
}

// seriesColumns are the columns after the first that hold at least one
// drawable number.
func seriesColumns(r *panel.Result) []int {
	var cols []int
	for c := 1; c < len(r.Columns); c++ {
		for _, row := range r.Rows {
			if c < len(row) {
				if _, ok := numeric(row[c]); ok {
					cols = append(cols, c)
					break
				}
			}
		}
	}
	return cols
}

func wideLines(r *panel.Result, xKind panel.ValueKind) []line {
	type xrow struct {
		x   float64
		row []panel.Value
	}
	var rows []xrow
	for _, row := range r.Rows {
		if len(row) == 0 {
			continue
		}
		if x, ok := xOfValue(row[0], xKind); ok {
			rows = append(rows, xrow{x, row})
		}
	}
	sort.SliceStable(rows, func(i, j int) bool { return rows[i].x < rows[j].x })
	var lines []line
	for _, c := range seriesColumns(r) {
		l := line{name: r.Columns[c]}
		for _, xr := range rows {
			var p point
			if c < len(xr.row) {
				p.y, p.ok = numeric(xr.row[c])
			}
			p.x = xr.x
			l.pts = append(l.pts, p)
		}
		lines = append(lines, l)
	}
	return lines
}

func longLines(r *panel.Result, xKind panel.ValueKind, loc *time.Location) []line {
	var lines []line
	index := map[string]int{} // only looked up, never ranged over
	for _, row := range r.Rows {
		if len(row) < 3 {
			continue
		}
		x, ok := xOfValue(row[0], xKind)
		if !ok {
			continue
		}
		name := formatValue(row[1], panel.Options{}, loc)
		i, seen := index[name]
		if !seen {
			i = len(lines)
			index[name] = i
			lines = append(lines, line{name: name})
		}
		var p point
		p.x = x
		p.y, p.ok = numeric(row[2])
		lines[i].pts = append(lines[i].pts, p)
	}
	for i := range lines {
		pts := lines[i].pts
		sort.SliceStable(pts, func(a, b int) bool { return pts[a].x < pts[b].x })
	}
	return lines
}

// barChart lays out grouped (or, with Options.Stacked, stacked) vertical
// bars: one category per row labelled by the first column, one series per
// numeric column. With thresholds, each bar takes the colour of the step its
// value reaches, and its title and the legend name the step.
func barChart(def *panel.Def, r *panel.Result, loc *time.Location) chart {
	if len(r.Columns) < 2 {
		return chart{Empty: "A bar chart needs a label column followed by value columns."}
	}
	if len(r.Rows) == 0 {
		return chart{Empty: noRows}
	}
	cols := seriesColumns(r)
	if len(cols) == 0 {
		return chart{Empty: "No numeric columns to draw."}
	}
	o := def.Options
	var c chart
	switch {
	case o.Thresholds != nil:
		c.Legend = thresholdLegend(o)
	case len(cols) > 1:
		for i, col := range cols {
			c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: r.Columns[col]})
		}
	}
	cats := make([]string, len(r.Rows))
	vals := make([][]point, len(r.Rows)) // [category][series]
	ys := newValueStats()
	for i, row := range r.Rows {
		if len(row) > 0 {
			cats[i] = formatValue(row[0], o, loc)
		}
		vals[i] = make([]point, len(cols))
		pos, neg := 0.0, 0.0
		for s, col := range cols {
			if col >= len(row) {
				continue
			}
			v, ok := numeric(row[col])
			vals[i][s] = point{y: v, ok: ok}
			if !ok {
				continue
			}
			if !o.Stacked {
				ys.add(v)
				continue
			}
			if v >= 0 {
				pos += v
			} else {
				neg += v
			}
			ys.add(v)
			ys.lo, ys.hi = math.Min(ys.lo, neg), math.Max(ys.hi, pos)
		}
	}
	// Value labels only where they fit: few bars, none stacked or negative.
	showValues := !o.Stacked && ys.lo >= 0 && len(cats)*len(cols) <= 12
	ya, note := valueAxis(ys, o, true)
	labels := axisLabels(ya, o)
	f := newFrame(def, labels)
	f.yAxis(&c, ya, labels)
	if c.Zero == "" && ya.Lo() < 0 && ya.Hi() >= 0 {
		// All values negative: the zero baseline is the top tick.
		c.Zero = f.hline(f.y(ya, 0))
	}
	c.Clip = o.Min != nil || o.Max != nil
	c.Note = note

	band := (f.right - f.left) / float64(len(cats))
	inner := band * 0.8
	barW := inner
	if !o.Stacked {
		barW = inner / float64(len(cols))
	}
	for i, cat := range cats {
		x0 := f.left + float64(i)*band + (band-inner)/2
		pos, neg := 0.0, 0.0
		for s, p := range vals[i] {
			if !p.ok {
				continue
			}
			var from, to float64
			x := x0
			if o.Stacked {
				if p.y >= 0 {
					from, to = pos, pos+p.y
					pos = to
				} else {
					from, to = neg, neg+p.y
					neg = to
				}
			} else {
				from, to = 0, p.y
				x = x0 + float64(s)*barW
			}
			ya1, ya2 := f.y(ya, from), f.y(ya, to)
			top, h := math.Min(ya1, ya2), math.Abs(ya1-ya2)
			cls := seriesClass(s)
			title := cat + " · " + r.Columns[cols[s]] + ": " + formatNumber(p.y, o, false)
			if o.Thresholds != nil {
				step, color := o.Thresholds.Level(p.y)
				cls += " th-" + color
				title += " (" + stepName(o, step) + ")"
			}
			c.Bars = append(c.Bars, rect{
				Class: cls, X: coord(x), Y: coord(top), W: coord(barW), H: coord(h), Title: title,
			})
			if showValues {
				c.Values = append(c.Values, chartText{X: f.xPct(x + barW/2), Y: f.yPct(math.Max(top, f.top)), Text: formatNumber(p.y, o, true)})
			}
		}
	}
	// Labels are fitted to the band of the nominal plot (f.room wide),
	// the bars to the viewBox.
	every, runes := barLabels(cats, f.room/float64(len(cats)))
	c.XRoom = templ.SafeCSS("--w:" + f.xPct(float64(every)*band))
	for i := 0; i < len(cats); i += every {
		t := chartText{X: f.xPct(f.left + (float64(i)+0.5)*band), Text: ellipsis(cats[i], runes)}
		if t.Text != cats[i] {
			t.Title = cats[i]
		}
		c.XLabels = append(c.XLabels, t)
	}
	return c
}

// Bar labels are shortened to no more than maxLabelRunes, and to no fewer
// than minLabelRunes before they are thinned out.
const (
	maxLabelRunes = 14
	minLabelRunes = 5
)

// barLabels chooses how a bar chart labels its categories, in bands band
// units wide: every label whole when all fit; else every label shortened
// to the runes that fit (an ellipsis ends it, its full text is its title)
// while that keeps minLabelRunes; else every k-th label, on purpose, with
// room for more of its text. Every bar's own title names its category in
// full, so a bar without a label still says what it is on hover.
func barLabels(cats []string, band float64) (every, runes int) {
	longest := 1
	for _, cat := range cats {
		longest = max(longest, utf8.RuneCountInString(cat))
	}
	longest = min(longest, maxLabelRunes)
	fits := func(k int) int { return int((float64(k)*band - 6) / fontW) }
	if n := fits(1); n >= min(longest, minLabelRunes) {
		return 1, min(longest, n)
	}
	every = 2
	for fits(every) < min(longest, minLabelRunes) {
		every++
	}
	return every, min(longest, fits(every))
}

// stepName is how a bar's title names the threshold step it reaches: the
// step's label, or "≥ value"; below every step, "< value" of the first.
func stepName(o panel.Options, step int) string {
	t := o.Thresholds
	if step < 0 {
		if len(t.Steps) == 0 {
			return "base"
		}
		return "< " + formatNumber(t.Steps[0].Value, o, false)
	}
	if l := t.Steps[step].Label; l != "" {
		return l
	}
	return "≥ " + formatNumber(t.Steps[step].Value, o, false)
}

// thresholdLegend is the key to a bar chart's threshold colours: the base
// range, then each step, named as the bars' titles name them.
func thresholdLegend(o panel.Options) []legendItem {
	t := o.Thresholds
	_, base := t.Level(math.Inf(-1))
	items := []legendItem{{Class: "th th-" + base, Name: stepName(o, -1)}}
	for i, s := range t.Steps {
		name := stepName(o, i)
		if s.Label != "" {
			name = "≥ " + formatNumber(s.Value, o, false) + " " + s.Label
		}
		items = append(items, legendItem{Class: "th th-" + s.Color, Name: name})
	}
	return items
}

// sparkline is the stat panel's history: the first column of every row,
// oldest first, drawn in a 100×24 box that CSS stretches.
type sparkline struct {
	Lines []string
	Dots  []dot
}

func sparklineOf(r *panel.Result) *sparkline {
	var ys []point
	lo, hi := math.Inf(1), math.Inf(-1)
	n := 0
	for _, row := range r.Rows {
		var p point
		if len(row) > 0 {
			p.y, p.ok = numeric(row[0])
		}
		if p.ok {
			lo, hi = math.Min(lo, p.y), math.Max(hi, p.y)
			n++
		}
		ys = append(ys, p)
	}
	if n < 2 || len(ys) < 2 {
		return nil
	}
	yOf := func(v float64) float64 {
		if hi == lo {
			return 12
		}
		return 22 - (v-lo)/(hi-lo)*20
	}
	s := &sparkline{}
	var seg []string
	flush := func() {
		if len(seg) == 1 {
			xy := strings.SplitN(seg[0], ",", 2)
			s.Dots = append(s.Dots, dot{X: xy[0], Y: xy[1]})
		} else if len(seg) > 1 {
			s.Lines = append(s.Lines, strings.Join(seg, " "))
		}
		seg = seg[:0]
	}
	for i, p := range ys {
		if !p.ok {
			flush()
			continue
		}
		xy := coord(float64(i)/float64(len(ys)-1)*100) + "," + coord(yOf(p.y))
		if len(seg) > 0 && seg[len(seg)-1] == xy {
			continue
		}
		seg = append(seg, xy)
	}
	flush()
	return s
}
