package main

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestSSEParserFields(t *testing.T) {
	stream := ": connected\nretry: 1500\nevent: heartbeat\ndata:\n\n" +
		"id: v1\ndata: seqno-4\n\n" +
		"retry: 12x\nretry: -5\nid: v2\ndata: seqno-5\n" // v2 not yet dispatched
	for _, step := range []int{1, 2, len(stream)} {
		st := newSSEState()
		p := sseParser{seqScanner: seqScanner{best: -1}, st: st}
		for i := 0; i < len(stream); i += step {
			p.feed([]byte(stream[i:min(i+step, len(stream))]), func(int64) {})
		}
		if st.retry != 1500 || st.lastID != "v1" || st.goodbye || st.gone {
			t.Errorf("step %d: got retry %d, last id %q, goodbye %v, gone %v; want 1500, v1, false, false", step, st.retry, st.lastID, st.goodbye, st.gone)
		}
		p.feed([]byte("\nretry: 700\nevent: reconnect\ndata:\n\n"), func(int64) {})
		if st.retry != 700 || st.lastID != "v2" || !st.goodbye {
			t.Errorf("step %d: after the goodbye got retry %d, last id %q, goodbye %v; want 700, v2, true", step, st.retry, st.lastID, st.goodbye)
		}
	}
}

// TestSSEClientReconnects runs the -drain client against two stand-in
// servers that write raw streams as the real one does: the first says
// goodbye (retry and the reconnect event, then EOF); the client must wait
// the retry and come back on the second with the last event ID it saw,
// through the epoll readers.
func TestSSEClientReconnects(t *testing.T) {
	var lastIDs sync.Map // server name -> Last-Event-ID it was sent
	release := make(chan struct{})
	stand := func(name, body string) *httptest.Server {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			lastIDs.Store(name, r.Header.Get("Last-Event-ID"))
			conn, _, err := http.NewResponseController(w).Hijack()
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.Close()
			fmt.Fprintf(conn, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n%s", body)
			if name == "second" {
				<-release // held open until the test has looked
			}
		}))
		t.Cleanup(s.Close)
		return s
	}
	first := stand("first", ": connected\nretry: 5000\n\nid: v101\ndata: seqno-101\n\nretry: 20\nevent: reconnect\ndata:\n\n")
	second := stand("second", "retry: 3000\n\nid: v102\ndata: seqno-102\n\n")
	var targets []*url.URL
	for _, s := range []*httptest.Server{first, second} {
		u, _ := url.Parse(s.URL)
		targets = append(targets, u)
	}
	l := &ledger{clock: clock{time.Now()}, base: 100, t0: make([]atomic.Int64, 2), commits: 2}
	l.t0[0].Store(1)
	l.t0[1].Store(1)
	v := l.newViewer()
	v.st = newSSEState()
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	var wg sync.WaitGroup
	rd, err := newReaders(ctx, l, 1, &wg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sseClient(ctx, l, v, targets, "/d/bench/events", dialer(0, 1), rd, true, func(err error) {
			if err != nil {
				t.Errorf("first connect: %v", err)
			}
		})
	}()
	deadline := time.Now().Add(20 * time.Second)
	for l.done.Load() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.done.Load() != 1 {
		t.Fatalf("the client did not reach seqno-102 through a reconnect")
	}
	got, _ := lastIDs.Load("second")
	if got != "v101" {
		t.Errorf("second server got Last-Event-ID %q, want v101", got)
	}
	cancel()
	<-done
	wg.Wait()
	close(release)
	if v.goodbyes != 1 || len(v.reconnects) != 1 || len(v.landed) < 2 || v.landed[1] != targets[1].Host {
		t.Errorf("got goodbyes %d, reconnects %d, landed %v; want 1, 1, second at %s", v.goodbyes, len(v.reconnects), v.landed, targets[1].Host)
	}
}

// TestH2Group opens 20 streams, 5 per connection, against a stand-in
// HTTP/2 (h2c) handler that writes SSE frames, and checks that each
// stream's frames reach the ledger over exactly 4 connections.
func TestH2Group(t *testing.T) {
	var mu sync.Mutex
	conns := map[string]bool{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ProtoMajor != 2 {
			http.Error(w, "want HTTP/2", http.StatusHTTPVersionNotSupported)
			return
		}
		mu.Lock()
		conns[r.RemoteAddr] = true
		mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		for i := int64(1); i <= 3; i++ {
			fmt.Fprintf(w, "id: v%d\ndata: <b>seqno-%d</b>\n\n", i, 100+i)
			if err := rc.Flush(); err != nil {
				return
			}
		}
		<-r.Context().Done()
	}))
	var p http.Protocols
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Start()
	t.Cleanup(srv.Close)
	u, _ := url.Parse(srv.URL)

	const n, k = 20, 5
	l := &ledger{clock: clock{time.Now()}, base: 100, t0: make([]atomic.Int64, 3), commits: 3}
	for i := range l.t0 {
		l.t0[i].Store(1)
	}
	var wg, connected sync.WaitGroup
	var errs atomic.Int64
	var vs []*viewer
	for range n {
		vs = append(vs, l.newViewer())
	}
	connected.Add(n)
	for g := 0; g*k < n; g++ {
		paths := make([]string, k)
		for j := range paths {
			paths[j] = eventsPath(g*k+j, 1)
		}
		h2Group(t.Context(), l, vs[g*k:(g+1)*k], u, paths, dialer(g, 4), &wg, func(err error) {
			if err != nil {
				errs.Add(1)
				t.Errorf("stream: %v", err)
			}
			connected.Done()
		})
	}
	connected.Wait()
	deadline := time.Now().Add(20 * time.Second)
	for l.done.Load() < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if got := l.done.Load(); got != n {
		t.Errorf("got %d streams with every frame, want %d", got, n)
	}
	mu.Lock()
	if len(conns) != n/k {
		t.Errorf("got %d connections, want %d", len(conns), n/k)
	}
	mu.Unlock()
	srv.CloseClientConnections()
	wg.Wait()
}

func TestSharedConnCosts(t *testing.T) {
	// A connection of 20 KB and 3 KB per stream: alone 23 KB per stream,
	// 100 to a connection 3.2 KB per stream.
	rows := []result{
		{N: 1000, Proto: protoH2C, StreamsPerConn: 1, RSSPerConnKB: 23, Servers: 1},
		{N: 1000, Proto: protoH2C, StreamsPerConn: 100, RSSPerConnKB: 3.2, Servers: 1},
		{N: 1000, Proto: protoH1, RSSPerConnKB: 2.8, Servers: 1},
	}
	got := sharedConnCosts(rows)
	if len(got) != 1 {
		t.Fatalf("got %d derived rows, want 1", len(got))
	}
	if math.Abs(got[0].ConnKB-20) > 1e-9 || math.Abs(got[0].ExtraStreamKB-3) > 1e-9 {
		t.Errorf("got connection %.3f KB, extra stream %.3f KB; want 20 and 3", got[0].ConnKB, got[0].ExtraStreamKB)
	}
}

// TestRenderNginx renders the shipped configuration and, where nginx is
// installed, has it check the result.
func TestRenderNginx(t *testing.T) {
	path, err := findNginxConf()
	if err != nil {
		t.Fatal(err)
	}
	shipped, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := writeSelfSigned(cert, key); err != nil {
		t.Fatal(err)
	}
	up := []string{"http://127.0.0.1:9001", "http://127.0.0.1:9002"}
	got, err := renderNginx(string(shipped), up, "127.0.0.1:9000", cert, key)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"server 127.0.0.1:9001 max_fails=0;", "server 127.0.0.1:9002 max_fails=0;", "listen 127.0.0.1:9000 reuseport;", upstreamHeader, cert, key} {
		if !strings.Contains(got, want) {
			t.Errorf("rendered configuration lacks %q", want)
		}
	}
	for _, gone := range []string{"127.0.0.1:8081", "\t" + nginxListen, nginxCert} {
		if strings.Contains(got, gone) {
			t.Errorf("rendered configuration still has %q", gone)
		}
	}
	if _, err := renderNginx("server {}", up, "127.0.0.1:9000", cert, key); err == nil {
		t.Error("a configuration without the placeholders rendered without error")
	}

	bin, err := findNginx("")
	if err != nil {
		t.Skip("nginx is not installed: the rendered file is not checked by nginx -t")
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "dashboard.conf"), []byte(got), 0o644)
	os.WriteFile(filepath.Join(dir, "nginx.conf"), fmt.Appendf(nil, nginxMain, dir, nginxFileLimit, nginxFileLimit-1000), 0o644)
	if out, err := exec.Command(bin, "-t", "-q", "-p", dir, "-c", filepath.Join(dir, "nginx.conf")).CombinedOutput(); err != nil {
		t.Errorf("nginx -t: %v\n%s", err, out)
	}
}

func TestScaleOutFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-proto", "h3"},
		{"-streams-per-conn", "10"},                   // h1
		{"-proto", "h2c", "-streams-per-conn", "300"}, // above the server's limit
		{"-servers", "0"},
		{"-drain"},                                   // one server
		{"-drain", "-servers", "3", "-proto", "h2c"}, // h1 only
		{"-drain", "-servers", "3", "-m", "5"},       // SSE only
		{"-nginx", "-proto", "h2c"},                  // plain HTTP/1.1 nginx
		{"-servers", "3", "-server", "http://x", "-database-url", "postgres://x"},
		{"-pgbench", "-servers", "2"},
	} {
		if _, err := parseFlags(args, io.Discard); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
	o, err := parseFlags([]string{"-proto", "h2c", "-streams-per-conn", "1,100"}, io.Discard)
	if err != nil || len(o.streamsPerConn) != 2 || o.streamsPerConn[1] != 100 {
		t.Errorf("got %v, %v; want streams per conn [1 100]", o.streamsPerConn, err)
	}
}
