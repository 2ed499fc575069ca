package views

import (
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livedash/dashboard/internal/panel"
)

// cell is one formatted table or feed cell.
type cell struct {
	Text     string
	Class    string // kind ("num", "null", "time", "bool" or ""), then alignment, length and threshold classes
	Datetime string // set for times
	Column   string
	Cue      string // the threshold cue before a number that reached a step
}

func cellOf(v panel.Value, col string, o panel.Options, loc *time.Location) cell {
	c := cell{Text: formatValue(v, o, loc), Column: col}
	switch v.Kind {
	case panel.Number:
		c.Class = "num"
	case panel.Null:
		c.Class = "null"
	case panel.Time:
		c.Class, c.Datetime = "time", isoTime(v.Time)
	case panel.Bool:
		c.Class = "bool"
	}
	return c
}

// longText is the length in characters from which a text cell wraps
// instead of widening its column: shorter text stays on one line, and the
// table scrolls sideways when it is wider than its panel.
const longText = 60

// tableView is a table panel: header classes mark numeric columns so that
// their headings align with the numbers.
type tableView struct {
	Head []cell
	Rows [][]cell
}

// column is how a table draws one of its result columns: the options its
// numbers are formatted with, its thresholds and its alignment class.
type column struct {
	opts       panel.Options
	thresholds *panel.Thresholds
	align      string // "align-left", "align-center", "align-right" or "" for automatic
	numeric    bool   // every non-NULL value is a number (and there is one)
	// auto says opts.Decimals was chosen by columnsOf, not the operator: a
	// value below 0.01 then keeps its significant digits.
	auto bool
}

// columnsOf works out each result column's format. A column named in
// options.columns takes its unit, prefix, decimals, thresholds and
// alignment from there. Otherwise numbers get the panel's decimals, but
// only in a column that holds a number with a fraction: a column of whole
// numbers (an id, a count) never gets decimals from the panel-wide option.
// Without any decimals, a column's numbers all get as many decimals (up
// to two) as the one that needs most, so that 12.5 and 3 line up as 12.50
// and 3.00 in a column of amounts.
func columnsOf(o panel.Options, r *panel.Result) []column {
	cols := make([]column, len(r.Columns))
	for i, name := range r.Columns {
		c := &cols[i]
		var spec *panel.Column
		for j := range o.Columns {
			if o.Columns[j].Name == name {
				spec = &o.Columns[j]
				break
			}
		}
		integers, any, need := true, false, 0
		c.numeric = true
		for _, row := range r.Rows {
			if i >= len(row) || row[i].Kind == panel.Null {
				continue
			}
			any = true
			if row[i].Kind != panel.Number {
				c.numeric = false
				continue
			}
			// NaN and the infinities are no fraction: they leave a
			// column of whole numbers whole.
			if v := row[i].Num; !isInteger(v) && !math.IsNaN(v) && !math.IsInf(v, 0) {
				integers = false
				need = max(need, decimalsNeeded(v))
			}
		}
		c.numeric = c.numeric && any
		c.opts.Decimals = o.Decimals
		if integers {
			c.opts.Decimals = nil
		} else if c.opts.Decimals == nil && need > 0 {
			c.opts.Decimals, c.auto = &fixedDecimals[need], true
		}
		if spec != nil {
			c.opts.Unit, c.opts.Prefix, c.thresholds = spec.Unit, spec.Prefix, spec.Thresholds
			if spec.Decimals != nil {
				c.opts.Decimals, c.auto = spec.Decimals, false
			}
			switch spec.Align {
			case "left", "center", "right":
				c.align = "align-" + spec.Align
			}
		}
	}
	return cols
}

// fixedDecimals backs the automatic decimals of a column (0-2), so that
// columnsOf need not allocate.
var fixedDecimals = [3]int{0, 1, 2}

// decimalsNeeded is how many decimals (0-2) automatic formatting shows for
// v; a value below 0.01 is written with significant digits instead, so it
// asks for none.
func decimalsNeeded(v float64) int {
	a := math.Abs(v)
	if a != 0 && a < 0.01 {
		return 0
	}
	if !(a < 1e15) { // beyond whole hundredths in an int64, or NaN
		s := trimZeros(strconv.FormatFloat(v, 'f', 2, 64))
		if i := strings.LastIndexByte(s, '.'); i >= 0 {
			return len(s) - 1 - i
		}
		return 0
	}
	// In hundredths, without formatting: a table asks this of every cell.
	switch n := int64(math.Round(a * 100)); {
	case n%100 == 0:
		return 0
	case n%10 == 0:
		return 1
	}
	return 2
}

func tableOf(d *panel.Def, r *panel.Result, loc *time.Location) tableView {
	cols := columnsOf(d.Options, r)
	var t tableView
	for i, name := range r.Columns {
		h := cell{Text: name}
		if cols[i].numeric {
			h.Class = "num"
		}
		h.Class = classes(h.Class, cols[i].align)
		t.Head = append(t.Head, h)
	}
	for _, row := range r.Rows {
		cells := make([]cell, len(r.Columns))
		for i := range cells {
			v := panel.Value{}
			if i < len(row) {
				v = row[i]
			}
			col := &cols[i]
			o := col.opts
			if a := math.Abs(v.Num); col.auto && v.Kind == panel.Number && a != 0 && a < 0.01 {
				o.Decimals = nil // a tiny value keeps its significant digits
			}
			c := cellOf(v, r.Columns[i], o, loc)
			if v.Kind == panel.Text && utf8.RuneCountInString(c.Text) > longText {
				c.Class = "long"
			}
			if v.Kind == panel.Number && col.thresholds != nil {
				l := levelOf(col.thresholds, v.Num, stepFormat(col.opts, false), false)
				c.Class, c.Cue = classes(c.Class, l.Class), l.Cue
			}
			c.Class = classes(c.Class, col.align)
			cells[i] = c
		}
		t.Rows = append(t.Rows, cells)
	}
	return t
}
