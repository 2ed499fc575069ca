package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// TestBenchSmall runs the real bench, small, so that it keeps working: its
// own server process, 50 SSE and 5 long-poll clients, 3 s at 20 commits/s.
// It checks what the bench found, never how fast.
func TestBenchSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	dir := t.TempDir()
	jsonFile, svgFile := filepath.Join(dir, "bench.json"), filepath.Join(dir, "bench.svg")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{
		"-database-url", pgtest.NewDB(t),
		"-n", "50", "-m", "5", "-rate", "20", "-duration", "3s", "-warmup", "1s", "-grace", "5s",
		"-json", jsonFile, "-svg", svgFile,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())

	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.N != 50 || r.M != 5 {
		t.Errorf("got N=%d M=%d, want 50 and 5", r.N, r.M)
	}
	if r.ConnectErrors != 0 {
		t.Errorf("got %d connect errors, want 0", r.ConnectErrors)
	}
	if r.Missing != 0 {
		t.Errorf("got %d missing deliveries, want 0", r.Missing)
	}
	if want := 55 * r.Commits; r.Deliveries != want {
		t.Errorf("got %d deliveries, want %d (55 clients x %d commits)", r.Deliveries, want, r.Commits)
	}
	if r.Deliveries == 0 || r.DeliveriesPerSec <= 0 {
		t.Errorf("got %d deliveries (%g/s), want some", r.Deliveries, r.DeliveriesPerSec)
	}
	if r.QueriesPerCommit <= 0 {
		t.Errorf("got %g queries per commit, want above 0", r.QueriesPerCommit)
	}
	svg, err := os.ReadFile(svgFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(svg, []byte("<svg")) || !strings.Contains(string(svg), "p99") {
		t.Errorf("SVG does not look like the chart:\n%.200s", svg)
	}
}

func TestSSEParser(t *testing.T) {
	stream := ": connected\nretry: 1500\n\n" +
		"id: 1-00\ndata: <hx-partial><b>seqno-4</b></hx-partial>\n\n" +
		": heartbeat\nevent: heartbeat\ndata:\n\n" +
		"id: 2-00\r\ndata: <i>seqno-12</i> seqno-9\r\n\r\n"
	for _, step := range []int{1, 3, len(stream)} { // split anywhere
		var got []int64
		p := sseParser{seqScanner: seqScanner{best: -1}}
		for i := 0; i < len(stream); i += step {
			p.feed([]byte(stream[i:min(i+step, len(stream))]), func(s int64) { got = append(got, s) })
		}
		if len(got) != 2 || got[0] != 4 || got[1] != 12 {
			t.Errorf("step %d: got %v, want [4 12]", step, got)
		}
	}
}

func TestDeliver(t *testing.T) {
	l := &ledger{base: 100, commits: 4, t0: make([]atomic.Int64, 4)}
	for i := range l.t0 {
		l.t0[i].Store(int64(i+1) * 1e6) // commit i sent at (i+1) ms
	}
	v := l.newViewer()
	l.deliver(v, 100, 1e6)  // the state before the run: ignored
	l.deliver(v, 102, 5e6)  // shows commits 0 and 1
	l.deliver(v, 102, 6e6)  // nothing new: a duplicate
	l.deliver(v, 104, 10e6) // commits 2 and 3
	want := []int32{4000, 3000, 7000, 6000}
	for i, w := range want {
		if v.lat[i] != w {
			t.Errorf("commit %d: got %d µs, want %d", i, v.lat[i], w)
		}
	}
	if v.dups != 1 || v.frames != 3 || l.done.Load() != 1 {
		t.Errorf("got dups=%d frames=%d done=%d, want 1, 3, 1", v.dups, v.frames, l.done.Load())
	}
}
