package panel

import (
	"math"
	"strings"
	"testing"
)

// TestParseGap: the gap option is a duration on a time axis, a number on a
// numeric one, or none; anything else is an error that names the value.
func TestParseGap(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		time    bool
		want    float64
		wantErr bool
	}{
		{"", true, 0, false},
		{"none", true, math.Inf(1), false},
		{"none", false, math.Inf(1), false},
		{"10m", true, 600, false},
		{"1h30m", true, 5400, false},
		{"2d", true, 2 * 86400, false},
		{" 90s ", true, 90, false},
		{"2.5", false, 2.5, false},
		{"10", true, 0, true}, // a bare number is not a duration
		{"10m", false, 0, true},
		{"-5m", true, 0, true},
		{"0", false, 0, true},
		{"soon", true, 0, true},
		{"xd", true, 0, true},
	}
	for _, tt := range tests {
		got, err := ParseGap(tt.in, tt.time)
		if (err != nil) != tt.wantErr || got != tt.want {
			t.Errorf("ParseGap(%q, time=%v): got %v, %v; want %v, error %v", tt.in, tt.time, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), tt.in) {
			t.Errorf("ParseGap(%q): error %q does not name the value", tt.in, err)
		}
	}
}

// TestCheckGap: a file's gap is refused only when no axis could take it.
func TestCheckGap(t *testing.T) {
	t.Parallel()
	for in, ok := range map[string]bool{"": true, "none": true, "10m": true, "2d": true, "2.5": true, "10": true,
		"soon": false, "-5m": false, "0": false, "xd": false} {
		if err := CheckGap(in); (err == nil) != ok {
			t.Errorf("CheckGap(%q): got %v, want ok %v", in, err, ok)
		}
	}
}
