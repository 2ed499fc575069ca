package views

import (
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livedash/dashboard/internal/panel"
)

// formatNumber formats v for display with the panel's prefix, unit and
// decimals. Without fixed decimals it shows up to two decimals (significant
// digits for tiny values) and, when compact is set, abbreviates values from
// ten thousand up (12.3k, 4.5M). It uses strconv only, so the output is the
// same on every machine.
func formatNumber(v float64, o panel.Options, compact bool) string {
	return affix(formatBare(v, o.Decimals, compact), o)
}

// affix puts the operator's prefix and unit around a formatted number,
// keeping a minus sign in front of the prefix ("-$5", not "$-5").
func affix(s string, o panel.Options) string {
	if o.Prefix == "" && o.Unit == "" {
		return s
	}
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	return sign + o.Prefix + s + o.Unit
}

// formatBare formats v without prefix or unit.
func formatBare(v float64, decimals *int, compact bool) string {
	switch {
	case math.IsNaN(v):
		return "NaN"
	case math.IsInf(v, 1):
		return "∞"
	case math.IsInf(v, -1):
		return "-∞"
	}
	if decimals != nil {
		d := min(max(*decimals, 0), 10)
		return groupThousands(noNegZero(strconv.FormatFloat(v, 'f', d, 64)))
	}
	a := math.Abs(v)
	if compact && a >= 10_000 {
		return formatCompact(v)
	}
	if a != 0 && a < 0.01 {
		return strconv.FormatFloat(v, 'g', 2, 64)
	}
	return groupThousands(noNegZero(trimZeros(strconv.FormatFloat(v, 'f', 2, 64))))
}

var compactUnits = []struct {
	size   float64
	suffix string
}{{1e3, "k"}, {1e6, "M"}, {1e9, "B"}, {1e12, "T"}}

// formatCompact abbreviates |v| >= 1000 with k, M, B or T: one decimal below
// 100 of the unit, none above, trailing zeros dropped.
func formatCompact(v float64) string {
	a := math.Abs(v)
	i := 0
	for i+1 < len(compactUnits) && a >= compactUnits[i+1].size {
		i++
	}
	for {
		scaled := a / compactUnits[i].size
		dec := 1
		if scaled >= 100 {
			dec = 0
		}
		s := strconv.FormatFloat(scaled, 'f', dec, 64)
		// Rounding can carry into the next unit: 999.96k is 1M.
		if r, _ := strconv.ParseFloat(s, 64); r >= 1000 && i+1 < len(compactUnits) {
			i++
			continue
		}
		s = groupThousands(trimZeros(s)) + compactUnits[i].suffix
		if v < 0 {
			s = "-" + s
		}
		return s
	}
}

// trimZeros drops trailing zeros after a decimal point, and the point.
func trimZeros(s string) string {
	if !strings.Contains(s, ".") {
		return s
	}
	s = strings.TrimRight(s, "0")
	return strings.TrimSuffix(s, ".")
}

// noNegZero turns "-0" or "-0.00" into its unsigned form.
func noNegZero(s string) string {
	if strings.HasPrefix(s, "-") && strings.Trim(s[1:], "0.") == "" {
		return s[1:]
	}
	return s
}

// groupThousands inserts commas into the integer part of a plain decimal
// number ("-1234567.5" -> "-1,234,567.5").
func groupThousands(s string) string {
	sign := ""
	if strings.HasPrefix(s, "-") {
		sign, s = "-", s[1:]
	}
	intPart, frac := s, ""
	if i := strings.IndexByte(s, '.'); i >= 0 {
		intPart, frac = s[:i], s[i:]
	}
	if len(intPart) <= 3 {
		return sign + s
	}
	var b strings.Builder
	b.Grow(len(s) + len(s)/3 + 1)
	b.WriteString(sign)
	first := len(intPart) % 3
	if first == 0 {
		first = 3
	}
	b.WriteString(intPart[:first])
	for i := first; i < len(intPart); i += 3 {
		b.WriteByte(',')
		b.WriteString(intPart[i : i+3])
	}
	b.WriteString(frac)
	return b.String()
}

// formatTime is the full display form of a timestamp in the dashboard's
// zone loc (nil is UTC). Instants at midnight in that zone, such as
// date_trunc('day', …) buckets, show as a date.
func formatTime(t time.Time, loc *time.Location) string {
	t = t.In(zoneOr(loc))
	if t.Hour() == 0 && t.Minute() == 0 && t.Second() == 0 && t.Nanosecond() == 0 {
		return t.Format(time.DateOnly)
	}
	return t.Format(time.DateTime)
}

// zoneOr is loc, or UTC for nil: never the server's own zone.
func zoneOr(loc *time.Location) *time.Location {
	if loc == nil {
		return time.UTC
	}
	return loc
}

// isDate reports whether v is a calendar date (Postgres date) rather than
// an instant: the refresh engine writes dates as YYYY-MM-DD. A date has no
// zone, so it is shown as it is wherever the dashboard is.
func isDate(v panel.Value) bool { return v.Kind == panel.Time && len(v.Text) == len(time.DateOnly) }

// isWall reports whether v is a date or a timestamp without time zone: a
// wall clock reading, kept in Time as if it were UTC, whose text the
// refresh engine writes without a zone. It is shown as it is; only
// instants (whose text ends in Z) are moved to the dashboard's zone.
func isWall(v panel.Value) bool {
	return v.Kind == panel.Time && v.Text != "" && !strings.HasSuffix(v.Text, "Z")
}

// isoTime is the machine-readable form for <time datetime>: the UTC
// instant, whatever zone the text is in.
func isoTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

// formatValue is the display text of a cell. Numbers follow the panel's
// options without abbreviation; instants are in the dashboard's zone loc,
// dates as they are; text and booleans use the display text the refresh
// engine set.
func formatValue(v panel.Value, o panel.Options, loc *time.Location) string {
	switch v.Kind {
	case panel.Null:
		return ""
	case panel.Number:
		return formatNumber(v.Num, o, false)
	case panel.Time:
		if isDate(v) {
			return v.Time.UTC().Format(time.DateOnly)
		}
		if isWall(v) {
			return formatTime(v.Time, time.UTC)
		}
		return formatTime(v.Time, loc)
	case panel.Bool:
		if v.Text != "" {
			return v.Text
		}
		if v.Num != 0 {
			return "true"
		}
		return "false"
	default:
		return v.Text
	}
}

// numeric reports whether v can be drawn as a number, and the number.
// Non-finite numbers (Postgres NaN and Infinity) cannot.
func numeric(v panel.Value) (float64, bool) {
	if v.Kind != panel.Number && v.Kind != panel.Bool {
		return 0, false
	}
	if math.IsNaN(v.Num) || math.IsInf(v.Num, 0) {
		return 0, false
	}
	return v.Num, true
}

// ellipsis shortens s to at most n runes.
func ellipsis(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// coord formats an SVG coordinate rounded to one decimal, the precision
// that keeps charts sharp and frames small.
func coord(f float64) string {
	var b [24]byte
	return string(appendCoord(b[:0], f))
}

// appendCoord appends coord(f) to b. Charts write thousands of these per
// render, so it counts tenths in an integer instead of formatting a float.
func appendCoord(b []byte, f float64) []byte {
	n := math.Round(f * 10)
	if !(math.Abs(n) < 1e15) { // huge, or NaN
		r := n / 10
		if r == 0 {
			r = 0 // no "-0"
		}
		return strconv.AppendFloat(b, r, 'f', -1, 64)
	}
	i := int64(n)
	if i < 0 {
		b = append(b, '-')
		i = -i
	}
	b = strconv.AppendInt(b, i/10, 10)
	if d := i % 10; d != 0 {
		b = append(b, '.', byte('0'+d))
	}
	return b
}

// sinceText is when a failure began, as the page shows it, in the
// dashboard's zone with its abbreviation. It comes from the failure, never
// from the clock at render time, so the same state renders the same bytes.
func sinceText(t time.Time, loc *time.Location) string {
	return t.In(zoneOr(loc)).Format("2006-01-02 15:04:05 MST")
}

// level is where a number stands against thresholds: the class that
// colours it (th-<colour>, see dashboard.css) and the words that say the
// same without colour, so that colour is never the only cue.
type level struct {
	Class string // "th-red"; "" for a colour that is not in the theme
	// Cue is the step's label or, without one, "≥ " and the step's value;
	// below every step it is "< " and the lowest step's value when below
	// was asked for, else "".
	Cue string
	// Step is the index of the step reached, -1 below every step.
	Step int
}

// levelOf places v against t (nil means no thresholds: the zero level).
// format writes a step's value as the panel writes its numbers, so that
// "≥ $95" reads like the value beside it. A NaN reaches no level.
func levelOf(t *panel.Thresholds, v float64, format func(float64) string, below bool) level {
	if t == nil || math.IsNaN(v) {
		return level{Step: -1}
	}
	step, color := t.Level(v)
	l := level{Step: step}
	if slices.Contains(panel.Colors, color) {
		l.Class = "th-" + color
	}
	switch {
	case step >= 0 && t.Steps[step].Label != "":
		l.Cue = t.Steps[step].Label
	case step >= 0:
		l.Cue = "≥ " + format(t.Steps[step].Value)
	case below && len(t.Steps) > 0:
		l.Cue = "< " + format(lowestStep(t))
	}
	return l
}

// stepFormat writes a threshold step's value in a cue with the prefix
// and unit of the numbers it is beside, but automatic decimals: a step at
// 95 reads "≥ $95", not "≥ $95.00".
func stepFormat(o panel.Options, compact bool) func(float64) string {
	o.Decimals = nil
	return func(v float64) string { return formatNumber(v, o, compact) }
}

// lowestStep is the smallest step value: a value below every step is
// below this one, whatever order the steps were written in.
func lowestStep(t *panel.Thresholds) float64 {
	lo := math.Inf(1)
	for _, s := range t.Steps {
		lo = min(lo, s.Value)
	}
	return lo
}

// isInteger reports whether v is a whole number: such numbers are never
// given decimals by a panel-wide decimals option.
func isInteger(v float64) bool { return !math.IsInf(v, 0) && v == math.Trunc(v) }
