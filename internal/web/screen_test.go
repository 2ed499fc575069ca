package web

import (
	"net/url"
	"testing"
)

// TestParseScreen: ?kiosk turns kiosk mode on without a value or with a
// true one, off with a false one; ?theme is dark, light or empty (follow the
// device). Anything else, or a parameter given twice, is refused with a
// message that says what is accepted.
func TestParseScreen(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		query   string
		want    screen
		wantErr string
	}{
		{"", screen{}, ""},
		{"kiosk", screen{kiosk: true}, ""},
		{"kiosk=", screen{kiosk: true}, ""},
		{"kiosk=1", screen{kiosk: true}, ""},
		{"kiosk=true", screen{kiosk: true}, ""},
		{"kiosk=0", screen{}, ""},
		{"kiosk=false", screen{}, ""},
		{"theme=dark", screen{theme: "dark"}, ""},
		{"theme=light&kiosk", screen{kiosk: true, theme: "light"}, ""},
		{"theme=", screen{}, ""},
		{"var-kiosk=1&var-theme=x&from=now-1h", screen{}, ""},
		{"kiosk=yes", screen{}, `kiosk takes no value, or true or false; got "yes"`},
		{"kiosk&kiosk", screen{}, "kiosk is given 2 times; give it once"},
		{"theme=Dark", screen{}, `theme must be dark or light (or left out to follow the device); got "Dark"`},
		{"theme=auto", screen{}, `theme must be dark or light (or left out to follow the device); got "auto"`},
		{"theme=dark&theme=light", screen{}, "theme is given 2 times; give it once"},
	} {
		q, err := url.ParseQuery(tt.query)
		if err != nil {
			t.Fatal(err)
		}
		got, err := parseScreen(q)
		switch {
		case tt.wantErr != "" && (err == nil || err.Error() != tt.wantErr):
			t.Errorf("parseScreen(%q): got error %v, want %q", tt.query, err, tt.wantErr)
		case tt.wantErr == "" && err != nil:
			t.Errorf("parseScreen(%q): got error %v, want %+v", tt.query, err, tt.want)
		case got != tt.want:
			t.Errorf("parseScreen(%q) = %+v, want %+v", tt.query, got, tt.want)
		}
	}
}
