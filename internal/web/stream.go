package web

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/stream"
	"github.com/livedash/dashboard/internal/wire"
)

// events is GET /d/{slug}/events. It checks access and limits and writes
// the response head; the stream pool writes every update from then on.
//
// Plain HTTP/1.1 is hijacked and handed to the pool's writer groups, so
// that an open stream costs no goroutine, no net/http buffers and no
// chunked encoding: the body is the raw event stream, ended by closing.
// HTTP/2 cannot be hijacked (its streams share the connection) and TLS
// must encrypt what is written, so those stay on this request's goroutine
// and are written through the ResponseWriter (stream.Pool.Serve), without
// a Connection header: on HTTP/2 Go's server would turn "close" into a
// GOAWAY that ends every stream of the connection.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	v, ok := s.view(w, r, d, grant)
	if !ok {
		return
	}
	leave, ok := s.admitStream(w, r)
	if !ok {
		return
	}
	vw, ok := s.open(w, r, v)
	if !ok {
		leave()
		return
	}
	b := vw.board
	done := func() { vw.release(); leave() }

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
	// Per-connection jitter spreads the reconnects after a restart. The
	// retry field is sent with the comment (EventSource applies it at once)
	// and again in front of the first message, because hx-sse applies it
	// only with a message it dispatches.
	retryMs := 1000 + rand.IntN(2000)
	retry := wire.AppendRetry(nil, retryMs)
	hijack := r.ProtoMajor == 1 && r.TLS == nil
	var conn net.Conn
	if hijack {
		h.Set("Connection", "close")
		var err error
		conn, _, err = http.NewResponseController(w).Hijack()
		if err != nil {
			done()
			s.logger.Error("cannot take over the connection for a stream", "err", err)
			s.error(w, r, http.StatusInternalServerError, "Server error", "This server cannot stream here; reload to use polling.")
			return
		}
		head := append(responseHead(h), wire.OpeningFor(retryMs, s.cfg.Release)...)
		if err := stream.WriteWithin(conn, head, s.cfg.WriteTimeout); err != nil {
			conn.Close()
			done()
			return
		}
	} else {
		w.WriteHeader(http.StatusOK)
		if err := stream.WriteResponse(w, wire.OpeningFor(retryMs, s.cfg.Release), s.cfg.WriteTimeout); err != nil {
			done()
			return
		}
	}

	s.logger.Debug("stream opened", "dashboard", d.Slug, "remote", r.RemoteAddr, "proto", r.Proto,
		"last_event_id", clip(last, 80))

	// A dashboard nobody was watching runs its queries first, so that the
	// first frame is fresh rather than what it showed long ago.
	s.await(r.Context(), vw.ready, s.cfg.PageWait)
	// The resume contract: a version this server issued and remembers gets
	// the step from it (or nothing, if current). Any other may be newer
	// than this server's state, so it waits for a refresh that started
	// after the client asked; then it is either the current version (the
	// same state gives the same version everywhere) or it gets the full
	// state.
	if !known || !b.Remembers(have) {
		s.awaitFresh(r.Context(), vw.key)
	}
	st := &stream.Stream{Conn: conn, Board: b, Have: have, Known: known, Prefix: retry,
		Until: time.Now().Add(jitter(s.cfg.StreamMaxAge, 0.2)), Done: done}
	// A stream opened with a token lives only as long as the token: it
	// ends when the token expires or is revoked, or no longer opens the
	// dashboard (a playlist's token, the dashboard gone from the playlist).
	if grant.ID != 0 {
		if grant.ExpiresAt.Before(st.Until) {
			st.Until = grant.ExpiresAt
		}
		st.Allowed = func() bool { return s.tokens.Set().Opens(grant.ID, d.ID) }
	}
	// Who is watching: this stream counts until it ends, and it is sent
	// the count (with the token labels, for a token's holder) whenever
	// that changes.
	if pd := s.cfg.Presence.Dashboard(d.ID); pd != nil {
		label, labels := presenceOf(grant)
		leavePresence := s.cfg.Presence.Join(d.ID, label)
		st.Presence, st.Labels = pd, labels
		st.Done = func() { leavePresence(); done() }
	}
	s.metrics.streamsOpened.WithLabelValues(r.Proto).Inc()
	if hijack {
		s.pool.Add(st)
		return
	}
	s.pool.Serve(w, r, st)
}

// responseHead is the status line and the headers of a stream's response,
// written by hand because the connection has been hijacked.
func responseHead(h http.Header) []byte {
	var buf bytes.Buffer
	buf.WriteString("HTTP/1.1 200 OK\r\n")
	h.Write(&buf)
	buf.WriteString("\r\n")
	return buf.Bytes()
}

// admitStream enforces the stream limits, overall and per client address.
func (s *Server) admitStream(w http.ResponseWriter, r *http.Request) (leave func(), ok bool) {
	ip := s.clientIP(r)
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
// from If-None-Match, then answer the same partials as the stream. Access
// is checked again before the answer, so a token revoked during the wait
// gets nothing committed after it.
func (s *Server) poll(w http.ResponseWriter, r *http.Request) {
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	v, ok := s.view(w, r, d, grant)
	if !ok {
		return
	}
	wait, err := parseWait(r.URL.Query().Get("wait"), s.cfg.LongPollWait, s.cfg.MaxLongPoll)
	if err != nil {
		s.error(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	// The page reloads once when its server's release differs from the
	// one that drew it (docs/architecture.md, "Rolling upgrade").
	w.Header().Set("X-Dashboard-Release", s.cfg.Release)
	s.pollSeen(r, d, grant)
	cond := parseIfNoneMatch(r.Header.Get("If-None-Match"))
	if cond.any {
		// "*" matches whatever the current state is (RFC 9110, 13.1.2).
		vw, ok := s.open(w, r, v)
		if !ok {
			return
		}
		defer vw.release()
		s.watching(w, d, grant)
		s.notModified(w, vw.board.Version())
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

	vw, ok := s.open(w, r, v)
	if !ok {
		return
	}
	defer vw.release()
	b, ready := vw.board, vw.ready
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
	// The resume contract, as for streams: a tag this server remembers
	// gets the step from it; without one, the full state after a refresh
	// that started after the request arrived.
	have, known := cond.pick(b)
	if !known {
		s.awaitFresh(ctx, vw.key)
		have, known = cond.pick(b)
	}
	// A client that says how many it shows watching (poll.js does) is
	// answered early, with a 304 that carries the new count, when the
	// count differs, but not before it has waited presenceHold: behind a
	// round-robin proxy each request reaches another server, whose count
	// may differ from the last one's for a round, and an answer at once
	// would have the client ask again and again until they agree.
	pd := s.cfg.Presence.Dashboard(d.ID)
	shown, showsCount := parseWatching(r.Header.Get(wire.WatchingHeader))
	hold := time.NewTimer(presenceHold)
	defer hold.Stop()
	held := false
	for {
		changed := b.Changed()
		access := s.tokens.Changed()
		var present <-chan struct{} // nil: presence does not end the wait
		if pd != nil && showsCount {
			present = pd.Changed()
		}
		if f := b.FrameSince(have, known); f != nil {
			if !s.stillAllowed(w, r, d, b) {
				return
			}
			if s.draining.Load() {
				s.drainHeaders(w, r)
			}
			s.pollSeen(r, d, grant)
			s.watching(w, d, grant)
			w.Header().Set("ETag", `"`+f.Version.String()+`"`)
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write(f.Body)
			s.metrics.frames.Inc()
			s.metrics.bytes.Add(float64(len(f.Body)))
			return
		}
		if wait == 0 || expired || b.Removed() || held && present != nil && pd.Now(false).Watching != shown {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-s.shutdown:
		case <-deadline.C:
		case <-changed:
			continue
		case <-present:
			continue
		case <-hold.C:
			held = true
			continue
		case <-access:
			if _, ok := s.allowed(r, d); ok {
				continue
			}
		}
		break
	}
	if s.stillAllowed(w, r, d, b) {
		if s.draining.Load() {
			// Answered early because the server drains: the page waits
			// a spread-out delay before asking (another server) again.
			s.drainHeaders(w, r)
		}
		s.pollSeen(r, d, grant)
		s.watching(w, d, grant)
		s.notModified(w, have)
	}
}

// pollSeen counts a long-poll client as watching d for the next 30 s
// (presence.Config.PollWindow). The client is known by the random id its
// script sends in clientHeader, at its address; without a valid id, by its
// address and token, so that several such clients behind one address with
// one token count once.
func (s *Server) pollSeen(r *http.Request, d *panel.Dashboard, grant access.Grant) {
	if s.cfg.Presence == nil {
		return
	}
	addr := s.clientIP(r)
	key := "t" + strconv.FormatInt(grant.ID, 10) + "|" + addr
	if id := r.Header.Get(clientHeader); validClientID(id) {
		key = "c" + id + "|" + addr
	}
	label, _ := presenceOf(grant)
	s.cfg.Presence.Seen(d.ID, key, addr, label, time.Now())
}

// presenceOf is the one rule of token labels in "who is watching": a
// client that came with a token counts under the token's label and is
// shown the labels of the others; one without (a public dashboard opened
// by its address) counts without a label and is shown the count only.
func presenceOf(grant access.Grant) (label string, seesLabels bool) {
	if grant.ID == 0 {
		return "", false
	}
	return grant.Label, true
}

// parseWatching reads the count a long-poll client shows (the
// wire.WatchingHeader it sends back); ok is false without one.
func parseWatching(h string) (n int, ok bool) {
	n, err := strconv.Atoi(h)
	return n, err == nil && n >= 0
}

// clientHeader carries the long-poll script's random client id: 16 to 64
// letters, digits, '-' or '_'.
const clientHeader = "X-Dashboard-Client"

func validClientID(id string) bool {
	if len(id) < 16 || len(id) > 64 {
		return false
	}
	for _, c := range []byte(id) {
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// watching puts who is watching d on a long-poll answer: the count, and
// for a token's holder the labels (wire.PresenceLabelsHeader).
func (s *Server) watching(w http.ResponseWriter, d *panel.Dashboard, grant access.Grant) {
	pd := s.cfg.Presence.Dashboard(d.ID)
	if pd == nil {
		return
	}
	h := w.Header()
	h.Set(wire.WatchingHeader, strconv.Itoa(pd.Now(false).Watching))
	if _, labels := presenceOf(grant); labels {
		h.Set(wire.WatchingLabelsHeader, pd.LabelsHeader())
	}
}

// stillAllowed checks a waiting long-poll's access again just before it
// answers, and answers itself if the answer must not be the data: 410 for
// a deleted dashboard (the page says so and stops), 404 for a revoked or
// expired token (the same answer as for a dashboard that never existed).
func (s *Server) stillAllowed(w http.ResponseWriter, r *http.Request, d *panel.Dashboard, b *hub.Board) bool {
	if b.Removed() {
		s.error(w, r, http.StatusGone, "Dashboard deleted", "This dashboard was deleted.")
		return false
	}
	// A revocation heard before the change this answer carries must be
	// loaded first; a token store that cannot reload gets no data.
	if !s.tokens.Current(r.Context(), tokensWait) {
		// The token set catches up within tokensWait, or the database is
		// in trouble: ask again after that long (error keeps it).
		w.Header().Set("Retry-After", strconv.Itoa(int(tokensWait/time.Second)))
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Access could not be checked; try again shortly.")
		return false
	}
	if _, ok := s.allowed(r, d); !ok {
		s.notFound(w, r)
		return false
	}
	return true
}

// presenceHold is the least a long-poll waits before it is answered only
// because the count of who is watching differs from the one its page
// shows.
const presenceHold = 5 * time.Second

// tokensWait bounds how long a long-poll's answer waits for the token set
// to catch up with the changes heard before it.
const tokensWait = 2 * time.Second

// notModified answers 304 for version v.
func (s *Server) notModified(w http.ResponseWriter, v hub.Version) {
	w.Header().Set("ETag", `"`+v.String()+`"`)
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

// ifNoneMatch is an If-None-Match header as RFC 9110 (13.1.2) defines it:
// "*", or a list of entity tags, each strong or weak. Weak comparison
// applies, so W/ is ignored. Tags that are not versions are skipped; at
// most maxTags are read.
type ifNoneMatch struct {
	any  bool
	tags []hub.Version
}

// maxTags bounds how many entity tags of one header are looked at.
const maxTags = 16

// parseIfNoneMatch reads the header; a malformed one means "unknown state",
// never an error.
func parseIfNoneMatch(h string) ifNoneMatch {
	var c ifNoneMatch
	if strings.TrimSpace(h) == "*" {
		c.any = true
		return c
	}
	for h != "" && len(c.tags) < maxTags {
		var tag string
		tag, h, _ = strings.Cut(h, ",")
		tag = strings.TrimSpace(tag)
		// Quotes are trimmed rather than required: some clients send the
		// bare version, and a version has no quotes of its own.
		tag = strings.Trim(strings.TrimPrefix(tag, "W/"), `"`)
		if v, ok := hub.ParseVersion(tag); ok {
			c.tags = append(c.tags, v)
		}
	}
	return c
}

// pick chooses the tag to resume from: the board's current version if the
// client lists it, or else a version the board remembers. known is false
// when the board knows none of them.
func (c ifNoneMatch) pick(b *hub.Board) (have hub.Version, known bool) {
	cur := b.Version()
	for _, v := range c.tags {
		if v == cur {
			return v, true
		}
	}
	for _, v := range c.tags {
		if b.Remembers(v) {
			return v, true
		}
	}
	return hub.Version{}, false
}

// clip shortens a client-chosen value for a log line, so that a hostile
// header cannot fill the log.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}
