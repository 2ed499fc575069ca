package views

import (
	"bytes"
	"context"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/a-h/templ"

	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// Assets are the URLs of the static files a page links, content-hashed by
// the static package.
type Assets struct {
	CSS  string // stylesheet
	HTMX string // htmx 4
	SSE  string // htmx hx-sse extension
	App  string // status and watchdog script
	Plot string // chart hover script (chart.js): value and time under the pointer
	Poll string // ES5 long-poll fallback script
	Icon string // site icon, SVG
}

// IndexPage is the list of dashboards the caller may see, and of the
// playlists that would show the caller at least one of them.
type IndexPage struct {
	Dashboards []*panel.Dashboard
	Playlists  []PlaylistLink
	Assets     Assets
}

// PlaylistLink is a playlist as the index lists it.
type PlaylistLink struct {
	Slug, Title string
}

// DashboardPage is a dashboard rendered with its current data, so that the
// first paint needs no stream.
type DashboardPage struct {
	Dashboard *panel.Dashboard
	// Watching is who watches the dashboard across servers as the page is
	// drawn; nil shows nothing. The page's scripts keep it current from
	// the stream's presence event or the long-poll's headers. It is drawn
	// on the status line, outside every shared fragment.
	Watching *Watching
	// Results holds the latest result of each panel by panel ID; a panel
	// without one shows that it is waiting for data.
	Results map[int64]*panel.Result
	// Release is the server's release identity (web.Release), on #live as
	// data-release: the page reloads once when a stream or long-poll says
	// its server runs another release.
	Release string
	// Version is the dashboard version the page shows (`<lsn>-<hash>`); the
	// stream resumes from it.
	Version string
	// Transport is "poll" to use the long-poll instead of SSE; anything else
	// means SSE.
	Transport string
	Assets    Assets
	// NoScriptRefresh is the meta refresh interval in seconds for browsers
	// without JavaScript; zero or less leaves it out. The status label says
	// the page is a snapshot that reloads this often, until the scripts
	// replace it with the state of the stream.
	NoScriptRefresh int
	// Heartbeat is the stream's heartbeat interval. The page calls a stream
	// that sent neither an update nor a heartbeat for longer than this (plus
	// a margin) stale; zero leaves the page's own default (15 s).
	Heartbeat time.Duration
	// ChangedAt is when the data the page shows last changed, as the server
	// knows it (hub.Board.ChangedAt); the page shows "last change" from it
	// until an update arrives. It goes on the status line, never into a
	// shared fragment. Zero: unknown, and the page counts from its load.
	ChangedAt time.Time
	// Query is the canonical query string of the view the page shows
	// (variables and time range, without "?"); the stream and the long-poll
	// ask for the same view with it.
	Query string
	// View is the key of that view (panel.ViewKey.Vars), which the panels'
	// links carry: the page draws its grid as the hub draws it for the
	// view, byte for byte (see Place).
	View string
	// Pickers are the controls for the dashboard's variables, in
	// declaration order; Time is the time range control, nil without one.
	Pickers []Picker
	Time    *TimePicker
	// Kiosk is the page mode for wall screens and TVs (?kiosk, see
	// docs/screens.md): no pickers, no links, only the title and the
	// status dot above the grid, type sized from the viewport, and on a
	// landscape screen the grid's rows share the viewport's height so the
	// whole dashboard fits without scrolling.
	Kiosk bool
	// Theme forces a colour theme, "dark" or "light" (?theme=); "" follows
	// the device's setting. It is set as data-theme on <html>.
	Theme string
	// Panel is the slug of the panel the page shows full screen
	// (/d/{slug}/panels/{panel}); "" shows the whole dashboard. The page
	// still holds every panel, as the stream keeps them all up to date, and
	// only the chosen one is shown.
	Panel string
	// Back is the address of the dashboard page of the same view and
	// screen options, the way back from a full-screen panel.
	Back string
	// Playlist is set when the page is shown as an item of a playlist:
	// the page then loads static/playlist.js, which moves on (playlist.go).
	Playlist *PlaylistStep
}

// isoMillis is the form of the last change's time on the page: RFC 3339 in
// UTC with milliseconds, the one form ES5's Date.parse must read.
const isoMillis = "2006-01-02T15:04:05.000Z"

// snapshotText is what the status label says before the scripts run, and
// for good without JavaScript: the page is a snapshot, not live.
func snapshotText(refresh int) string {
	if refresh <= 0 {
		return "snapshot"
	}
	return "snapshot, reloads every " + strconv.Itoa(refresh) + " s"
}

// Themes are the values DashboardPage.Theme may force.
var Themes = []string{"dark", "light"}

// Picker is the control of one variable: a select for list and query
// variables (multiple for a multi-valued one), a text field otherwise.
type Picker struct {
	Name    string // the variable's name; the field is var-<Name>
	Label   string
	Text    bool // a free-text variable
	Multi   bool
	Options []string
	Chosen  []string
	// Locked is a value fixed by the viewer's token: shown, not changeable.
	Locked bool
	// Depends says the options come from a query that uses earlier
	// variables: when one of those changes, the page lets this one take
	// its default.
	Depends bool
}

// TimePicker is the time range control: two expressions such as now-6h
// and now, with the usual ranges offered.
type TimePicker struct {
	From, To string
}

// TimePresets are the ranges the time picker offers, as Grafana's
// quick ranges (the fields accept any expression).
var TimePresets = []string{"now-15m", "now-1h", "now-6h", "now-24h", "now-7d", "now-30d"}

// Place is the view a panel is drawn for: its dashboard's slug and its key
// (panel.ViewKey.Vars, which has the form of a query string). The panel's
// CSV link is made from it, so the file holds the data of the view the
// panel shows, with or without JavaScript. Both come from the view, never
// from a viewer's request, so a panel renders the same bytes for every
// viewer of the view and on every server, as versions require (a view's
// panels are rendered once per change and shared by all its viewers).
//
// Zone is the dashboard's time zone, in which every instant the panel shows
// is written (nil is UTC). It is part of what is drawn: a dashboard whose
// zone changes draws its panels again.
type Place struct {
	Dashboard string
	View      string
	Zone      *time.Location
}

// PlaceOf is where the panels of d are drawn in the view whose key is view.
// The page and the hub both use it, so that they draw the same bytes; the
// zone is looked up as the refresh engine looks it up (UTC when the name is
// not a zone, never the server's own).
func PlaceOf(d *panel.Dashboard, view string) Place {
	return Place{Dashboard: d.Slug, View: view, Zone: variables.Location(d.TimeZone)}
}

// zoneName is how a panel names the zone its times are in.
func (at Place) zoneName() string { return zoneOr(at.Zone).String() }

// showsClock reports whether r holds an instant the panel writes as a
// clock time in the zone (dates and timestamps without time zone are not
// moved), so that the panel says which zone that is.
func showsClock(r *panel.Result) bool {
	if r == nil {
		return false
	}
	for _, row := range r.Rows {
		for _, v := range row {
			if v.Kind == panel.Time && !isWall(v) {
				return true
			}
		}
	}
	return false
}

// PanelPartial renders one panel in its <hx-partial> envelope, the form in
// which a changed panel reaches both transports. The hub calls it once per
// change and sends the same bytes to every viewer, so it must be, and is,
// deterministic.
func PanelPartial(ctx context.Context, at Place, d *panel.Def, r *panel.Result) ([]byte, error) {
	buf := buffers.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	if err := writePartial(ctx, buf, "#"+d.DOMID(), Panel(at, d, r)); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// buffers hold renders while they are written: a panel is a few KB, and
// growing a fresh buffer to that size took more of a render's time than
// any one panel kind's drawing. The result is copied out at its exact
// size, since the hub keeps it for as long as the panel does not change.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooled is the largest buffer kept for reuse; a huge grid's buffer is
// left to the garbage collector rather than held by the pool.
const maxPooled = 256 << 10

func putBuffer(b *bytes.Buffer) {
	if b.Cap() <= maxPooled {
		b.Reset()
		buffers.Put(b)
	}
}

// PagePartials renders what a client whose state is unknown, or whose
// dashboard changed its layout, title or description, needs: the heading and
// the whole grid, each in its <hx-partial> envelope. view is the view's key
// (panel.ViewKey.Vars).
func PagePartials(ctx context.Context, d *panel.Dashboard, view string, results map[int64]*panel.Result) ([]byte, error) {
	buf := buffers.Get().(*bytes.Buffer)
	defer putBuffer(buf)
	if err := writePartial(ctx, buf, "#"+HeadingID, Heading(d)); err != nil {
		return nil, err
	}
	if err := writePartial(ctx, buf, "#"+GridID, Grid(d, view, results)); err != nil {
		return nil, err
	}
	return bytes.Clone(buf.Bytes()), nil
}

// HeadingID and GridID are the ids of the page's live parts besides the
// panels.
const (
	HeadingID = "heading"
	GridID    = "grid"
)

// writePartial wraps c in an htmx 4 <hx-partial> that morphs the element
// target selects into c (hx-swap="outerMorph"): htmx changes only the
// nodes, attributes and text that differ and keeps the rest, so a table
// the viewer scrolled keeps its scroll position, a focused element keeps
// the focus, and a panel that did not change is not touched. Replacing the
// HTML instead would reset both on every update. target is built from ids
// the code controls (slugs are [a-z0-9-]), so it needs no escaping.
//
// Morphing matches elements with ids across the old and new markup and
// creates a new element with an id as an HTML element, so the markup inside
// a panel's SVG must not carry ids.
func writePartial(ctx context.Context, buf *bytes.Buffer, target string, c templ.Component) error {
	buf.WriteString(`<hx-partial hx-target="`)
	buf.WriteString(target)
	buf.WriteString(`" hx-swap="outerMorph">`)
	if err := c.Render(ctx, buf); err != nil {
		return err
	}
	buf.WriteString("</hx-partial>")
	return nil
}

// clampSpan keeps a panel's grid span within 1-4.
func clampSpan(n int) int { return min(max(n, 1), 4) }

// panelClass is the class list of a panel section: its kind and its size
// classes (w1-w4, h1-h4), which give its grid span (the stylesheet narrows
// them on small screens). Classes rather than an inline style: they are
// shorter, and a panel's bytes go to every viewer on every change.
func panelClass(d *panel.Def) string {
	kind := "unknown"
	if d.Kind.Valid() {
		kind = string(d.Kind)
	}
	return "panel kind-" + kind + " w" + strconv.Itoa(clampSpan(d.Width)) + " h" + strconv.Itoa(clampSpan(d.Height))
}

// playlistURL is the address a kiosk opens to show a playlist.
func playlistURL(slug string) string { return "/p/" + url.PathEscape(slug) }

// dashboardURL is the page of a dashboard.
func dashboardURL(slug string) string { return "/d/" + url.PathEscape(slug) }

// csvURL is the address of a panel's data as CSV in the view at.View, whose
// key is already a query string (url-escaped names and values).
func csvURL(at Place, panelSlug string) string {
	u := dashboardURL(at.Dashboard) + "/panels/" + url.PathEscape(panelSlug) + ".csv"
	if at.View != "" {
		u += "?" + at.View
	}
	return u
}

// panelURL is the address of a panel shown full screen in the view at.View
// (see DashboardPage.Panel), as the panel's full-screen link has it.
func panelURL(at Place, panelSlug string) string {
	return WithQuery(dashboardURL(at.Dashboard)+"/panels/"+url.PathEscape(panelSlug), at.View)
}

// WithQuery appends the non-empty query strings to the address u, which
// has none.
func WithQuery(u string, queries ...string) string {
	sep := "?"
	for _, q := range queries {
		if q != "" {
			u += sep + q
			sep = "&"
		}
	}
	return u
}

// eventsURL is the SSE endpoint, resuming after version.
func eventsURL(slug, query, version string) string {
	u := dashboardURL(slug) + "/events"
	sep := "?"
	if query != "" {
		u += sep + query
		sep = "&"
	}
	if version != "" {
		u += sep + "lastEventId=" + url.QueryEscape(version)
	}
	return u
}

func pollURL(slug, query string) string {
	if query != "" {
		return dashboardURL(slug) + "/poll?" + query
	}
	return dashboardURL(slug) + "/poll"
}

// chosen reports whether option is among a picker's chosen values.
func (p Picker) chosen(option string) bool {
	for _, c := range p.Chosen {
		if c == option {
			return true
		}
	}
	return false
}

// first is the picker's first chosen value, or "".
func (p Picker) first() string {
	if len(p.Chosen) > 0 {
		return p.Chosen[0]
	}
	return ""
}

// label is what the picker is called on the page.
func (p Picker) label() string {
	if p.Label != "" {
		return p.Label
	}
	return p.Name
}

// transport normalises DashboardPage.Transport to "sse" or "poll".
func transport(t string) string {
	if t == "poll" {
		return "poll"
	}
	return "sse"
}

// classes joins the non-empty class names.
func classes(names ...string) string {
	out := ""
	for _, n := range names {
		if n == "" {
			continue
		}
		if out != "" {
			out += " "
		}
		out += n
	}
	return out
}

// Watching is who watches a dashboard: how many, and for a viewer who holds
// a token the labels of the tokens in use (Labels, then More further ones).
type Watching struct {
	Count  int
	Labels []string
	More   int
}

// Text is what the page says: "12 watching", "12 watching: lobby TV, ops
// laptop" or "... and 3 more". static/poll.js (watchingText) says the same.
func (w Watching) Text() string {
	t := strconv.Itoa(w.Count) + " watching"
	if len(w.Labels) == 0 {
		return t
	}
	t += ": " + strings.Join(w.Labels, ", ")
	if w.More > 0 {
		t += " and " + strconv.Itoa(w.More) + " more"
	}
	return t
}
