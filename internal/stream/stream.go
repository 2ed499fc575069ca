// Package stream keeps the open SSE connections once their handshake is
// done and writes every new frame of a dashboard to them.
//
// A few writer goroutines per dashboard (one per CPU) serve all of its
// viewers. A change costs one non-blocking write(2) per viewer and no
// goroutine wake-ups, and an idle viewer costs its socket and a small
// struct, not a goroutine with its buffers. A viewer whose socket is full
// is handed to a goroutine of its own that finishes the write within the
// write timeout or drops the viewer; meanwhile the others go on, and it
// gets the latest state afterwards (latest wins).
//
// That path needs a connection of its own with a file descriptor: plain
// HTTP/1.1, hijacked. Streams that share a connection (HTTP/2) or whose
// bytes must be encrypted (TLS) are served by Serve instead, on their
// request's goroutine, through the http.ResponseWriter. Both paths follow
// the same rules, decided in one place (viewer.next), and Close ends both.
package stream

import (
	"errors"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/wire"
)

// Config is how a Pool writes.
type Config struct {
	// Heartbeat is the longest a stream stays silent.
	Heartbeat time.Duration
	// WriteTimeout is how long a viewer may take to accept one write
	// before it is dropped.
	WriteTimeout time.Duration
	// Writers is the number of writer goroutines per dashboard; zero means
	// one per CPU.
	Writers int
	// AccessChanged, if set, returns a channel that is closed when
	// Stream.Allowed may have changed its answer (a token was revoked).
	AccessChanged func() <-chan struct{}
	Logger        *slog.Logger
	Counters      Counters
}

// Counters are the Prometheus counters a Pool adds to; nil ones are
// skipped. They are shared with the long-poll, so the caller owns them.
type Counters struct {
	Frames      prometheus.Counter // frames written
	Bytes       prometheus.Counter // bytes of frames written
	SlowDropped prometheus.Counter // viewers dropped for not taking a write in time
}

// Stream is an SSE connection whose response head has been written.
type Stream struct {
	// Conn is the hijacked connection of a stream given to Add; Serve
	// writes through its http.ResponseWriter and leaves Conn nil.
	Conn  net.Conn
	Board *hub.Board
	// Have is the version the client shows, if Known.
	Have  hub.Version
	Known bool
	// Prefix is written in front of the first frame (the retry field,
	// which hx-sse applies only with a message it dispatches).
	Prefix []byte
	// Until is when the stream ends: its maximum age or its token's expiry.
	Until time.Time
	// Allowed, if set, reports whether the viewer may still watch. It is
	// asked when the stream is added and whenever AccessChanged fires.
	Allowed func() bool
	// Done is called once, after the stream has ended and Conn, if any,
	// is closed.
	Done func()
	// Presence, if set, is who watches the dashboard; every stream of a
	// Board has the same. Labels says whether this viewer sees the token
	// labels (it holds a token) or only the count.
	Presence Presence
	Labels   bool
	// presenceGen is the generation of the presence event last sent.
	presenceGen uint64
}

// Presence is who watches a dashboard, as the stream sends it: a named
// event made once per change for each of its two variants, and a channel
// closed at the next change (implemented by presence.Dashboard). It is not
// part of a board's state, so it never moves a version.
type Presence interface {
	Changed() <-chan struct{}
	Event(labels bool) (gen uint64, msg []byte)
}

// PresenceDue returns the presence event the viewer is to be sent now, or
// nil when it has the current one, and counts it as sent. It is the one
// place that decides which presence bytes a viewer needs; every loop that
// writes streams asks it after the viewer's frame.
func (s *Stream) PresenceDue() []byte {
	if s.Presence == nil {
		return nil
	}
	gen, msg := s.Presence.Event(s.Labels)
	if gen == s.presenceGen {
		return nil
	}
	s.presenceGen = gen
	return msg
}

// Pool holds every open stream.
type Pool struct {
	cfg  Config
	tick time.Duration

	quit chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	closed bool
	boards map[*hub.Board]*writers
	served map[*response]struct{} // the streams in Serve
	// watching is set once the goroutine that cuts Serve's overdue
	// writes runs (Pool.watch).
	watching bool
}

// writers are the writer goroutines of one dashboard; a nil slot has none
// running. New streams are dealt to the slots in turn.
type writers struct {
	slots []*group
	next  int
}

// New returns an empty Pool.
func New(cfg Config) *Pool {
	if cfg.Writers <= 0 {
		cfg.Writers = runtime.GOMAXPROCS(0)
	}
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = 15 * time.Second
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	// Maintenance (heartbeats, maximum age, noticing closed clients) runs
	// on a tick, not on a timer per stream: with 10,000 streams, per-stream
	// deadlines would wake the writers thousands of times a second.
	tick := min(max(cfg.Heartbeat/4, 10*time.Millisecond), time.Second)
	return &Pool{cfg: cfg, tick: tick, quit: make(chan struct{}),
		boards: make(map[*hub.Board]*writers), served: make(map[*response]struct{})}
}

// Add hands a stream over to the pool, which owns it from now on. After
// Close, the stream is told to reconnect and closed at once. Conn should
// have a file descriptor (a plain TCP connection): without one, every
// write goes through a goroutine of its own and the gone and goodbye
// messages, which are written only if the socket takes them at once, are
// not sent, so such connections are for Serve.
func (p *Pool) Add(s *Stream) {
	v := &viewer{Stream: *s, lastWrite: time.Now()}
	if sc, ok := s.Conn.(syscall.Conn); ok {
		v.raw, _ = sc.SyscallConn()
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		WriteWithin(v.Conn, wire.Goodbye(), p.cfg.WriteTimeout)
		p.end(v, nil)
		return
	}
	w := p.boards[s.Board]
	if w == nil {
		w = &writers{slots: make([]*group, p.cfg.Writers)}
		p.boards[s.Board] = w
	}
	i := w.next % len(w.slots)
	w.next++
	g := w.slots[i]
	if g == nil {
		g = newGroup(p, s.Board, s.Presence, i)
		w.slots[i] = g
		p.wg.Add(1)
		go g.run()
	}
	g.incoming = append(g.incoming, v)
	p.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// Close tells every stream to reconnect (elsewhere, or here after a
// restart), closes them, and returns when they are all gone, those in
// Serve included. The goodbye is written only to clients that can take it
// at once (within closeWait for streams in Serve), so Close never waits
// long for a slow client.
func (p *Pool) Close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		close(p.quit)
	}
	for r := range p.served {
		r.hurry()
	}
	p.mu.Unlock()
	p.wg.Wait()
}

// end closes a stream and reports why, if it was dropped for being slow.
func (p *Pool) end(v *viewer, err error) {
	v.Conn.Close()
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		if c := p.cfg.Counters.SlowDropped; c != nil {
			c.Inc()
		}
		p.cfg.Logger.Info("dropping slow client", "remote", v.Conn.RemoteAddr().String(),
			"err", "client did not take a write within the write timeout")
	}
	if v.Done != nil {
		v.Done()
	}
}

// viewer is a stream as its writer sees it.
type viewer struct {
	Stream
	raw       syscall.RawConn // nil if the connection has no file descriptor
	lastWrite time.Time
	checked   bool // Allowed has been asked since the stream was added
	// busy is set while a goroutine of its own finishes a write the socket
	// could not take at once; the writer leaves the viewer alone until the
	// goroutine reports back with slowErr set.
	busy    bool
	slowErr error
}

// group is one writer goroutine and the viewers of one dashboard it serves.
type group struct {
	pool     *Pool
	board    *hub.Board
	presence Presence // nil: the streams send no presence
	slot     int

	wake     chan struct{}
	finished chan *viewer // slow writes that completed or failed
	incoming []*viewer    // guarded by pool.mu
	viewers  []*viewer

	frames, bytes int // since the counters were last updated

	io rawIO
}

func newGroup(p *Pool, b *hub.Board, pr Presence, slot int) *group {
	g := &group{pool: p, board: b, presence: pr, slot: slot, wake: make(chan struct{}, 1), finished: make(chan *viewer, 16)}
	g.io.init()
	return g
}

func (g *group) run() {
	defer g.pool.wg.Done()
	tick := time.NewTicker(g.pool.tick)
	defer tick.Stop()
	recheck, maintain := true, false
	var access <-chan struct{}
	for {
		changed := g.board.Changed()
		var present <-chan struct{} // nil: never ready
		if g.presence != nil {
			present = g.presence.Changed()
		}
		if f := g.pool.cfg.AccessChanged; f != nil {
			// A change that came while the last round ended for another
			// reason closed the channel the round waited on: it must not
			// be lost by taking the next channel.
			select {
			case <-access:
				recheck = true
			default:
			}
			access = f()
		}
		if !g.adopt() {
			return
		}
		g.sweep(time.Now(), recheck, maintain)
		recheck, maintain = false, false
		select {
		case <-changed:
		case <-present:
		case <-g.wake:
		case <-access:
			recheck = true
		case v := <-g.finished:
			g.slowDone(v)
		case <-tick.C:
			maintain = true
		case <-g.pool.quit:
			g.shutdown()
			return
		}
	}
}

// adopt takes the streams added since the last round. A group left
// without viewers retires, under the same lock Add uses, so that no
// stream is added to a group that has stopped.
func (g *group) adopt() bool {
	p := g.pool
	p.mu.Lock()
	defer p.mu.Unlock()
	g.viewers = append(g.viewers, g.incoming...)
	clear(g.incoming)
	g.incoming = g.incoming[:0]
	if len(g.viewers) > 0 {
		return true
	}
	w := p.boards[g.board]
	w.slots[g.slot] = nil
	for _, s := range w.slots {
		if s != nil {
			return false
		}
	}
	delete(p.boards, g.board)
	return false
}

// sweep brings every viewer that is not busy up to date. recheck asks
// Allowed again; maintain also sends heartbeats, ends streams past their
// age and notices clients that have gone away.
func (g *group) sweep(now time.Time, recheck, maintain bool) {
	removed := g.board.Removed()
	keep := g.viewers[:0]
	for _, v := range g.viewers {
		if !v.busy {
			if err := g.serve(v, now, removed, recheck, maintain); err != nil {
				g.pool.end(v, err)
				continue
			}
		}
		keep = append(keep, v)
	}
	clear(g.viewers[len(keep):])
	g.viewers = keep
	c := g.pool.cfg.Counters
	if g.frames > 0 && c.Frames != nil {
		c.Frames.Add(float64(g.frames))
		c.Bytes.Add(float64(g.bytes))
	}
	g.frames, g.bytes = 0, 0
}

// errEnded ends a stream that is done for a reason other than an error.
var errEnded = errors.New("stream ended")

func (g *group) serve(v *viewer, now time.Time, removed, recheck, maintain bool) error {
	if maintain && !removed {
		if err := g.io.peek(v.raw); err != nil {
			return err
		}
	}
	n := v.next(now, g.pool.cfg.Heartbeat, removed, recheck, maintain)
	if n.end {
		if n.msg != nil {
			// Best effort, like the goodbye: a client that cannot take it
			// at once reconnects, gets 404 and keeps trying slowly.
			g.io.write(v.raw, n.msg)
		}
		return errEnded
	}
	if n.msg == nil {
		return nil
	}
	if n.frame == 0 {
		return g.write(v, n.msg)
	}
	g.frames++
	g.bytes += n.frame
	if err := g.write(v, n.msg); err != nil || v.busy {
		return err // a presence change waits for the next sweep
	}
	// A frame and a presence change that came together go out together.
	if msg := v.PresenceDue(); msg != nil {
		return g.write(v, msg)
	}
	return nil
}

// step is what a viewer is sent now.
type step struct {
	msg   []byte // nil: nothing
	frame int    // how many bytes of msg are a frame (counted); 0 for control messages
	end   bool   // the stream ends, after msg if there is one
}

// next decides what v is sent now. It is the one place that holds the
// rules of a stream, for both paths: the writer groups of hijacked
// connections and Serve. removed says the dashboard was deleted; recheck
// that Allowed must be asked again; maintain that the rules of time
// (maximum age, heartbeat) apply in this round.
func (v *viewer) next(now time.Time, heartbeat time.Duration, removed, recheck, maintain bool) step {
	if removed {
		return step{msg: wire.Gone, end: true}
	}
	if (recheck || !v.checked) && v.Allowed != nil && !v.Allowed() {
		return step{end: true}
	}
	v.checked = true
	if maintain && !now.Before(v.Until) {
		return step{end: true}
	}
	if f := v.Board.FrameSince(v.Have, v.Known); f != nil {
		msg := f.Message
		if v.Prefix != nil {
			msg = append(v.Prefix, f.Message...)
			v.Prefix = nil
		}
		v.Have, v.Known = f.Version, true
		v.lastWrite = now
		return step{msg: msg, frame: len(f.Message)}
	}
	if msg := v.PresenceDue(); msg != nil {
		v.lastWrite = now
		return step{msg: msg}
	}
	if maintain && now.Sub(v.lastWrite) >= heartbeat {
		v.lastWrite = now
		return step{msg: wire.Heartbeat}
	}
	return step{}
}

// write sends p without blocking; what the socket cannot take at once is
// finished by a goroutine of its own, under the write timeout.
func (g *group) write(v *viewer, p []byte) error {
	n, err := g.io.write(v.raw, p)
	if err != nil || n == len(p) {
		return err
	}
	v.busy = true
	go g.finish(v, p[n:])
	return nil
}

// finish completes a write the socket could not take at once. The bytes
// are shared with every other viewer and only read.
func (g *group) finish(v *viewer, rest []byte) {
	v.slowErr = WriteWithin(v.Conn, rest, g.pool.cfg.WriteTimeout)
	g.finished <- v
}

// WriteWithin writes p to c, blocking for at most timeout, and leaves no
// deadline behind: the non-blocking writes that follow check it too.
func WriteWithin(c net.Conn, p []byte, timeout time.Duration) error {
	err := c.SetWriteDeadline(time.Now().Add(timeout))
	if err == nil {
		_, err = c.Write(p)
	}
	if err == nil {
		err = c.SetWriteDeadline(time.Time{})
	}
	return err
}

// slowDone takes a viewer back from its goroutine, or drops it.
func (g *group) slowDone(v *viewer) {
	v.busy = false
	if v.slowErr == nil {
		return // the next sweep sends it whatever it missed
	}
	for i, w := range g.viewers {
		if w == v {
			g.viewers = append(g.viewers[:i], g.viewers[i+1:]...)
			break
		}
	}
	g.pool.end(v, v.slowErr)
}

// shutdown says goodbye to every viewer that can take it at once and
// closes them all, busy ones included: closing their connections ends
// their pending writes.
func (g *group) shutdown() {
	g.adopt()
	busy := 0
	for _, v := range g.viewers {
		if v.busy {
			v.Conn.Close()
			busy++
			continue
		}
		g.io.write(v.raw, wire.Goodbye())
		g.pool.end(v, nil)
	}
	for ; busy > 0; busy-- {
		v := <-g.finished
		g.pool.end(v, nil)
	}
	g.viewers = nil
}
