package views

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/livedash/dashboard/internal/panel"
)

// TestStatFit: a stat value is SVG text laid out to the width estimated
// from its characters, in a viewBox exactly that wide and tall enough for
// the font, so that the browser scales the whole value into the panel.
// Wider characters get more room, and the estimate never reaches zero.
func TestStatFit(t *testing.T) {
	t.Parallel()
	tests := []struct {
		value string
		width string // textLength and the viewBox width
	}{
		{"42", "120"},
		{"$123,456,789.25", "810"}, // 11 digits, 3 separators and $: 11×60 + 3×30 + 60
		{"WMWMWMWMWMWMWMW", "1425"},
		{"iiii", "120"},
		{"", "50"},
		{"—", "95"},
		{"東京", "210"},
		{"é", "75"},
		{"e\u0301", "60"}, // a combining accent takes no room
	}
	for _, tt := range tests {
		f := fitOf(tt.value)
		if f.Width != tt.width || f.ViewBox != "0 0 "+tt.width+" 136" || f.Baseline != "109" {
			t.Errorf("fitOf(%q) got %+v, want width %s in a viewBox 0 0 %s 136 with the baseline at 109", tt.value, f, tt.width, tt.width)
		}
	}
}

// statParts renders a stat panel of the rows and returns its value element
// and the text of its cue line ("" without one).
func statParts(t *testing.T, o panel.Options, rows ...panel.Value) (value *html.Node, cue string, out string) {
	t.Helper()
	r := &panel.Result{Columns: []string{"v"}}
	for _, v := range rows {
		r.Rows = append(r.Rows, []panel.Value{v})
	}
	out = render(t, def(panel.Stat, o), r)
	nodes := parseFragment(t, out)
	vs := find(nodes, "text", "stat-value")
	if len(vs) != 1 {
		t.Fatalf("got %d stat values in %q, want 1", len(vs), out)
	}
	if c := find(nodes, "p", "stat-level"); len(c) == 1 {
		cue = text(c[0])
	}
	return vs[0], cue, out
}

// TestStatThresholds: the value is drawn in the colour of the step it
// reaches (class th-<colour> on the value and on the cue), and the cue line
// says the level in words; values that are not numbers are not coloured.
func TestStatThresholds(t *testing.T) {
	t.Parallel()
	th := &panel.Thresholds{Base: "green", Steps: []panel.Step{
		{Value: 1000, Color: "yellow"},
		{Value: 10_000, Color: "red", Label: "too many"},
	}}
	tests := []struct {
		v          panel.Value
		value, cls string
		cue        string
	}{
		{num(999), "999", "th-green", "< $1,000"},
		{num(1000), "$1,000", "th-yellow", "≥ $1,000"},
		{num(12_345), "$12.3k", "th-red", "too many"},
		{txt("n/a"), "n/a", "", ""},
		{null(), "—", "", ""},
	}
	for _, tt := range tests {
		v, cue, out := statParts(t, panel.Options{Prefix: "$", Thresholds: th}, tt.v)
		want := tt.value
		if tt.value == "999" {
			want = "$999"
		}
		if got := text(v); got != want {
			t.Errorf("%v: value %q, want %q", tt.v, got, want)
		}
		cls, _ := attr(v, "class")
		if tt.cls != "" && !hasClass(v, tt.cls) || tt.cls == "" && strings.Contains(cls, "th-") {
			t.Errorf("%v: value class %q, want %q", tt.v, cls, tt.cls)
		}
		if cue != tt.cue {
			t.Errorf("%v: cue %q, want %q in %s", tt.v, cue, tt.cue, out)
		}
	}
	// Without thresholds there is neither colour nor cue.
	v, cue, _ := statParts(t, panel.Options{}, num(5))
	if cls, _ := attr(v, "class"); cls != "stat-value" || cue != "" {
		t.Errorf("no thresholds: class %q and cue %q, want stat-value and none", cls, cue)
	}
}

// TestStatValueGeometry: the rendered value carries the fit of its text,
// and long values are never shortened.
func TestStatValueGeometry(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("9", 40)
	v, _, out := statParts(t, panel.Options{}, txt(long))
	if text(v) != long {
		t.Fatalf("value %q, want all 40 characters", text(v))
	}
	tl, _ := attr(v, "textLength")
	if want := strconv.Itoa(40 * 60); tl != want {
		t.Errorf("textLength %q, want %s", tl, want)
	}
	if adj, _ := attr(v, "lengthAdjust"); adj != "spacingAndGlyphs" {
		t.Errorf("lengthAdjust %q, want spacingAndGlyphs", adj)
	}
	svg := find(parseFragment(t, out), "svg", "stat-fit")
	if len(svg) != 1 {
		t.Fatalf("got %d stat-fit svgs, want 1", len(svg))
	}
	if vb, _ := attr(svg[0], "viewBox"); vb != "0 0 "+tl+" 136" {
		t.Errorf("viewBox %q, want 0 0 %s 136", vb, tl)
	}
	if par, _ := attr(svg[0], "preserveAspectRatio"); par != "xMinYMid" {
		t.Errorf("preserveAspectRatio %q, want xMinYMid (meet, the default: scale to fit both ways)", par)
	}
}
