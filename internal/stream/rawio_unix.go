//go:build unix

package stream

import (
	"io"
	"syscall"
)

// rawIO writes and peeks on a socket without ever parking the writer
// goroutine: the calls go straight to write(2) and read(2) on the
// non-blocking descriptor. The callbacks are made once per group, so a
// write allocates nothing.
type rawIO struct {
	out     []byte
	n       int
	err     error
	scratch [64]byte

	writeFn, peekFn func(fd uintptr) bool
}

func (r *rawIO) init() {
	r.writeFn = func(fd uintptr) bool {
		for len(r.out) > 0 {
			n, err := syscall.Write(int(fd), r.out)
			if n > 0 {
				r.n += n
				r.out = r.out[n:]
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN:
			case err != nil:
				r.err = err
			case n > 0:
				continue
			}
			break
		}
		return true // done: never wait for the socket here
	}
	r.peekFn = func(fd uintptr) bool {
		n, err := syscall.Read(int(fd), r.scratch[:])
		switch {
		case n == 0 && err == nil:
			r.err = io.EOF
		case err == syscall.EAGAIN || err == syscall.EINTR:
		case err != nil:
			r.err = err
		}
		// Bytes a client sends after its request mean nothing; drop them.
		return true
	}
}

// write writes as much of p as the socket takes now and reports how much.
// Without a descriptor it takes nothing, and the caller's blocking path
// does the work.
func (r *rawIO) write(c syscall.RawConn, p []byte) (int, error) {
	if c == nil {
		return 0, nil
	}
	r.out, r.n, r.err = p, 0, nil
	if err := c.Write(r.writeFn); err != nil {
		return 0, err
	}
	r.out = nil
	return r.n, r.err
}

// peek reports io.EOF or an error if the client has closed the connection
// or it has failed, without waiting.
func (r *rawIO) peek(c syscall.RawConn) error {
	if c == nil {
		return nil
	}
	r.err = nil
	if err := c.Read(r.peekFn); err != nil {
		return err
	}
	return r.err
}
