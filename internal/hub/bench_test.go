package hub

import (
	"strconv"
	"sync"
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
	return h, h.Board(1), def
}

func result(n int) *panel.Result {
	return &panel.Result{Columns: []string{"n"}, Rows: [][]panel.Value{{{Kind: panel.Text, Text: "seq-" + strconv.Itoa(n)}}}, LSN: uint64(n)}
}

// BenchmarkFrameSinceShared is the per-subscriber cost of one update once
// the first subscriber has built the frame: what each of N viewers pays.
// It must not allocate.
func BenchmarkFrameSinceShared(b *testing.B) {
	h, board, def := benchBoard(b)
	h.Publish(def, result(1), time.Time{})
	have := board.Version()
	h.Publish(def, result(2), time.Time{})
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

// BenchmarkFanOut publishes updates to subs goroutines that each fetch the
// frame for their step, as the SSE handlers do.
func BenchmarkFanOut(b *testing.B) {
	for _, subs := range []int{100, 1000, 10000} {
		b.Run(strconv.Itoa(subs), func(b *testing.B) {
			h, board, def := benchBoard(b)
			h.Publish(def, result(0), time.Time{})
			var wg, joined sync.WaitGroup
			stop := make(chan struct{})
			got := make(chan struct{}, subs)
			for range subs {
				wg.Add(1)
				joined.Add(1)
				go func() {
					defer wg.Done()
					have := board.Version()
					joined.Done()
					for {
						ch := board.Changed()
						if f := board.FrameSince(have, true); f != nil {
							have = f.Version
							got <- struct{}{}
						}
						select {
						case <-ch:
						case <-stop:
							return
						}
					}
				}()
			}
			joined.Wait() // every subscriber starts from the same version
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				h.Publish(def, result(i+1), time.Time{})
				for range subs {
					<-got
				}
			}
			b.StopTimer()
			close(stop)
			wg.Wait()
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*subs), "ns/delivery")
		})
	}
}
