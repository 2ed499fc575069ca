package stream

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/wire"
)

// h2 is an HTTP/2 server over TLS whose event streams are served by the
// fixture's pool through Serve, and its client.
type h2 struct {
	f      *fixture
	srv    *httptest.Server
	client *http.Client
	mu     sync.Mutex
	setup  func(*Stream)
}

func newH2(t *testing.T, f *fixture) *h2 {
	t.Helper()
	h := &h2{f: f}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The stream's version and set-up are taken before the opening
		// goes out: the test publishes and opens the next stream as soon
		// as it has read the opening, and a version taken after that
		// publish would already be the new one (seen under load).
		s := &Stream{Board: f.board, Have: f.board.Version(), Known: true, Until: time.Now().Add(time.Hour)}
		done := make(chan struct{})
		s.Done = func() { close(done) }
		h.mu.Lock()
		if h.setup != nil {
			h.setup(s)
		}
		h.mu.Unlock()
		w.Header().Set("Content-Type", "text/event-stream")
		w.WriteHeader(http.StatusOK)
		if err := WriteResponse(w, wire.Opening(1000), f.pool.cfg.WriteTimeout); err != nil {
			s.Done()
			return
		}
		f.pool.Serve(w, r, s)
		select {
		case <-done:
		default:
			t.Error("Serve returned before calling Done")
		}
	}))
	h.srv.EnableHTTP2 = true
	h.srv.StartTLS()
	// Close the pool first: Serve returns then, and the server's Close
	// does not wait for handlers.
	t.Cleanup(h.srv.Close)
	t.Cleanup(f.pool.Close)
	h.client = h.srv.Client()
	return h
}

// h2client is the reading end of one stream over HTTP/2.
type h2client struct {
	resp *http.Response
	r    *bufio.Reader
	read chan string // lines, closed at the end of the body
}

// open starts a stream; setup may change it before Serve gets it.
func (h *h2) open(t *testing.T, setup func(*Stream)) *h2client {
	t.Helper()
	h.mu.Lock()
	h.setup = setup
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	req, _ := http.NewRequestWithContext(ctx, "GET", h.srv.URL+"/events", nil)
	resp, err := h.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.ProtoMajor != 2 {
		t.Fatalf("got %s, want HTTP/2", resp.Proto)
	}
	c := &h2client{resp: resp, r: bufio.NewReader(resp.Body), read: make(chan string, 1024)}
	// The opening ends with its heartbeat event's blank line.
	var opening string
	for !strings.HasSuffix(opening, "\n\n") {
		opening += c.line(t)
	}
	if want := string(wire.Opening(1000)); opening != want {
		t.Fatalf("opening: got %q, want %q", opening, want)
	}
	go func() {
		defer close(c.read)
		for {
			line, err := c.r.ReadString('\n')
			if line != "" {
				c.read <- line
			}
			if err != nil {
				return
			}
		}
	}()
	return c
}

func (c *h2client) line(t *testing.T) string {
	t.Helper()
	line, err := c.r.ReadString('\n')
	if err != nil {
		t.Fatalf("reading the opening: %v", err)
	}
	return line
}

// until reads until the stream has shown want, and returns what it read.
func (c *h2client) until(t *testing.T, want string) string {
	t.Helper()
	var got strings.Builder
	timeout := time.After(wait)
	for !strings.Contains(got.String(), want) {
		select {
		case line, ok := <-c.read:
			if !ok {
				t.Fatalf("stream ended before %q; read %q", want, got.String())
			}
			got.WriteString(line)
		case <-timeout:
			t.Fatalf("no %q within %v; read %q", want, wait, got.String())
		}
	}
	return got.String()
}

// end reads until the server ends the stream, and returns what it read.
func (c *h2client) end(t *testing.T) string {
	t.Helper()
	var got strings.Builder
	timeout := time.After(wait)
	for {
		select {
		case line, ok := <-c.read:
			if !ok {
				return got.String()
			}
			got.WriteString(line)
		case <-timeout:
			t.Fatalf("stream did not end within %v; read %q", wait, got.String())
		}
	}
}

func TestServeOverHTTP2(t *testing.T) {
	t.Run("frames to many streams of one connection, the prefix first", func(t *testing.T) {
		f := newFixture(t, Config{})
		h := newH2(t, f)
		clients := make([]*h2client, 20)
		for i := range clients {
			clients[i] = h.open(t, func(s *Stream) { s.Prefix = []byte("retry: 1234\n") })
		}
		seq := f.publish(t, "")
		for i, c := range clients {
			got := c.until(t, "seq-"+strconv.Itoa(seq)+".")
			if !strings.HasPrefix(got, "retry: 1234\nid: ") {
				t.Fatalf("client %d: got %q, want the retry prefix and one message", i, got)
			}
		}
		for range 5 {
			seq = f.publish(t, "")
		}
		for _, c := range clients {
			c.until(t, "seq-"+strconv.Itoa(seq)+".")
		}
		if got := value(f.counters.Frames); got < 40 {
			t.Errorf("frames counted: got %v, want at least 40", got)
		}
	})
	t.Run("heartbeat when idle", func(t *testing.T) {
		f := newFixture(t, Config{Heartbeat: 50 * time.Millisecond})
		c := newH2(t, f).open(t, nil)
		if got := c.until(t, "\n\n"); got != string(wire.Heartbeat) {
			t.Fatalf("got %q, want a heartbeat", got)
		}
	})
	t.Run("ends at its maximum age", func(t *testing.T) {
		f := newFixture(t, Config{})
		c := newH2(t, f).open(t, func(s *Stream) { s.Until = time.Now().Add(50 * time.Millisecond) })
		if got := c.end(t); got != "" {
			t.Fatalf("got %q before the end, want nothing", got)
		}
	})
	t.Run("ends when access is withdrawn", func(t *testing.T) {
		f := newFixture(t, Config{})
		h := newH2(t, f)
		var mu sync.Mutex
		allowed := true
		c := h.open(t, func(s *Stream) {
			s.Allowed = func() bool { mu.Lock(); defer mu.Unlock(); return allowed }
		})
		kept := h.open(t, nil)
		seq := f.publish(t, "")
		c.until(t, "seq-"+strconv.Itoa(seq)+".")
		mu.Lock()
		allowed = false
		mu.Unlock()
		f.revoke()
		c.end(t)
		seq = f.publish(t, "")
		kept.until(t, "seq-"+strconv.Itoa(seq)+".")
	})
	t.Run("gone when the dashboard is deleted", func(t *testing.T) {
		f := newFixture(t, Config{})
		c := newH2(t, f).open(t, nil)
		f.hub.CatalogChanged(catalog.NewSnapshot(nil, nil, nil))
		if got := c.end(t); got != string(wire.Gone) {
			t.Fatalf("got %q, want the gone message", got)
		}
	})
	t.Run("goodbye when the pool closes", func(t *testing.T) {
		f := newFixture(t, Config{})
		h := newH2(t, f)
		clients := []*h2client{h.open(t, nil), h.open(t, nil)}
		f.pool.Close()
		for i, c := range clients {
			if got := c.end(t); !strings.HasPrefix(got, "retry: ") || !strings.HasSuffix(got, "event: reconnect\ndata:\n\n") {
				t.Errorf("client %d: got %q at close, want a retry and the reconnect event", i, got)
			}
		}
		late := h.open(t, nil)
		if got := late.end(t); !strings.HasSuffix(got, "event: reconnect\ndata:\n\n") {
			t.Errorf("stream opened after Close: got %q, want the reconnect event", got)
		}
	})
	t.Run("a client that stops reading is dropped, the others served", func(t *testing.T) {
		f := newFixture(t, Config{WriteTimeout: 300 * time.Millisecond})
		h := newH2(t, f)
		good := h.open(t, nil)
		// Nothing reads the slow stream's body: once the client's
		// flow-control window is full, the server's writes stall.
		h.mu.Lock()
		h.setup = nil
		h.mu.Unlock()
		req, _ := http.NewRequest("GET", h.srv.URL+"/events", nil)
		slow, err := h.client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer slow.Body.Close()
		pad := strings.Repeat("x", 1<<20)
		for frames := 0; value(f.counters.SlowDropped) == 0; frames++ {
			if frames == 200 {
				t.Fatalf("slow client not dropped after %d frames of 1 MB", frames)
			}
			seq := f.publish(t, pad+strconv.Itoa(frames))
			good.until(t, "seq-"+strconv.Itoa(seq)+".")
		}
		seq := f.publish(t, "")
		good.until(t, "seq-"+strconv.Itoa(seq)+".")
	})
}

// TestServeCloseDoesNotWaitForSlowClients closes the pool while a stream's
// write to an HTTP/2 client that never reads is stalled on flow control:
// the client's window for the stream is 64 KiB and the frame 1 MiB, so once
// the frame's write has begun it cannot end before Close cuts it short.
func TestServeCloseDoesNotWaitForSlowClients(t *testing.T) {
	f := newFixture(t, Config{WriteTimeout: time.Hour})
	h := newH2(t, f)
	tr := h.client.Transport.(*http.Transport).Clone()
	tr.HTTP2 = &http.HTTP2Config{MaxReceiveBufferPerConnection: 64 << 10, MaxReceiveBufferPerStream: 64 << 10}
	t.Cleanup(tr.CloseIdleConnections)
	req, _ := http.NewRequest("GET", h.srv.URL+"/events", nil)
	slow, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	if slow.ProtoMajor != 2 {
		t.Fatalf("got %s, want HTTP/2", slow.Proto)
	}
	frames := value(f.counters.Frames)
	f.publish(t, strings.Repeat("x", 1<<20))
	for deadline := time.Now().Add(wait); value(f.counters.Frames) == frames || !f.pool.writing(); {
		if time.Now().After(deadline) {
			t.Fatal("the frame's write did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() { f.pool.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close waited for a client that does not read")
	}
	if got := value(f.counters.SlowDropped); got != 0 {
		t.Errorf("a stream ended by Close counted as slow: got %v, want 0", got)
	}
}

// writing reports whether a stream in Serve is in the middle of a write.
func (p *Pool) writing() bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for r := range p.served {
		r.mu.Lock()
		w := r.writing
		r.mu.Unlock()
		if w {
			return true
		}
	}
	return false
}

// TestServeCloseWaitsForDone checks that when Close returns, Done has run
// for every stream in Serve: the web layer's cleanup (presence, views,
// limits) must not outlive the pool.
func TestServeCloseWaitsForDone(t *testing.T) {
	f := newFixture(t, Config{})
	h := newH2(t, f)
	var finished atomic.Int32
	const n = 5
	clients := make([]*h2client, n)
	for i := range clients {
		clients[i] = h.open(t, func(s *Stream) {
			done := s.Done
			s.Done = func() {
				// Cleanup that takes a while: a Close that does not wait
				// for it returns first.
				time.Sleep(50 * time.Millisecond)
				done()
				finished.Add(1)
			}
		})
	}
	// A frame each has read was written by Serve: every stream is in it.
	seq := f.publish(t, "")
	for _, c := range clients {
		c.until(t, "seq-"+strconv.Itoa(seq)+".")
	}
	f.pool.Close()
	if got := finished.Load(); got != n {
		t.Fatalf("Done ran for %d of %d streams by the time Close returned", got, n)
	}
}

// stallWriter is a ResponseWriter whose Write blocks until its write
// deadline has passed, as an HTTP/2 stream does whose peer has stopped
// reading (a dead TCP connection): only a deadline ends the write.
type stallWriter struct {
	header http.Header
	mu     sync.Mutex
	dl     time.Time
	set    chan struct{} // a deadline was set
}

func (w *stallWriter) Header() http.Header { return w.header }
func (w *stallWriter) WriteHeader(int)     {}
func (w *stallWriter) Flush()              {}

func (w *stallWriter) SetWriteDeadline(t time.Time) error {
	w.mu.Lock()
	w.dl = t
	w.mu.Unlock()
	select {
	case w.set <- struct{}{}:
	default:
	}
	return nil
}

func (w *stallWriter) Write(p []byte) (int, error) {
	for give := time.After(2 * wait); ; {
		w.mu.Lock()
		dl := w.dl
		w.mu.Unlock()
		if !dl.IsZero() && !time.Now().Before(dl) {
			return 0, os.ErrDeadlineExceeded
		}
		var fire <-chan time.Time
		if !dl.IsZero() {
			fire = time.After(time.Until(dl))
		}
		select {
		case <-w.set:
		case <-fire:
		case <-give:
			return 0, errors.New("stallWriter: no deadline ever came")
		}
	}
}

// TestServeCloseEndsStalledGoodbye: a stream that was idle when the pool
// closed writes its goodbye after Close has hurried the writes under way
// and the watch has stopped; a client that cannot take it must not hold
// Close past closeWait (it held it until the write gave up).
func TestServeCloseEndsStalledGoodbye(t *testing.T) {
	f := newFixture(t, Config{})
	w := &stallWriter{header: http.Header{}, set: make(chan struct{}, 1)}
	r := httptest.NewRequest("GET", "/events", nil)
	s := &Stream{Board: f.board, Have: f.board.Version(), Known: true, Until: time.Now().Add(time.Hour)}
	served := make(chan struct{})
	go func() {
		defer close(served)
		f.pool.Serve(w, r, s)
	}()
	// The stream is idle in Serve once the pool lists it.
	deadline := time.Now().Add(wait)
	for {
		f.pool.mu.Lock()
		n := len(f.pool.served)
		f.pool.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stream never reached Serve's loop")
		}
		time.Sleep(time.Millisecond)
	}
	closed := make(chan struct{})
	go func() {
		f.pool.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatalf("Close still waiting after %v for a goodbye the client cannot take (closeWait %v)", wait, closeWait)
	}
	<-served
}
