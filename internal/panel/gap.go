package panel

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// ParseGap reads the gap option (Options.Gap): the longest step between two points that
// a line joins, in x units (seconds on a time axis). "none" joins every
// step (only NULLs break the line): +Inf. Empty means the default, twice
// the median step: 0. A time axis takes a duration (90s, 10m, 1h30m, or
// whole days as 2d), a numeric one a number.
func ParseGap(s string, timeAxis bool) (float64, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "":
		return 0, nil
	case "none":
		return math.Inf(1), nil
	}
	if timeAxis {
		var d time.Duration
		var err error
		if days, ok := strings.CutSuffix(s, "d"); ok {
			var n int
			n, err = strconv.Atoi(days)
			d = time.Duration(n) * 24 * time.Hour
		} else {
			d, err = time.ParseDuration(s)
		}
		if err != nil || d <= 0 {
			return 0, fmt.Errorf("gap %q is not a duration such as 10m, 1h30m or 2d, nor none", s)
		}
		return d.Seconds(), nil
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) {
		return 0, fmt.Errorf("gap %q is not a positive number (the x axis is numeric), nor none", s)
	}
	return v, nil
}

// CheckGap reports whether s is a gap for some axis: a duration, a
// positive number or none. Which one a panel needs depends on its data, so
// a file check can only refuse what fits neither.
func CheckGap(s string) error {
	if _, err := ParseGap(s, true); err == nil {
		return nil
	}
	if _, err := ParseGap(s, false); err == nil {
		return nil
	}
	return fmt.Errorf("%q is not a duration such as 10m, 1h30m or 2d, a positive number, nor none", strings.TrimSpace(s))
}
