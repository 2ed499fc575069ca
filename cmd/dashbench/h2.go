package main

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"sync"

	"golang.org/x/net/http2"
)

// The protocols of the SSE clients.
const (
	protoH1  = "h1"  // raw HTTP/1.1 connections, one stream each, read by the epoll readers
	protoH2C = "h2c" // HTTP/2 with prior knowledge on the plain port, -streams-per-conn streams per connection
)

// maxStreamsPerConn is net/http's default limit of concurrent streams on
// one HTTP/2 connection (the server's SETTINGS_MAX_CONCURRENT_STREAMS).
const maxStreamsPerConn = 250

// h2Transport is the HTTP/2 client of -proto h2c. It never dials: each
// group of streams gets a connection of its own, dialled by h2Group from
// its source address, so that K streams share exactly one connection and
// no two groups share one.
var h2Transport = &http2.Transport{AllowHTTP: true, DisableCompression: true}

// h2Group opens one TCP connection from d to target and len(vs) streams
// over it, one per viewer, vs[j] asking for paths[j]. Each stream's body
// is read by a goroutine of its own that times every read right after it
// returns and feeds the same SSE parser as the HTTP/1.1 clients, so the
// latencies mean the same. connected is called once per stream, when its
// response header has arrived or it failed. wg tracks the goroutines; all
// end when ctx does.
func h2Group(ctx context.Context, l *ledger, vs []*viewer, target *url.URL, paths []string, d *net.Dialer, wg *sync.WaitGroup, connected func(error)) {
	fail := func(err error) {
		for _, v := range vs {
			v.err = err
			connected(err)
		}
	}
	conn, err := d.DialContext(ctx, "tcp", target.Host)
	if err != nil {
		fail(err)
		return
	}
	cc, err := h2Transport.NewClientConn(conn)
	if err != nil {
		conn.Close()
		fail(fmt.Errorf("starting HTTP/2: %w", err))
		return
	}
	stop := context.AfterFunc(ctx, func() { cc.Close() })
	var streams sync.WaitGroup
	for j, v := range vs {
		streams.Add(1)
		wg.Go(func() {
			defer streams.Done()
			h2Stream(ctx, l, v, cc, target, paths[j], connected)
		})
	}
	wg.Go(func() {
		streams.Wait()
		stop()
		cc.Close()
	})
}

// h2Stream is one HTTP/2 event stream on cc.
func h2Stream(ctx context.Context, l *ledger, v *viewer, cc *http2.ClientConn, target *url.URL, path string, connected func(error)) {
	req, err := http.NewRequestWithContext(ctx, "GET", "http://"+target.Host+path, nil)
	if err != nil {
		v.err = err
		connected(err)
		return
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	resp, err := cc.RoundTrip(req)
	if err == nil && resp.StatusCode != 200 {
		resp.Body.Close()
		err = fmt.Errorf("status %s", resp.Status)
	}
	if err != nil {
		v.err = err
		connected(err)
		return
	}
	defer resp.Body.Close()
	v.connected = true
	connected(nil) // after v is set: the bench reads it once every stream has called this
	readBody(ctx, l, v, resp.Body, nil)
}
