package web

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/hub"
)

func TestParseIfNoneMatch(t *testing.T) {
	v, _ := hub.ParseVersion("a0a1a2a3a4a5a6a7a8a9aaabacadaeaf")
	w, _ := hub.ParseVersion(strings.Repeat("0", 32))
	vs, ws := v.String(), w.String()
	for _, tt := range []struct {
		header string
		want   ifNoneMatch
	}{
		{`"` + vs + `"`, ifNoneMatch{tags: []hub.Version{v}}},
		{`W/"` + vs + `"`, ifNoneMatch{tags: []hub.Version{v}}},
		{vs, ifNoneMatch{tags: []hub.Version{v}}}, // unquoted, as some clients send it
		{`"x", "` + vs + `"`, ifNoneMatch{tags: []hub.Version{v}}},
		{`"x" , W/"` + vs + `"`, ifNoneMatch{tags: []hub.Version{v}}},
		// Every tag of a list counts, not only the first.
		{`"` + vs + `", "` + ws + `"`, ifNoneMatch{tags: []hub.Version{v, w}}},
		{`W/"` + ws + `",W/"` + vs + `"`, ifNoneMatch{tags: []hub.Version{w, v}}},
		{`*`, ifNoneMatch{any: true}},
		{` * `, ifNoneMatch{any: true}},
		{``, ifNoneMatch{}},
		{`"*"`, ifNoneMatch{}},
		{`"garbage"`, ifNoneMatch{}},
		{`"1-0000000000000000"`, ifNoneMatch{}}, // the old form
		{`W/`, ifNoneMatch{}},
		{`,,,`, ifNoneMatch{}},
		{`"` + strings.Repeat("f", 40000) + `"`, ifNoneMatch{}},
		{"\"\xff\x00\"", ifNoneMatch{}},
		{strings.Repeat(`"`+vs+`",`, 1000), ifNoneMatch{tags: slices.Repeat([]hub.Version{v}, maxTags)}},
	} {
		got := parseIfNoneMatch(tt.header)
		if got.any != tt.want.any || !slices.Equal(got.tags, tt.want.tags) {
			t.Errorf("parseIfNoneMatch(%.60q): got %+v, want %+v", tt.header, got, tt.want)
		}
	}
}

func FuzzParseIfNoneMatch(f *testing.F) {
	for _, s := range []string{"", `"a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"`, `W/"00000000000000000000000000000000"`,
		`"x", "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"`, "*", `"`, `W/""`, "1-0000000000000A00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		c := parseIfNoneMatch(h)
		if c.any && len(c.tags) > 0 {
			t.Fatalf("parseIfNoneMatch(%q): both * and tags", h)
		}
		if len(c.tags) > maxTags {
			t.Fatalf("parseIfNoneMatch(%q): %d tags, want at most %d", h, len(c.tags), maxTags)
		}
		// Every version found must be in the header, as the server sends it.
		for _, v := range c.tags {
			if !strings.Contains(h, v.String()) {
				t.Fatalf("parseIfNoneMatch(%q) found %v, which is not in the header", h, v)
			}
		}
	})
}

func TestParseWait(t *testing.T) {
	const def, max = 25 * time.Second, 55 * time.Second
	for _, tt := range []struct {
		in      string
		want    time.Duration
		wantErr bool
	}{
		{"", def, false},
		{"0", 0, false},
		{"1", time.Second, false},
		{"2.5", 2500 * time.Millisecond, false},
		{"30", 30 * time.Second, false},
		{"55", max, false},
		{"999", max, false},
		{"999999", max, false},
		{"10s", 10 * time.Second, false},
		{"1m", max, false},
		{"500ms", 500 * time.Millisecond, false},
		{"abc", 0, true},
		{"-1", 0, true},
		{"-1s", 0, true},
		{"NaN", 0, true},
		{"Inf", 0, true},
		{"+Inf", 0, true},
		{"1e400", 0, true},
		{"0x10", 0, true},
		{" 1", 0, true},
		{"1\x00", 0, true},
		{"\xff", 0, true},
	} {
		got, err := parseWait(tt.in, def, max)
		if (err != nil) != tt.wantErr || (!tt.wantErr && got != tt.want) {
			t.Errorf("parseWait(%q): got %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
		}
		if err != nil && !strings.Contains(err.Error(), "wait must be") {
			t.Errorf("parseWait(%q): got error %q, want one that says what wait must be", tt.in, err)
		}
	}
}

func FuzzParseWait(f *testing.F) {
	for _, s := range []string{"", "0", "1", "2.5", "999", "10s", "abc", "-1", "NaN", "1e400", "9223372036s", "1e-300"} {
		f.Add(s)
	}
	const def, max = 25 * time.Second, 55 * time.Second
	f.Fuzz(func(t *testing.T, s string) {
		d, err := parseWait(s, def, max)
		if err != nil {
			return
		}
		if d < 0 || d > max {
			t.Fatalf("parseWait(%q) = %v, want within [0, %v]", s, d, max)
		}
	})
}
