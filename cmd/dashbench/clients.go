package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
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
// reports the highest sequence shown in each.
type sseParser struct {
	seqScanner
	lineLen int
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
			if p.lineLen == 0 { // blank line: end of event
				if p.best >= 0 {
					event(p.best)
				}
				p.best = -1
			}
			p.lineLen = 0
			continue
		}
		p.lineLen++
		p.byte(c)
	}
}

// dialer returns a dialer bound to source address 127.0.0.<1+i%sources>.
func dialer(i, sources int) *net.Dialer {
	ip := net.IPv4(127, 0, 0, byte(1+i%sources))
	return &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 30 * time.Second}
}

// sseClient is one SSE viewer: a raw connection, a hand-written request,
// and then either the epoll readers (rd, if not nil) or this goroutine
// reading. connected is called once the response header has arrived.
func sseClient(ctx context.Context, l *ledger, v *viewer, target *url.URL, path string, d *net.Dialer, rd *epollReaders, connected func(error)) {
	conn, err := d.DialContext(ctx, "tcp", target.Host)
	if err != nil {
		v.err = err
		connected(err)
		return
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n", path, target.Host)
	if err != nil {
		v.err = err
		connected(err)
		return
	}
	br := bufio.NewReaderSize(conn, 4096)
	resp, err := http.ReadResponse(br, nil)
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %s", resp.Status)
	}
	connected(err)
	if err != nil {
		v.err = err
		return
	}
	v.connected = true
	// A chunked body would need decoding; the raw readers take only a
	// body that is the event stream itself.
	if rd != nil && len(resp.TransferEncoding) == 0 && rd.adopt(conn, br, v) == nil {
		return
	}
	body := resp.Body // decodes chunked transfer encoding
	p := sseParser{seqScanner: seqScanner{best: -1}}
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
