package main

import (
	"strings"
	"testing"
)

// TestTokenLinkQuery: what `token create` puts before token= in its link:
// kiosk, the view (re-encoded, so that a value with a space still makes a
// link) and the theme, each followed by &; bad input is refused naming the
// flag.
func TestTokenLinkQuery(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		dashboard   string
		kiosk       bool
		theme, view string
		want        string
		wantErr     string
	}{
		{"sales", false, "", "", "", ""},
		{"sales", true, "", "", "kiosk&", ""},
		{"sales", true, "dark", "", "kiosk&theme=dark&", ""},
		{"sales", false, "light", "", "theme=light&", ""},
		{"sales", true, "dark", "var-region=Asia Pacific&from=now-6h", "kiosk&from=now-6h&var-region=Asia+Pacific&theme=dark&", ""},
		{"sales", false, "", "?var-region=Europe&var-region=Latin+America", "var-region=Europe&var-region=Latin+America&", ""},
		{"", false, "dark", "", "theme=dark&", ""},
		{"", true, "", "", "", "--kiosk needs a dashboard"},
		{"", false, "", "var-a=1", "", "--view needs a dashboard"},
		{"sales", true, "blue", "", "", "--theme: theme must be dark or light"},
		{"sales", true, "", "kiosk&var-a=1", "", `not "kiosk"`},
		{"sales", true, "", "var-a=%zz", "", "is not a query string"},
	} {
		got, err := linkQuery(tt.dashboard, tt.kiosk, tt.theme, tt.view)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("linkQuery(%q, %v, %q, %q): got error %v, want one with %q", tt.dashboard, tt.kiosk, tt.theme, tt.view, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != tt.want):
			t.Errorf("linkQuery(%q, %v, %q, %q) = %q, %v; want %q", tt.dashboard, tt.kiosk, tt.theme, tt.view, got, err, tt.want)
		}
	}
}
