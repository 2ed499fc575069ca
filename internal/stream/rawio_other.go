//go:build !unix

package stream

import "syscall"

// rawIO without unix descriptors: every write goes through the blocking
// path (a goroutine with the write timeout) and closed clients are noticed
// when a write fails.
type rawIO struct{}

func (r *rawIO) init() {}

func (r *rawIO) write(syscall.RawConn, []byte) (int, error) { return 0, nil }

func (r *rawIO) peek(syscall.RawConn) error { return nil }
