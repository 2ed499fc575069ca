package variables

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	// The zone database is compiled in so that a dashboard's time zone
	// means the same on every server: a minimal container (scratch,
	// distroless) has no /usr/share/zoneinfo, and without it every zone
	// would silently become UTC there and nowhere else. It costs about
	// 450 KB of binary.
	_ "time/tzdata"
)

// Time is one end of a time range as a dashboard author or a viewer writes
// it: "now", an offset from now ("now-6h", "now+1d", "now-1M"), or an
// absolute instant. It is comparable: two Times are == exactly when their
// String forms are equal, so "now-360m" == "now-6h". The zero Time is "now".
type Time struct {
	abs bool
	// sec is the Unix second of an absolute Time, or the signed offset in
	// seconds of a relative one with a fixed unit.
	sec int64
	// nsec is the nanosecond within sec of an absolute Time.
	nsec int32
	// months is the signed offset of a relative Time with a calendar unit
	// (M, y); sec is then zero.
	months int32
}

// Bounds of what ParseTime accepts. An offset of a fixed unit may be at
// most 100 years of 365.25 days; of a calendar unit, 1200 months.
const (
	maxOffsetSeconds = 36525 * 24 * 3600
	maxOffsetMonths  = 1200
	// maxTimeLen is far above the longest valid form (an RFC 3339 time with
	// nanoseconds and an offset is 35 bytes) and stops a long input early.
	maxTimeLen = 64
	// maxEpochMillis is 9999-12-31T23:59:59.999Z.
	maxEpochMillis = 253402300799999
)

// fixedUnits are the units of a fixed length, largest first, as String
// chooses them.
var fixedUnits = []struct {
	unit byte
	sec  int64
}{{'w', 7 * 24 * 3600}, {'d', 24 * 3600}, {'h', 3600}, {'m', 60}, {'s', 1}}

// ParseTime parses a time expression: "now"; "now-<n><unit>" or
// "now+<n><unit>" where unit is s, m, h, d (24 hours) or w (7 days), or the
// calendar units M (month) and y (year); an RFC 3339 time
// ("2026-12-03T10:00:00Z", "2026-12-03T11:00:00+01:00"); or Unix epoch
// milliseconds ("1764756000000", the form Grafana writes in addresses).
// Offsets are at most 100 years; absolute times lie in the years 1 to 9999
// (UTC). The error quotes at most a short, escaped prefix of s.
func ParseTime(s string) (Time, error) {
	if len(s) > maxTimeLen {
		return Time{}, timeError(s, "too long")
	}
	if s == "now" {
		return Time{}, nil
	}
	if rest, ok := strings.CutPrefix(s, "now"); ok {
		return parseOffset(s, rest)
	}
	if s != "" && allDigits(s) {
		ms, err := strconv.ParseInt(s, 10, 64)
		if err != nil || ms > maxEpochMillis {
			return Time{}, timeError(s, "epoch milliseconds out of range (at most year 9999)")
		}
		return Time{abs: true, sec: ms / 1000, nsec: int32(ms%1000) * 1e6}, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		// time.Parse's message repeats the whole input; ours does not.
		return Time{}, timeError(s, "want now, now-<n><unit> (unit s, m, h, d, w, M or y), an RFC 3339 time or epoch milliseconds")
	}
	if y := t.UTC().Year(); y < 1 || y > 9999 {
		return Time{}, timeError(s, "year out of range (1 to 9999 in UTC)")
	}
	return Time{abs: true, sec: t.Unix(), nsec: int32(t.Nanosecond())}, nil
}

// parseOffset parses rest, the part of s after "now".
func parseOffset(s, rest string) (Time, error) {
	const want = "want now-<n><unit> or now+<n><unit> with unit s, m, h, d, w, M or y"
	if len(rest) < 3 || (rest[0] != '-' && rest[0] != '+') {
		return Time{}, timeError(s, want)
	}
	digits, unit := rest[1:len(rest)-1], rest[len(rest)-1]
	if !allDigits(digits) {
		return Time{}, timeError(s, want)
	}
	var limit, scale int64
	switch unit {
	case 'M':
		limit, scale = maxOffsetMonths, 1
	case 'y':
		limit, scale = maxOffsetMonths, 12
	default:
		for _, u := range fixedUnits {
			if u.unit == unit {
				limit, scale = maxOffsetSeconds, u.sec
			}
		}
		if scale == 0 {
			return Time{}, timeError(s, want)
		}
	}
	// Accumulate with the bound checked at each digit, so no count of
	// digits can overflow.
	var n int64
	for i := 0; i < len(digits); i++ {
		n = n*10 + int64(digits[i]-'0')
		if n*scale > limit {
			return Time{}, timeError(s, "offset too large (at most 100 years)")
		}
	}
	n *= scale
	if rest[0] == '-' {
		n = -n
	}
	if unit == 'M' || unit == 'y' {
		return Time{months: int32(n)}, nil
	}
	return Time{sec: n}, nil
}

func allDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func timeError(s, reason string) error {
	return fmt.Errorf("time %s: %s", quote(s), reason)
}

// String returns the canonical form of t, which ParseTime reads back as t:
// "now"; an offset in the largest unit that divides it exactly ("now-6h"
// for now-360m, "now-1w" for now-7d, "now-1y" for now-12M); an absolute
// time in RFC 3339 in UTC, with a fraction of a second only when it has one.
func (t Time) String() string {
	if t.abs {
		return time.Unix(t.sec, int64(t.nsec)).UTC().Format(time.RFC3339Nano)
	}
	n, unit := int64(t.months), byte('M')
	switch {
	case t.months == 0 && t.sec == 0:
		return "now"
	case t.months != 0:
		if n%12 == 0 {
			n, unit = n/12, 'y'
		}
	default:
		for _, u := range fixedUnits {
			if t.sec%u.sec == 0 {
				n, unit = t.sec/u.sec, u.unit
				break
			}
		}
	}
	sign := byte('+')
	if n < 0 {
		sign, n = '-', -n
	}
	return "now" + string(sign) + strconv.FormatInt(n, 10) + string(unit)
}

// Relative reports whether t depends on the time it is resolved at.
func (t Time) Relative() bool { return !t.abs }

// Resolve returns the instant t stands for when it is now, in loc. Fixed
// units are exact durations (a day is 24 hours even across a change of
// daylight saving time); months and years are calendar arithmetic in loc
// (time.AddDate: now-1M on 31 March is 3 March, or 2 March in a leap year).
func (t Time) Resolve(now time.Time, loc *time.Location) time.Time {
	if loc == nil {
		loc = time.UTC
	}
	if t.abs {
		return time.Unix(t.sec, int64(t.nsec)).In(loc)
	}
	now = now.In(loc)
	if t.months != 0 {
		return now.AddDate(0, int(t.months), 0)
	}
	return now.Add(time.Duration(t.sec) * time.Second)
}

// RoundNow returns now rounded down to a multiple of interval since the
// Unix epoch, in now's location. Every server rounds the same instant to the
// same result (unlike time.Truncate, which counts from year 1 and so differs
// from the epoch for intervals that do not divide a day), so viewers of one
// view on different servers see the same range, and a relative range moves
// only once per interval. A non-positive interval leaves now unchanged
// (without its monotonic reading).
func RoundNow(now time.Time, interval time.Duration) time.Time {
	now = now.Round(0)
	if interval <= 0 {
		return now
	}
	// Split into seconds and nanoseconds so that no instant overflows.
	sec, nsec := now.Unix(), int64(now.Nanosecond())
	if interval%time.Second == 0 {
		step := int64(interval / time.Second)
		r := sec % step
		if r < 0 {
			r += step
		}
		return time.Unix(sec-r, 0).In(now.Location())
	}
	// A sub-second or fractional interval: nanoseconds since the epoch
	// cover 1678 to 2262, which holds every "now" this program will see.
	ns := sec*1e9 + nsec
	r := ns % int64(interval)
	if r < 0 {
		r += int64(interval)
	}
	return time.Unix(0, ns-r).In(now.Location())
}

// zones caches lookupZone's answers, the unknown names too: loading a zone
// reads and parses its data every time. The names come from dashboards,
// never from viewers, so the cache stays small.
var zones sync.Map // string -> zone

type zone struct {
	loc   *time.Location
	known bool
}

// Location returns the IANA time zone called name, or UTC when name is
// empty or not a zone. "Local" is not a zone here: the server's own zone
// would make the same view differ between servers.
func Location(name string) *time.Location {
	loc, _ := lookupZone(name)
	return loc
}

// lookupZone is Location that also says whether name was a zone.
func lookupZone(name string) (*time.Location, bool) {
	if name == "" || name == "UTC" {
		return time.UTC, true
	}
	if z, ok := zones.Load(name); ok {
		return z.(zone).loc, z.(zone).known
	}
	z := zone{loc: time.UTC}
	if name != "Local" {
		if loc, err := time.LoadLocation(name); err == nil {
			z = zone{loc: loc, known: true}
		}
	}
	zones.Store(name, z)
	return z.loc, z.known
}
