package main

import (
	"strings"
	"testing"

	"github.com/livedash/dashboard/static"
)

// TestFavicon checks the icon as a browser meets it: /favicon.ico answers
// with an image, every page's head links the hashed SVG, and the
// Content-Security-Policy lets the page load it.
func TestFavicon(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)

	resp, body := s.get(t, "/favicon.ico")
	if resp.StatusCode != 200 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "image/") || !strings.HasPrefix(body, "<svg") {
		t.Errorf("GET /favicon.ico: got %d %q, want 200 with an image", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if got := resp.Header.Get("Cache-Control"); got != "public, max-age=86400" {
		t.Errorf("GET /favicon.ico: Cache-Control %q, want a day", got)
	}
	checkSecurityHeaders(t, "GET /favicon.ico", resp)

	icon := static.Path(static.Icon)
	resp, _ = s.get(t, icon)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/svg+xml" ||
		resp.Header.Get("Cache-Control") != "public, max-age=31536000, immutable" {
		t.Errorf("GET %s: got %d %q %q, want 200, image/svg+xml, immutable", icon, resp.StatusCode,
			resp.Header.Get("Content-Type"), resp.Header.Get("Cache-Control"))
	}

	for _, path := range []string{"/", "/d/nope"} {
		resp, body := s.get(t, path)
		head, _, _ := strings.Cut(body, "</head>")
		if want := `<link rel="icon" type="image/svg+xml" href="` + icon + `">`; !strings.Contains(head, want) {
			t.Errorf("GET %s: head lacks %s", path, want)
		}
		// A same-origin image: allowed by img-src 'self' (and default-src 'self').
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.HasPrefix(icon, "/") || !strings.Contains(csp, "img-src 'self'") {
			t.Errorf("GET %s: Content-Security-Policy %q does not allow the same-origin icon %s", path, csp, icon)
		}
	}
}
