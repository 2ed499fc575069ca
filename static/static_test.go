package static

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"
)

// vendored pins every file under vendor/ to the sha256 recorded in
// vendor/VENDOR.md; a tampered or silently updated file fails here.
var vendored = map[string]string{
	"vendor/htmx.min.js":   "a0abb04f2f45a1f89d1d4844023245537e5e6014c87b144553e0607b4cc32130",
	"vendor/hx-sse.min.js": "18ef2761356ec1fe0bb6d92612315b37517a7c1e9856b661c5ae81fef239d103",
	"vendor/htmx.LICENSE":  "d3d2456f76414f2456104660ebd65aff1c04cd7966b942bdabd63f3cdb316a38",
}

func TestVendoredFiles(t *testing.T) {
	t.Parallel()
	for name, want := range vendored {
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		if got := hex.EncodeToString(sum[:]); got != want {
			t.Errorf("%s: got sha256 %s, want %s (see vendor/VENDOR.md)", name, got, want)
		}
		if a, ok := byName[name]; ok && a.etag != `"`+want+`"` {
			t.Errorf("%s: embedded copy has ETag %s, want the pinned sha256", name, a.etag)
		}
		if !strings.Contains(readFile(t, "vendor/VENDOR.md"), want) {
			t.Errorf("%s: sha256 %s not recorded in vendor/VENDOR.md", name, want)
		}
	}
	// Every vendored script is pinned.
	entries, err := os.ReadDir("vendor")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		n := "vendor/" + e.Name()
		if strings.HasSuffix(n, ".js") {
			if _, ok := vendored[n]; !ok {
				t.Errorf("%s is not pinned in the vendored table", n)
			}
		}
	}
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var hashedPath = regexp.MustCompile(`^/static/(vendor/)?[a-z0-9.-]+\.[0-9a-f]{10}\.(js|css|svg)$`)

func TestPathRoundTrip(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"app.js", "poll.js", "dashboard.css", Icon, "vendor/htmx.min.js", "vendor/hx-sse.min.js"} {
		p := Path(name)
		if !hashedPath.MatchString(p) {
			t.Errorf("Path(%q) = %q, want /static/<name>.<10 hex>.<ext>", name, p)
		}
		body := readFile(t, name)
		sum := sha256.Sum256([]byte(body))
		if want := hex.EncodeToString(sum[:])[:10]; !strings.Contains(p, "."+want+".") {
			t.Errorf("Path(%q) = %q, want hash %s", name, p, want)
		}
		rec := get(t, http.MethodGet, p, nil)
		if rec.Code != http.StatusOK {
			t.Fatalf("GET %s: got %d, want 200", p, rec.Code)
		}
		if rec.Body.String() != body {
			t.Errorf("GET %s: body differs from %s", p, name)
		}
		if !strings.HasPrefix(Integrity(name), "sha256-") {
			t.Errorf("Integrity(%q) = %q, want sha256-...", name, Integrity(name))
		}
	}
	if got, want := Path("app.js")[:len("/static/app.")], "/static/app."; got != want {
		t.Errorf("Path(app.js): got prefix %q, want %q", got, want)
	}
}

func TestPathUnknownPanics(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"nope.js", "", "static.go", "vendor/htmx.LICENSE", "../go.mod"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Path(%q) did not panic", name)
				}
			}()
			Path(name)
		}()
	}
}

func get(t *testing.T, method, target string, hdr http.Header) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, "http://example.com/", nil)
	req.URL.Path = "" // set below from the raw target, undecoded, as a server would
	req.RequestURI = target
	u, err := req.URL.Parse(target)
	if err != nil {
		t.Fatalf("parsing %q: %v", target, err)
	}
	req.URL = u
	for k, v := range hdr {
		req.Header[k] = v
	}
	rec := httptest.NewRecorder()
	Handler().ServeHTTP(rec, req)
	return rec
}

func TestHeaders(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, ctype string }{
		{"app.js", "text/javascript; charset=utf-8"},
		{"vendor/htmx.min.js", "text/javascript; charset=utf-8"},
		{"dashboard.css", "text/css; charset=utf-8"},
		{Icon, "image/svg+xml"},
	}
	for _, tt := range tests {
		p := Path(tt.name)
		rec := get(t, http.MethodGet, p, nil)
		h := rec.Header()
		checks := map[string]string{
			"Content-Type":           tt.ctype,
			"Cache-Control":          "public, max-age=31536000, immutable",
			"X-Content-Type-Options": "nosniff",
			"ETag":                   byName[tt.name].etag,
		}
		for k, want := range checks {
			if got := h.Get(k); got != want {
				t.Errorf("GET %s: %s: got %q, want %q", p, k, got, want)
			}
		}
		if h.Get("Last-Modified") != "" {
			t.Errorf("GET %s: unexpected Last-Modified %q", p, h.Get("Last-Modified"))
		}

		// HEAD: same headers, no body.
		head := get(t, http.MethodHead, p, nil)
		if head.Code != http.StatusOK || head.Body.Len() != 0 {
			t.Errorf("HEAD %s: got %d with %d body bytes, want 200 and none", p, head.Code, head.Body.Len())
		}
		if head.Header().Get("ETag") != h.Get("ETag") || head.Header().Get("Content-Length") != h.Get("Content-Length") {
			t.Errorf("HEAD %s: headers differ from GET", p)
		}

		// Revalidation answers 304.
		nm := get(t, http.MethodGet, p, http.Header{"If-None-Match": {h.Get("ETag")}})
		if nm.Code != http.StatusNotModified {
			t.Errorf("GET %s If-None-Match: got %d, want 304", p, nm.Code)
		}
	}
	post := get(t, http.MethodPost, Path("app.js"), nil)
	if post.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST: got %d, want 405", post.Code)
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	app := Path("app.js")
	stale := strings.Replace(app, app[len(app)-13:len(app)-3], "0000000000", 1)
	vendorJS := Path("vendor/htmx.min.js")
	tests := []string{
		"/static/app.js",              // unhashed name
		stale,                         // stale hash
		"/static/nope.0123456789.js",  // unknown
		"/static/",                    // directory
		"/static",                     // no slash
		"/static/../go.mod",           // traversal
		"/static/../static/static.go", // traversal to source
		"/static/%2e%2e/go.mod",       // encoded dots
		"/static/%2e%2e/",             // encoded dots, directory
		"/static/..%2fgo.mod",         // encoded slash
		"/static/..%2F..%2Fgo.mod",    // encoded slashes
		"/static/vendor%2F" + vendorJS[len("/static/vendor/"):], // encoded slash to a real asset
		"/static/vendor/htmx.LICENSE",                           // not embedded
		"/static/static.go",                                     // source file
		"/static/static_test.go",                                // source file
		"/static//" + app[len("/static/"):],                     // double slash
		app + "/",                                               // trailing slash
		app + "%00",                                             // NUL
		strings.ToUpper(app),                                    // case
		"/static/%61pp" + app[len("/static/app"):],              // percent-encoded unreserved character
		"/go.mod",
	}
	for _, target := range tests {
		rec := get(t, http.MethodGet, target, nil)
		if rec.Code != http.StatusNotFound {
			t.Errorf("GET %s: got %d, want 404", target, rec.Code)
		}
		if rec.Header().Get("Cache-Control") == "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: a 404 must not be cached for a year", target)
		}
	}
}

// TestThroughServer sends raw request lines to a real server, so nothing in
// the test client cleans or re-encodes the paths.
func TestThroughServer(t *testing.T) {
	t.Parallel()
	mux := http.NewServeMux()
	mux.Handle("GET /static/", Handler())
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	ok, err := http.Get(srv.URL + Path("app.js"))
	if err != nil {
		t.Fatal(err)
	}
	ok.Body.Close()
	if ok.StatusCode != http.StatusOK {
		t.Errorf("GET %s: got %d, want 200", Path("app.js"), ok.StatusCode)
	}

	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, target := range []string{"/static/%2e%2e/go.mod", "/static/..%2fgo.mod", "/static/%2e%2e/"} {
		req, err := http.NewRequest(http.MethodGet, srv.URL, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.URL.Opaque = target // sent as is
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s through ServeMux: got %d, want 404", target, resp.StatusCode)
		}
	}
}

// TestFavicon checks /favicon.ico: the icon's bytes under an image type, a
// day's cache, and 304 for a matching ETag.
func TestFavicon(t *testing.T) {
	t.Parallel()
	for _, method := range []string{http.MethodGet, http.MethodHead} {
		rec := httptest.NewRecorder()
		Favicon().ServeHTTP(rec, httptest.NewRequest(method, "/favicon.ico", nil))
		h := rec.Header()
		if rec.Code != http.StatusOK || h.Get("Content-Type") != "image/svg+xml" ||
			h.Get("Cache-Control") != "public, max-age=86400" || h.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s /favicon.ico: got %d, %q, %q, want 200, image/svg+xml, a day's cache and nosniff",
				method, rec.Code, h.Get("Content-Type"), h.Get("Cache-Control"))
		}
		if want := readFile(t, Icon); method == http.MethodGet && rec.Body.String() != want {
			t.Errorf("GET /favicon.ico: got %q, want the bytes of %s", rec.Body.String(), Icon)
		}
		if !strings.HasPrefix(rec.Body.String(), "<svg") && method == http.MethodGet {
			t.Errorf("GET /favicon.ico: body does not start with <svg")
		}
	}
	req := httptest.NewRequest(http.MethodGet, "/favicon.ico", nil)
	req.Header.Set("If-None-Match", byName[Icon].etag)
	rec := httptest.NewRecorder()
	Favicon().ServeHTTP(rec, req)
	if rec.Code != http.StatusNotModified {
		t.Errorf("GET /favicon.ico with its ETag: got %d, want 304", rec.Code)
	}
}
