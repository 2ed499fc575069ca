//go:build !linux

package main

import (
	"bufio"
	"context"
	"errors"
	"net"
	"sync"
)

// epollReaders exist on Linux only; elsewhere every stream has a goroutine.
type epollReaders struct{}

func newReaders(context.Context, *ledger, int, *sync.WaitGroup) (*epollReaders, error) {
	return nil, nil
}

func (r *epollReaders) adopt(net.Conn, *bufio.Reader, *viewer, func(error)) error {
	return errors.New("not supported")
}
