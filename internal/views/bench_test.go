package views

import (
	"context"
	"testing"

	"github.com/livedash/dashboard/internal/panel"
)

// BenchmarkPanelPartial measures one render per kind, the cost the hub pays
// once per changed panel.
func BenchmarkPanelPartial(b *testing.B) {
	ctx := context.Background()
	for _, k := range panel.Kinds {
		d, r := def(k, panel.Options{Sparkline: true, Delta: true}), samples()[k]
		b.Run(string(k), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := PanelPartial(ctx, Place{Dashboard: "ops", View: "var-region=eu"}, d, r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
