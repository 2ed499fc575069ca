package views

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func TestNiceAxis(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi float64
		want   []float64
	}{
		{0, 10, []float64{0, 2, 4, 6, 8, 10}},
		{0, 100, []float64{0, 20, 40, 60, 80, 100}},
		{0, 80, []float64{0, 20, 40, 60, 80}},
		{3, 97, []float64{0, 20, 40, 60, 80, 100}},
		{0, 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{0.1, 0.3, []float64{0.1, 0.15, 0.2, 0.25, 0.3}},
		{-45, 30, []float64{-60, -40, -20, 0, 20, 40}},
		{0, 0, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{1200, 12345, []float64{0, 5000, 10000, 15000}},
		{-3, -1, []float64{-3, -2.5, -2, -1.5, -1}},
		{math.NaN(), 1, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{10, 0, []float64{0, 2, 4, 6, 8, 10}},
		{-1e308, 1e308, []float64{-1e300, -5e299, 0, 5e299, 1e300}},
		{math.Inf(-1), 0, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{5e-324, 1e-323, []float64{0, 0.2, 0.4, 0.6, 0.8, 1}},
		{1e15 + 0.125, 1e15 + 0.25, []float64{9e14, 9.5e14, 1e15, 1.05e15, 1.1e15}},
	}
	for _, tt := range tests {
		a := niceAxis(tt.lo, tt.hi)
		if len(a.Ticks) < 4 || len(a.Ticks) > 7 || a.Lo() > math.Max(tt.lo, -1e300) && !math.IsNaN(tt.lo) && !math.IsInf(tt.lo, 0) {
			t.Errorf("niceAxis(%v, %v): got %v", tt.lo, tt.hi, a.Ticks)
		}
		if len(tt.want) == 0 {
			continue
		}
		if !reflect.DeepEqual(a.Ticks, tt.want) {
			t.Errorf("niceAxis(%v, %v): got %v, want %v", tt.lo, tt.hi, a.Ticks, tt.want)
		}
	}
}

// TestNiceAxisProperties checks random ranges: 4-6 ticks, steps of 1, 2 or
// 5 × 10^n, the range covered, and ticks exactly multiples of the step.
func TestNiceAxisProperties(t *testing.T) {
	t.Parallel()
	rng := rand.New(rand.NewPCG(1, 2))
	const runs = 20000
	sevens := 0
	defer func() {
		if sevens > runs/50 {
			t.Errorf("got 7 ticks in %d of %d ranges, want under 2%%", sevens, runs)
		}
	}()
	for i := range runs {
		scale := math.Pow10(rng.IntN(16) - 6)
		lo := (rng.Float64()*2 - 1) * scale
		hi := lo + rng.Float64()*scale*rng.Float64()
		if i%5 == 0 {
			lo = 0
		}
		a := niceAxis(lo, hi)
		n := len(a.Ticks)
		if n == 7 {
			sevens++ // no 1-2-5 step fits 4-6 ticks for some narrow ranges
		} else if n < 4 || n > 6 {
			t.Fatalf("niceAxis(%g, %g): got %d ticks %v, want 4-6", lo, hi, n, a.Ticks)
		}
		if a.Lo() > lo || a.Hi() < hi {
			t.Fatalf("niceAxis(%g, %g): ticks %v do not cover the range", lo, hi, a.Ticks)
		}
		m := a.Step / math.Pow10(int(math.Floor(math.Log10(a.Step)+1e-9)))
		if math.Abs(m-1) > 1e-9 && math.Abs(m-2) > 1e-9 && math.Abs(m-5) > 1e-9 {
			t.Fatalf("niceAxis(%g, %g): step %g is not 1, 2 or 5 × 10^n", lo, hi, a.Step)
		}
		for j := 1; j < n; j++ {
			if d := a.Ticks[j] - a.Ticks[j-1]; math.Abs(d-a.Step) > a.Step*1e-9 {
				t.Fatalf("niceAxis(%g, %g): uneven ticks %v", lo, hi, a.Ticks)
			}
		}
		// Labels are exact: no float noise like 0.30000000000000004.
		if math.Max(math.Abs(a.Lo()), math.Abs(a.Hi())) < 10_000 {
			for j, l := range axisLabels(a, panel.Options{}) {
				f, err := strconv.ParseFloat(strings.ReplaceAll(l, ",", ""), 64)
				if err != nil || math.Abs(f-a.Ticks[j]) > a.Step*1e-6 {
					t.Fatalf("niceAxis(%g, %g): label %q for tick %g", lo, hi, l, a.Ticks[j])
				}
			}
		}
	}
}

func TestAxisLabels(t *testing.T) {
	t.Parallel()
	tests := []struct {
		lo, hi float64
		o      panel.Options
		want   string
	}{
		{0, 1, panel.Options{}, "0.0 0.2 0.4 0.6 0.8 1.0"},
		{0, 100, panel.Options{Unit: "%"}, "0% 20% 40% 60% 80% 100%"},
		{0, 50000, panel.Options{Prefix: "$"}, "$0 $10k $20k $30k $40k $50k"},
		{-3000, 2000, panel.Options{}, "-3,000 -2,000 -1,000 0 1,000 2,000"},
		{0, 2.5e6, panel.Options{}, "0 500k 1M 1.5M 2M 2.5M"},
	}
	for _, tt := range tests {
		got := strings.Join(axisLabels(niceAxis(tt.lo, tt.hi), tt.o), " ")
		if got != tt.want {
			t.Errorf("labels(%v, %v): got %q, want %q", tt.lo, tt.hi, got, tt.want)
		}
	}
}

func TestTimeTicks(t *testing.T) {
	t.Parallel()
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	tests := []struct {
		lo, hi string
		max    int
		want   string
	}{
		{"2026-03-14T12:00:03Z", "2026-03-14T12:00:50Z", 6, "12:00:10 12:00:20 12:00:30 12:00:40 12:00:50"},
		{"2026-03-14T12:00:00Z", "2026-03-14T13:00:00Z", 6, "12:00 12:15 12:30 12:45 13:00"},
		{"2026-03-14T12:07:00Z", "2026-03-14T12:58:00Z", 6, "12:10 12:20 12:30 12:40 12:50"},
		{"2026-03-14T18:00:00Z", "2026-03-15T06:00:00Z", 6, "18:00 21:00 Mar 15 03:00 06:00"},
		{"2026-03-01T00:00:00Z", "2026-03-08T00:00:00Z", 8, "Mar 01 Mar 02 Mar 03 Mar 04 Mar 05 Mar 06 Mar 07 Mar 08"},
		{"2026-03-01T00:00:00Z", "2026-03-29T00:00:00Z", 6, "Mar 02 Mar 09 Mar 16 Mar 23"},
		{"2025-01-15T00:00:00Z", "2026-01-15T00:00:00Z", 6, "Mar 2025 May 2025 Jul 2025 Sep 2025 Nov 2025 Jan 2026"},
		{"2015-06-01T00:00:00Z", "2026-01-01T00:00:00Z", 6, "2016 2018 2020 2022 2024 2026"},
		// Non-UTC input is shown in UTC.
		{"2026-03-14T14:00:00+02:00", "2026-03-14T16:00:00+02:00", 3, "12:00 13:00 14:00"},
	}
	for _, tt := range tests {
		var got []string
		for _, tk := range timeTicks(at(tt.lo), at(tt.hi), tt.max, nil) {
			got = append(got, tk.Label)
		}
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("timeTicks(%s, %s, %d): got %q, want %q", tt.lo, tt.hi, tt.max, s, tt.want)
		}
	}
}

func TestFormatNumber(t *testing.T) {
	t.Parallel()
	one, zero := 1, 0
	tests := []struct {
		v       float64
		o       panel.Options
		compact bool
		want    string
	}{
		{0, panel.Options{}, true, "0"},
		{math.Copysign(0, -1), panel.Options{}, true, "0"},
		{1234, panel.Options{}, true, "1,234"},
		{9999.999, panel.Options{}, true, "10,000"},
		{12345, panel.Options{}, true, "12.3k"},
		{12345, panel.Options{}, false, "12,345"},
		{999_960, panel.Options{}, true, "1M"},
		{4_500_000, panel.Options{}, true, "4.5M"},
		{123_456_789, panel.Options{}, true, "123M"},
		{2.5e12, panel.Options{}, true, "2.5T"},
		{3.14159, panel.Options{}, true, "3.14"},
		{2.5, panel.Options{}, true, "2.5"},
		{0.001234, panel.Options{}, true, "0.0012"},
		{-1234.5, panel.Options{Prefix: "$"}, false, "-$1,234.5"},
		{99.5, panel.Options{Unit: "%"}, true, "99.5%"},
		{1234.5678, panel.Options{Decimals: &one}, true, "1,234.6"},
		{123456, panel.Options{Decimals: &zero}, true, "123,456"},
		{-0.4, panel.Options{Decimals: &zero}, true, "0"},
		{math.NaN(), panel.Options{}, true, "NaN"},
		{math.Inf(1), panel.Options{}, true, "∞"},
		{math.Inf(-1), panel.Options{Unit: "s"}, true, "-∞s"},
	}
	for _, tt := range tests {
		if got := formatNumber(tt.v, tt.o, tt.compact); got != tt.want {
			t.Errorf("formatNumber(%v, %+v, %v): got %q, want %q", tt.v, tt.o, tt.compact, got, tt.want)
		}
	}
}

// TestCoord: a coordinate is written to a tenth, without "-0", and the
// integer arithmetic of appendCoord writes what formatting the rounded
// float would, on a spread of values and at the edges of its range.
func TestCoord(t *testing.T) {
	t.Parallel()
	for in, want := range map[float64]string{0: "0", -0.04: "0", 1.25: "1.3", 12.345: "12.3", 100: "100", -3.06: "-3.1",
		-0.05: "-0.1", 0.95: "1", 1e15: "1000000000000000", math.NaN(): "NaN", math.Inf(-1): "-Inf"} {
		if got := coord(in); got != want {
			t.Errorf("coord(%v): got %q, want %q", in, got, want)
		}
	}
	want := func(f float64) string {
		r := math.Round(f*10) / 10
		if r == 0 {
			r = 0
		}
		return strconv.FormatFloat(r, 'f', -1, 64)
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		f := (rnd.Float64() - 0.5) * math.Pow(10, float64(rnd.IntN(12)))
		if got := coord(f); got != want(f) {
			t.Fatalf("coord(%v): got %q, want %q", f, got, want(f))
		}
	}
}
