package web

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"sync"

	"github.com/livedash/dashboard/internal/views"
	"github.com/livedash/dashboard/internal/wire"
	"github.com/livedash/dashboard/static"
)

// Release is this build's release identity: 16 hex digits of a SHA-256
// over what a page depends on when it applies what a server sends it: the
// embedded assets' content-hashed names (static.Digest: scripts, the
// stylesheet, htmx), the templates and Go code of internal/views that
// draw the page and its fragments (views.TemplateDigest) and the wire
// format's version (wire.Format). The same build gives the same value on
// every server, whatever its host, time or configuration; a change to any
// asset, to internal/views or a bump of wire.Format gives another. Go code
// elsewhere (the refresh engine, the feed, the database side) keeps the
// release, so such an upgrade reloads no page.
//
// The page carries it (data-release on #live), the stream's opening
// heartbeat and the long-poll's X-Dashboard-Release header tell the page
// its server's; a page that meets another release reloads once
// (docs/architecture.md, "Rolling upgrade").
var Release = sync.OnceValue(func() string {
	h := sha256.New()
	h.Write([]byte("dashboard release\nwire " + strconv.Itoa(wire.Format) + "\n"))
	d := static.Digest()
	h.Write(d[:])
	d = views.TemplateDigest()
	h.Write(d[:])
	return hex.EncodeToString(h.Sum(nil))[:16]
})
