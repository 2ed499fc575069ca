package views

import (
	"math"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livedash/dashboard/internal/panel"
)

// Chart geometry, in SVG user units. One grid cell of a panel is drawn as
// cellW × cellH; the viewBox scales with CSS and keeps its aspect ratio, so
// text stays undistorted.
const (
	cellW     = 360
	cellH     = 150
	fontW     = 7 // average glyph width of axis labels at 12 units
	padTop    = 10
	padRight  = 16
	padBottom = 22
	// paletteSize is the number of distinct series colours in the
	// stylesheet (classes s0 … s9).
	paletteSize = 10
)

// chart is everything an SVG chart draws, already in formatted coordinates
// so that the template only copies strings.
type chart struct {
	ViewBox string
	Grid    []gridLine // horizontal lines with y labels
	XLabels []svgText
	Axis    lineSeg // bottom axis line
	Zero    *lineSeg
	Lines   []polyline
	Dots    []dot
	Bars    []rect
	Values  []svgText // value labels above bars
	Legend  []legendItem
	Empty   string // shown instead of the chart when set
}

type gridLine struct {
	X1, X2, Y string
	Label     svgText
}

type lineSeg struct{ X1, Y1, X2, Y2 string }

type svgText struct{ X, Y, Text string }

type polyline struct{ Class, Points string }

type dot struct{ Class, X, Y string }

type rect struct{ Class, X, Y, W, H, Title string }

type legendItem struct{ Class, Name string }

// seriesClass is the colour class of the i-th series.
func seriesClass(i int) string { return "s" + strconv.Itoa(i%paletteSize) }

// frame is the plot area inside the viewBox.
type frame struct {
	w, h                     float64 // viewBox
	left, right, top, bottom float64 // plot edges
}

func newFrame(def *panel.Def, yLabels []string) frame {
	w := float64(cellW * clampSpan(def.Width))
	h := float64(cellH * clampSpan(def.Height))
	longest := 1
	for _, l := range yLabels {
		longest = max(longest, utf8.RuneCountInString(l))
	}
	return frame{
		w: w, h: h,
		left: math.Min(float64(longest*fontW+10), w/3), right: w - padRight,
		top: padTop, bottom: h - padBottom,
	}
}

func (f frame) viewBox() string {
	return "0 0 " + coord(f.w) + " " + coord(f.h)
}

func (f frame) y(a axis, v float64) float64 {
	return f.bottom - (v-a.Lo())/(a.Hi()-a.Lo())*(f.bottom-f.top)
}

// yAxis fills the grid lines, labels and bottom axis for a.
func (f frame) yAxis(c *chart, a axis, labels []string) {
	for i, t := range a.Ticks {
		y := coord(f.y(a, t))
		c.Grid = append(c.Grid, gridLine{
			X1: coord(f.left), X2: coord(f.right), Y: y,
			Label: svgText{X: coord(f.left - 6), Y: coord(f.y(a, t) + 4), Text: labels[i]},
		})
	}
	c.Axis = lineSeg{coord(f.left), coord(f.bottom), coord(f.right), coord(f.bottom)}
	if a.Lo() < 0 && a.Hi() > 0 {
		y := coord(f.y(a, 0))
		c.Zero = &lineSeg{coord(f.left), y, coord(f.right), y}
	}
	c.ViewBox = f.viewBox()
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
	ylo, yhi := math.Inf(1), math.Inf(-1)
	for _, l := range lines {
		for _, p := range l.pts {
			if !p.ok {
				continue
			}
			xlo, xhi = math.Min(xlo, p.x), math.Max(xhi, p.x)
			ylo, yhi = math.Min(ylo, p.y), math.Max(yhi, p.y)
		}
	}
	var c chart
	for i, l := range lines {
		c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: l.name})
	}
	if math.IsInf(xlo, 1) {
		return chart{Empty: "No data", Legend: c.Legend}
	}
	ya := niceAxis(ylo, yhi)
	labels := axisLabels(ya, def.Options)
	f := newFrame(def, labels)
	f.yAxis(&c, ya, labels)

	// The x axis spans the data exactly; a single instant sits in the middle.
	xspan := xhi - xlo
	xOf := func(x float64) float64 {
		if xspan == 0 {
			return (f.left + f.right) / 2
		}
		return f.left + (x-xlo)/xspan*(f.right-f.left)
	}
	maxTicks := max(2, int((f.right-f.left)/75))
	labelY := coord(f.bottom + 16)
	if xKind == panel.Time {
		lo, hi := unixTime(xlo), unixTime(xhi)
		for _, t := range timeTicks(lo, hi, maxTicks, axisLoc) {
			c.XLabels = append(c.XLabels, svgText{X: coord(xOf(timeUnix(t.T))), Y: labelY, Text: t.Label})
		}
		if len(c.XLabels) == 0 {
			c.XLabels = append(c.XLabels, svgText{X: coord(xOf(xlo)), Y: labelY, Text: formatTime(lo, axisLoc)})
		}
	} else {
		xa := niceAxis(xlo, xhi)
		for _, t := range xa.Ticks {
			if t < xlo || t > xhi {
				continue
			}
			c.XLabels = append(c.XLabels, svgText{X: coord(xOf(t)), Y: labelY, Text: xa.label(t, panel.Options{})})
		}
	}

	for i, l := range lines {
		cls := seriesClass(i)
		var seg []string
		flush := func() {
			switch len(seg) {
			case 0:
			case 1:
				xy := strings.SplitN(seg[0], ",", 2)
				c.Dots = append(c.Dots, dot{Class: cls, X: xy[0], Y: xy[1]})
			default:
				c.Lines = append(c.Lines, polyline{Class: cls, Points: strings.Join(seg, " ")})
			}
			seg = seg[:0]
		}
		for _, p := range l.pts {
			if !p.ok {
				flush()
				continue
			}
			xy := coord(xOf(p.x)) + "," + coord(f.y(ya, p.y))
			if len(seg) > 0 && seg[len(seg)-1] == xy {
				continue // same pixel as the previous point
			}
			seg = append(seg, xy)
		}
		flush()
	}
	return c
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
// numeric column.
func barChart(def *panel.Def, r *panel.Result, loc *time.Location) chart {
	if len(r.Columns) < 2 {
		return chart{Empty: "A bar chart needs a label column followed by value columns."}
	}
	cols := seriesColumns(r)
	if len(cols) == 0 {
		if len(r.Rows) == 0 {
			return chart{Empty: "No data"}
		}
		return chart{Empty: "No numeric columns to draw."}
	}
	var c chart
	for i, col := range cols {
		c.Legend = append(c.Legend, legendItem{Class: seriesClass(i), Name: r.Columns[col]})
	}
	if len(r.Rows) == 0 {
		c.Empty = "No data"
		return c
	}
	o := def.Options
	cats := make([]string, len(r.Rows))
	vals := make([][]point, len(r.Rows)) // [category][series]
	lo, hi := 0.0, 0.0
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
			if o.Stacked {
				if v >= 0 {
					pos += v
				} else {
					neg += v
				}
				lo, hi = math.Min(lo, neg), math.Max(hi, pos)
			} else {
				lo, hi = math.Min(lo, v), math.Max(hi, v)
			}
		}
	}
	// Value labels only where they fit: few bars, none stacked or negative.
	showValues := !o.Stacked && lo >= 0 && len(cats)*len(cols) <= 12
	ya := niceAxis(lo, hi)
	labels := axisLabels(ya, o)
	f := newFrame(def, labels)
	if showValues {
		f.top += 12
	}
	f.yAxis(&c, ya, labels)
	if c.Zero == nil && ya.Lo() < 0 {
		// All values negative: the zero baseline is the top tick.
		y := coord(f.y(ya, 0))
		c.Zero = &lineSeg{coord(f.left), y, coord(f.right), y}
	}

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
			title := cat + " · " + r.Columns[cols[s]] + ": " + formatNumber(p.y, o, false)
			c.Bars = append(c.Bars, rect{
				Class: seriesClass(s), X: coord(x), Y: coord(top), W: coord(barW), H: coord(h), Title: title,
			})
			if showValues {
				c.Values = append(c.Values, svgText{X: coord(x + barW/2), Y: coord(top - 4), Text: formatNumber(p.y, o, true)})
			}
		}
	}
	// Category labels: every k-th one so that labels do not overlap.
	const maxRunes = 14
	longest := 1
	for _, cat := range cats {
		longest = max(longest, min(utf8.RuneCountInString(cat), maxRunes))
	}
	k := max(1, int(math.Ceil(float64(longest*fontW+6)/band)))
	for i := 0; i < len(cats); i += k {
		c.XLabels = append(c.XLabels, svgText{
			X: coord(f.left + (float64(i)+0.5)*band), Y: coord(f.bottom + 16), Text: ellipsis(cats[i], maxRunes),
		})
	}
	return c
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
