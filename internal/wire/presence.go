package wire

import (
	"encoding/json"
	"net/url"
)

// Presence is who watches a dashboard, as a page shows it: "12 watching",
// and for a viewer who holds a token also the labels of the tokens in use
// ("lobby TV, ops laptop and 3 more"). It is never part of an update and has
// no id, so it neither moves a client's last event ID nor makes versions
// differ between servers.
type Presence struct {
	// Watching counts open streams and recent long-poll clients.
	Watching int `json:"watching"`
	// Labels are the token labels shown, distinct and in order; empty for
	// a viewer who may see only the count.
	Labels []string `json:"labels,omitempty"`
	// More counts the further labels not shown.
	More int `json:"more,omitempty"`
}

// PresenceEvent is the SSE event "presence" whose data is p as JSON:
// {"watching":12,"labels":["lobby TV"],"more":3}. A page handles it as a
// named event and draws it outside every shared fragment.
func PresenceEvent(p Presence) []byte {
	data, _ := json.Marshal(p) // a struct of ints and strings always encodes
	msg, _ := AppendEvent(make([]byte, 0, len(data)+32), "", "presence", data)
	return msg
}

// Long-poll headers of presence: the count on every answer (200 and 304),
// and for a viewer who holds a token the labels.
const (
	WatchingHeader       = "X-Dashboard-Watching"
	WatchingLabelsHeader = "X-Dashboard-Watching-Labels"
)

// PresenceLabelsHeader is the value of WatchingLabelsHeader for p: the JSON
// {"labels":[...],"more":N} percent-encoded (RFC 3986, as JavaScript's
// decodeURIComponent reads it), because labels may hold any character and
// a header value may not.
func PresenceLabelsHeader(p Presence) string {
	data, _ := json.Marshal(struct {
		Labels []string `json:"labels"`
		More   int      `json:"more"`
	}{append([]string{}, p.Labels...), p.More})
	return url.PathEscape(string(data))
}
