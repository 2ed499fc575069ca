package views

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestPlaylistScript: a dashboard page shown as a playlist's item loads
// playlist.js with the next step in data attributes (escaped like any
// attribute, never an inline script); a page on its own loads nothing.
func TestPlaylistScript(t *testing.T) {
	for _, tt := range []struct {
		name string
		step *PlaylistStep
		want string
	}{
		{"no playlist", nil, ""},
		{"a step", &PlaylistStep{Script: "/static/playlist.0123.js", Next: "/p/wall?item=2&theme=dark", Seconds: 30},
			`<script id="playlist" src="/static/playlist.0123.js" data-next="/p/wall?item=2&amp;theme=dark" data-seconds="30" defer></script>`},
		{"a hostile address", &PlaylistStep{Script: "/s.js", Next: `/p/w?x="><script>alert(1)</script>`, Seconds: 10},
			`<script id="playlist" src="/s.js" data-next="/p/w?x=&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;" data-seconds="10" defer></script>`},
	} {
		var b bytes.Buffer
		if err := PlaylistScript(tt.step).Render(context.Background(), &b); err != nil {
			t.Fatal(err)
		}
		if got := b.String(); got != tt.want {
			t.Errorf("%s: got\n%s\nwant\n%s", tt.name, got, tt.want)
		}
	}
	var b bytes.Buffer
	if err := Dashboard(DashboardPage{Playlist: &PlaylistStep{Script: "/s.js", Next: "/p/w?item=1", Seconds: 10}}).Render(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `<script id="playlist" src="/s.js" data-next="/p/w?item=1" data-seconds="10" defer></script></body>`) {
		t.Errorf("the dashboard page does not end with the playlist's script:\n%s", b.String())
	}
}

// TestPlaylistEmpty: the page of a playlist with nothing to show says so
// and refreshes itself at the playlist's interval.
func TestPlaylistEmpty(t *testing.T) {
	var b bytes.Buffer
	if err := PlaylistEmpty(PlaylistEmptyPage{Title: "Lobby <wall>", Seconds: 30}).Render(context.Background(), &b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`<meta http-equiv="refresh" content="30">`, "<title>Lobby &lt;wall&gt;</title>",
		"This playlist has no dashboard to show right now. This page looks again every 30 seconds."} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("empty playlist page lacks %q:\n%s", want, b.String())
		}
	}
	if strings.Contains(b.String(), "<script") {
		t.Errorf("empty playlist page has a script")
	}
}
