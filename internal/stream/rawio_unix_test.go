//go:build unix

package stream

import (
	"errors"
	"io"
	"net"
	"syscall"
	"testing"
	"time"
)

// socketPair returns both ends of a loopback TCP connection and the raw
// side of the server end.
func socketPair(t *testing.T) (client, server net.Conn, raw syscall.RawConn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	client, server = connect(t, ln, &net.Dialer{})
	raw, err = server.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	return client, server, raw
}

func TestPeek(t *testing.T) {
	client, server, raw := socketPair(t)
	var r rawIO
	r.init()
	if err := r.peek(raw); err != nil {
		t.Fatalf("peek on an open, idle connection: %v, want nil", err)
	}
	client.Write([]byte("bytes after the request mean nothing"))
	if err := r.peek(raw); err != nil {
		t.Fatalf("peek with unread bytes: %v, want nil", err)
	}
	client.Close()
	var err error
	for deadline := time.Now().Add(wait); err == nil && time.Now().Before(deadline); {
		if err = r.peek(raw); err == nil {
			time.Sleep(5 * time.Millisecond)
		}
	}
	if !errors.Is(err, io.EOF) {
		t.Fatalf("peek after the client closed: %v, want EOF", err)
	}
	server.Close()
	if err := r.peek(raw); err == nil {
		t.Fatal("peek on a closed connection: no error")
	}
}

// TestWriteTakesWhatFits: a write to a client that does not read returns
// at once with the part the socket took, never blocking.
func TestWriteTakesWhatFits(t *testing.T) {
	client, _, raw := socketPair(t)
	var r rawIO
	r.init()
	p := make([]byte, 64<<20)
	n, err := r.write(raw, p)
	if err != nil || n <= 0 || n >= len(p) {
		t.Fatalf("write of 64 MB to a client that does not read: %d bytes, %v; want part of it and no error", n, err)
	}
	if n2, err := r.write(raw, p); err != nil || n2 != 0 {
		t.Fatalf("write to a full socket: %d bytes, %v; want 0 and no error", n2, err)
	}
	client.Close()
	var werr error
	for range 100 {
		if _, werr = r.write(raw, []byte("x")); werr != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	if werr == nil {
		t.Fatal("writes to a connection the client closed kept succeeding")
	}
}
