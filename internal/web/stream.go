package web

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/sse"
)

// heartbeatMessage is a comment (for proxies) followed by a named event
// that the page's watchdog can see; hx-sse does not surface comments.
var heartbeatMessage = []byte(": heartbeat\nevent: heartbeat\ndata:\n\n")

// reconnectMessage ends a stream on shutdown. It is a named event, so that
// hx-sse applies the short retry sent with it.
var reconnectMessage = []byte("event: reconnect\ndata:\n\n")

// events is GET /d/{slug}/events: one select over the client, shutdown,
// heartbeat, maximum age and board changes. Each write has its own deadline;
// a client that cannot take a frame in time is dropped and counted.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	d, b, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	leave, ok := s.admitStream(w, r)
	if !ok {
		return
	}
	defer leave()
	ready, release := s.engine.Acquire(d.ID)
	defer release()

	// Header first, query string second: hx-sse sends the header on
	// reconnects, while the page's first connect carries the version it
	// was rendered with in ?lastEventId=.
	last := r.Header.Get("Last-Event-ID")
	if last == "" {
		last = r.URL.Query().Get("lastEventId")
	}
	have, known := hub.ParseVersion(last)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	// Per-connection jitter spreads the reconnects after a restart. The
	// retry field is sent with the comment (EventSource applies it at once)
	// and again in front of the first message, because hx-sse applies it
	// only with a message it dispatches.
	retry := sse.AppendRetry(nil, 1000+rand.IntN(2000))
	if s.write(rc, w, append(sse.AppendComment(nil, "connected"), retry...)) != nil {
		return
	}

	ctx := r.Context()
	if !s.await(ctx, ready, s.cfg.PageWait) {
		return
	}
	heartbeat := time.NewTicker(s.cfg.Heartbeat)
	defer heartbeat.Stop()
	maxAge := time.NewTimer(jitter(s.cfg.StreamMaxAge, 0.2))
	defer maxAge.Stop()
	// A stream opened with a token lives only as long as the token: it
	// ends when the token expires or is revoked.
	var tokensChanged <-chan struct{}
	if grant.ID != 0 {
		if until := time.Until(grant.ExpiresAt); until < s.cfg.StreamMaxAge {
			maxAge.Reset(until)
		}
	}
	for {
		if grant.ID != 0 {
			tokensChanged = s.tokens.Changed()
			if !s.tokens.Set().Has(grant.ID) {
				return
			}
		}
		changed := b.Changed()
		if b.Removed() {
			return
		}
		if f := b.FrameSince(have, known); f != nil {
			msg := f.SSE
			if retry != nil {
				msg, retry = append(retry, f.SSE...), nil
			}
			if s.write(rc, w, msg) != nil {
				return
			}
			have, known = f.Version, true
			s.metrics.frames.Inc()
			s.metrics.bytes.Add(float64(len(f.SSE)))
		}
		select {
		case <-ctx.Done():
			return
		case <-s.shutdown:
			// A short retry sends the client to another replica or to this
			// one restarted, soon, without a thundering herd.
			s.write(rc, w, append(sse.AppendRetry(nil, 250+rand.IntN(1000)), reconnectMessage...))
			return
		case <-maxAge.C:
			return
		case <-heartbeat.C:
			if s.write(rc, w, heartbeatMessage) != nil {
				return
			}
		case <-changed:
		case <-tokensChanged:
		}
	}
}

// write sends p and flushes it within the write timeout.
func (s *Server) write(rc *http.ResponseController, w http.ResponseWriter, p []byte) error {
	if err := rc.SetWriteDeadline(time.Now().Add(s.cfg.WriteTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := w.Write(p)
	if err == nil {
		err = rc.Flush()
	}
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			s.metrics.slowDropped.Inc()
			s.logger.Info("dropping slow client", "err", errSlowClient)
		}
		return err
	}
	return nil
}

// admitStream enforces the stream limits, overall and per client address.
func (s *Server) admitStream(w http.ResponseWriter, r *http.Request) (leave func(), ok bool) {
	ip := clientIP(r)
	if n := s.streams.Add(1); n > int64(s.cfg.MaxStreams) {
		s.streams.Add(-1)
		s.metrics.limitRefused.WithLabelValues("streams").Inc()
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Too many open streams; try again shortly.")
		return nil, false
	}
	s.perIPMu.Lock()
	if s.perIP[ip] >= s.cfg.MaxStreamsIP {
		s.perIPMu.Unlock()
		s.streams.Add(-1)
		s.metrics.limitRefused.WithLabelValues("streams_per_ip").Inc()
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Too many open streams from your address; try again shortly.")
		return nil, false
	}
	s.perIP[ip]++
	s.perIPMu.Unlock()
	s.metrics.sseClients.Inc()
	return func() {
		s.metrics.sseClients.Dec()
		s.streams.Add(-1)
		s.perIPMu.Lock()
		if s.perIP[ip]--; s.perIP[ip] <= 0 {
			delete(s.perIP, ip)
		}
		s.perIPMu.Unlock()
	}, true
}

// poll is GET /d/{slug}/poll: hold until the dashboard's version differs
// from If-None-Match, then answer the same partials as the stream.
func (s *Server) poll(w http.ResponseWriter, r *http.Request) {
	d, b, _, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	wait, err := parseWait(r.URL.Query().Get("wait"), s.cfg.LongPollWait, s.cfg.MaxLongPoll)
	if err != nil {
		s.error(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	if n := s.longPolls.Add(1); n > int64(s.cfg.MaxLongPolls) {
		s.longPolls.Add(-1)
		s.metrics.limitRefused.WithLabelValues("longpoll").Inc()
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Too many waiting requests; try again shortly.")
		return
	}
	defer s.longPolls.Add(-1)
	s.metrics.longPolls.Inc()
	defer s.metrics.longPolls.Dec()

	have, known := parseIfNoneMatch(r.Header.Get("If-None-Match"))
	ready, release := s.engine.Acquire(d.ID)
	defer release()
	ctx := r.Context()
	deadline := time.NewTimer(jitter(wait, 0.1))
	defer deadline.Stop()
	// expired records that the wait ran out while the first query ran: the
	// timer fired once and will not fire again below.
	expired := false
	select {
	case <-ready:
	case <-deadline.C:
		expired = true
	case <-s.shutdown:
	case <-ctx.Done():
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	for {
		changed := b.Changed()
		if f := b.FrameSince(have, known); f != nil {
			w.Header().Set("ETag", `"`+f.Version.String()+`"`)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(f.Body)
			s.metrics.frames.Inc()
			s.metrics.bytes.Add(float64(len(f.Body)))
			return
		}
		if wait == 0 || expired || b.Removed() {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-s.shutdown:
		case <-deadline.C:
		case <-changed:
			continue
		}
		break
	}
	w.Header().Set("ETag", `"`+have.String()+`"`)
	w.WriteHeader(http.StatusNotModified)
}

// parseWait reads ?wait= as seconds (or a Go duration), clamped to max.
func parseWait(s string, def, max time.Duration) (time.Duration, error) {
	if s == "" {
		return def, nil
	}
	var d time.Duration
	if secs, err := strconv.ParseFloat(s, 64); err == nil && secs >= 0 && secs < 1e6 {
		d = time.Duration(secs * float64(time.Second))
	} else if pd, err := time.ParseDuration(s); err == nil && pd >= 0 {
		d = pd
	} else {
		return 0, errors.New("wait must be a number of seconds from 0 to " + strconv.Itoa(int(max.Seconds())))
	}
	return min(d, max), nil
}

// parseIfNoneMatch finds the first entity tag that is a version. Weak
// comparison: W/ is ignored. A malformed header means "unknown state".
func parseIfNoneMatch(h string) (hub.Version, bool) {
	for _, tag := range strings.Split(h, ",") {
		tag = strings.TrimSpace(tag)
		tag = strings.TrimPrefix(tag, "W/")
		tag = strings.Trim(tag, `"`)
		if v, ok := hub.ParseVersion(tag); ok {
			return v, true
		}
	}
	return hub.Version{}, false
}
