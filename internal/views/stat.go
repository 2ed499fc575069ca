package views

import (
	"math"
	"strconv"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// statView is what a stat panel shows.
type statView struct {
	Value     string
	Null      bool
	Delta     string
	DeltaDir  string // "up", "down" or "flat"
	Sparkline *sparkline
}

func statOf(d *panel.Def, r *panel.Result, loc *time.Location) (statView, bool) {
	if len(r.Rows) == 0 || len(r.Rows[len(r.Rows)-1]) == 0 {
		return statView{}, false
	}
	o := d.Options
	last := r.Rows[len(r.Rows)-1][0]
	var s statView
	switch last.Kind {
	case panel.Null:
		s.Value, s.Null = "—", true
	case panel.Number:
		s.Value = formatNumber(last.Num, o, true)
	default:
		s.Value = formatValue(last, o, loc)
	}
	if o.Delta && len(r.Rows) >= 2 && len(r.Rows[len(r.Rows)-2]) > 0 {
		cur, ok1 := numeric(last)
		prev, ok2 := numeric(r.Rows[len(r.Rows)-2][0])
		if ok1 && ok2 {
			s.Delta, s.DeltaDir = deltaText(cur, prev, o)
		}
	}
	if o.Sparkline {
		s.Sparkline = sparklineOf(r)
	}
	return s, true
}

// deltaText formats the change from prev to cur: arrow, signed amount and,
// when prev is not zero, the relative change.
func deltaText(cur, prev float64, o panel.Options) (text, dir string) {
	diff := cur - prev
	if diff == 0 {
		return "= 0", "flat"
	}
	arrow, sign, dir := "▲ +", "+", "up"
	if diff < 0 {
		arrow, sign, dir = "▼ ", "", "down"
	}
	text = arrow + formatNumber(diff, o, true)
	if prev != 0 {
		pct := diff / math.Abs(prev) * 100
		text += " (" + sign + groupThousands(noNegZero(trimZeros(strconv.FormatFloat(pct, 'f', 1, 64)))) + "%)"
	}
	return text, dir
}
