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

// TestBenchH2CSmall runs the real bench over HTTP/2 (h2c): 20 streams
// alone on their connections, then 10 to a connection, against its own
// server process. It checks what the bench found, never how fast.
func TestBenchH2CSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	jsonFile := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{
		"-database-url", pgtest.NewDB(t), "-proto", "h2c", "-streams-per-conn", "1,10",
		"-n", "20", "-rate", "20", "-duration", "2s", "-warmup", "1s", "-grace", "5s", "-json", jsonFile,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	rep := readReport(t, jsonFile)
	if len(rep.Results) != 2 {
		t.Fatalf("got %d results, want 2 (1 and 10 streams per connection)", len(rep.Results))
	}
	for i, want := range []struct{ perConn, conns int }{{1, 20}, {10, 2}} {
		r := rep.Results[i]
		if r.Proto != protoH2C || r.StreamsPerConn != want.perConn || r.Conns != want.conns {
			t.Errorf("result %d: got %s with %d streams per connection over %d connections, want h2c, %d, %d", i, r.Proto, r.StreamsPerConn, r.Conns, want.perConn, want.conns)
		}
		if r.ConnectErrors != 0 || r.Missing != 0 || r.Backwards != 0 {
			t.Errorf("result %d: got %d connect errors, %d missing, %d backwards; want none", i, r.ConnectErrors, r.Missing, r.Backwards)
		}
		if want := 20 * r.Commits; r.Deliveries != want {
			t.Errorf("result %d: got %d deliveries, want %d (20 streams x %d commits)", i, r.Deliveries, want, r.Commits)
		}
	}
	if !strings.Contains(stdout.String(), "an extra stream on a shared connection") {
		t.Errorf("the report does not split connection and stream memory:\n%s", stdout.String())
	}
}

// TestBenchDrainSmall runs -drain with two servers and no nginx: the
// drained server's clients fail over to the other address. Every client
// must end on the newest sequence and none may go backwards.
func TestBenchDrainSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	jsonFile := filepath.Join(t.TempDir(), "drain.json")
	var stdout, stderr bytes.Buffer
	// -duration above the longest retry a goodbye may carry (5 s).
	err := run(t.Context(), []string{
		"-database-url", pgtest.NewDB(t), "-servers", "2", "-drain",
		"-n", "20", "-rate", "20", "-duration", "7s", "-warmup", "1s", "-grace", "5s", "-json", jsonFile,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	d := readReport(t, jsonFile).Drain
	if d == nil {
		t.Fatal("no drain result in the JSON")
	}
	held := d.StreamsBefore[d.Drained]
	if held == 0 || d.Goodbyes != held || d.Reconnects != held {
		t.Errorf("got %d streams on the drained server, %d goodbyes, %d reconnects; want them equal and above 0", held, d.Goodbyes, d.Reconnects)
	}
	sum := 0
	for _, c := range d.Histogram {
		sum += c
	}
	if sum != d.Reconnects {
		t.Errorf("the histogram holds %d reconnects, want %d", sum, d.Reconnects)
	}
	if d.NotNewest != 0 || d.Backwards != 0 || d.ConnectErrors != 0 {
		t.Errorf("got %d clients without the newest sequence, %d frames backwards, %d connect errors; want none", d.NotNewest, d.Backwards, d.ConnectErrors)
	}
	if d.StreamsAfter[d.Drained] != 0 || len(d.StreamsAfter) != 2 {
		t.Errorf("got streams after %v, want the drained server at 0 and the other listed", d.StreamsAfter)
	}
}

func readReport(t *testing.T, path string) report {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	return rep
}

// TestBenchNginxSmall runs 30 clients through nginx (the shipped
// configuration, rendered) in front of three servers. It needs nginx,
// which CI installs; elsewhere it says so and skips.
func TestBenchNginxSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes and nginx")
	}
	if _, err := findNginx(""); err != nil {
		t.Skipf("%v", err)
	}
	jsonFile := filepath.Join(t.TempDir(), "nginx.json")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{
		"-database-url", pgtest.NewDB(t), "-servers", "3", "-nginx",
		"-n", "30", "-rate", "20", "-duration", "2s", "-warmup", "1s", "-grace", "5s", "-json", jsonFile,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	rep := readReport(t, jsonFile)
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if !r.Nginx || r.Servers != 3 || r.ConnectErrors != 0 || r.Missing != 0 {
		t.Errorf("got nginx %v, %d servers, %d connect errors, %d missing; want true, 3, 0, 0", r.Nginx, r.Servers, r.ConnectErrors, r.Missing)
	}
	if want := 30 * r.Commits; r.Deliveries != want {
		t.Errorf("got %d deliveries, want %d (30 clients x %d commits)", r.Deliveries, want, r.Commits)
	}
	// Every server runs the panel query for its own clients: up to one
	// per commit each (a busy server may merge commits), and more than a
	// single server's at most one once they are three.
	if r.QueriesPerCommit <= 1 || r.QueriesPerCommit > 3.01 {
		t.Errorf("got %.2f queries per commit over three servers, want above 1 and at most 3", r.QueriesPerCommit)
	}
	if r.NginxRSSIdleMB <= 0 {
		t.Errorf("got nginx RSS %.1f MB, want it measured", r.NginxRSSIdleMB)
	}
}
