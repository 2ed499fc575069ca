// Package static owns the browser assets embedded in the binary (the page
// script, the long-poll fallback, the stylesheet and the vendored htmx) and
// serves them under content-hashed names with a one-year immutable cache.
//
// Templates link assets through Path, never by literal URL, so a changed file
// gets a new URL and no browser or proxy can serve a stale copy. The handler
// answers only the exact hashed names computed at start: there is no
// file-system lookup, so a request path can never reach anything else, and an
// old hash answers 404 rather than silently serving new content.
//
// Favicon serves the icon at the fixed path browsers ask for, /favicon.ico.
//
// It does not render pages or decide the Content-Security-Policy; it only
// guarantees every script is a same-origin file so `script-src 'self'` works.
package static

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"slices"
	"strings"
	"time"
)

// Prefix is the URL path under which Handler serves the assets.
const Prefix = "/static/"

//go:embed *.js *.css *.svg vendor/*.js
var files embed.FS

// asset is one embedded file under its hashed URL.
type asset struct {
	name        string // embedded name, e.g. "vendor/htmx.min.js"
	url         string // e.g. "/static/vendor/htmx.min.0123456789.js"
	body        []byte
	etag        string // strong ETag: the quoted hex sha256
	contentType string
	integrity   string // Subresource Integrity value, "sha256-<base64>"
}

var (
	byName = map[string]*asset{} // embedded name -> asset
	byURL  = map[string]*asset{} // hashed URL path -> asset
)

// contentTypes pins the types of the extensions we ship, so they do not depend
// on the host's mime tables.
var contentTypes = map[string]string{
	".js":    "text/javascript; charset=utf-8",
	".css":   "text/css; charset=utf-8",
	".svg":   "image/svg+xml",
	".png":   "image/png",
	".ico":   "image/x-icon",
	".woff2": "font/woff2",
	".txt":   "text/plain; charset=utf-8",
}

func init() {
	err := fs.WalkDir(files, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := files.ReadFile(name)
		if err != nil {
			return err
		}
		sum := sha256.Sum256(body)
		hexSum := hex.EncodeToString(sum[:])
		ext := path.Ext(name)
		ct := contentTypes[ext]
		if ct == "" {
			ct = mime.TypeByExtension(ext)
		}
		if ct == "" {
			ct = "application/octet-stream"
		}
		a := &asset{
			name:        name,
			url:         Prefix + strings.TrimSuffix(name, ext) + "." + hexSum[:10] + ext,
			body:        body,
			etag:        `"` + hexSum + `"`,
			contentType: ct,
			integrity:   "sha256-" + base64.StdEncoding.EncodeToString(sum[:]),
		}
		byName[name] = a
		byURL[a.url] = a
		return nil
	})
	if err != nil {
		panic(fmt.Sprintf("static: reading embedded assets: %v", err))
	}
}

// Path returns the content-hashed URL path of the embedded asset name, for
// example Path("app.js") = "/static/app.0123456789.js" and
// Path("vendor/htmx.min.js") = "/static/vendor/htmx.min.0123456789.js".
// An unknown name is a programming error and panics, so a typo fails the
// first test that renders the page instead of shipping a broken link.
func Path(name string) string {
	return lookup(name).url
}

// Integrity returns the Subresource Integrity value ("sha256-<base64>") of the
// embedded asset name, for an integrity attribute. It panics like Path.
func Integrity(name string) string {
	return lookup(name).integrity
}

func lookup(name string) *asset {
	a, ok := byName[name]
	if !ok {
		panic(fmt.Sprintf("static: unknown asset %q", name))
	}
	return a
}

// Handler serves GET and HEAD for the hashed paths returned by Path, with
// `Cache-Control: public, max-age=31536000, immutable`, a strong ETag and
// `X-Content-Type-Options: nosniff`. Mount it as
// `mux.Handle("GET /static/", static.Handler())`.
//
// The request path must equal a hashed path exactly, compared in its escaped
// form: percent-encoded or unknown names, stale hashes and traversal attempts
// all answer 404.
func Handler() http.Handler {
	return http.HandlerFunc(serve)
}

func serve(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	a, ok := byURL[r.URL.EscapedPath()]
	if !ok {
		h.Set("Cache-Control", "no-store")
		http.NotFound(w, r)
		return
	}
	h.Set("Content-Type", a.contentType)
	h.Set("Cache-Control", "public, max-age=31536000, immutable")
	h.Set("ETag", a.etag)
	// ServeContent answers If-None-Match with 304, handles HEAD and ranges;
	// the zero time leaves out Last-Modified (the ETag is exact).
	http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
}

// Icon is the embedded name of the site icon, linked from every page.
const Icon = "icon.svg"

// Favicon serves the site icon for GET and HEAD of /favicon.ico, which
// browsers request whatever the page links, with a day's cache (the path
// never changes, so it cannot be immutable). The body is the SVG under its
// own type: Chromium and Firefox go by the Content-Type, not the name, and
// one hand-written SVG is one file to review instead of an opaque binary
// ICO. Mount it as `mux.Handle("GET /favicon.ico", static.Favicon())`.
func Favicon() http.Handler {
	a := lookup(Icon)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Type", a.contentType)
		h.Set("Cache-Control", "public, max-age=86400")
		h.Set("ETag", a.etag)
		http.ServeContent(w, r, a.name, time.Time{}, bytes.NewReader(a.body))
	})
}

// Digest is a SHA-256 over the hashed URL of every embedded asset, in
// order: it changes exactly when some asset's content (or the set of
// assets) changes, and is the same for the same build on every server.
// It is part of the release identity (web.Release).
func Digest() [sha256.Size]byte {
	urls := make([]string, 0, len(byURL))
	for u := range byURL {
		urls = append(urls, u)
	}
	slices.Sort(urls)
	h := sha256.New()
	for _, u := range urls {
		h.Write([]byte(u))
		h.Write([]byte{'\n'})
	}
	var d [sha256.Size]byte
	h.Sum(d[:0])
	return d
}
