package hub_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
)

// testBoard is a dashboard with two panels installed in a fresh hub.
func testBoard(t *testing.T) (*hub.Hub, *panel.Dashboard, *hub.Board) {
	t.Helper()
	d := &panel.Dashboard{ID: 1, Slug: "ops", Title: "Ops", Public: true}
	d.Panels = []*panel.Def{
		{ID: 10, DashboardID: 1, Slug: "p1", Title: "One", Kind: panel.Stat, Width: 1, Height: 1},
		{ID: 11, DashboardID: 1, Slug: "p2", Title: "Two", Kind: panel.Table, Width: 2, Height: 1, Position: 1},
	}
	h := hub.New(nil, nil)
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{d}, nil, nil))
	h.ViewOpened(panel.ViewKey{Dashboard: d.ID})
	b := h.Board(panel.ViewKey{Dashboard: 1})
	if b == nil {
		t.Fatal("got no board after CatalogChanged, want one")
	}
	return h, d, b
}

func result(text string) *panel.Result {
	return &panel.Result{Columns: []string{"v"}, Rows: [][]panel.Value{{{Kind: panel.Text, Text: text}}}}
}

// partials returns the hx-target of every partial in body, in order.
func partials(body []byte) []string {
	var out []string
	for _, part := range strings.Split(string(body), `<hx-partial hx-target="`)[1:] {
		out = append(out, part[:strings.IndexByte(part, '"')])
	}
	return out
}

func wantTargets(t *testing.T, f *hub.Frame, want ...string) {
	t.Helper()
	if f == nil {
		t.Fatalf("got no frame, want partials %v", want)
	}
	got := partials(f.Body)
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Fatalf("got partials %v, want %v", got, want)
	}
	if !bytes.HasPrefix(f.Message, []byte("id: "+f.Version.String()+"\n")) {
		t.Fatalf("SSE frame starts %q, want the id line of %s", trim(f.Message), f.Version)
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func TestFrameSince(t *testing.T) {
	h, d, b := testBoard(t)
	v0 := b.Version()

	// Unknown client state: the whole grid.
	wantTargets(t, b.FrameSince(hub.Version{}, false), "#heading", "#grid")
	if f := b.FrameSince(v0, true); f != nil {
		t.Fatalf("got a frame for the current version, want nil")
	}

	changed := b.Changed()
	h.Publish(viewOf(d.Panels[0]), d.Panels[0], result("a"), time.Time{})
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by Publish")
	}
	v1 := b.Version()
	if v1 == v0 {
		t.Fatalf("got version %s after publish, want a new one", v1)
	}
	wantTargets(t, b.FrameSince(v0, true), "#panel-p1")
	if f := b.FrameSince(v1, true); f != nil {
		t.Fatal("got a frame for the current version, want nil")
	}

	// Equal data: no new version, no wake-up.
	changed = b.Changed()
	h.Publish(viewOf(d.Panels[0]), d.Panels[0], result("a"), time.Time{})
	if b.Version() != v1 {
		t.Fatalf("got version %s after publishing equal data, want %s", b.Version(), v1)
	}
	select {
	case <-changed:
		t.Fatal("Changed closed by a publish of equal data")
	default:
	}

	h.Publish(viewOf(d.Panels[1]), d.Panels[1], result("b"), time.Time{})
	v2 := b.Version()
	wantTargets(t, b.FrameSince(v1, true), "#panel-p2")
	// Both panels changed since v0, in display order.
	wantTargets(t, b.FrameSince(v0, true), "#panel-p1", "#panel-p2")
	if f := b.FrameSince(v0, true); f.Version != v2 {
		t.Fatalf("got frame version %s, want %s", f.Version, v2)
	}

	// A version this board never issued (another server's, another
	// database's, a forged one): the whole state, never nothing.
	forged, _ := hub.ParseVersion(strings.Repeat("f", 32))
	if b.Remembers(forged) {
		t.Fatal("Remembers a version it never issued")
	}
	wantTargets(t, b.FrameSince(forged, true), "#heading", "#grid")
	for _, v := range []hub.Version{v0, v1, v2} {
		if !b.Remembers(v) {
			t.Errorf("does not remember %s, which it issued", v)
		}
	}

	// A layout change: the step over it is the whole grid.
	d2 := *d
	p2 := *d.Panels[1]
	p2.Title = "Two renamed"
	d2.Panels = []*panel.Def{d.Panels[0], &p2}
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&d2}, nil, nil))
	v3 := b.Version()
	if v3 == v2 {
		t.Fatal("version unchanged by a layout change")
	}
	wantTargets(t, b.FrameSince(v2, true), "#heading", "#grid")
	wantTargets(t, b.FrameSince(v1, true), "#heading", "#grid")
	h.Publish(viewOf(d2.Panels[0]), d2.Panels[0], result("c"), time.Time{})
	wantTargets(t, b.FrameSince(v3, true), "#panel-p1")
	wantTargets(t, b.FrameSince(v2, true), "#heading", "#grid")
}

func TestFrameSinceForgetsOldVersions(t *testing.T) {
	h, d, b := testBoard(t)
	v0 := b.Version()
	for i := range 20 {
		h.Publish(viewOf(d.Panels[0]), d.Panels[0], result(strings.Repeat("x", i+1)), time.Time{})
	}
	// v0 is more than 16 steps back: the whole grid.
	wantTargets(t, b.FrameSince(v0, true), "#heading", "#grid")
	cur := b.Version()
	h.Publish(viewOf(d.Panels[1]), d.Panels[1], result("y"), time.Time{})
	wantTargets(t, b.FrameSince(cur, true), "#panel-p2")
}

func TestFrameSinceIsShared(t *testing.T) {
	h, d, b := testBoard(t)
	v0 := b.Version()
	h.Publish(viewOf(d.Panels[0]), d.Panels[0], result("a"), time.Time{})
	f1, f2 := b.FrameSince(v0, true), b.FrameSince(v0, true)
	if f1 != f2 {
		t.Fatal("got two frames for the same step, want one shared frame")
	}
	g1, g2 := b.FrameSince(hub.Version{}, false), b.FrameSince(hub.Version{}, false)
	if g1 != g2 {
		t.Fatal("got two full frames for the same version, want one shared frame")
	}
}

func TestRemovedBoard(t *testing.T) {
	h, _, b := testBoard(t)
	changed := b.Changed()
	h.CatalogChanged(catalog.NewSnapshot(nil, nil, nil))
	if h.Board(panel.ViewKey{Dashboard: 1}) != nil {
		t.Fatal("got a board for a deleted dashboard, want nil")
	}
	if !b.Removed() {
		t.Fatal("board of a deleted dashboard not Removed")
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed when the dashboard was deleted")
	}
}

func TestPublishUnknownDashboard(t *testing.T) {
	h := hub.New(nil, nil)
	p := &panel.Def{ID: 1, DashboardID: 99, Slug: "x", Kind: panel.Stat}
	h.Publish(viewOf(p), p, result("a"), time.Time{})
	h.ViewOpened(viewOf(p))
	if h.Board(panel.ViewKey{Dashboard: 99}) != nil {
		t.Fatal("Publish or ViewOpened made a board for a dashboard not in the catalog, want none")
	}
}

// TestViews: each view of a dashboard has its own board, state and
// versions; a result for one never shows in another, and a dropped view's
// board is gone (a late result for it makes none).
func TestViews(t *testing.T) {
	h, d, eu := testBoard(t)
	usKey := panel.ViewKey{Dashboard: d.ID, Vars: "var-region=us"}
	if h.Board(usKey) != nil {
		t.Fatal("a board for a view nobody opened")
	}
	h.ViewOpened(usKey)
	us := h.Board(usKey)
	if us == nil || us == eu {
		t.Fatalf("ViewOpened: got board %p (first view %p), want a board of its own", us, eu)
	}
	h.Publish(usKey, d.Panels[0], result("us"), time.Time{})
	if eu.Version() == us.Version() {
		t.Fatal("a result published to one view changed the other's version")
	}
	_, results, _ := eu.Page()
	if len(results) != 0 {
		t.Fatalf("first view got %d results published to the other", len(results))
	}
	h.ViewDropped(usKey)
	h.Publish(usKey, d.Panels[0], result("late"), time.Time{})
	if h.Board(usKey) != nil {
		t.Fatal("a dropped view still has a board")
	}
}

// TestConcurrentSubscribers runs readers against a publisher, for the race
// detector: every frame a reader gets moves it forward.
func TestConcurrentSubscribers(t *testing.T) {
	h, d, b := testBoard(t)
	var wg sync.WaitGroup
	done := make(chan struct{})
	for range 8 {
		wg.Go(func() {
			var have hub.Version
			known := false
			for {
				changed := b.Changed()
				if f := b.FrameSince(have, known); f != nil {
					if known && f.Version == have {
						t.Errorf("got a frame to %s for a client that has it", have)
					}
					have, known = f.Version, true
				}
				select {
				case <-changed:
				case <-done:
					return
				}
			}
		})
	}
	for i := range 200 {
		h.Publish(viewOf(d.Panels[i%2]), d.Panels[i%2], result(strings.Repeat("z", i)), time.Time{})
	}
	close(done)
	wg.Wait()
}

func TestVersionString(t *testing.T) {
	var v hub.Version
	for i := range v {
		v[i] = byte(0xa0 + i)
	}
	want := "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf"
	if got := v.String(); got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if back, ok := hub.ParseVersion(want); !ok || back != v {
		t.Errorf("ParseVersion(%q): got %v %v, want %v", want, back, ok, v)
	}
}

// TestSameStateSameVersion: two servers that show the same data give it
// the same version, whatever order their results arrived in, so a client
// may move between them; different data gives different versions.
func TestSameStateSameVersion(t *testing.T) {
	h1, d1, b1 := testBoard(t)
	h2, d2, b2 := testBoard(t)
	if b1.Version() != b2.Version() {
		t.Fatalf("empty boards: got %s and %s, want equal", b1.Version(), b2.Version())
	}
	h1.Publish(viewOf(d1.Panels[0]), d1.Panels[0], result("a"), time.Time{})
	h1.Publish(viewOf(d1.Panels[1]), d1.Panels[1], result("b"), time.Time{})
	h2.Publish(viewOf(d2.Panels[1]), d2.Panels[1], result("old"), time.Time{})
	h2.Publish(viewOf(d2.Panels[1]), d2.Panels[1], result("b"), time.Time{})
	h2.Publish(viewOf(d2.Panels[0]), d2.Panels[0], result("a"), time.Time{})
	if b1.Version() != b2.Version() {
		t.Fatalf("same data: got %s and %s, want equal", b1.Version(), b2.Version())
	}
	h2.Publish(viewOf(d2.Panels[0]), d2.Panels[0], result("c"), time.Time{})
	if b1.Version() == b2.Version() {
		t.Fatalf("different data: got %s on both, want different versions", b1.Version())
	}
}

func TestParseVersionRejects(t *testing.T) {
	for _, s := range []string{
		"", "-", "garbage", strings.Repeat("0", 31), strings.Repeat("0", 33), strings.Repeat("A", 32),
		strings.Repeat("g", 32), " " + strings.Repeat("0", 31), `"` + strings.Repeat("0", 30) + `"`,
		"0-0000000000000000", "ffffffffffffffff-0000000000000000", strings.Repeat("f", 70000),
	} {
		if v, ok := hub.ParseVersion(s); ok {
			t.Errorf("ParseVersion(%q): got %v, want not ok", trim([]byte(s)), v)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"", strings.Repeat("0", 32), "a0a1a2a3a4a5a6a7a8a9aaabacadaeaf", "ffffffffff-0000000000000000",
		strings.Repeat("F", 32), "garbage", "1-2", "-", "0x" + strings.Repeat("1", 30)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, ok := hub.ParseVersion(s)
		if !ok {
			if v != (hub.Version{}) {
				t.Fatalf("ParseVersion(%q) not ok but returned %v", s, v)
			}
			return
		}
		// Whatever parses is exactly the form String produces.
		if v.String() != s {
			t.Fatalf("ParseVersion(%q) = %v, which formats as %q", s, v, v.String())
		}
	})
}

// viewOf is the view without variables of p's dashboard.
func viewOf(p *panel.Def) panel.ViewKey { return panel.ViewKey{Dashboard: p.DashboardID} }

// TestPanelLinksNameTheView: a view's panels link their CSV with the view's
// key, and a renamed dashboard's panels are drawn again with the new name,
// so the version stays a digest of what the page shows.
func TestPanelLinksNameTheView(t *testing.T) {
	d := &panel.Dashboard{ID: 1, Slug: "ops", Title: "Ops", Public: true}
	d.Panels = []*panel.Def{{ID: 10, DashboardID: 1, Slug: "p1", Title: "One", Kind: panel.Table, Width: 1, Height: 1}}
	h := hub.New(nil, nil)
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{d}, nil, nil))
	view := panel.ViewKey{Dashboard: 1, Vars: "var-region=eu"}
	h.ViewOpened(view)
	b := h.Board(view)
	h.Publish(view, d.Panels[0], result("x"), time.Time{})
	if f := b.FrameSince(hub.Version{}, false); !bytes.Contains(f.Body, []byte(`href="/d/ops/panels/p1.csv?var-region=eu"`)) {
		t.Fatalf("full state %s: want the CSV link of the view", trim(f.Body))
	}
	before := b.Version()
	renamed := *d
	renamed.Slug = "operations"
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&renamed}, nil, nil))
	if b.Version() == before {
		t.Fatal("version unchanged after a rename")
	}
	f := b.FrameSince(before, true)
	if f == nil || !bytes.Contains(f.Body, []byte(`href="/d/operations/panels/p1.csv?var-region=eu"`)) {
		t.Fatalf("step after the rename: want the new link")
	}
	// The same state reached on a fresh hub has the same version.
	h2 := hub.New(nil, nil)
	h2.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&renamed}, nil, nil))
	h2.ViewOpened(view)
	h2.Publish(view, renamed.Panels[0], result("x"), time.Time{})
	if got, want := h2.Board(view).Version(), b.Version(); got != want {
		t.Errorf("renamed board: got version %s on a fresh hub, want %s", got, want)
	}
}

// TestZoneChangeRedraws: a dashboard's times are written in its zone, so a
// new zone draws its panels again and moves the version, to the version a
// fresh hub reaches with the same zone and data.
func TestZoneChangeRedraws(t *testing.T) {
	d := &panel.Dashboard{ID: 1, Slug: "ops", Title: "Ops", Public: true, TimeZone: "UTC"}
	d.Panels = []*panel.Def{{ID: 10, DashboardID: 1, Slug: "p1", Title: "One", Kind: panel.Table, Width: 1, Height: 1}}
	at := time.Date(2026, 1, 1, 0, 30, 0, 0, time.UTC)
	r := &panel.Result{Columns: []string{"at"}, Rows: [][]panel.Value{{{Kind: panel.Time, Time: at, Text: at.Format(time.RFC3339Nano)}}}}
	h := hub.New(nil, nil)
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{d}, nil, nil))
	view := panel.ViewKey{Dashboard: 1}
	h.ViewOpened(view)
	b := h.Board(view)
	h.Publish(view, d.Panels[0], r, time.Time{})
	if f := b.FrameSince(hub.Version{}, false); !bytes.Contains(f.Body, []byte(">2026-01-01 00:30:00</time>")) {
		t.Fatalf("full state %s: want the time in UTC", trim(f.Body))
	}
	before := b.Version()
	tokyo := *d
	tokyo.TimeZone = "Asia/Tokyo"
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&tokyo}, nil, nil))
	if b.Version() == before {
		t.Fatal("version unchanged after a zone change")
	}
	f := b.FrameSince(before, true)
	if f == nil || !bytes.Contains(f.Body, []byte(">2026-01-01 09:30:00</time>")) || !bytes.Contains(f.Body, []byte(">Asia/Tokyo</span>")) {
		t.Fatalf("step after the zone change: want the time in Tokyo")
	}
	h2 := hub.New(nil, nil)
	h2.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&tokyo}, nil, nil))
	h2.ViewOpened(view)
	h2.Publish(view, tokyo.Panels[0], r, time.Time{})
	if got, want := h2.Board(view).Version(), b.Version(); got != want {
		t.Errorf("board in Tokyo: got version %s on a fresh hub, want %s", got, want)
	}
	// The same zone again changes nothing.
	same := tokyo
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{&same}, nil, nil))
	if got, want := b.Version(), h2.Board(view).Version(); got != want {
		t.Errorf("same zone again: got version %s, want %s", got, want)
	}
}

// TestChangedAt: the time of the last change moves with the version and
// only with it: a publish of equal data leaves it where it was. The test
// runs on synctest's clock, so the times are exact.
func TestChangedAt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h, d, b := testBoard(t)
		opened := b.ChangedAt()
		if !opened.Equal(time.Now()) {
			t.Fatalf("got %v for a new board, want the time it was made, %v", opened, time.Now())
		}
		time.Sleep(time.Minute)
		h.Publish(viewOf(d.Panels[0]), d.Panels[0], result("a"), time.Time{})
		changed := b.ChangedAt()
		if want := opened.Add(time.Minute); !changed.Equal(want) {
			t.Fatalf("got %v after a change, want %v", changed, want)
		}
		time.Sleep(time.Minute)
		h.Publish(viewOf(d.Panels[0]), d.Panels[0], result("a"), time.Time{})
		if got := b.ChangedAt(); !got.Equal(changed) {
			t.Errorf("got %v after publishing equal data, want it unchanged at %v", got, changed)
		}
	})
}
