package hub_test

import (
	"bytes"
	"strings"
	"sync"
	"testing"
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
	b := h.Board(1)
	if b == nil {
		t.Fatal("got no board after CatalogChanged, want one")
	}
	return h, d, b
}

func result(lsn uint64, text string) *panel.Result {
	return &panel.Result{Columns: []string{"v"}, Rows: [][]panel.Value{{{Kind: panel.Text, Text: text}}}, LSN: lsn}
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
	h.Publish(d.Panels[0], result(100, "a"), time.Time{})
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed by Publish")
	}
	v1 := b.Version()
	if v1 == v0 || v1.LSN != 100 {
		t.Fatalf("got version %s after publish (was %s), want a new one at LSN 100", v1, v0)
	}
	wantTargets(t, b.FrameSince(v0, true), "#panel-p1")
	if f := b.FrameSince(v1, true); f != nil {
		t.Fatal("got a frame for the current version, want nil")
	}

	// Equal data: no new version, no wake-up.
	changed = b.Changed()
	h.Publish(d.Panels[0], result(150, "a"), time.Time{})
	if b.Version() != v1 {
		t.Fatalf("got version %s after publishing equal data, want %s", b.Version(), v1)
	}
	select {
	case <-changed:
		t.Fatal("Changed closed by a publish of equal data")
	default:
	}

	h.Publish(d.Panels[1], result(200, "b"), time.Time{})
	v2 := b.Version()
	wantTargets(t, b.FrameSince(v1, true), "#panel-p2")
	// Both panels changed since v0, in display order.
	wantTargets(t, b.FrameSince(v0, true), "#panel-p1", "#panel-p2")
	if f := b.FrameSince(v0, true); f.Version != v2 {
		t.Fatalf("got frame version %s, want %s", f.Version, v2)
	}

	// Equal hash at another LSN (another replica saw the same data later or earlier): nothing.
	if f := b.FrameSince(hub.Version{LSN: v2.LSN - 1, Hash: v2.Hash}, true); f != nil {
		t.Fatal("got a frame for an equal hash, want nil")
	}
	// A client ahead of this server: nothing, whatever its hash.
	if f := b.FrameSince(hub.Version{LSN: v2.LSN + 1, Hash: 42}, true); f != nil {
		t.Fatal("got a frame for a client ahead of the server, want nil")
	}
	// A version this board never had, behind it: the whole grid.
	wantTargets(t, b.FrameSince(hub.Version{LSN: 1, Hash: 42}, true), "#heading", "#grid")

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
	h.Publish(d2.Panels[0], result(300, "c"), time.Time{})
	wantTargets(t, b.FrameSince(v3, true), "#panel-p1")
	wantTargets(t, b.FrameSince(v2, true), "#heading", "#grid")
}

func TestFrameSinceForgetsOldVersions(t *testing.T) {
	h, d, b := testBoard(t)
	v0 := b.Version()
	for i := range 20 {
		h.Publish(d.Panels[0], result(uint64(10+i), strings.Repeat("x", i+1)), time.Time{})
	}
	// v0 is more than 16 steps back: the whole grid.
	wantTargets(t, b.FrameSince(v0, true), "#heading", "#grid")
	cur := b.Version()
	h.Publish(d.Panels[1], result(100, "y"), time.Time{})
	wantTargets(t, b.FrameSince(cur, true), "#panel-p2")
}

func TestFrameSinceIsShared(t *testing.T) {
	h, d, b := testBoard(t)
	v0 := b.Version()
	h.Publish(d.Panels[0], result(100, "a"), time.Time{})
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
	if h.Board(1) != nil {
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
	h.Publish(&panel.Def{ID: 1, DashboardID: 99, Slug: "x", Kind: panel.Stat}, result(1, "a"), time.Time{})
	if h.Board(99) != nil {
		t.Fatal("Publish created a board, want none")
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
					if known && f.Version.LSN < have.LSN {
						t.Errorf("got version %s after %s, want monotonic LSNs", f.Version, have)
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
		h.Publish(d.Panels[i%2], result(uint64(i+1), strings.Repeat("z", i)), time.Time{})
	}
	close(done)
	wg.Wait()
}

func TestVersionString(t *testing.T) {
	for _, tt := range []struct {
		v    hub.Version
		want string
	}{
		{hub.Version{}, "0-0000000000000000"},
		{hub.Version{LSN: 0x16b3748, Hash: 0xdeadbeef}, "16b3748-00000000deadbeef"},
		{hub.Version{LSN: ^uint64(0), Hash: ^uint64(0)}, "ffffffffffffffff-ffffffffffffffff"},
	} {
		if got := tt.v.String(); got != tt.want {
			t.Errorf("got %q, want %q", got, tt.want)
		}
		if v, ok := hub.ParseVersion(tt.want); !ok || v != tt.v {
			t.Errorf("ParseVersion(%q): got %v %v, want %v", tt.want, v, ok, tt.v)
		}
	}
}

func TestParseVersionRejects(t *testing.T) {
	for _, s := range []string{
		"", "-", "garbage", "0-", "-0000000000000000", "0-000000000000000", "0-00000000000000000",
		"g-0000000000000000", "0-000000000000000g", "+1-0000000000000000", "1-+000000000000000",
		"1--000000000000000", "11111111111111111-0000000000000000", "1-0000000000000000-1",
		" 1-0000000000000000", "1-0000000000000000 ", "\"1-0000000000000000\"", "1_0-0000000000000000",
		strings.Repeat("f", 70000),
	} {
		if v, ok := hub.ParseVersion(s); ok {
			t.Errorf("ParseVersion(%q): got %v, want not ok", trim([]byte(s)), v)
		}
	}
}

func FuzzParseVersion(f *testing.F) {
	for _, s := range []string{"", "0-0000000000000000", "16b3748-00000000deadbeef", "ffffffffff-0000000000000000",
		"ffffffffffffffff-ffffffffffffffff", "garbage", "1-2", "-", "0x1-0000000000000000", "1_0-0000000000000000"} {
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
		// Whatever parses must format back to a form that parses the same.
		back, ok := hub.ParseVersion(v.String())
		if !ok || back != v {
			t.Fatalf("ParseVersion(%q) = %v; round trip gave %v %v", s, v, back, ok)
		}
		if strings.ContainsAny(s, "\r\n\x00\" ,") {
			t.Fatalf("ParseVersion accepted %q, which cannot be an id or an entity tag", s)
		}
	})
}

func FuzzVersionRoundTrip(f *testing.F) {
	f.Add(uint64(0), uint64(0))
	f.Add(^uint64(0), uint64(1))
	f.Fuzz(func(t *testing.T, lsn, hash uint64) {
		v := hub.Version{LSN: lsn, Hash: hash}
		got, ok := hub.ParseVersion(v.String())
		if !ok || got != v {
			t.Fatalf("round trip of %v via %q gave %v %v", v, v.String(), got, ok)
		}
	})
}
