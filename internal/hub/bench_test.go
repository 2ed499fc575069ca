package hub

import (
	"strconv"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// benchBoard returns a hub with one dashboard of one stat panel.
func benchBoard(b *testing.B) (*Hub, *Board, *panel.Def) {
	b.Helper()
	def := &panel.Def{ID: 1, DashboardID: 1, Slug: "seq", Title: "Sequence", Kind: panel.Stat, Width: 1, Height: 1}
	d := &panel.Dashboard{ID: 1, Slug: "bench", Title: "Bench", Public: true, Panels: []*panel.Def{def}}
	h := New(nil, nil)
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{d}, nil, nil))
	h.ViewOpened(panel.ViewKey{Dashboard: d.ID})
	return h, h.Board(panel.ViewKey{Dashboard: 1}), def
}

func result(n int) *panel.Result {
	return &panel.Result{Columns: []string{"n"}, Rows: [][]panel.Value{{{Kind: panel.Text, Text: "seq-" + strconv.Itoa(n)}}}}
}

// BenchmarkFrameSinceShared is the per-subscriber cost of one update once
// the first subscriber has built the frame: what each of N viewers pays.
// It must not allocate.
func BenchmarkFrameSinceShared(b *testing.B) {
	h, board, def := benchBoard(b)
	h.Publish(panel.ViewKey{Dashboard: def.DashboardID}, def, result(1), time.Time{})
	have := board.Version()
	h.Publish(panel.ViewKey{Dashboard: def.DashboardID}, def, result(2), time.Time{})
	if board.FrameSince(have, true) == nil {
		b.Fatal("no frame")
	}
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		_ = board.Changed()
		if board.FrameSince(have, true) == nil {
			b.Fatal("no frame")
		}
	}
}
