package variables

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func mustTime(t testing.TB, s string) Time {
	t.Helper()
	tm, err := ParseTime(s)
	if err != nil {
		t.Fatalf("ParseTime(%q): %v", s, err)
	}
	return tm
}

func TestParseTimeCanonical(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ in, want string }{
		{"now", "now"},
		{"now-0h", "now"},
		{"now+0s", "now"},
		{"now-0M", "now"},
		{"now-6h", "now-6h"},
		{"now-360m", "now-6h"},
		{"now-21600s", "now-6h"},
		{"now-006h", "now-6h"},
		{"now-90s", "now-90s"},
		{"now-120s", "now-2m"},
		{"now-90m", "now-90m"},
		{"now-24h", "now-1d"},
		{"now-7d", "now-1w"},
		{"now-168h", "now-1w"},
		{"now-8d", "now-8d"},
		{"now-14d", "now-2w"},
		{"now+1h", "now+1h"},
		{"now+60m", "now+1h"},
		{"now-1M", "now-1M"},
		{"now-12M", "now-1y"},
		{"now-13M", "now-13M"},
		{"now-24M", "now-2y"},
		{"now-2y", "now-2y"},
		{"now+1y", "now+1y"},
		{"now-100y", "now-100y"},
		{"now-1200M", "now-100y"},
		{"now-36525d", "now-36525d"},
		{"now-5217w", "now-5217w"},
		{"2026-12-03T10:00:00Z", "2026-12-03T10:00:00Z"},
		{"2026-12-03T11:00:00+01:00", "2026-12-03T10:00:00Z"},
		{"2026-12-03T05:30:00-04:30", "2026-12-03T10:00:00Z"},
		{"2026-12-03T10:00:00.500Z", "2026-12-03T10:00:00.5Z"},
		{"2026-12-03T10:00:00.000Z", "2026-12-03T10:00:00Z"},
		{"2026-12-03T10:00:00.123456789Z", "2026-12-03T10:00:00.123456789Z"},
		{"1764756000000", "2025-12-03T10:00:00Z"},
		{"1764756000123", "2025-12-03T10:00:00.123Z"},
		{"0", "1970-01-01T00:00:00Z"},
		{"253402300799999", "9999-12-31T23:59:59.999Z"},
		{"0001-01-01T00:00:00Z", "0001-01-01T00:00:00Z"},
		{"9999-12-31T23:59:59Z", "9999-12-31T23:59:59Z"},
	} {
		got, err := ParseTime(tc.in)
		if err != nil {
			t.Errorf("ParseTime(%q): %v", tc.in, err)
			continue
		}
		if got.String() != tc.want {
			t.Errorf("ParseTime(%q).String() = %q, want %q", tc.in, got.String(), tc.want)
		}
		if back := mustTime(t, got.String()); back != got {
			t.Errorf("ParseTime(%q) = %#v, but its String %q parses to %#v", tc.in, got, got.String(), back)
		}
	}
}

func TestTimeEquality(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b  string
		equal bool
	}{
		{"now-360m", "now-6h", true},
		{"now-7d", "now-1w", true},
		{"now-24h", "now-1d", true},
		{"now-12M", "now-1y", true},
		{"now-0h", "now", true},
		{"now-0M", "now-0s", true},
		{"2026-12-03T11:00:00+01:00", "2026-12-03T10:00:00Z", true},
		{"1764756000000", "2025-12-03T10:00:00Z", true},
		{"now-30d", "now-1M", false},
		{"now-365d", "now-1y", false},
		{"now-1h", "now+1h", false},
		{"2026-12-03T10:00:00Z", "2026-12-03T10:00:00.001Z", false},
	} {
		if got := mustTime(t, tc.a) == mustTime(t, tc.b); got != tc.equal {
			t.Errorf("ParseTime(%q) == ParseTime(%q): got %v, want %v", tc.a, tc.b, got, tc.equal)
		}
	}
	var zero Time
	if zero.String() != "now" || !zero.Relative() {
		t.Errorf("zero Time: got %q (relative %v), want now", zero.String(), zero.Relative())
	}
}

func TestParseTimeRefuses(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("9", 10<<10)
	for _, tc := range []struct{ in, want string }{
		{"", "want now"},
		{"now-", "want now-<n><unit>"},
		{"now-h", "want now-<n><unit>"},
		{"now-6", "want now-<n><unit>"},
		{"now-6x", "want now-<n><unit>"},
		{"now-6H", "want now-<n><unit>"},
		{"now-6ms", "want now-<n><unit>"},
		{"now--6h", "want now-<n><unit>"},
		{"now-+6h", "want now-<n><unit>"},
		{"now- 6h", "want now-<n><unit>"},
		{"now-6hh", "want now-<n><unit>"},
		{"now-6h ", "want now-<n><unit>"},
		{"now/d", "want now-<n><unit>"},
		{"now-1d/d", "want now-<n><unit>"},
		{"Now", "want now"},
		{"NOW-6h", "want now"},
		{" now", "want now"},
		{"now-99999999y", "offset too large"},
		{"now-99999999999999999999999999y", "offset too large"},
		{"now+101y", "offset too large"},
		{"now-1201M", "offset too large"},
		{"now-36526d", "offset too large"},
		{"now-5218w", "offset too large"},
		{"now-3155760001s", "offset too large"},
		{"now-6h\x00", "want now-<n><unit>"},
		{"now-6h; DROP TABLE t; --", "want now-<n><unit>"},
		{"$1", "want now"},
		{":other", "want now"},
		{"'now'", "want now"},
		{"-1", "want now"},
		{"1e3", "want now"},
		{"2026-12-03", "RFC 3339"},
		{"2026-12-03T10:00:00", "RFC 3339"},
		{"2026-12-03 10:00:00Z", "RFC 3339"},
		{"2026-13-03T10:00:00Z", "RFC 3339"},
		{"2026-12-03T25:00:00Z", "RFC 3339"},
		{"0000-01-01T00:00:00Z", "year out of range"},
		{"0001-01-01T00:30:00+01:00", "year out of range"},
		{"9999-12-31T23:30:00-01:00", "year out of range"},
		{"253402300800000", "out of range"},
		{"99999999999999999999", "out of range"},
		{long, "too long"},
	} {
		_, err := ParseTime(tc.in)
		if err == nil {
			t.Errorf("ParseTime(%.40q): got no error, want %q", tc.in, tc.want)
			continue
		}
		msg := err.Error()
		if !strings.Contains(msg, tc.want) {
			t.Errorf("ParseTime(%.40q): got %q, want an error with %q", tc.in, msg, tc.want)
		}
		checkSafeMessage(t, msg, tc.in)
	}
}

// checkSafeMessage fails when an error message that quotes value could
// harm whoever is shown it: too long, a raw control character, or more of
// the value than a short prefix.
func checkSafeMessage(t *testing.T, msg, value string) {
	t.Helper()
	if len(msg) > 300 {
		t.Errorf("message of %d bytes: %.100q...", len(msg), msg)
	}
	if !utf8.ValidString(msg) {
		t.Errorf("message is not valid UTF-8: %q", msg)
	}
	for _, r := range msg {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			t.Errorf("message has a raw control character %U: %q", r, msg)
			break
		}
	}
	if len(value) > 70 && strings.Contains(msg, value[:70]) {
		t.Errorf("message repeats more than 70 bytes of the value: %.100q", msg)
	}
}

func TestResolve(t *testing.T) {
	t.Parallel()
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		t.Fatal(err)
	}
	utcNow := time.Date(2026, 3, 31, 12, 34, 56, 0, time.UTC)
	// The last Sunday of March 2026: clocks in Berlin went from 02:00 to
	// 03:00, so the day was 23 hours long.
	berlinNow := time.Date(2026, 3, 29, 12, 0, 0, 0, berlin)
	for _, tc := range []struct {
		expr string
		now  time.Time
		loc  *time.Location
		want string
	}{
		{"now", utcNow, time.UTC, "2026-03-31T12:34:56Z"},
		{"now-6h", utcNow, time.UTC, "2026-03-31T06:34:56Z"},
		{"now+1w", utcNow, time.UTC, "2026-04-07T12:34:56Z"},
		{"now-1M", utcNow, time.UTC, "2026-03-03T12:34:56Z"}, // 31 February is 3 March
		{"now-13M", utcNow, time.UTC, "2025-03-03T12:34:56Z"},
		{"now-1y", utcNow, time.UTC, "2025-03-31T12:34:56Z"},
		{"now-1d", berlinNow, berlin, "2026-03-28T11:00:00+01:00"}, // 24 hours, not the calendar day
		{"now-24h", berlinNow, berlin, "2026-03-28T11:00:00+01:00"},
		{"now-1M", berlinNow, berlin, "2026-03-01T12:00:00+01:00"}, // 29 February 2026 is 1 March
		{"now-1y", berlinNow, berlin, "2025-03-29T12:00:00+01:00"},
		{"now", utcNow, berlin, "2026-03-31T14:34:56+02:00"},
		{"2026-12-03T10:00:00Z", utcNow, berlin, "2026-12-03T11:00:00+01:00"},
		{"2026-12-03T10:00:00.5Z", utcNow, nil, "2026-12-03T10:00:00.5Z"},
	} {
		got := mustTime(t, tc.expr).Resolve(tc.now, tc.loc)
		if s := got.Format(time.RFC3339Nano); s != tc.want {
			t.Errorf("%s at %s in %v: got %s, want %s", tc.expr, tc.now.Format(time.RFC3339), tc.loc, s, tc.want)
		}
		wantLoc := tc.loc
		if wantLoc == nil {
			wantLoc = time.UTC
		}
		if got.Location() != wantLoc {
			t.Errorf("%s in %v: got a time in %v", tc.expr, tc.loc, got.Location())
		}
	}
}

func TestRoundNow(t *testing.T) {
	t.Parallel()
	berlin := Location("Europe/Berlin")
	at := time.Date(2026, 12, 3, 10, 37, 12, 789, time.UTC)
	for _, tc := range []struct {
		now      time.Time
		interval time.Duration
		want     time.Time
	}{
		{at, time.Minute, time.Date(2026, 12, 3, 10, 37, 0, 0, time.UTC)},
		{at, 5 * time.Minute, time.Date(2026, 12, 3, 10, 35, 0, 0, time.UTC)},
		{at, time.Hour, time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)},
		{at, 24 * time.Hour, time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)},
		{at, 250 * time.Millisecond, time.Date(2026, 12, 3, 10, 37, 12, 0, time.UTC)},
		{at.Add(600 * time.Millisecond), 250 * time.Millisecond, time.Date(2026, 12, 3, 10, 37, 12, 500e6, time.UTC)},
		{at, 0, at},
		{at, -time.Minute, at},
		// Before the epoch, rounding is still down.
		{time.Date(1969, 12, 31, 23, 59, 30, 0, time.UTC), time.Minute, time.Date(1969, 12, 31, 23, 59, 0, 0, time.UTC)},
		// The location is kept; the instant does not depend on it.
		{at.In(berlin), time.Hour, time.Date(2026, 12, 3, 11, 0, 0, 0, berlin)},
	} {
		got := RoundNow(tc.now, tc.interval)
		if !got.Equal(tc.want) || got.Location() != tc.want.Location() {
			t.Errorf("RoundNow(%s, %v) = %s, want %s", tc.now.Format(time.RFC3339Nano), tc.interval,
				got.Format(time.RFC3339Nano), tc.want.Format(time.RFC3339Nano))
		}
	}

	// Every server gets the same answer: a multiple of the interval since
	// the Unix epoch, whatever the interval. time.Truncate counts from year
	// 1 instead, which differs for 7 minutes.
	for _, interval := range []time.Duration{7 * time.Minute, 1500 * time.Millisecond, 13 * time.Second, 3 * time.Hour} {
		for _, now := range []time.Time{at, at.Add(time.Hour + 17*time.Second), time.Date(1960, 5, 1, 3, 4, 5, 6, time.UTC)} {
			got := RoundNow(now, interval)
			if got.UnixNano()%int64(interval) != 0 || got.After(now) || now.Sub(got) >= interval {
				t.Errorf("RoundNow(%s, %v) = %s: not the multiple of the interval since the epoch at or before now",
					now.Format(time.RFC3339Nano), interval, got.Format(time.RFC3339Nano))
			}
		}
	}
	if RoundNow(at, 7*time.Minute).Equal(at.Truncate(7 * time.Minute)) {
		t.Errorf("RoundNow(7m) equals time.Truncate at %s; pick an instant where they differ", at)
	}
	// A monotonic reading would make == differ between equal instants.
	if now := time.Now(); RoundNow(now, 0) != now.Round(0) {
		t.Errorf("RoundNow(now, 0) kept the monotonic clock reading")
	}
}

func TestLocation(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, want string }{
		{"", "UTC"},
		{"UTC", "UTC"},
		{"Europe/Berlin", "Europe/Berlin"},
		{"America/New_York", "America/New_York"},
		{"Local", "UTC"},
		{"Nowhere/Else", "UTC"},
		{"../../etc/passwd", "UTC"},
		{"Europe/Berlin\x00", "UTC"},
	} {
		// Twice: the second answer comes from the cache.
		for range 2 {
			if got := Location(tc.name).String(); got != tc.want {
				t.Errorf("Location(%q) = %s, want %s", tc.name, got, tc.want)
			}
		}
	}
}

// FuzzParseTime checks that ParseTime never panics, that what it accepts
// has a canonical form that reads back as the same Time, and that its
// errors stay short and quote safely.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"now", "now-6h", "now-360m", "now+1M", "now-12M", "now-99999999y", "now-0h",
		"2026-12-03T10:00:00Z", "2026-12-03T11:00:00.5+01:00", "1764756000000", "0",
		"now-6h\x00", "x'); DROP TABLE t; --", "$1", ":other", "\xff\xfe", "9999-12-31T23:30:00-01:00",
	} {
		f.Add(s)
	}
	at := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, s string) {
		tm, err := ParseTime(s)
		if err != nil {
			checkSafeMessage(t, err.Error(), s)
			return
		}
		c := tm.String()
		back, err := ParseTime(c)
		if err != nil {
			t.Fatalf("ParseTime(%q) = %q, which does not parse: %v", s, c, err)
		}
		if back != tm || back.String() != c {
			t.Fatalf("ParseTime(%q) = %q, read back as %q", s, c, back.String())
		}
		// Resolving never panics and stays within the years 1 to 10000.
		if y := tm.Resolve(at, time.UTC).Year(); y < 1 || y > 10000 {
			t.Fatalf("%q resolved at %s: year %d", s, at, y)
		}
	})
}
