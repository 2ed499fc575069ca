package views

import (
	"math"
	"strconv"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// axis is a linear scale with "nice" ticks: every tick is a multiple of a
// step of 1, 2 or 5 times a power of ten. The axis runs from the first tick
// to the last, unless a panel's min or max fixed an end (see clampTo).
type axis struct {
	Ticks    []float64
	Step     float64
	Decimals int // decimals that show every tick exactly
	// lo and hi are the ends of the axis.
	lo, hi float64
}

// Lo is the bottom of the axis.
func (a axis) Lo() float64 { return a.lo }

// Hi is the top of the axis.
func (a axis) Hi() float64 { return a.hi }

// niceAxis chooses between four and six ticks that cover [lo, hi] with the
// least wasted space. A degenerate range is widened around its value, and a
// non-finite one becomes [0, 1].
func niceAxis(lo, hi float64) axis { return chooseAxis(lo, hi, false) }

// integerAxis is niceAxis for whole-numbered data (counts): its step is a
// whole number, so that no tick reads 0.5 of something that only comes in
// ones. A narrow range gets fewer ticks (0, 1, 2) rather than fractions.
func integerAxis(lo, hi float64) axis { return chooseAxis(lo, hi, true) }

func chooseAxis(lo, hi float64, integer bool) axis {
	if math.IsNaN(lo) || math.IsNaN(hi) || math.IsInf(lo, 0) || math.IsInf(hi, 0) {
		lo, hi = 0, 1
	}
	if lo > hi {
		lo, hi = hi, lo
	}
	// Keep the arithmetic finite, and treat a range too narrow for float64
	// to split into ticks as a single value.
	const limit = 1e300
	lo, hi = math.Max(lo, -limit), math.Min(hi, limit)
	if hi-lo <= math.Max(math.Abs(lo), math.Abs(hi))*1e-12 || hi-lo < 1e-290 {
		lo = (lo + hi) / 2
		hi = lo
	}
	if lo == hi {
		if math.Abs(lo) < 1e-290 {
			lo, hi = 0, 1
		} else {
			d := math.Abs(lo) * 0.1
			lo, hi = lo-d, hi+d
		}
	}
	span := hi - lo
	e0 := int(math.Floor(math.Log10(span / 5)))

	type cand struct {
		m, e       int
		start, end float64 // tick indices
	}
	var best cand
	bestScore := math.Inf(1)
	for e := e0 - 1; e <= e0+2; e++ {
		if integer && e < 0 {
			continue
		}
		for _, m := range []int{1, 2, 5} {
			step := stepOf(m, e)
			start := math.Floor(lo/step + 1e-9)
			end := math.Ceil(hi/step - 1e-9)
			n := end - start + 1
			cover := (end - start) * step / span
			score := cover + math.Abs(n-5)*0.01
			// Only when no step gives 4-6 ticks (a narrow range between
			// two multiples): seven ticks beat three.
			switch {
			case n > 6:
				score += 100 + n
			case n < 4:
				score += 200 + 10*(4-n) // with whole steps only: 0 1 2 beats 0 5
			}
			if score < bestScore {
				best, bestScore = cand{m, e, start, end}, score
			}
		}
	}
	a := axis{Step: stepOf(best.m, best.e), Decimals: max(0, -best.e)}
	for i := best.start; i <= best.end; i++ {
		a.Ticks = append(a.Ticks, tickValue(int64(i), best.m, best.e))
	}
	a.lo, a.hi = a.Ticks[0], a.Ticks[len(a.Ticks)-1]
	return a
}

// clampTo fixes the ends of the axis that a panel's min and max set (nil
// leaves an end as the ticks made it) and drops the ticks outside them. The
// ends must leave a range (lo below hi); valueAxis makes sure of it.
func (a axis) clampTo(lo, hi *float64) axis {
	if lo != nil {
		a.lo = *lo
	}
	if hi != nil {
		a.hi = *hi
	}
	ticks := make([]float64, 0, len(a.Ticks))
	for _, t := range a.Ticks {
		if t >= a.lo && t <= a.hi {
			ticks = append(ticks, t)
		}
	}
	a.Ticks = ticks
	return a
}

// stepOf is m×10^e, computed so that negative powers stay exact decimals.
func stepOf(m, e int) float64 {
	if e >= 0 {
		return float64(m) * math.Pow10(e)
	}
	return float64(m) / math.Pow10(-e)
}

// tickValue is i×m×10^e with the same care as stepOf (3×0.1 is 0.3).
func tickValue(i int64, m, e int) float64 {
	v := float64(i * int64(m))
	if e >= 0 {
		v *= math.Pow10(e)
	} else {
		v /= math.Pow10(-e)
	}
	if v == 0 {
		v = 0
	}
	return v
}

// label formats tick v for the y axis, abbreviating when the axis reaches
// ten thousand, with the panel's prefix and unit.
func (a axis) label(v float64, o panel.Options) string {
	if a.Decimals > 6 && v != 0 {
		return affix(strconv.FormatFloat(v, 'g', -1, 64), o) // 1.5e-09, not 0.0000000015
	}
	if math.Max(math.Abs(a.Lo()), math.Abs(a.Hi())) >= 10_000 {
		if v == 0 {
			return affix("0", o)
		}
		if math.Abs(v) >= 1000 {
			return affix(formatCompact(v), o)
		}
	}
	return affix(groupThousands(noNegZero(strconv.FormatFloat(v, 'f', a.Decimals, 64))), o)
}

// timeSteps are the tick intervals for a time axis below a month.
var timeSteps = []time.Duration{
	time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second, 15 * time.Second, 30 * time.Second,
	time.Minute, 2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour,
	24 * time.Hour, 2 * 24 * time.Hour, 7 * 24 * time.Hour, 14 * 24 * time.Hour,
}

// timeTick is one labelled tick of a time axis.
type timeTick struct {
	T     time.Time
	Label string
}

// timeTicks chooses at most maxTicks (at least 2) round instants in
// [lo, hi], round on the wall clock of loc (nil is UTC): midnights, whole
// hours and so on in the dashboard's zone, not in UTC. It labels them
// compactly for the interval, in that zone: 15:04:05 below a minute, 15:04
// below a day (a midnight tick shows its date), Jan 02 below a month,
// Jan 2006 below a year, else 2006. Ticks step on the wall clock, so a
// daylight saving change keeps them round; a wall time that the change
// skips gives no tick, one it repeats gives one.
func timeTicks(lo, hi time.Time, maxTicks int, loc *time.Location) []timeTick {
	loc = zoneOr(loc)
	lo, hi = lo.In(loc), hi.In(loc)
	maxTicks = max(maxTicks, 2)
	span := hi.Sub(lo)
	for _, step := range timeSteps {
		if span/step+1 > time.Duration(maxTicks) {
			continue
		}
		var out []timeTick
		// Wall clock times are counted as if they were UTC, then placed in
		// the zone.
		for w := alignUp(wall(lo), step); ; w = w.Add(step) {
			t := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), w.Nanosecond(), loc)
			if t.After(hi) {
				break
			}
			if !wall(t).Equal(w) || t.Before(lo) || (len(out) > 0 && !t.After(out[len(out)-1].T)) {
				continue // skipped by a daylight saving change, or repeated
			}
			out = append(out, timeTick{T: t, Label: timeLabel(t, step)})
		}
		if len(out) > maxTicks { // a skipped hour can add one
			out = out[:maxTicks]
		}
		return out
	}
	// Months, then years, counted on the calendar.
	for _, months := range []int{1, 2, 3, 6, 12, 24, 60, 120, 240, 600, 1200} {
		if int(span.Hours()/24/30.5)/months > 2*maxTicks {
			continue // hopeless; spare the loop
		}
		t := time.Date(lo.Year(), lo.Month(), 1, 0, 0, 0, 0, loc)
		if t.Before(lo) {
			t = t.AddDate(0, 1, 0)
		}
		for (int(t.Month())-1+t.Year()*12)%months != 0 {
			t = t.AddDate(0, 1, 0)
		}
		layout := "Jan 2006"
		if months >= 12 {
			layout = "2006"
		}
		var out []timeTick
		for ; !t.After(hi) && len(out) <= maxTicks; t = t.AddDate(0, months, 0) {
			out = append(out, timeTick{T: t, Label: t.Format(layout)})
		}
		if len(out) <= maxTicks {
			return out
		}
	}
	return nil
}

// wall is t's wall clock time in its zone, as a UTC time.
func wall(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// weekOrigin is a Monday, so that weekly ticks fall on Mondays.
var weekOrigin = time.Date(1970, 1, 5, 0, 0, 0, 0, time.UTC)

// alignUp is the first multiple of step at or after t, counted from the
// Unix epoch (UTC midnight for days, Mondays for weeks).
func alignUp(t time.Time, step time.Duration) time.Time {
	origin := time.Unix(0, 0).UTC()
	if step%(7*24*time.Hour) == 0 {
		origin = weekOrigin
	}
	d := t.Sub(origin)
	q := d / step
	if d%step > 0 {
		q++
	}
	return origin.Add(q * step)
}

func timeLabel(t time.Time, step time.Duration) string {
	switch {
	case step < time.Minute:
		return t.Format("15:04:05")
	case step < 24*time.Hour:
		if t.Hour() == 0 && t.Minute() == 0 {
			return t.Format("Jan 02")
		}
		return t.Format("15:04")
	default:
		return t.Format("Jan 02")
	}
}
