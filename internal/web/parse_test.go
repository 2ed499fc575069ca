package web

import (
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/hub"
)

func TestParseIfNoneMatch(t *testing.T) {
	v := hub.Version{LSN: 0x16b3748, Hash: 0xdeadbeef}
	vs := v.String()
	for _, tt := range []struct {
		header string
		want   hub.Version
		ok     bool
	}{
		{`"` + vs + `"`, v, true},
		{`W/"` + vs + `"`, v, true},
		{vs, v, true}, // unquoted, as some clients send it
		{`"x", "` + vs + `"`, v, true},
		{`"x" , W/"` + vs + `"`, v, true},
		{`"` + vs + `", "0-0000000000000000"`, v, true},
		{``, hub.Version{}, false},
		{`*`, hub.Version{}, false},
		{`"garbage"`, hub.Version{}, false},
		{`"` + vs, v, true},
		{`W/`, hub.Version{}, false},
		{`,,,`, hub.Version{}, false},
		{`"` + strings.Repeat("f", 40000) + `"`, hub.Version{}, false},
		{"\"\xff\x00\"", hub.Version{}, false},
	} {
		got, ok := parseIfNoneMatch(tt.header)
		if got != tt.want || ok != tt.ok {
			t.Errorf("parseIfNoneMatch(%.60q): got %v %v, want %v %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func FuzzParseIfNoneMatch(f *testing.F) {
	for _, s := range []string{"", `"0-0000000000000000"`, `W/"1-0000000000000002"`, `"x", "1-0000000000000002"`, "*", `"`, `W/""`, "1-0000000000000A00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		v, ok := parseIfNoneMatch(h)
		if !ok {
			if v != (hub.Version{}) {
				t.Fatalf("not ok but returned %v", v)
			}
			return
		}
		// A version found must be one of the tags, as the server would send it.
		if !strings.Contains(strings.ToLower(h), strings.TrimLeft(v.String(), "0")) && v.LSN != 0 {
			t.Fatalf("parseIfNoneMatch(%q) = %v, which is not in the header", h, v)
		}
		if back, ok := hub.ParseVersion(v.String()); !ok || back != v {
			t.Fatalf("version %v does not round trip", v)
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
