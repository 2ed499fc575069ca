package wire

import (
	"math/rand/v2"
	"strings"
)

// Update is one step from a version a client has to the current one, in the
// form each transport sends it. Both slices are shared by every client that
// takes the same step and must not be modified.
type Update struct {
	// Body is the long-poll answer: the partials, one <hx-partial> per
	// changed part of the page.
	Body []byte
	// Message is Body as one unnamed SSE message whose id is the version.
	Message []byte
}

// NewUpdate encodes the partials of a step to version. partials is kept as
// the long-poll body, not copied.
func NewUpdate(version string, partials []byte) (Update, error) {
	msg, err := AppendEvent(make([]byte, 0, len(partials)+len(version)+64), version, "", partials)
	if err != nil {
		return Update{}, err
	}
	return Update{Body: partials, Message: msg}, nil
}

// Heartbeat is a comment (for proxies) followed by a named event that the
// page's watchdog can see; hx-sse does not surface comments.
var Heartbeat = []byte(": heartbeat\n" + heartbeatEvent)

// heartbeatEvent is the part of a heartbeat a page sees: a named event
// without an id, so it never moves the client's last event ID.
const heartbeatEvent = "event: heartbeat\ndata:\n\n"

// reconnect ends a stream on shutdown. It is a named event, so that hx-sse
// applies the short retry sent with it.
var reconnect = []byte("event: reconnect\ndata:\n\n")

// Gone tells a page that its dashboard was deleted: it says so and stops,
// instead of reconnecting to an address that has nothing any more.
var Gone = []byte("event: gone\ndata:\n\n")

// Goodbye ends a stream at shutdown (a drain): a retry drawn uniformly
// from GoodbyeMinRetry to GoodbyeMaxRetry milliseconds, and the reconnect
// event. Each stream gets its own draw, so that the clients of a draining
// server land on the others spread over seconds, not in one burst; the page
// honours the value as it is (docs/architecture.md, "Drain").
func Goodbye() []byte {
	return append(AppendRetry(nil, GoodbyeMinRetry+rand.IntN(GoodbyeMaxRetry-GoodbyeMinRetry+1)), reconnect...)
}

// The bounds of the goodbye's retry, in milliseconds.
const (
	GoodbyeMinRetry = 500
	GoodbyeMaxRetry = 5000
)

// Opening is what a stream sends as soon as its response head is out: a
// comment, which proxies and browsers flush at once, the retry field, and a
// heartbeat event. EventSource applies the retry at once, hx-sse with the
// heartbeat it arrives with. The heartbeat tells the page that bytes get
// through at once: a page whose version is current would otherwise hear
// nothing until the first periodic heartbeat, and could not say "live"
// within moments of a reconnect, nor tell a stream that a buffering proxy
// holds back from one that delivers. retryMs should carry per-connection
// jitter, so that reconnects after a restart are spread out.
func Opening(retryMs int) []byte {
	return OpeningFor(retryMs, "")
}

// OpeningFor is Opening whose heartbeat carries the server's release as
// its data (docs/architecture.md, "Rolling upgrade"): a page drawn by
// another release reloads once. Periodic heartbeats carry no data, so the
// page learns the release once per connection. release must be one line
// of printable ASCII (a hex digest); anything else is left out.
func OpeningFor(retryMs int, release string) []byte {
	b := AppendRetry(AppendComment(nil, "connected"), retryMs)
	if release == "" || strings.ContainsAny(release, "\r\n\x00") {
		return append(b, heartbeatEvent...)
	}
	b = append(b, "event: heartbeat\ndata: "...)
	b = append(b, release...)
	return append(b, "\n\n"...)
}

// Format is the version of what a page must understand of a stream and a
// long-poll: the control events, the long-poll's headers, the
// <hx-partial> envelope and the element ids its targets name. Bump it
// when a page drawn by the previous release could not apply what this one
// sends; it goes into the release identity (web.Release), so that pages
// of the old release reload once during a rolling upgrade.
const Format = 1
