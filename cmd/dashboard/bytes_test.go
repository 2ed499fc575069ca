package main

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// BenchmarkDemoPanelBytes reports what one panel update of the demo weighs
// on the wire: the mean size of a panel's <section> as the hub sends it,
// over every panel of every demo dashboard, with the demo's seeded data. A
// changed panel reaches every viewer as exactly these bytes (plus the
// stream's few bytes of envelope), so this is the per-viewer cost of a
// change. It runs the real program on the demo; run it with
// -benchtime=1x, the figure does not depend on b.N:
//
//	go test -run='^$' -bench=DemoPanelBytes -benchtime=1x ./cmd/dashboard/
func BenchmarkDemoPanelBytes(b *testing.B) {
	cfg := testConfig(b)
	cfg.DemoRate = 1
	s := startServer(b, cfg, true)
	for _, slug := range []string{"sales", "ops"} {
		b.Run(slug, func(b *testing.B) {
			var sizes []int
			for b.Loop() {
				sizes = panelSizes(b, s.URL+"/d/"+slug+"/poll?wait=0")
			}
			total := 0
			for _, n := range sizes {
				total += n
			}
			b.ReportMetric(float64(total)/float64(len(sizes)), "B/panel")
			b.ReportMetric(float64(len(sizes)), "panels")
		})
	}
}

// panelSizes fetches a view's state and returns the size of each panel in
// it, a panel being its <section> element.
func panelSizes(b *testing.B, url string) []int {
	b.Helper()
	resp, err := http.Get(url)
	if err != nil {
		b.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		b.Fatalf("GET %s: %d %v", url, resp.StatusCode, err)
	}
	var sizes []int
	rest := string(body)
	for {
		i := strings.Index(rest, `<section id="panel-`)
		if i < 0 {
			break
		}
		rest = rest[i:]
		j := strings.Index(rest, "</section>")
		if j < 0 {
			b.Fatalf("unclosed section in %s", url)
		}
		j += len("</section>")
		sizes = append(sizes, j)
		rest = rest[j:]
	}
	if len(sizes) == 0 {
		b.Fatalf("no panels in %s:\n%s", url, body)
	}
	return sizes
}
