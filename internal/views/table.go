package views

import (
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// cell is one formatted table or feed cell.
type cell struct {
	Text     string
	Class    string // "num", "null", "time" or ""
	Datetime string // set for times
	Column   string
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

// tableView is a table panel: header classes mark numeric columns so that
// their headings align with the numbers.
type tableView struct {
	Head []cell
	Rows [][]cell
}

// tableOpts are the options tables apply: decimals only, because prefix and
// unit belong to one measure and tables show many columns.
func tableOpts(o panel.Options) panel.Options { return panel.Options{Decimals: o.Decimals} }

func tableOf(d *panel.Def, r *panel.Result, loc *time.Location) tableView {
	o := tableOpts(d.Options)
	var t tableView
	for i, name := range r.Columns {
		num, any := true, false
		for _, row := range r.Rows {
			if i < len(row) && row[i].Kind != panel.Null {
				any = true
				if row[i].Kind != panel.Number {
					num = false
				}
			}
		}
		h := cell{Text: name}
		if num && any {
			h.Class = "num"
		}
		t.Head = append(t.Head, h)
	}
	for _, row := range r.Rows {
		cells := make([]cell, len(r.Columns))
		for i := range cells {
			v := panel.Value{}
			if i < len(row) {
				v = row[i]
			}
			cells[i] = cellOf(v, r.Columns[i], o, loc)
		}
		t.Rows = append(t.Rows, cells)
	}
	return t
}
