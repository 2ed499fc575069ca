package views

import (
	"math"
	"testing"

	"github.com/livedash/dashboard/internal/panel"
)

// TestLevelOf: a value takes the colour of the highest step it reaches (at
// or above the step's value), the base colour below every step, and a cue
// in words that tells the levels apart without colour.
func TestLevelOf(t *testing.T) {
	t.Parallel()
	th := &panel.Thresholds{Base: "blue", Steps: []panel.Step{
		{Value: 80, Color: "orange"},
		{Value: 95, Color: "red", Label: "high"},
	}}
	plain := func(v float64) string { return formatNumber(v, panel.Options{Unit: "%"}, true) }
	tests := []struct {
		name  string
		t     *panel.Thresholds
		v     float64
		below bool
		want  level
	}{
		{"no thresholds", nil, 99, true, level{Step: -1}},
		{"below every step", th, 79.9, true, level{Class: "th-blue", Cue: "< 80%", Step: -1}},
		{"below, cue only on steps", th, 10, false, level{Class: "th-blue", Step: -1}},
		{"at a step is at it", th, 80, true, level{Class: "th-orange", Cue: "≥ 80%", Step: 0}},
		{"between steps", th, 94.99, false, level{Class: "th-orange", Cue: "≥ 80%", Step: 0}},
		{"a labelled step", th, 95, true, level{Class: "th-red", Cue: "high", Step: 1}},
		{"far above", th, 1e9, true, level{Class: "th-red", Cue: "high", Step: 1}},
		{"negative", th, -5, true, level{Class: "th-blue", Cue: "< 80%", Step: -1}},
		{"NaN reaches nothing", th, math.NaN(), true, level{Step: -1}},
		{"infinity reaches the top", th, math.Inf(1), true, level{Class: "th-red", Cue: "high", Step: 1}},
		{"default base is green", &panel.Thresholds{Steps: []panel.Step{{Value: 1, Color: "red"}}}, 0, true,
			level{Class: "th-green", Cue: "< 1%", Step: -1}},
		{"a colour not in the theme gets no class", &panel.Thresholds{Steps: []panel.Step{{Value: 1, Color: "hotpink"}}}, 2, true,
			level{Cue: "≥ 1%", Step: 0}},
		{"no steps", &panel.Thresholds{Base: "grey"}, 5, true, level{Class: "th-grey", Step: -1}},
	}
	for _, tt := range tests {
		if got := levelOf(tt.t, tt.v, plain, tt.below); got != tt.want {
			t.Errorf("%s: levelOf(%v) got %+v, want %+v", tt.name, tt.v, got, tt.want)
		}
	}
}

// TestStepFormat: a cue writes the step's value with the prefix and unit of
// the numbers beside it, but never with fixed decimals.
func TestStepFormat(t *testing.T) {
	t.Parallel()
	two := 2
	tests := []struct {
		o       panel.Options
		compact bool
		v       float64
		want    string
	}{
		{panel.Options{Prefix: "$", Decimals: &two}, false, 95, "$95"},
		{panel.Options{Prefix: "$", Decimals: &two}, false, 95.5, "$95.5"},
		{panel.Options{Unit: " ms"}, true, 25_000, "25k ms"},
		{panel.Options{Unit: " ms"}, false, 25_000, "25,000 ms"},
		{panel.Options{Prefix: "$"}, false, -10, "-$10"},
	}
	for _, tt := range tests {
		if got := stepFormat(tt.o, tt.compact)(tt.v); got != tt.want {
			t.Errorf("%+v compact=%v: %v got %q, want %q", tt.o, tt.compact, tt.v, got, tt.want)
		}
	}
}

// TestIsInteger: whole numbers are told apart from fractions, so that an id
// column never gets decimals.
func TestIsInteger(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want bool
	}{
		{0, true}, {17, true}, {-3, true}, {1e15, true}, {1e300, true},
		{0.5, false}, {17.000001, false}, {-0.1, false},
		{math.NaN(), false}, {math.Inf(1), false}, {math.Inf(-1), false},
	}
	for _, tt := range tests {
		if got := isInteger(tt.v); got != tt.want {
			t.Errorf("isInteger(%v) got %v, want %v", tt.v, got, tt.want)
		}
	}
}

// TestDecimalsNeeded: automatic formatting of a column shows as many
// decimals as its most precise value needs, at most two.
func TestDecimalsNeeded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		v    float64
		want int
	}{
		{12, 0}, {12.5, 1}, {12.25, 2}, {12.256, 2}, {12.001, 0}, {-0.5, 1}, {0.004, 0}, {1e6 + 0.1, 1},
		{0.05, 2}, {9.996, 0}, {-9.9, 1}, {-9.95, 2}, {1e16, 0}, {math.NaN(), 0}, {math.Inf(1), 0},
	}
	for _, tt := range tests {
		if got := decimalsNeeded(tt.v); got != tt.want {
			t.Errorf("decimalsNeeded(%v) got %d, want %d", tt.v, got, tt.want)
		}
	}
}
