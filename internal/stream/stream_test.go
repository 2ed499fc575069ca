package stream

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/wire"
)

// wait bounds every wait for the other side of a socket, so that a broken
// pool fails the test instead of hanging it. It is not a timing assertion.
const wait = 10 * time.Second

// fixture is a hub with one dashboard of one stat panel, and a pool.
type fixture struct {
	hub      *hub.Hub
	board    *hub.Board
	def      *panel.Def
	dash     *panel.Dashboard
	pool     *Pool
	counters Counters
	access   chan struct{}
	accessMu sync.Mutex
	ln       net.Listener
	seq      int
}

func newFixture(t testing.TB, cfg Config) *fixture {
	t.Helper()
	def := &panel.Def{ID: 1, DashboardID: 1, Slug: "seq", Title: "Sequence", Kind: panel.Stat, Width: 1, Height: 1}
	d := &panel.Dashboard{ID: 1, Slug: "bench", Title: "Bench", Public: true, Panels: []*panel.Def{def}}
	h := hub.New(nil, nil)
	h.CatalogChanged(catalog.NewSnapshot([]*panel.Dashboard{d}, nil, nil))
	h.ViewOpened(panel.ViewKey{Dashboard: d.ID})
	f := &fixture{hub: h, board: h.Board(panel.ViewKey{Dashboard: 1}), def: def, dash: d, access: make(chan struct{})}
	f.counters = Counters{
		Frames:      prometheus.NewCounter(prometheus.CounterOpts{Name: "frames"}),
		Bytes:       prometheus.NewCounter(prometheus.CounterOpts{Name: "bytes"}),
		SlowDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "slow"}),
	}
	if cfg.Heartbeat == 0 {
		cfg.Heartbeat = time.Hour
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = wait
	}
	cfg.Counters = f.counters
	cfg.AccessChanged = func() <-chan struct{} {
		f.accessMu.Lock()
		defer f.accessMu.Unlock()
		return f.access
	}
	f.pool = New(cfg)
	t.Cleanup(f.pool.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	f.ln = ln
	f.publish(t, "")
	return f
}

// publish gives the panel a new result, seq-<n>, plus pad bytes of text.
func (f *fixture) publish(t testing.TB, pad string) int {
	f.seq++
	r := &panel.Result{Columns: []string{"n"},
		Rows: [][]panel.Value{{{Kind: panel.Text, Text: "seq-" + strconv.Itoa(f.seq) + "." + pad}}}}
	f.hub.Publish(viewOf(f.def), f.def, r, time.Time{})
	return f.seq
}

// revoke tells the pool that access may have changed.
func (f *fixture) revoke() {
	f.accessMu.Lock()
	defer f.accessMu.Unlock()
	close(f.access)
	f.access = make(chan struct{})
}

// viewer is the client side of a stream.
type client struct {
	conn net.Conn
	r    *bufio.Reader
	done chan struct{} // closed by the pool's Done
}

// dial connects a client, and hands the server side to the pool as a
// stream that knows the current version. setup may change the stream.
func (f *fixture) dial(t testing.TB, d *net.Dialer, setup func(*Stream)) *client {
	t.Helper()
	if d == nil {
		d = &net.Dialer{}
	}
	conn, srv := connect(t, f.ln, d)
	c := &client{conn: conn, r: bufio.NewReaderSize(conn, 64<<10), done: make(chan struct{})}
	s := &Stream{Conn: srv, Board: f.board, Have: f.board.Version(), Known: true,
		Until: time.Now().Add(time.Hour), Done: func() { close(c.done) }}
	if setup != nil {
		setup(s)
	}
	f.pool.Add(s)
	return c
}

// connect dials ln with d and returns both ends; the test closes them.
func connect(t testing.TB, ln net.Listener, d *net.Dialer) (client, server net.Conn) {
	t.Helper()
	client, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	server, err = ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

// until reads until the stream has shown want, and returns what it read.
func (c *client) until(t testing.TB, want string) string {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	var got strings.Builder
	for !strings.Contains(got.String(), want) {
		line, err := c.r.ReadString('\n')
		got.WriteString(line)
		if err != nil {
			t.Fatalf("reading until %q: %v after %q", want, err, got.String())
		}
	}
	return got.String()
}

// end reads until the server closes the stream, and returns what it read.
func (c *client) end(t testing.TB) string {
	t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(wait))
	b, err := io.ReadAll(c.r)
	if err != nil {
		t.Fatalf("waiting for the server to close the stream: %v", err)
	}
	return string(b)
}

func (c *client) ended(t testing.TB, what string) {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(wait):
		t.Fatalf("%s: the stream's Done was not called", what)
	}
}

func value(c prometheus.Counter) float64 {
	var m dto.Metric
	c.Write(&m)
	return m.GetCounter().GetValue()
}

func TestEveryViewerGetsTheLatestFrame(t *testing.T) {
	f := newFixture(t, Config{Writers: 3})
	clients := make([]*client, 50)
	for i := range clients {
		clients[i] = f.dial(t, nil, func(s *Stream) {
			if i == 0 {
				s.Prefix = []byte("retry: 1234\n")
			}
		})
	}
	seq := f.publish(t, "")
	for i, c := range clients {
		got := c.until(t, "seq-"+strconv.Itoa(seq)+".")
		if !strings.HasPrefix(got, "id: ") && !(i == 0 && strings.HasPrefix(got, "retry: 1234\nid: ")) {
			t.Fatalf("client %d: got %q, want one SSE message (after the prefix for client 0)", i, got)
		}
	}
	// The counters are added to once a sweep is done, which may be just
	// after the clients have read.
	for deadline := time.Now().Add(wait); value(f.counters.Frames) != 50 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	if got := value(f.counters.Frames); got != 50 {
		t.Errorf("frames counted: got %v, want 50", got)
	}
	// Several changes while nobody reads: every client ends at the last.
	for range 5 {
		seq = f.publish(t, "")
	}
	for _, c := range clients {
		c.until(t, "seq-"+strconv.Itoa(seq)+".")
	}
}

func TestNewViewerBehindGetsCurrentState(t *testing.T) {
	f := newFixture(t, Config{})
	c := f.dial(t, nil, func(s *Stream) { s.Known = false })
	if got := c.until(t, "seq-1."); !strings.Contains(got, `hx-target="#grid"`) {
		t.Fatalf("got %q, want the whole grid", got)
	}
}

func TestSlowViewerDroppedOthersServed(t *testing.T) {
	f := newFixture(t, Config{WriteTimeout: 300 * time.Millisecond})
	good := f.dial(t, nil, nil)
	// The slow client asks for a tiny receive window and never reads.
	slow := f.dial(t, &net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}, nil)
	pad := strings.Repeat("x", 200<<10)
	deadline := time.Now().Add(wait)
	frames := 0
	for dropped := false; !dropped; {
		select {
		case <-slow.done:
			dropped = true
		default:
			if time.Now().After(deadline) {
				t.Fatalf("slow client not dropped after %d frames of 200 KB", frames)
			}
			seq := f.publish(t, pad+strconv.Itoa(frames))
			good.until(t, "seq-"+strconv.Itoa(seq)+".")
			frames++
		}
	}
	t.Logf("slow client dropped after %d frames", frames)
	if got := value(f.counters.SlowDropped); got != 1 {
		t.Errorf("slow clients dropped: got %v, want 1", got)
	}
	seq := f.publish(t, "")
	good.until(t, "seq-"+strconv.Itoa(seq)+".")
}

func TestClientThatLeavesIsNoticed(t *testing.T) {
	f := newFixture(t, Config{Heartbeat: 100 * time.Millisecond})
	c := f.dial(t, nil, nil)
	other := f.dial(t, nil, nil)
	c.conn.Close()
	// No frame is sent: the maintenance tick notices the closed socket.
	c.ended(t, "client closed its connection")
	other.until(t, ": heartbeat\nevent: heartbeat\n")
	select {
	case <-other.done:
		t.Fatal("the other stream ended too")
	default:
	}
}

func TestHeartbeatWhenIdle(t *testing.T) {
	f := newFixture(t, Config{Heartbeat: 50 * time.Millisecond})
	c := f.dial(t, nil, nil)
	got := c.until(t, "\n\n")
	if got != string(wire.Heartbeat) {
		t.Fatalf("got %q, want a heartbeat", got)
	}
}

func TestStreamEnds(t *testing.T) {
	t.Run("at its maximum age", func(t *testing.T) {
		f := newFixture(t, Config{Heartbeat: 100 * time.Millisecond})
		c := f.dial(t, nil, func(s *Stream) { s.Until = time.Now().Add(50 * time.Millisecond) })
		c.end(t)
		c.ended(t, "maximum age")
	})
	t.Run("when access is withdrawn", func(t *testing.T) {
		f := newFixture(t, Config{})
		var mu sync.Mutex
		allowed := true
		c := f.dial(t, nil, func(s *Stream) {
			s.Allowed = func() bool { mu.Lock(); defer mu.Unlock(); return allowed }
		})
		kept := f.dial(t, nil, nil)
		seq := f.publish(t, "")
		c.until(t, "seq-"+strconv.Itoa(seq)+".")
		mu.Lock()
		allowed = false
		mu.Unlock()
		f.revoke()
		c.end(t)
		c.ended(t, "access withdrawn")
		seq = f.publish(t, "")
		kept.until(t, "seq-"+strconv.Itoa(seq)+".")
	})
	t.Run("when not allowed from the start", func(t *testing.T) {
		f := newFixture(t, Config{})
		c := f.dial(t, nil, func(s *Stream) { s.Allowed = func() bool { return false } })
		if got := c.end(t); got != "" {
			t.Fatalf("got %q, want nothing", got)
		}
	})
	t.Run("when the dashboard is deleted", func(t *testing.T) {
		f := newFixture(t, Config{})
		c := f.dial(t, nil, nil)
		f.hub.CatalogChanged(catalog.NewSnapshot(nil, nil, nil))
		c.end(t)
		c.ended(t, "dashboard deleted")
	})
}

func TestCloseSaysGoodbye(t *testing.T) {
	f := newFixture(t, Config{})
	clients := []*client{f.dial(t, nil, nil), f.dial(t, nil, nil)}
	f.pool.Close()
	for i, c := range clients {
		got := c.end(t)
		if !strings.HasPrefix(got, "retry: ") || !strings.HasSuffix(got, "event: reconnect\ndata:\n\n") {
			t.Errorf("client %d: got %q at close, want a retry and the reconnect event", i, got)
		}
		c.ended(t, "pool closed")
	}
	late := f.dial(t, nil, nil)
	if got := late.end(t); !strings.HasSuffix(got, "event: reconnect\ndata:\n\n") {
		t.Errorf("stream added after Close: got %q, want the reconnect event", got)
	}
	late.ended(t, "added after close")
}

// TestCloseDoesNotWaitForSlowClients closes the pool while a write to a
// client that never reads is pending.
func TestCloseDoesNotWaitForSlowClients(t *testing.T) {
	f := newFixture(t, Config{WriteTimeout: time.Hour})
	slow := f.dial(t, nil, nil)
	pad := strings.Repeat("x", 1<<20)
	for range 20 {
		f.publish(t, pad)
	}
	closed := make(chan struct{})
	go func() { f.pool.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(wait):
		t.Fatal("Close waited for a client that does not read")
	}
	slow.ended(t, "pool closed")
}

// TestSweepAllocatesNothingPerViewer: bringing a viewer up to date must not
// allocate; what a sweep allocates is about the same for 1 and for 200
// viewers.
func TestSweepAllocatesNothingPerViewer(t *testing.T) {
	allocs := func(n int) float64 {
		f := newFixture(t, Config{})
		g := f.detachedGroup(t, n)
		return testing.AllocsPerRun(50, func() {
			f.publish(t, "")
			g.sweep(time.Now(), false, false)
		})
	}
	// An allocation per viewer would add 199 per sweep; a stray one in the
	// runtime or another goroutine of the process adds a few.
	one, many := allocs(1), allocs(200)
	if many-one >= 100 {
		t.Fatalf("a sweep allocates %v times for 1 viewer and %v for 200, want no allocation per viewer", one, many)
	}
}

// detachedGroup is a group of the pool's that is not running, with n
// viewers whose clients read and discard: the caller sweeps it.
func (f *fixture) detachedGroup(t testing.TB, n int) *group {
	t.Helper()
	g := newGroup(f.pool, f.board, nil, 0)
	for range n {
		c, srv := connect(t, f.ln, &net.Dialer{})
		go func() {
			buf := make([]byte, 64<<10)
			for {
				if _, err := c.Read(buf); err != nil {
					return
				}
			}
		}()
		raw, err := srv.(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		g.viewers = append(g.viewers, &viewer{raw: raw, checked: true, Stream: Stream{
			Conn: srv, Board: f.board, Have: f.board.Version(), Known: true, Until: time.Now().Add(time.Hour)}})
	}
	return g
}

// BenchmarkSweep is the writer's cost of one update to n viewers over
// loopback TCP, the kernel's share included: one op is one publish and one
// sweep, and ns/delivery is what each viewer costs.
func BenchmarkSweep(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(strconv.Itoa(n), func(b *testing.B) {
			f := newFixture(b, Config{})
			g := f.detachedGroup(b, n)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				f.publish(b, "")
				g.sweep(time.Now(), false, false)
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/delivery")
			if len(g.viewers) != n {
				b.Fatalf("%d viewers left of %d", len(g.viewers), n)
			}
		})
	}
}

// viewOf is the view without variables of p's dashboard.
func viewOf(p *panel.Def) panel.ViewKey { return panel.ViewKey{Dashboard: p.DashboardID} }

// presenceOf is a dashboard's presence as presence.Dashboard keeps it: two
// shared event variants, a generation and a channel closed on change.
type presenceOf struct {
	mu      sync.Mutex
	gen     uint64
	events  [2][]byte
	changed chan struct{}
}

func newPresence(n int) *presenceOf {
	p := &presenceOf{changed: make(chan struct{})}
	p.set(n)
	return p
}

// set makes the events for n viewers, with one label, and wakes the pool.
func (p *presenceOf) set(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gen++
	p.events = [2][]byte{wire.PresenceEvent(wire.Presence{Watching: n}),
		wire.PresenceEvent(wire.Presence{Watching: n, Labels: []string{"lobby TV"}})}
	close(p.changed)
	p.changed = make(chan struct{})
}

func (p *presenceOf) Changed() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.changed
}

func (p *presenceOf) Event(labels bool) (uint64, []byte) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if labels {
		return p.gen, p.events[1]
	}
	return p.gen, p.events[0]
}

// TestPresenceEvents: each viewer gets the presence variant it may see
// when it joins and whenever presence changes, never as a frame: the
// board's version and the frames counter stay as they were.
func TestPresenceEvents(t *testing.T) {
	f := newFixture(t, Config{Writers: 1})
	pr := newPresence(1)
	version := f.board.Version()
	public := f.dial(t, nil, func(s *Stream) { s.Presence = pr })
	holder := f.dial(t, nil, func(s *Stream) { s.Presence, s.Labels = pr, true })
	public.until(t, "data: {\"watching\":1}\n\n")
	holder.until(t, "data: {\"watching\":1,\"labels\":[\"lobby TV\"]}\n\n")
	pr.set(2)
	if got := public.until(t, "\n\n"); got != "event: presence\ndata: {\"watching\":2}\n\n" {
		t.Errorf("public viewer got %q, want the count-only presence event", got)
	}
	if got := holder.until(t, "\n\n"); got != "event: presence\ndata: {\"watching\":2,\"labels\":[\"lobby TV\"]}\n\n" {
		t.Errorf("token holder got %q, want the presence event with labels", got)
	}
	if v := f.board.Version(); v != version {
		t.Errorf("presence moved the version: got %v, want %v", v, version)
	}
	if n := value(f.counters.Frames); n != 0 {
		t.Errorf("presence counted %v frames, want 0", n)
	}
	// A frame and a presence change in one sweep: both arrive, the frame first.
	f.publish(t, "")
	pr.set(3)
	got := public.until(t, `data: {"watching":3}`)
	if !strings.Contains(got, "id: ") || strings.Index(got, "id: ") > strings.Index(got, "event: presence") {
		t.Errorf("got %q, want the update, then presence", got)
	}
}

// TestPresenceDue: a viewer is due the event of its variant once per
// generation.
func TestPresenceDue(t *testing.T) {
	pr := newPresence(4)
	s := &Stream{Presence: pr, Labels: true}
	if got := string(s.PresenceDue()); !strings.Contains(got, `"labels":["lobby TV"]`) {
		t.Errorf("first: got %q, want the labelled event", got)
	}
	if got := s.PresenceDue(); got != nil {
		t.Errorf("again without a change: got %q, want nil", got)
	}
	pr.set(5)
	if got := string(s.PresenceDue()); !strings.Contains(got, `"watching":5`) {
		t.Errorf("after a change: got %q, want watching 5", got)
	}
	if got := (&Stream{}).PresenceDue(); got != nil {
		t.Errorf("without presence: got %q, want nil", got)
	}
}
