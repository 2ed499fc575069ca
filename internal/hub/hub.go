// Package hub owns what each dashboard looks like right now and who is
// looking: it renders every changed panel once, gives the dashboard a new
// version, and lets any number of subscribers fetch the same encoded bytes
// for the step from the version they have to the current one. A subscriber
// that falls behind is not queued up: it simply gets the latest state next
// (latest wins). It does not speak HTTP.
package hub

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash/fnv"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/views"
	"github.com/livedash/dashboard/internal/wire"
)

// Version identifies what a dashboard shows: a digest of its rendered
// heading, layout and panels, and nothing else. No clock, position or
// server identity goes into it, so every server that shows the same state
// gives it the same version, and a client may move between them. Whether a
// version is older or newer than another cannot be told from the versions
// themselves; only the board that issued them knows (see Board.Remembers).
type Version [16]byte

// String formats v as 32 lowercase hex digits.
func (v Version) String() string { return hex.EncodeToString(v[:]) }

// ParseVersion parses the form String produces. Anything else, including
// an empty string, is reported as not ok.
func ParseVersion(s string) (Version, bool) {
	var v Version
	if len(s) != 2*len(v) || strings.ToLower(s) != s {
		return Version{}, false
	}
	if _, err := hex.Decode(v[:], []byte(s)); err != nil {
		return Version{}, false
	}
	return v, true
}

// Frame is the step from one version to the current one, encoded once by
// internal/wire for every transport. Its byte slices are shared by every
// subscriber and must not be modified.
type Frame struct {
	Version Version
	wire.Update
}

// Hub holds a board for every view the refresh engine knows.
type Hub struct {
	logger  *slog.Logger
	metrics *Metrics

	mu     sync.RWMutex
	snap   *catalog.Snapshot
	boards map[panel.ViewKey]*Board
}

// New returns an empty Hub; a board appears when its view is opened
// (ViewOpened) and its dashboard is in the catalog.
func New(logger *slog.Logger, metrics *Metrics) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if metrics == nil {
		metrics = NewMetrics(nil)
	}
	return &Hub{logger: logger, metrics: metrics, boards: make(map[panel.ViewKey]*Board)}
}

// Board returns the board of a view, or nil if the view is not open or the
// catalog has no such dashboard.
func (h *Hub) Board(view panel.ViewKey) *Board {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.boards[view]
}

// ViewOpened makes a board for a view of a dashboard in the catalog. The
// refresh engine calls it when the view gets its first viewer.
func (h *Hub) ViewOpened(view panel.ViewKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.boards[view] != nil || h.snap == nil {
		return
	}
	d := h.snap.DashboardByID(view.Dashboard)
	if d == nil {
		return
	}
	b := &Board{view: view, results: make(map[int64]*panel.Result), frags: make(map[int64][]byte), changed: make(chan struct{})}
	b.setDashboard(d)
	h.boards[view] = b
}

// ViewDropped forgets a view's board. The refresh engine calls it for a
// view without viewers whose room another view needs.
func (h *Hub) ViewDropped(view panel.ViewKey) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.boards, view)
}

// recentChanges is how many steps a board remembers, so a subscriber a few
// versions behind still gets only the panels that changed.
const recentChanges = 16

// Board is one view's current state.
type Board struct {
	view    panel.ViewKey // its panels' links carry view.Vars
	mu      sync.RWMutex
	dash    *panel.Dashboard
	results map[int64]*panel.Result
	frags   map[int64][]byte // each panel's <hx-partial>, as views renders it
	layout  uint64
	version Version
	// changedAt is when the board moved to version: when this server first
	// drew what the version shows. Pages start their "last change" from it.
	changedAt time.Time
	removed   bool
	changed   chan struct{}
	// recent[i] lists the panels that changed to reach versions[i]; nil
	// means the whole grid changed.
	versions []Version
	recent   [][]int64

	fmu    sync.RWMutex
	frames map[Version]*Frame // keyed by the version the step starts from; reset per version
	full   *Frame
}

// Changed returns a channel that is closed when the board moves to a new
// version (or is removed). Take it before reading the state, so that no
// change can fall between the read and the wait.
func (b *Board) Changed() <-chan struct{} {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.changed
}

// Removed reports whether the dashboard was deleted.
func (b *Board) Removed() bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.removed
}

// Version returns the current version.
func (b *Board) Version() Version {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.version
}

// Page returns what a full page shows: the dashboard, its results and the
// version they make up. The maps must not be modified.
func (b *Board) Page() (*panel.Dashboard, map[int64]*panel.Result, Version) {
	b.mu.RLock()
	defer b.mu.RUnlock()
	results := make(map[int64]*panel.Result, len(b.results))
	for k, v := range b.results {
		results[k] = v
	}
	return b.dash, results, b.version
}

// ChangedAt returns when the board moved to its current version, by this
// server's clock: the time the shown data last changed, as far as this
// server knows (a board made after a restart knows no earlier change). It
// is not part of what a version covers and goes into no shared fragment.
func (b *Board) ChangedAt() time.Time {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.changedAt
}

// Dashboard returns the board's dashboard definition.
func (b *Board) Dashboard() *panel.Dashboard {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.dash
}

// Remembers reports whether have is a version this board issued and still
// remembers: the current one or one of the recent steps before it. For
// such a client the step to the current version is known. Any other
// version (another server's that refreshed at another moment, another
// database's, a forged one) says nothing about what the client shows, so
// the caller must first make sure this board is at least as new as
// whatever the client saw (see refresh.Engine.Fresh) and then send the
// full state.
func (b *Board) Remembers(have Version) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return slices.Contains(b.versions, have)
}

// FrameSince returns the step from the version a client has to the current
// one, or nil when the client is current. known is false for a client whose
// version is missing or malformed; it gets the full state, and so does a
// client whose version this board does not remember.
func (b *Board) FrameSince(have Version, known bool) *Frame {
	b.mu.RLock()
	cur := b.version
	b.mu.RUnlock()
	if known && have == cur {
		return nil
	}
	// Fast path: a subscriber that woke earlier for this version built it.
	b.fmu.RLock()
	f := b.cached(have, known)
	b.fmu.RUnlock()
	if f != nil && f.Version == cur {
		return f
	}

	// Slow path, once per version and starting point. The step and the
	// frame are computed under one read lock so that they agree.
	b.fmu.Lock()
	defer b.fmu.Unlock()
	b.mu.RLock()
	defer b.mu.RUnlock()
	cur = b.version
	if known && have == cur {
		return nil
	}
	if f := b.cached(have, known); f != nil && f.Version == cur {
		return f
	}
	changed, full := b.stepFrom(have, known)
	f = nil
	if full && b.full != nil && b.full.Version == cur {
		f = b.full
	} else {
		var err error
		if f, err = b.build(full, changed); err != nil {
			return nil
		}
	}
	if full {
		b.full = f
	}
	if known {
		if b.frames == nil || len(b.frames) >= 64 {
			b.frames = make(map[Version]*Frame)
		}
		b.frames[have] = f
	}
	return f
}

// cached returns the frame built earlier for a starting point, possibly for
// an older current version. Called with fmu held.
func (b *Board) cached(have Version, known bool) *Frame {
	if !known {
		return b.full
	}
	return b.frames[have]
}

// stepFrom lists the panels that changed since have, or reports that the
// client needs the whole grid: its version is unknown, too old to be
// remembered, or a layout change lies in between. Called with mu held.
func (b *Board) stepFrom(have Version, known bool) (changed []int64, full bool) {
	if !known {
		return nil, true
	}
	for i := len(b.versions) - 1; i >= 0; i-- {
		if b.versions[i] != have {
			continue
		}
		seen := make(map[int64]bool)
		for _, ids := range b.recent[i+1:] {
			if ids == nil {
				return nil, true
			}
			for _, id := range ids {
				if !seen[id] {
					seen[id] = true
					changed = append(changed, id)
				}
			}
		}
		return changed, false
	}
	return nil, true
}

// build encodes the step to the current version. Called with mu held.
func (b *Board) build(full bool, changed []int64) (*Frame, error) {
	var body []byte
	if full {
		var err error
		if body, err = views.PagePartials(context.Background(), b.dash, b.view.Vars, b.results); err != nil {
			return nil, fmt.Errorf("rendering page partials: %w", err)
		}
	} else {
		want := make(map[int64]bool, len(changed))
		for _, id := range changed {
			want[id] = true
		}
		for _, p := range b.dash.Panels {
			if want[p.ID] {
				body = append(body, b.frags[p.ID]...)
			}
		}
	}
	u, err := wire.NewUpdate(b.version.String(), body)
	if err != nil {
		return nil, err
	}
	return &Frame{Version: b.version, Update: u}, nil
}

// CatalogChanged installs new dashboard definitions in every view. A view
// whose dashboard's layout changed (panels added, removed, moved or
// resized) gets a version whose step is the whole grid; the views of a
// deleted dashboard are marked removed.
func (h *Hub) CatalogChanged(s *catalog.Snapshot) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.snap = s
	for view, b := range h.boards {
		if d := s.DashboardByID(view.Dashboard); d != nil {
			b.setDashboard(d)
			continue
		}
		b.mu.Lock()
		b.removed = true
		close(b.changed)
		b.changed = make(chan struct{})
		b.mu.Unlock()
		delete(h.boards, view)
	}
}

func (b *Board) setDashboard(d *panel.Dashboard) {
	b.mu.Lock()
	defer b.mu.Unlock()
	// The panels' links name the dashboard and their times are written in
	// its zone: when either changes, draw them again, so the version stays
	// a digest of what the page shows.
	redraw := b.dash != nil && (b.dash.Slug != d.Slug || b.dash.TimeZone != d.TimeZone)
	b.dash = d
	keep := make(map[int64]bool, len(d.Panels))
	for _, p := range d.Panels {
		keep[p.ID] = true
	}
	for id := range b.results {
		if !keep[id] {
			delete(b.results, id)
			delete(b.frags, id)
		}
	}
	if redraw {
		for _, p := range d.Panels {
			if r := b.results[p.ID]; r != nil {
				if frag, err := views.PanelPartial(context.Background(), b.place(), p, r); err == nil {
					b.frags[p.ID] = frag
				}
			}
		}
	}
	if l := layoutHash(d); l != b.layout || redraw {
		b.layout = l
		b.advance(nil)
	}
}

// place is where the board's panels are drawn. Called with mu held.
func (b *Board) place() views.Place {
	return views.PlaceOf(b.dash, b.view.Vars)
}

// Publish renders a changed panel result once and moves its view to a new
// version. Called by the refresh engine; a result for a view dropped
// meanwhile is ignored.
func (h *Hub) Publish(view panel.ViewKey, p *panel.Def, r *panel.Result, notifiedAt time.Time) {
	b := h.Board(view)
	if b == nil {
		return
	}
	b.mu.RLock()
	at := b.place()
	b.mu.RUnlock()
	start := time.Now()
	frag, err := views.PanelPartial(context.Background(), at, p, r)
	h.metrics.render.Observe(time.Since(start).Seconds())
	if err != nil {
		h.logger.Error("rendering panel", "panel", p.Slug, "err", err)
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.place() != at {
		// The dashboard was renamed meanwhile (rare): draw it again here.
		if frag, err = views.PanelPartial(context.Background(), b.place(), p, r); err != nil {
			h.logger.Error("rendering panel", "panel", p.Slug, "err", err)
			return
		}
	}
	b.results[p.ID] = r
	if bytes.Equal(b.frags[p.ID], frag) {
		return
	}
	b.frags[p.ID] = frag
	b.advance([]int64{p.ID})
	if !notifiedAt.IsZero() {
		h.metrics.commitToFrame.Observe(time.Since(notifiedAt).Seconds())
	}
}

// advance moves to a new version after the panels in changed (nil: the
// grid) changed. Called with mu held.
func (b *Board) advance(changed []int64) {
	h := sha256.New()
	var n [8]byte
	binary.LittleEndian.PutUint64(n[:], b.layout)
	h.Write(n[:])
	for _, p := range b.dash.Panels {
		binary.LittleEndian.PutUint64(n[:], uint64(len(b.frags[p.ID])))
		h.Write(n[:])
		h.Write(b.frags[p.ID])
	}
	copy(b.version[:], h.Sum(nil))
	b.changedAt = time.Now()
	b.versions = append(b.versions, b.version)
	b.recent = append(b.recent, changed)
	if len(b.versions) > recentChanges {
		b.versions = b.versions[1:]
		b.recent = b.recent[1:]
	}
	close(b.changed)
	b.changed = make(chan struct{})
}

// layoutHash covers what the grid partial must redraw: which panels, in
// which order and size, with which title and kind.
func layoutHash(d *panel.Dashboard) uint64 {
	h := fnv.New64a()
	fmt.Fprintf(h, "%q|%q|", d.Title, d.Description)
	for _, p := range d.Panels {
		fmt.Fprintf(h, "%d|%q|%q|%d|%d|", p.ID, p.Kind, p.Title, p.Width, p.Height)
	}
	return h.Sum64()
}

// Metrics are the hub's Prometheus metrics.
type Metrics struct {
	render        prometheus.Histogram
	commitToFrame prometheus.Histogram
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		render: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "render_duration_seconds",
			Help:    "Time to render one changed panel (once for all its viewers).",
			Buckets: prometheus.ExponentialBuckets(0.00005, 2, 16),
		}),
		commitToFrame: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "dashboard", Name: "commit_to_frame_seconds",
			Help:    "Time from receipt of a notification to the new frame handed to subscribers.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
	}
	if reg != nil {
		reg.MustRegister(m.render, m.commitToFrame)
	}
	return m
}
