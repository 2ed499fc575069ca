//go:build linux

package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
	"syscall"
)

// epollReaders read the SSE streams from a few epoll sets, one thread
// each, instead of a goroutine per stream. A load generator on the same
// two cores as the server must cost as little per frame as it can: this
// reads each frame with one read(2) and no goroutine wake-up, about half
// what the goroutine per stream costs.
type epollReaders struct {
	l     *ledger
	loops []*epollLoop
	next  int
	mu    sync.Mutex
}

type epollLoop struct {
	epfd    int
	mu      sync.Mutex
	streams map[int32]*epollStream
}

type epollStream struct {
	fd  int
	v   *viewer
	p   sseParser
	end func(error) // called once the stream has ended, if set
}

// newReaders starts k epoll loops that run until ctx is done; wg tracks
// them.
func newReaders(ctx context.Context, l *ledger, k int, wg *sync.WaitGroup) (*epollReaders, error) {
	r := &epollReaders{l: l}
	for range k {
		epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
		if err != nil {
			return nil, err
		}
		lp := &epollLoop{epfd: epfd, streams: make(map[int32]*epollStream)}
		r.loops = append(r.loops, lp)
		wg.Add(1)
		go func() {
			defer wg.Done()
			lp.run(ctx, l)
		}()
	}
	return r, nil
}

// adopt takes over a connection whose response header has been read, with
// the body bytes br already holds. The Go connection is closed; a
// duplicate of its descriptor carries on. end, if not nil, is called when
// the server ends the stream (not when the readers stop).
func (r *epollReaders) adopt(conn net.Conn, br *bufio.Reader, v *viewer, end func(error)) error {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return errors.New("no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return err
	}
	fd := -1
	var derr error
	raw.Control(func(f uintptr) { fd, derr = syscall.Dup(int(f)) })
	if derr != nil {
		return derr
	}
	conn.Close()
	s := &epollStream{fd: fd, v: v, p: sseParser{seqScanner: seqScanner{best: -1}, st: v.st}, end: end}
	if n := br.Buffered(); n > 0 {
		b, _ := br.Peek(n)
		now := r.l.clock.now()
		s.p.feed(b, func(seq int64) { r.l.deliver(v, seq, now) })
	}
	r.mu.Lock()
	lp := r.loops[r.next%len(r.loops)]
	r.next++
	r.mu.Unlock()
	lp.mu.Lock()
	lp.streams[int32(fd)] = s
	lp.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(lp.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		lp.mu.Lock()
		delete(lp.streams, int32(fd))
		lp.mu.Unlock()
		syscall.Close(fd)
		return err
	}
	return nil
}

// run reads whatever is ready, level-triggered: one read per stream per
// wake-up, and a stream with more left is reported again.
func (lp *epollLoop) run(ctx context.Context, l *ledger) {
	defer syscall.Close(lp.epfd)
	events := make([]syscall.EpollEvent, 256)
	buf := make([]byte, 64<<10)
	for ctx.Err() == nil {
		n, err := syscall.EpollWait(lp.epfd, events, 100)
		if err != nil && err != syscall.EINTR {
			break
		}
		for _, ev := range events[:max(n, 0)] {
			lp.mu.Lock()
			s := lp.streams[ev.Fd]
			lp.mu.Unlock()
			if s == nil {
				continue
			}
			m, err := syscall.Read(s.fd, buf)
			if m > 0 {
				// The time of this read, not of the wake-up: a batch can
				// take milliseconds on a busy box, and a frame read late in
				// it may show a commit sent after the wake-up.
				now := l.clock.now()
				v := s.v
				s.p.feed(buf[:m], func(seq int64) { l.deliver(v, seq, now) })
				continue
			}
			if err == syscall.EAGAIN || err == syscall.EINTR {
				continue
			}
			// The server ended the stream during the run.
			s.v.closed = true
			if err != nil && s.end == nil {
				s.v.err = err
			}
			lp.drop(s)
			if s.end != nil {
				s.end(err)
			}
		}
	}
	lp.mu.Lock()
	defer lp.mu.Unlock()
	for _, s := range lp.streams {
		syscall.Close(s.fd)
	}
	clear(lp.streams)
}

func (lp *epollLoop) drop(s *epollStream) {
	syscall.EpollCtl(lp.epfd, syscall.EPOLL_CTL_DEL, s.fd, nil)
	syscall.Close(s.fd)
	lp.mu.Lock()
	delete(lp.streams, int32(s.fd))
	lp.mu.Unlock()
}
