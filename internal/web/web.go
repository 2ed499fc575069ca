// Package web owns the HTTP surface: every route in one place, the page and
// index, the SSE stream and the long-poll, health and metrics, security
// headers, and the one function that turns errors into responses. It reads
// state from the hub and never runs SQL for a viewer.
package web

import (
	"bytes"
	"context"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/a-h/templ"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/presence"
	"github.com/livedash/dashboard/internal/refresh"
	"github.com/livedash/dashboard/internal/stream"
	"github.com/livedash/dashboard/internal/views"
	"github.com/livedash/dashboard/static"
)

// Config holds the HTTP settings, usually copied from config.Config.
type Config struct {
	Heartbeat      time.Duration
	StreamMaxAge   time.Duration
	WriteTimeout   time.Duration
	LongPollWait   time.Duration
	MaxLongPoll    time.Duration // upper clamp of ?wait=
	MaxStreams     int
	MaxStreamsIP   int
	MaxLongPolls   int
	FrameAncestors string
	// MetricsElsewhere leaves /metrics out of Handler: it is served on
	// its own address through MetricsHandler.
	MetricsElsewhere bool
	// PageWait bounds how long a page or a new stream waits for the first
	// query of a dashboard nobody was watching.
	PageWait time.Duration
	// ResumeWait bounds how long a client with a version this server does
	// not know is held for a refresh that started after it asked. Default 2s.
	ResumeWait time.Duration
	// PlaylistMinInterval is the shortest time a playlist shows each
	// dashboard; a shorter interval is raised to it. Default 10s.
	PlaylistMinInterval time.Duration
	// Release is the release identity the pages, streams and long-polls
	// carry; empty means Release(). Tests set it to run two releases side
	// by side.
	Release string
	// Presence counts who is watching each dashboard across servers; nil
	// counts nobody and pages show no count.
	Presence *presence.Registry
}

// Engine is what the web side needs of the refresh engine: the current
// dashboards, a way to say that a view has a viewer so that its panels
// are kept fresh, and a refresh that starts now, for clients whose
// version this server does not know (implemented by refresh.Engine).
type Engine interface {
	Snapshot() *catalog.Snapshot
	Acquire(v refresh.View) (ready <-chan struct{}, release func(), err error)
	Fresh(ctx context.Context, view panel.ViewKey) <-chan struct{}
	Options(ctx context.Context, dashboard int64, v *panel.Variable, args []any) ([]string, error)
}

// Server is the HTTP side of the product.
type Server struct {
	cfg     Config
	logger  *slog.Logger
	hub     *hub.Hub
	engine  Engine
	ready   func(context.Context) error
	metrics *Metrics
	gather  http.Handler

	tokens       *access.Store
	proxy        *access.Proxy
	draining     atomic.Bool // set first at shutdown: not ready, new work refused
	shutdown     chan struct{}
	shutdownOnce sync.Once

	pool      *stream.Pool
	streams   atomic.Int64
	longPolls atomic.Int64
	perIPMu   sync.Mutex
	perIP     map[string]int
}

// New returns a Server. ready reports whether the server can serve
// (database reachable, listener listening); metrics serves /metrics;
// tokens and proxy decide who sees private dashboards, and proxy (nil:
// trust no forwarded header) also says who the client is and whether it
// came over https.
func New(cfg Config, logger *slog.Logger, h *hub.Hub, e Engine, tokens *access.Store, proxy *access.Proxy,
	ready func(context.Context) error, m *Metrics, metrics http.Handler) *Server {
	if cfg.MaxLongPoll <= 0 {
		cfg.MaxLongPoll = 55 * time.Second
	}
	if cfg.PageWait <= 0 {
		cfg.PageWait = 5 * time.Second
	}
	if cfg.ResumeWait <= 0 {
		cfg.ResumeWait = 2 * time.Second
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	if cfg.Release == "" {
		cfg.Release = Release()
	}
	s := &Server{cfg: cfg, logger: logger, hub: h, engine: e, tokens: tokens, proxy: proxy, ready: ready,
		metrics: m, gather: metrics, shutdown: make(chan struct{}), perIP: make(map[string]int)}
	s.pool = stream.New(stream.Config{
		Heartbeat: cfg.Heartbeat, WriteTimeout: cfg.WriteTimeout, AccessChanged: tokens.Changed, Logger: logger,
		Counters: stream.Counters{Frames: m.frames, Bytes: m.bytes, SlowDropped: m.slowDropped},
	})
	return s
}

// Handler returns every route.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", s.index)
	mux.HandleFunc("GET /d/{slug}", s.page)
	mux.HandleFunc("GET /d/{slug}/events", s.events)
	mux.HandleFunc("GET /d/{slug}/poll", s.poll)
	mux.HandleFunc("GET /d/{slug}/panels/{file}", s.panelFile)
	mux.HandleFunc("GET /p/{slug}", s.playlist)
	// "GET" patterns also match HEAD; these more specific ones take HEAD
	// of the stream and the long-poll away from their GET handlers.
	mux.HandleFunc("HEAD /d/{slug}/events", s.headEvents)
	mux.HandleFunc("HEAD /d/{slug}/poll", s.headPoll)
	mux.Handle("GET "+static.Prefix, static.Handler())
	mux.Handle("GET /favicon.ico", static.Favicon())
	if !s.cfg.MetricsElsewhere {
		mux.Handle("GET /metrics", s.gather)
	}
	mux.HandleFunc("GET /healthz", s.healthz)
	mux.HandleFunc("GET /readyz", s.readyz)
	return s.secure(s.refuseBody(s.refuseDraining(mux)))
}

// refuseDraining answers every request but health, readiness and metrics
// with 503 once the server drains: Retry-After, and on HTTP/1.1
// Connection: close, so that a reverse proxy (proxy_next_upstream
// http_503) sends it to another server and the client's connection does
// not stay with this one. Never on HTTP/2, where net/http turns
// Connection: close into a GOAWAY that would end every stream of the
// connection; http.Server.Shutdown sends its own GOAWAY there.
func (s *Server) refuseDraining(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.draining.Load() {
			next.ServeHTTP(w, r)
			return
		}
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics":
			next.ServeHTTP(w, r)
			return
		}
		s.metrics.drainRefused.Inc()
		s.drainHeaders(w, r)
		s.error(w, r, http.StatusServiceUnavailable, "Restarting",
			"This server is restarting; the page carries on with another one in a moment.")
	})
}

// drainHeaders marks an answer given while draining: the page waits a
// spread-out delay before its next request (X-Dashboard-Draining), and on
// HTTP/1.1 the connection closes after the answer.
func (s *Server) drainHeaders(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Dashboard-Draining", "1")
	if r.ProtoMajor == 1 {
		w.Header().Set("Connection", "close")
	}
}

// refuseBody answers a request that carries a body (a Content-Length
// above zero, or any Transfer-Encoding) before anything waits on it. No
// route reads one, and net/http drains up to 256 KB of an unread body
// after the handler, so a client dripping its body could hold a
// connection for as long as it likes. GET and HEAD get 400; other methods
// go on to the mux for their 405. Either way the body is never read: the
// read deadline is set in the past and the connection closes after the
// answer.
func (s *Server) refuseBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength == 0 && len(r.TransferEncoding) == 0 {
			next.ServeHTTP(w, r)
			return
		}
		http.NewResponseController(w).SetReadDeadline(time.Now())
		if r.ProtoMajor == 1 {
			w.Header().Set("Connection", "close")
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			next.ServeHTTP(w, r)
			return
		}
		s.error(w, r, http.StatusBadRequest, "Bad request", "Requests to this server carry no body.")
	})
}

// MetricsHandler serves /metrics alone, for its own address
// (DASHBOARD_METRICS_ADDR), with the same refusal of request bodies as
// the site.
func (s *Server) MetricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", s.gather)
	return s.refuseBody(mux)
}

// Drain is the first step of a shutdown: /readyz answers 503 from now on,
// and so does every request but health, readiness and metrics
// (refuseDraining). Nothing open is touched yet.
func (s *Server) Drain() {
	s.draining.Store(true)
}

// Shutdown drains (Drain), then tells every waiting long-poll to answer
// now and every open stream to reconnect after a spread-out delay
// (wire.Goodbye), so that http.Server.Shutdown does not wait for them; it
// returns when the streams are closed. The clients land on another server,
// or on this one restarted, spread over seconds.
func (s *Server) Shutdown() {
	s.Drain()
	s.shutdownOnce.Do(func() { close(s.shutdown) })
	s.pool.Close()
}

// secure adds the headers every response carries.
func (s *Server) secure(next http.Handler) http.Handler {
	csp := "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; " +
		"connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors " + s.cfg.FrameAncestors
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

func (s *Server) assets() views.Assets {
	return views.Assets{
		CSS:  static.Path("dashboard.css"),
		HTMX: static.Path("vendor/htmx.min.js"),
		SSE:  static.Path("vendor/hx-sse.min.js"),
		App:  static.Path("app.js"),
		Plot: static.Path("chart.js"),
		Poll: static.Path("poll.js"),
		Icon: static.Path(static.Icon),
	}
}

// dashboard resolves the {slug} of a request to a dashboard the caller may
// see, and the token grant that let the caller in (zero for public
// dashboards and proxy users). Anything else is answered 404, the same for
// missing and forbidden, so that private slugs cannot be found.
func (s *Server) dashboard(w http.ResponseWriter, r *http.Request) (*panel.Dashboard, access.Grant, bool) {
	d := s.lookup(r)
	var grant access.Grant
	ok := d != nil
	if ok {
		grant, ok = s.allowed(r, d)
	}
	if !ok {
		s.notFound(w, r)
		return nil, access.Grant{}, false
	}
	return d, grant, true
}

// lookup returns the dashboard named by the request's {slug}, or nil.
func (s *Server) lookup(r *http.Request) *panel.Dashboard {
	if snap := s.engine.Snapshot(); snap != nil {
		return snap.Dashboard(r.PathValue("slug"))
	}
	return nil
}

// notFound answers a missing and a forbidden dashboard alike.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	s.error(w, r, http.StatusNotFound, "No such dashboard", "There is no dashboard at this address, or it is private.")
}

// tokenCookie holds a kiosk token after the ?token= exchange.
const tokenCookie = "dashboard_token"

// allowed reports whether the request may see d: the token cookie holds a
// valid grant for it, it is public, or a trusted proxy names a user. The
// token comes first even on a public dashboard, so that the variables it
// fixes hold for its holders there too.
func (s *Server) allowed(r *http.Request, d *panel.Dashboard) (access.Grant, bool) {
	for _, c := range r.CookiesNamed(tokenCookie) {
		if g, ok := s.tokens.Set().Check(c.Value, d.ID, time.Now()); ok {
			return g, true
		}
	}
	if d.Public || s.proxy.User(r) != "" {
		return access.Grant{}, true
	}
	return access.Grant{}, false
}

// exchangeToken turns ?token= into an HttpOnly cookie scoped to the
// dashboard (or to the whole site for a token valid everywhere) and
// redirects to the clean URL, so the secret leaves the address bar and
// the history. A token that is not valid there answers 404 on a private
// dashboard, like any refusal, and on a public one redirects to the clean
// URL without a cookie. It reports whether it answered the request.
func (s *Server) exchangeToken(w http.ResponseWriter, r *http.Request) bool {
	secret := r.URL.Query().Get("token")
	if secret == "" {
		return false
	}
	d := s.lookup(r)
	var g access.Grant
	ok := d != nil
	if ok {
		g, ok = s.tokens.Set().Check(secret, d.ID, time.Now())
	}
	if !ok && d != nil && d.Public {
		// A stale or mistyped kiosk link to a public dashboard: show
		// the dashboard, at the address without the token.
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, cleanURL(d, r), http.StatusSeeOther)
		return true
	}
	if !ok {
		s.notFound(w, r)
		return true
	}
	path := "/d/" + d.Slug
	if g.DashboardID == 0 {
		path = "/"
	}
	s.setTokenCookie(w, r, secret, g, path)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, cleanURL(d, r), http.StatusSeeOther)
	return true
}

// setTokenCookie stores secret, the token of grant g, in the HttpOnly
// token cookie for path, for as long as the token lasts (at most the 400
// days browsers keep a cookie). Dashboards' and playlists' links both
// come through here.
func (s *Server) setTokenCookie(w http.ResponseWriter, r *http.Request, secret string, g access.Grant, path string) {
	maxAge := 400 * 24 * time.Hour
	if until := time.Until(g.ExpiresAt); until < maxAge {
		maxAge = until
	}
	// Lax, not Strict: a kiosk link opened from another site (mail,
	// chat, a wiki) is a cross-site navigation, and a Strict cookie would
	// not be sent on the redirect's follow-up GET. Lax cookies still stay
	// off cross-site subrequests and frames; framing is governed by
	// DASHBOARD_FRAME_ANCESTORS.
	http.SetCookie(w, &http.Cookie{
		Name: tokenCookie, Value: secret, Path: path, MaxAge: int(maxAge.Seconds()),
		HttpOnly: true, SameSite: http.SameSiteLaxMode, Secure: s.proxy.Scheme(r) == "https",
	})
}

// cleanURL is the address of the request (the dashboard's page, or one of
// its panels full screen) with its query string minus every token
// parameter, the other parameters (the view, kiosk, theme) kept as they
// were written and in their order.
func cleanURL(d *panel.Dashboard, r *http.Request) string {
	kept := withoutToken(r.URL.RawQuery)
	clean := "/d/" + d.Slug
	if f := r.PathValue("file"); f != "" {
		clean += "/panels/" + url.PathEscape(f)
	}
	if len(kept) > 0 {
		clean += "?" + strings.Join(kept, "&")
	}
	return clean
}

// withoutToken is rawQuery's parameters other than token, as written and
// in their order.
func withoutToken(rawQuery string) []string {
	var kept []string
	for _, p := range strings.Split(rawQuery, "&") {
		key, _, _ := strings.Cut(p, "=")
		if k, err := url.QueryUnescape(key); p == "" || err == nil && k == "token" {
			continue
		}
		kept = append(kept, p)
	}
	return kept
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	page := views.IndexPage{Assets: s.assets()}
	if snap := s.engine.Snapshot(); snap != nil {
		for _, d := range snap.Dashboards {
			if _, ok := s.allowed(r, d); ok {
				page.Dashboards = append(page.Dashboards, d)
			}
		}
		// A playlist is listed when it would show the caller something:
		// one of its dashboards exists and the caller may see it.
		for _, pl := range snap.Playlists {
			if slices.ContainsFunc(pl.Items, func(it catalog.PlaylistItem) bool {
				d := snap.Dashboard(it.Dashboard)
				if d == nil {
					return false // deleted from under the playlist
				}
				_, ok := s.allowed(r, d)
				return ok
			}) {
				page.Playlists = append(page.Playlists, views.PlaylistLink{Slug: pl.Slug, Title: pl.Title})
			}
		}
	}
	w.Header().Set("Cache-Control", "no-cache")
	s.render(w, r, http.StatusOK, views.Index(page))
}

// page is GET /d/{slug}: the dashboard's page.
func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	s.dashboardPage(w, r, "")
}

// dashboardPage answers a dashboard's page, or with panelSlug not empty the
// page of that panel full screen: the same page, view, stream and access
// rules, with every other panel hidden and a link back to the dashboard at
// the same address.
func (s *Server) dashboardPage(w http.ResponseWriter, r *http.Request, panelSlug string) {
	if s.exchangeToken(w, r) {
		return
	}
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	if panelSlug != "" && panelBySlug(d, panelSlug) == nil {
		s.error(w, r, http.StatusNotFound, "No such panel", "This dashboard has no panel at this address.")
		return
	}
	sc, err := parseScreen(r.URL.Query())
	if err != nil {
		s.error(w, r, http.StatusBadRequest, "Bad request", err.Error())
		return
	}
	c, vw, ok := s.show(w, r, d, grant)
	if !ok {
		return
	}
	defer vw.release()
	dash, results, version := vw.board.Page()
	if dash == nil {
		dash = d
	}
	transport := "sse"
	if r.URL.Query().Get("transport") == "poll" {
		transport = "poll"
	}
	p := views.DashboardPage{
		Dashboard: dash, Results: results, Version: version.String(), Transport: transport, Release: s.cfg.Release,
		Assets: s.assets(), NoScriptRefresh: noScriptRefresh, Heartbeat: s.cfg.Heartbeat, ChangedAt: vw.board.ChangedAt(),
		Query: c.sel.Query().Encode(), View: vw.key.Vars,
		Kiosk: sc.kiosk, Theme: sc.theme,
		Playlist: s.playlistStep(r, d),
	}
	if pd := s.cfg.Presence.Dashboard(d.ID); pd != nil {
		_, labels := presenceOf(grant)
		w := pd.Now(labels)
		p.Watching = &views.Watching{Count: w.Watching, Labels: w.Labels, More: w.More}
	}
	if panelSlug != "" {
		p.Panel = panelSlug
		// The address as it was, on the dashboard: the same view and
		// screen options (the token, if any, has left it already).
		p.Back = views.WithQuery("/d/"+dash.Slug, r.URL.RawQuery)
	} else {
		p.Pickers, p.Time = c.pickers(d, grant)
	}
	w.Header().Set("Cache-Control", "no-cache")
	s.render(w, r, http.StatusOK, views.Dashboard(p))
}

// noScriptRefresh is how often, in seconds, a page reloads itself in a
// browser without JavaScript: often enough for a wall screen to follow, and
// at most two page loads a minute per such viewer.
const noScriptRefresh = 30

// headEvents is HEAD /d/{slug}/events: access is checked as for GET and
// the stream's headers are the answer. Nothing is opened or counted: no
// hijack, no stream slot, no viewer for the refresh engine.
func (s *Server) headEvents(w http.ResponseWriter, r *http.Request) {
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	if _, ok := s.view(w, r, d, grant); !ok {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store, no-transform")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// headPoll is HEAD /d/{slug}/poll: access is checked as for GET and the
// long-poll's headers are the answer, at once. It neither waits nor counts.
func (s *Server) headPoll(w http.ResponseWriter, r *http.Request) {
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	if _, ok := s.view(w, r, d, grant); !ok {
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-cache")
	w.WriteHeader(http.StatusOK)
}

// awaitFresh holds a client whose version this server does not know until
// every panel of its view has finished a query that started after it
// asked, at most ResumeWait (the resume contract).
func (s *Server) awaitFresh(ctx context.Context, view panel.ViewKey) {
	ctx, cancel := context.WithTimeout(ctx, s.cfg.ResumeWait)
	defer cancel()
	s.await(ctx, s.engine.Fresh(ctx, view), s.cfg.ResumeWait)
}

// await waits for ready, at most max; it reports false only if the client
// went away.
func (s *Server) await(ctx context.Context, ready <-chan struct{}, max time.Duration) bool {
	t := time.NewTimer(max)
	defer t.Stop()
	select {
	case <-ready:
	case <-t.C: // serve what there is; the stream brings the rest
	case <-s.shutdown:
	case <-ctx.Done():
		return false
	}
	return true
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte("ok\n"))
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if s.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: draining (shutting down)\n"))
		return
	}
	if err := s.ready(ctx); err != nil {
		s.logger.Warn("not ready", "err", err)
		w.WriteHeader(http.StatusServiceUnavailable)
		w.Write([]byte("not ready: " + err.Error() + "\n"))
		return
	}
	w.Write([]byte("ready\n"))
}

// render writes a page; a render failure is logged and answered 500.
func (s *Server) render(w http.ResponseWriter, r *http.Request, status int, c templ.Component) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	// Render into memory first so a failure can still change the status.
	var buf bytes.Buffer
	if err := c.Render(r.Context(), &buf); err != nil {
		s.logger.Error("rendering page", "path", r.URL.Path, "err", err)
		s.error(w, r, http.StatusInternalServerError, "Something went wrong", "The page could not be drawn. The error was logged.")
		return
	}
	w.WriteHeader(status)
	w.Write(buf.Bytes())
}

// error is the one place that turns a failure into a response: an HTML page
// for browsers, plain text for stream and poll clients. It never shows
// internal details. A 503 or 429 carries Retry-After: the one the caller
// set, or else 1-5 s drawn at random, so that refused clients do not come
// back in step.
func (s *Server) error(w http.ResponseWriter, r *http.Request, status int, title, message string) {
	if (status == http.StatusServiceUnavailable || status == http.StatusTooManyRequests) && w.Header().Get("Retry-After") == "" {
		w.Header().Set("Retry-After", strconv.Itoa(1+rand.IntN(5)))
	}
	w.Header().Set("Cache-Control", "no-store")
	if strings.HasSuffix(r.URL.Path, "/events") || strings.HasSuffix(r.URL.Path, "/poll") || strings.HasSuffix(r.URL.Path, ".csv") {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(status)
		w.Write([]byte(message + "\n"))
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	views.StyledErrorPage(s.assets(), status, title, message).Render(r.Context(), w)
}

// clientIP is the client's address under the trusted-proxy rule: the
// peer, or behind a trusted proxy the client it forwards for
// (access.Proxy.ClientAddr). Per-address limits count it.
func (s *Server) clientIP(r *http.Request) string {
	return s.proxy.ClientAddr(r)
}

// jitter returns d scaled by a random factor in [1-f, 1].
func jitter(d time.Duration, f float64) time.Duration {
	return time.Duration(float64(d) * (1 - f*rand.Float64()))
}

// Metrics are the HTTP side's Prometheus metrics.
type Metrics struct {
	sseClients    prometheus.Gauge
	streamsOpened *prometheus.CounterVec
	longPolls     prometheus.Gauge
	frames        prometheus.Counter
	bytes         prometheus.Counter
	slowDropped   prometheus.Counter
	limitRefused  *prometheus.CounterVec
	badChoice     prometheus.Counter
	csvServed     prometheus.Counter
	drainRefused  prometheus.Counter
}

// NewMetrics creates the metrics and registers them with reg, if not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		sseClients: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dashboard", Name: "sse_clients",
			Help: "Open SSE streams."}),
		streamsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dashboard", Name: "sse_streams_opened_total",
			Help: "SSE streams opened, by HTTP version (HTTP/1.1 is hijacked unless over TLS; HTTP/2.0 is served per stream)."}, []string{"proto"}),
		longPolls: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "dashboard", Name: "longpoll_waiting",
			Help: "Long-poll requests waiting for a change."}),
		frames: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "frames_sent_total",
			Help: "Update frames written to SSE and long-poll clients."}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "bytes_sent_total",
			Help: "Bytes of update frames written to SSE and long-poll clients."}),
		slowDropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "slow_clients_dropped_total",
			Help: "SSE clients disconnected because a write missed the write timeout."}),
		limitRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "dashboard", Name: "limit_refused_total",
			Help: "Requests answered 503 because a limit was reached, by limit."}, []string{"limit"}),
		badChoice: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "bad_choice_total",
			Help: "Requests answered 400 because their variables or time range were refused."}),
		csvServed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "csv_downloads_total",
			Help: "Panel data served as CSV."}),
		drainRefused: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "dashboard", Name: "drain_refused_total",
			Help: "Requests answered 503 because the server was draining."}),
	}
	if reg != nil {
		reg.MustRegister(m.sseClients, m.streamsOpened, m.longPolls, m.frames, m.bytes, m.slowDropped, m.limitRefused,
			m.badChoice, m.csvServed, m.drainRefused)
	}
	return m
}
