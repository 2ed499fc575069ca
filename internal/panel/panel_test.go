package panel

import (
	"math"
	"testing"
)

func TestOptionsEqual(t *testing.T) {
	two, alsoTwo, three := 2, 2, 3
	tests := []struct {
		a, b Options
		want bool
	}{
		{Options{}, Options{}, true},
		{Options{Decimals: &two}, Options{Decimals: &alsoTwo}, true},
		{Options{Decimals: &two}, Options{Decimals: &three}, false},
		{Options{Decimals: &two}, Options{}, false},
		{Options{Unit: "ms"}, Options{Unit: "s"}, false},
	}
	for _, tt := range tests {
		if got := tt.a.Equal(tt.b); got != tt.want {
			t.Errorf("%+v.Equal(%+v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestResultHash(t *testing.T) {
	a := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 1, Text: "1"}}}}
	b := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 1, Text: "1"}}}}
	c := &Result{Columns: []string{"n"}, Rows: [][]Value{{{Kind: Number, Num: 2, Text: "2"}}}}
	if a.Hash() != b.Hash() {
		t.Errorf("equal rows: hashes differ, want equal")
	}
	if a.Hash() == c.Hash() {
		t.Errorf("different rows: hashes equal, want different")
	}
}

// TestThresholdsLevel: a value takes the colour of the highest step it
// reaches, the step's value included, and the base colour below them all.
func TestThresholdsLevel(t *testing.T) {
	th := &Thresholds{Steps: []Step{{Value: 80, Color: "orange"}, {Value: 95, Color: "red"}}}
	tests := []struct {
		th    *Thresholds
		v     float64
		step  int
		color string
	}{
		{th, 10, -1, "green"},
		{th, 79.999, -1, "green"},
		{th, 80, 0, "orange"},
		{th, 94, 0, "orange"},
		{th, 95, 1, "red"},
		{th, 1e9, 1, "red"},
		{th, math.NaN(), -1, "green"},
		{&Thresholds{Base: "blue", Steps: []Step{{Value: 0, Color: "red"}}}, -1, -1, "blue"},
		{nil, 5, -1, ""},
	}
	for _, tt := range tests {
		step, color := tt.th.Level(tt.v)
		if step != tt.step || color != tt.color {
			t.Errorf("Level(%g) = %d, %q; want %d, %q", tt.v, step, color, tt.step, tt.color)
		}
	}
}

// TestOptionsNormalize: thresholds written in SQL come out in ascending
// order of value, without colours the theme does not have, in the panel's
// options and in its table columns.
func TestOptionsNormalize(t *testing.T) {
	o := Options{
		Thresholds: &Thresholds{Base: "pink", Steps: []Step{{Value: 95, Color: "red"}, {Value: 80, Color: "orange"}, {Value: 90, Color: "#f00"}}},
		Columns:    []Column{{Name: "n", Thresholds: &Thresholds{Steps: []Step{{Value: 2, Color: "blue"}, {Value: 1, Color: "grey"}}}}, {Name: "m"}},
	}
	o.Normalize()
	want := Options{
		Thresholds: &Thresholds{Steps: []Step{{Value: 80, Color: "orange"}, {Value: 95, Color: "red"}}},
		Columns:    []Column{{Name: "n", Thresholds: &Thresholds{Steps: []Step{{Value: 1, Color: "grey"}, {Value: 2, Color: "blue"}}}}, {Name: "m"}},
	}
	if !o.Equal(want) {
		t.Errorf("got %+v %+v, want %+v %+v", *o.Thresholds, *o.Columns[0].Thresholds, *want.Thresholds, *want.Columns[0].Thresholds)
	}
	if _, color := o.Thresholds.Level(97); color != "red" {
		t.Errorf("Level(97) = %q after Normalize, want red", color)
	}
}
