package stream

import (
	"errors"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/livedash/dashboard/internal/wire"
)

// closeWait bounds the goodbye to a stream in Serve, and a write under way
// when the pool closes: a client that cannot take it by then is cut off,
// as the writer groups cut off those that cannot take it at once.
const closeWait = time.Second

// Serve writes s to w until the stream ends, on the caller's goroutine: it
// is the path of streams whose connection cannot be hijacked (HTTP/2, where
// streams share a connection) or whose bytes must be encrypted (TLS), which
// net/http writes only from the handler. The caller has written the head
// and the opening bytes (WriteResponse), and returns from its handler after
// Serve.
//
// The rules are the writer groups' (viewer.next): the latest frame when the
// dashboard changes, with Prefix in front of the first; a heartbeat after
// Heartbeat of silence; the end at Until, when Allowed says no after
// AccessChanged, or with the gone message when the dashboard is deleted;
// the goodbye when the pool closes. A write that does not finish within
// WriteTimeout, or that fails, ends the stream, and a timed-out one counts
// as SlowDropped. It returns when the client goes away (r's context).
func (p *Pool) Serve(w http.ResponseWriter, r *http.Request, s *Stream) {
	resp := &response{w: w, rc: http.NewResponseController(w), quit: p.quit}
	v := &viewer{Stream: *s, lastWrite: time.Now()}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		// Not watched (the pool is closed): the write's own deadline.
		WriteResponse(w, wire.Goodbye(), closeWait)
		if v.Done != nil {
			v.Done()
		}
		return
	}
	p.served[resp] = struct{}{}
	if !p.watching {
		p.watching = true
		p.wg.Add(1)
		go p.watch()
	}
	p.wg.Add(1)
	p.mu.Unlock()
	defer func() {
		p.mu.Lock()
		delete(p.served, resp)
		p.mu.Unlock()
		// Done before wg.Done, as on the hijacked path (end): once Close
		// returns, every stream's cleanup has run.
		if v.Done != nil {
			v.Done()
		}
		p.wg.Done()
	}()

	c := p.cfg.Counters
	timer := time.NewTimer(time.Until(v.Until))
	defer timer.Stop()
	recheck := false
	var access <-chan struct{}
	for {
		changed := v.Board.Changed()
		var present <-chan struct{} // nil: never ready
		if v.Presence != nil {
			present = v.Presence.Changed()
		}
		if f := p.cfg.AccessChanged; f != nil {
			// As in group.run: a change that came while this round was
			// busy closed the channel taken before; it must not be lost.
			select {
			case <-access:
				recheck = true
			default:
			}
			access = f()
		}
		// One goroutine per stream: the rules of time cost a comparison,
		// so they apply in every round.
		now := time.Now()
		n := v.next(now, p.cfg.Heartbeat, v.Board.Removed(), recheck, true)
		recheck = false
		if n.msg != nil {
			if n.frame > 0 && c.Frames != nil {
				c.Frames.Inc()
				c.Bytes.Add(float64(n.frame))
			}
			if err := resp.write(n.msg, p.cfg.WriteTimeout); err != nil {
				p.dropped(r, err)
				return
			}
		}
		if n.end {
			return
		}
		if n.frame > 0 {
			// A presence change that came with the frame goes out next.
			continue
		}
		wake := v.lastWrite.Add(p.cfg.Heartbeat)
		if v.Until.Before(wake) {
			wake = v.Until
		}
		timer.Reset(wake.Sub(now))
		select {
		case <-changed:
		case <-present:
		case <-access:
			recheck = true
		case <-timer.C:
		case <-p.quit:
			resp.write(wire.Goodbye(), closeWait)
			return
		case <-r.Context().Done():
			return
		}
	}
}

// dropped logs and counts a stream in Serve that ended on a failed write,
// if it failed for being slow rather than for the client leaving or the
// pool closing.
func (p *Pool) dropped(r *http.Request, err error) {
	if !errors.Is(err, errSlow) {
		return
	}
	select {
	case <-p.quit:
		return
	default:
	}
	if c := p.cfg.Counters.SlowDropped; c != nil {
		c.Inc()
	}
	p.cfg.Logger.Info("dropping slow client", "remote", r.RemoteAddr,
		"err", "client did not take a write within the write timeout")
}

// errSlow marks a write that ran out of time.
var errSlow = errors.New("write timed out")

// response is a stream in Serve as the pool sees it. Its mutex orders the
// handler's write against the pool's watch and Close's hurry, which cut a
// write that has run past its time.
type response struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	quit <-chan struct{}

	mu       sync.Mutex
	writing  bool
	deadline time.Time // of the write under way
}

// write writes and flushes p, which must be done by timeout from now, or
// by closeWait once the pool is closing. It sets no deadline itself: on
// HTTP/2 every SetWriteDeadline is a message to the connection's goroutine
// (and a deadline left behind is a timer that would reset the stream while
// it is idle), which tripled that goroutine's work per frame. The pool's
// watch cuts a write that runs past its time instead (cut), within a tick.
func (r *response) write(p []byte, timeout time.Duration) error {
	r.mu.Lock()
	deadline := time.Now().Add(timeout)
	select {
	case <-r.quit:
		// Closing: the watch has stopped, and Close hurries only the
		// writes under way when it ran. This write (the goodbye of a
		// stream that was idle, or a frame that came with the close)
		// gets a deadline of its own: the stream ends after it anyway.
		deadline = time.Now().Add(min(timeout, closeWait))
		r.rc.SetWriteDeadline(deadline)
	default:
	}
	r.writing, r.deadline = true, deadline
	r.mu.Unlock()
	_, err := r.w.Write(p)
	if err == nil {
		err = r.rc.Flush()
	}
	r.mu.Lock()
	r.writing = false
	r.mu.Unlock()
	return slow(err, deadline)
}

// slow marks an error of a write that ran out of time. HTTP/2 reports a
// stream reset by its own deadline as a closed stream, not as a timeout:
// the clock tells.
func slow(err error, deadline time.Time) error {
	if err != nil && (errors.Is(err, os.ErrDeadlineExceeded) || !time.Now().Before(deadline)) {
		return errors.Join(errSlow, err)
	}
	return err
}

// cut ends a write that is past its deadline, by setting the stream's
// write deadline in the past; it reports whether it did. Called by the
// pool's watch.
func (r *response) cut(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.writing || now.Before(r.deadline) {
		return false
	}
	r.rc.SetWriteDeadline(now)
	return true
}

// hurry shortens the deadline of a write under way to closeWait. Called by
// Close, after quit is closed, with the pool's mutex held.
func (r *response) hurry() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.writing {
		r.deadline = time.Now().Add(closeWait)
		r.rc.SetWriteDeadline(r.deadline)
	}
}

// WriteResponse writes and flushes p to w within timeout and leaves no
// deadline behind: the opening bytes of a stream for Serve.
func WriteResponse(w http.ResponseWriter, p []byte, timeout time.Duration) error {
	rc := http.NewResponseController(w)
	deadline := time.Now().Add(timeout)
	err := rc.SetWriteDeadline(deadline)
	if err == nil {
		_, err = w.Write(p)
	}
	if err == nil {
		err = rc.Flush()
	}
	if err == nil {
		err = rc.SetWriteDeadline(time.Time{})
	}
	return slow(err, deadline)
}

// watch cuts the writes of streams in Serve that run past their deadline,
// once a tick, until the pool closes (Close hurries the rest itself).
func (p *Pool) watch() {
	defer p.wg.Done()
	t := time.NewTicker(p.tick)
	defer t.Stop()
	for {
		select {
		case <-p.quit:
			return
		case now := <-t.C:
			p.mu.Lock()
			for r := range p.served {
				r.cut(now)
			}
			p.mu.Unlock()
		}
	}
}
