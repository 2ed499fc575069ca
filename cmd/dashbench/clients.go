package main

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// clock is the bench's time base: nanoseconds since start, monotonic.
type clock struct{ start time.Time }

func (c clock) now() int64 { return int64(time.Since(c.start)) }

// ledger records, for every commit and every client, when the client first
// saw a frame showing that commit or a later one. Commit i sets the
// sequence to base+1+i; t0[i] is taken just before it is sent.
type ledger struct {
	clock   clock
	base    int64
	t0      []atomic.Int64 // 0 = not sent
	commits int

	done atomic.Int64 // viewers that have every commit

	storm   bool // count frames per second instead of latencies
	seconds int  // storm: length of the per-second frame counts
	stormT0 atomic.Int64
}

// viewer is one client's record. Only its reader goroutine writes it until
// the bench reads it after the clients have stopped.
type viewer struct {
	last      int     // highest commit index delivered; -1 none
	lat       []int32 // microseconds per commit index; -1 missing
	frames    int     // frames that showed a sequence of this run
	dups      int     // frames showing nothing newer than last
	perSec    []uint16
	err       error
	connected bool // the response header arrived
	closed    bool // the server ended the stream during the run
	poll      bool
	back      int // frames showing an older sequence than one already shown

	// Reconnecting clients (-drain) only.
	st         *sseState
	ends       []int64  // clock times its streams ended
	reconnects []int64  // clock times a later stream's head arrived
	landed     []string // per stream, the server that answered
	failed     int      // reconnect attempts refused or failed
	goodbyes   int      // streams that ended with the reconnect event
}

func (l *ledger) newViewer() *viewer {
	v := &viewer{last: -1}
	if l.storm {
		v.perSec = make([]uint16, l.seconds+2)
		return v
	}
	v.lat = make([]int32, l.commits)
	for i := range v.lat {
		v.lat[i] = -1
	}
	return v
}

// deliver records a frame showing sequence seq received at now.
func (l *ledger) deliver(v *viewer, seq int64, now int64) {
	i := int(seq - l.base - 1)
	if i < 0 {
		return // the state before this run
	}
	v.frames++
	if l.storm {
		if t0 := l.stormT0.Load(); t0 > 0 && now >= t0 {
			if s := int((now - t0) / int64(time.Second)); s < len(v.perSec) {
				v.perSec[s]++
			}
		}
		if i <= v.last {
			v.dups++
		} else {
			v.last = i
		}
		return
	}
	if i <= v.last {
		v.dups++
		if i < v.last {
			v.back++
		}
		return
	}
	i = min(i, len(v.lat)-1)
	for j := v.last + 1; j <= i; j++ {
		if t0 := l.t0[j].Load(); t0 > 0 {
			v.lat[j] = int32(min((now-t0)/1000, 1<<31-1))
		}
	}
	v.last = i
	if i == len(v.lat)-1 {
		l.done.Add(1)
	}
}

// seqScanner finds "seqno-<digits>" in a byte stream, across reads.
type seqScanner struct {
	matched int
	inNum   bool
	num     int64
	best    int64 // highest in the current event; -1 none
}

// sseParser splits a decoded SSE stream into events (blank line) and
// reports the highest sequence shown in each. With st set it also keeps
// the fields a reconnecting client needs (id, retry, the named events);
// only lines that start like those are copied, so the data lines cost
// nothing more.
type sseParser struct {
	seqScanner
	lineLen int
	st      *sseState
	line    []byte // the current id, retry or event line; nil when not kept
}

// sseState is what an EventSource carries from one stream to the next:
// the last event ID, the reconnection time, and how the stream ended.
type sseState struct {
	lastID  string
	pending string // the id of the event being read, set as lastID when it is dispatched
	hasID   bool   // pending was set in this event
	retry   int    // milliseconds; -1 until a retry field arrives
	goodbye bool   // "event: reconnect" arrived on the current stream
	gone    bool   // "event: gone": the dashboard was deleted, do not come back
	buf     []byte // reused for kept lines
}

func newSSEState() *sseState { return &sseState{retry: -1} }

// field applies one kept line, the way EventSource does: a retry of
// digits only, an id without NUL.
func (st *sseState) field(line []byte) {
	name, value, ok := bytes.Cut(line, []byte(":"))
	if !ok {
		return
	}
	value = bytes.TrimPrefix(value, []byte(" "))
	switch string(name) {
	case "id":
		if bytes.IndexByte(value, 0) < 0 {
			st.pending, st.hasID = string(value), true
		}
	case "retry":
		if len(value) == 0 || len(value) > 9 || bytes.ContainsFunc(value, func(r rune) bool { return r < '0' || r > '9' }) {
			return // not all digits: ignored, as EventSource does
		}
		st.retry, _ = strconv.Atoi(string(value))
	case "event":
		switch string(value) {
		case "reconnect":
			st.goodbye = true
		case "gone":
			st.gone = true
		}
	}
}

func (p *seqScanner) byte(c byte) {
	if p.inNum {
		if c >= '0' && c <= '9' {
			p.num = p.num*10 + int64(c-'0')
			return
		}
		p.best = max(p.best, p.num)
		p.inNum = false
	}
	if c == seqPrefix[p.matched] {
		p.matched++
		if p.matched == len(seqPrefix) {
			p.matched, p.inNum, p.num = 0, true, 0
		}
		return
	}
	p.matched = 0
	if c == seqPrefix[0] {
		p.matched = 1
	}
}

// feed processes b and calls event for each completed event that showed a
// sequence.
func (p *sseParser) feed(b []byte, event func(seq int64)) {
	for _, c := range b {
		if c == '\r' {
			continue
		}
		if c == '\n' {
			p.byte(c)
			if p.line != nil {
				p.st.field(p.line)
				p.st.buf, p.line = p.line[:0], nil
			}
			if p.lineLen == 0 { // blank line: end of event
				if p.best >= 0 {
					event(p.best)
				}
				p.best = -1
				if p.st != nil && p.st.hasID {
					p.st.lastID, p.st.hasID = p.st.pending, false
				}
			}
			p.lineLen = 0
			continue
		}
		if p.st != nil {
			if p.lineLen == 0 && (c == 'i' || c == 'r' || c == 'e') {
				p.line = p.lineBuf()
			}
			if p.line != nil && len(p.line) < maxFieldLine {
				p.line = append(p.line, c)
			}
		}
		p.lineLen++
		p.byte(c)
	}
}

// maxFieldLine bounds a kept line; a version is far shorter.
const maxFieldLine = 512

// lineBuf is an empty buffer for a kept line, reusing the last one's.
func (p *sseParser) lineBuf() []byte {
	if p.st.buf == nil {
		p.st.buf = make([]byte, 0, 64)
	}
	return p.st.buf[:0]
}

// dialer returns a dialer bound to source address 127.0.0.<1+i%sources>.
func dialer(i, sources int) *net.Dialer {
	ip := net.IPv4(127, 0, 0, byte(1+i%sources))
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
}

// sseClient is one SSE viewer: a raw connection, a hand-written request,
// and then either the epoll readers (rd, if not nil) or this goroutine
// reading. connected is called once the first response header has
// arrived (or the first attempt failed). Client i starts at targets[0].
//
// With reconnect (-drain) it behaves like EventSource: when a stream
// ends it waits the last retry it was given and opens a new one with
// Last-Event-ID, on another of targets chosen at random (with one target,
// nginx, the same address); a refused attempt waits the retry and tries
// another. Without
// it, a stream the epoll readers adopted is theirs and this returns.
func sseClient(ctx context.Context, l *ledger, v *viewer, targets []*url.URL, path string, d *net.Dialer, rd *epollReaders, reconnect bool, connected func(error)) {
	for attempt, ti := 0, 0; ; attempt++ {
		target := targets[ti%len(targets)]
		last := ""
		if v.st != nil {
			last = v.st.lastID
		}
		conn, br, resp, err := openStream(ctx, target, path, d, last)
		if err != nil {
			if attempt == 0 || !reconnect || ctx.Err() != nil {
				if ctx.Err() == nil {
					v.err = err
				}
				if attempt == 0 {
					connected(err)
				}
				return
			}
			v.failed++
			ti = nextTarget(ti, len(targets))
			if !v.waitRetry(ctx) {
				return
			}
			continue
		}
		at := l.clock.now()
		if v.connected {
			v.reconnects = append(v.reconnects, at)
		}
		v.connected = true
		v.landed = append(v.landed, cmp.Or(resp.Header.Get(upstreamHeader), target.Host))
		if v.st != nil {
			v.st.goodbye = false
		}
		if attempt == 0 {
			// After the viewer's fields are set: the bench reads them
			// once every client has called this.
			connected(nil)
		}
		ended := readStream(ctx, l, v, conn, br, resp, rd, reconnect)
		if ended == nil {
			return // the epoll readers have it
		}
		select {
		case err = <-ended:
		case <-ctx.Done(): // the epoll readers close their streams themselves
			return
		}
		if !reconnect || ctx.Err() != nil {
			return
		}
		v.ends = append(v.ends, l.clock.now())
		if v.st.goodbye {
			v.goodbyes++
		}
		if err != nil && v.err == nil {
			v.err = err
		}
		if v.st.gone {
			return
		}
		ti = nextTarget(ti, len(targets))
		if !v.waitRetry(ctx) {
			return
		}
	}
}

// nextTarget is a random other one of n targets than ti, the way a load
// balancer would spread the clients of a server that went away; with one
// target (nginx) always that one.
func nextTarget(ti, n int) int {
	if n <= 1 {
		return ti
	}
	return (ti + 1 + rand.IntN(n-1)) % n
}

// upstreamHeader is the header the bench's nginx adds with the address of
// the server that answered, so a client knows where it landed.
const upstreamHeader = "X-Dashbench-Upstream"

// waitRetry waits the reconnection time the stream last gave (EventSource's
// default, 3 s, if none); false when ctx ended first.
func (v *viewer) waitRetry(ctx context.Context) bool {
	ms := v.st.retry
	if ms < 0 {
		ms = 3000
	}
	return sleep(ctx, time.Duration(ms)*time.Millisecond) == nil
}

// openStream dials target from d, sends the stream request (with
// Last-Event-ID when last is set) and reads the response head.
func openStream(ctx context.Context, target *url.URL, path string, d *net.Dialer, last string) (net.Conn, *bufio.Reader, *http.Response, error) {
	conn, err := d.DialContext(ctx, "tcp", target.Host)
	if err != nil {
		return nil, nil, nil, err
	}
	// Until the head is read; readStream takes over closing after that.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + target.Host + "\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n"
	if last != "" {
		req += "Last-Event-ID: " + last + "\r\n"
	}
	if _, err = io.WriteString(conn, req+"\r\n"); err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		conn.Close()
		return nil, nil, nil, err
	}
	return conn, br, resp, nil
}

// readStream reads a stream whose head has arrived until it ends, and
// returns a channel that gets its end (nil for EOF). Without reconnect a
// stream the epoll readers adopt is theirs alone, and it returns nil.
func readStream(ctx context.Context, l *ledger, v *viewer, conn net.Conn, br *bufio.Reader, resp *http.Response, rd *epollReaders, reconnect bool) <-chan error {
	ended := make(chan error, 1)
	// A chunked body would need decoding; the raw readers take only a
	// body that is the event stream itself.
	if rd != nil && len(resp.TransferEncoding) == 0 {
		var end func(error)
		if reconnect {
			end = func(err error) { ended <- err }
		}
		if rd.adopt(conn, br, v, end) == nil {
			if !reconnect {
				return nil
			}
			return ended
		}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	readBody(ctx, l, v, resp.Body, v.st)
	ended <- v.err
	return ended
}

// readBody reads one stream's body (chunked encoding decoded, or an
// HTTP/2 stream) and times each read right after it returns.
func readBody(ctx context.Context, l *ledger, v *viewer, body io.Reader, st *sseState) {
	p := sseParser{seqScanner: seqScanner{best: -1}, st: st}
	buf := make([]byte, 2048)
	for {
		n, err := body.Read(buf)
		if n > 0 {
			now := l.clock.now()
			p.feed(buf[:n], func(seq int64) { l.deliver(v, seq, now) })
		}
		if err != nil {
			if ctx.Err() == nil {
				v.closed = true
				if !errors.Is(err, io.EOF) {
					v.err = err
				}
			}
			return
		}
	}
}

// eventsPath is the stream address of SSE client i when the clients spread
// over views views: client i watches the view var-v=i mod views.
func eventsPath(i, views int) string {
	p := "/d/" + benchSlug + "/events"
	if views > 1 {
		p += "?var-v=" + strconv.Itoa(i%views)
	}
	return p
}

// pollPath is the long-poll address of long-poll client j, spread over the
// views like eventsPath.
func pollPath(j, views int) string {
	p := "/d/" + benchSlug + "/poll?wait=25"
	if views > 1 {
		p += "&var-v=" + strconv.Itoa(j%views)
	}
	return p
}

// pollClient is one long-poll viewer: it asks again as soon as it has an
// answer, with the ETag it holds. target is the full poll address.
func pollClient(ctx context.Context, l *ledger, v *viewer, target string, hc *http.Client) {
	v.connected, v.poll = true, true
	etag := ""
	s := seqScanner{best: -1}
	buf := make([]byte, 4096)
	for ctx.Err() == nil {
		req, _ := http.NewRequestWithContext(ctx, "GET", target, nil)
		if etag != "" {
			req.Header.Set("If-None-Match", etag)
		}
		resp, err := hc.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				v.err = err
				time.Sleep(100 * time.Millisecond)
			}
			continue
		}
		if resp.StatusCode == 200 {
			s.best, s.matched, s.inNum = -1, 0, false
			for {
				n, err := resp.Body.Read(buf)
				for _, c := range buf[:n] {
					s.byte(c)
				}
				if err != nil {
					break
				}
			}
			s.byte(' ')
			now := l.clock.now()
			if s.best >= 0 {
				l.deliver(v, s.best, now)
			}
			etag = resp.Header.Get("ETag")
		} else {
			io.Copy(io.Discard, resp.Body)
			if resp.StatusCode != 304 {
				v.err = fmt.Errorf("poll: status %s", resp.Status)
				time.Sleep(100 * time.Millisecond)
			}
		}
		resp.Body.Close()
	}
}

// pollHTTPClient spreads the long-poll connections over the sources too.
func pollHTTPClient(m, sources int) *http.Client {
	var mu sync.Mutex
	next := 0
	tr := &http.Transport{
		MaxIdleConnsPerHost: m + 1,
		DisableCompression:  true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			mu.Lock()
			i := next
			next++
			mu.Unlock()
			return dialer(i, sources).DialContext(ctx, network, addr)
		},
	}
	return &http.Client{Transport: tr}
}
