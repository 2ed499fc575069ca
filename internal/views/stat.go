package views

import (
	"math"
	"strconv"
	"time"
	"unicode"

	"github.com/livedash/dashboard/internal/panel"
)

// statView is what a stat panel shows.
type statView struct {
	Value     string
	Null      bool
	Fit       statFit
	Level     level // the value against the panel's thresholds; zero without
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
		s.Level = levelOf(o.Thresholds, last.Num, stepFormat(o, true), true)
	default:
		s.Value = formatValue(last, o, loc)
	}
	s.Fit = fitOf(s.Value)
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
		p := groupThousands(noNegZero(trimZeros(strconv.FormatFloat(pct, 'f', 1, 64))))
		if p == "0" {
			// A change too small to show in tenths of a percent is still
			// a change: "+0%" beside a rise would read as none.
			text += " (<0.1%)"
		} else {
			text += " (" + sign + p + "%)"
		}
	}
	return text, dir
}

// statFit is the geometry of a stat value drawn as SVG text, in units of
// one hundredth of the font size. The value is laid out to an exact width
// (textLength) estimated from its characters, and the viewBox holds that
// width and the font's height; the browser scales the viewBox into the
// space the panel has, keeping its aspect ratio, so the whole value is
// shown at the largest size that fits, at any panel and screen size,
// without measuring anything in the browser. The geometry depends on the
// text only, so every viewer gets the same bytes.
type statFit struct {
	ViewBox  string // "0 0 W 136"
	Width    string // W, the text's length
	Baseline string // the y of the baseline
}

// The vertical layout of a stat value: a 100-unit font whose ascent and
// descent fit above and below the baseline in the fonts a system-ui face
// resolves to (DejaVu Sans, Roboto and San Francisco have about 0.93-0.95
// and 0.24; Segoe UI, the tallest, 1.08 and 0.25).
const (
	statFontHeight = 136
	statBaseline   = 109
)

func fitOf(s string) statFit {
	w := max(textWidth(s), 0.5) * 100
	ws := coord(w)
	return statFit{ViewBox: "0 0 " + ws + " " + strconv.Itoa(statFontHeight), Width: ws, Baseline: strconv.Itoa(statBaseline)}
}

// textWidth estimates the advance width of s in a bold sans-serif face, in
// ems. It need not be exact: the value is laid out to this width, so a
// wrong estimate only widens or narrows the glyphs a little; it never
// makes the value overflow. The widths are those of common system fonts
// (tabular digits about 0.6 em, narrow punctuation about 0.3 em).
func textWidth(s string) float64 {
	w := 0.0
	for _, r := range s {
		w += runeWidth(r)
	}
	return w
}

func runeWidth(r rune) float64 {
	switch {
	case r >= '0' && r <= '9':
		return 0.6
	case r == '.' || r == ',' || r == ':' || r == ';' || r == '\'' || r == '|' || r == '!' ||
		r == 'i' || r == 'j' || r == 'l' || r == 'I':
		return 0.3
	case r == ' ' || r == '(' || r == ')' || r == '[' || r == ']' || r == '/' || r == '\\':
		return 0.35
	case r == '-' || r == 'f' || r == 't' || r == 'r':
		return 0.42
	case r == 'M' || r == 'W' || r == 'm' || r == 'w' || r == '%' || r == '@' || r == '—':
		return 0.95
	case r >= 'A' && r <= 'Z':
		return 0.74
	case r < 0x80:
		return 0.6
	case unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Me, r) || unicode.Is(unicode.Cf, r):
		return 0 // combining marks and format characters take no room
	case wide(r):
		return 1.05
	default:
		return 0.75
	}
}

// wide reports whether r is drawn a full em wide or more: CJK, Hangul,
// full-width forms and emoji.
func wide(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hangul, unicode.Hiragana, unicode.Katakana) ||
		(r >= 0xFF00 && r <= 0xFF60) || (r >= 0x1F000 && r <= 0x1FAFF) || (r >= 0x2600 && r <= 0x27BF)
}
