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

// jsCode returns src with its comments, strings and regular expression
// literals blanked out, so that a scan sees only code. It knows enough of
// JavaScript for the page scripts: a slash starts a regular expression
// where an operand is expected.
func jsCode(src string) string {
	out := []byte(src)
	blank := func(from, to int) {
		for k := from; k < to && k < len(out); k++ {
			if out[k] != '\n' {
				out[k] = ' '
			}
		}
	}
	prev := byte('(') // the last code character before i
	for i := 0; i < len(src); i++ {
		c := src[i]
		switch {
		case c == '/' && i+1 < len(src) && src[i+1] == '/':
			end := strings.IndexByte(src[i:], '\n')
			if end < 0 {
				end = len(src) - i
			}
			blank(i, i+end)
			i += end - 1
		case c == '/' && i+1 < len(src) && src[i+1] == '*':
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				end = len(src) - i - 2
			}
			blank(i, i+end+4)
			i += end + 3
		case c == '\'' || c == '"' || c == '`' || (c == '/' && strings.IndexByte("(,=:[!&|?{};+-*%<>~^", prev) >= 0):
			j := i + 1
			for j < len(src) && src[j] != c && src[j] != '\n' {
				if src[j] == '\\' {
					j++
				}
				j++
			}
			blank(i+1, j)
			out[i] = '"' // a string is an operand, whatever quote it had
			if j < len(out) {
				out[j] = '"'
			}
			i = j
			prev = '"'
		case c != ' ' && c != '\t' && c != '\n' && c != '\r':
			prev = c
		}
	}
	return string(out)
}

// TestPollScriptIsES5: poll.js is the fallback for kiosk browsers that
// cannot run htmx 4, and playlist.js rotates those kiosks too, so both must
// stay strict ES5: no let or const, arrow functions, template strings,
// classes, calls of fetch or Promises.
func TestPollScriptIsES5(t *testing.T) {
	t.Parallel()
	for _, file := range []string{"poll.js", "playlist.js"} {
		checkES5(t, file)
	}
	// The scan must see code: it finds what it looks for outside comments
	// and strings, and nothing inside them.
	if got := jsCode("var a = 1; // let x\nvar b = '=>'; /* const */ var r = /`/; f(() => 1)"); strings.Contains(got, "let") ||
		strings.Contains(got, "const") || strings.Count(got, "=>") != 1 || strings.Contains(got, "`") {
		t.Errorf("jsCode kept comments or strings, or lost code: %q", got)
	}
}

// checkES5 fails when the script file uses a feature newer than ES5.
func checkES5(t *testing.T, file string) {
	t.Helper()
	code := jsCode(readFile(t, file))
	for _, tt := range []struct{ name, re string }{
		{"let or const", `\b(let|const)\s`},
		{"an arrow function", `=>`},
		{"a template string", "`"},
		{"a class", `\bclass\s`},
		{"a call of fetch (testing for it is fine)", `\bfetch\s*\(`},
		{"a Promise", `\bPromise\b`},
		{"async or await", `\b(async|await)\b`},
		{"spread or rest", `\.\.\.`},
	} {
		if loc := regexp.MustCompile(tt.re).FindStringIndex(code); loc != nil {
			line := strings.Count(code[:loc[0]], "\n") + 1
			t.Errorf("%s line %d: %s, want ES5 only", file, line, tt.name)
		}
	}
}

// TestStatusStatesStyled: every state the scripts put on the status label
// (the LABELS of poll.js) has its own rule in the stylesheet, so that no
// state falls back to another's colour; the text says the state in any case.
func TestStatusStatesStyled(t *testing.T) {
	t.Parallel()
	src := readFile(t, "poll.js")
	start := strings.Index(src, "var LABELS = {")
	end := strings.Index(src[max(start, 0):], "};")
	if start < 0 || end < 0 {
		t.Fatal("no LABELS table in poll.js")
	}
	states := regexp.MustCompile(`(?m)^\s*(\w+):`).FindAllStringSubmatch(src[start:start+end], -1)
	if len(states) < 7 {
		t.Fatalf("got states %v from poll.js, want at least the seven of docs/architecture.md", states)
	}
	css := readFile(t, "dashboard.css")
	for _, m := range states {
		if rule := `#status[data-state="` + m[1] + `"]`; !strings.Contains(css, rule) {
			t.Errorf("dashboard.css has no rule for %s", rule)
		}
	}
}
