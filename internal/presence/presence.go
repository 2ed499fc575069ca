// Package presence owns who is watching: this server's viewers of each
// dashboard (open streams, and long-poll clients seen lately), the rows that
// share them with the other servers through Postgres (dashboard.presence,
// with this server's row in dashboard.servers), the loop that writes and
// reads those rows, and per dashboard the current count and token labels in
// the form each transport sends them (bytes made by internal/wire).
//
// It does not know panels, views or versions: presence is not part of what
// the hub hashes, so a viewer coming or going never changes a version or
// sends a panel. It does not write to connections either; internal/stream
// and internal/web send what Dashboard holds.
package presence

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/wire"
)

// Defaults of Config.
const (
	DefaultInterval   = 2 * time.Second
	DefaultPollWindow = 30 * time.Second
	DefaultShown      = 20
	// rowLabels is the most labels one server's row holds for one
	// dashboard; beyond it, the labels shown across servers may miss some.
	rowLabels = 100
)

// Config is how a Registry counts and shares.
type Config struct {
	// Pool is the primary; the rows are written and read there.
	Pool *pgxpool.Pool
	// Interval is how often the rows are written and read; default 2 s.
	Interval time.Duration
	// TTL is how long a row counts after its last write; default three
	// intervals, so the viewers of a server that died stop counting within
	// TTL plus an interval.
	TTL time.Duration
	// PollWindow is how long a long-poll client counts after it was last
	// seen; default 30 s.
	PollWindow time.Duration
	// Shown is how many token labels a page lists before "and N more";
	// default 20.
	Shown int
	// PerAddress bounds the long-poll clients one client address counts
	// as, per dashboard and server (a client makes up its id); 0 means no
	// bound.
	PerAddress int
	// LockPID returns the backend pid of the connection that holds this
	// server's feed slot lock, 0 while none: the server's row names it, so
	// that `dashboard token create --playlist` can tell this release's
	// servers from older ones.
	LockPID func() uint32
	// Release names the build, for the servers row.
	Release string
	// KeepRowsOnStop leaves the rows behind when Run ends, as a server
	// that was killed does (tests of expiry).
	KeepRowsOnStop bool
	Logger         *slog.Logger
}

// Registry counts this server's viewers per dashboard and shares them with
// the other servers. Its methods are safe for concurrent use; a nil
// Registry counts nothing.
type Registry struct {
	cfg     Config
	server  string // uuid
	started time.Time

	mu     sync.Mutex
	local  map[int64]*local
	dashes map[int64]*Dashboard
	// others are the other servers' unexpired rows as last read, summed
	// per dashboard; othersUntil is when that read stops being trusted.
	others      map[int64]sum
	othersUntil time.Time

	// Owned by Run.
	written    map[int64]row // what this server's rows hold in the database
	rewriteAll bool
	denied     bool      // the role may not write the rows (42501)
	retryAt    time.Time // when a denied or failed write is tried again
	failing    bool      // the last round failed for another reason
}

// local is one dashboard's viewers on this server.
type local struct {
	streams      int
	streamLabels map[string]int // label -> streams holding a token with it
	polls        map[string]poll
}

// poll is a long-poll client, by its key.
type poll struct {
	seen  time.Time
	label string
	addr  string
}

// row is what one server says of one dashboard.
type row struct {
	viewers int
	labels  []string // distinct, sorted
}

// sum is the other servers' rows of one dashboard added up.
type sum struct {
	viewers int
	labels  map[string]bool
}

// New returns a Registry with a new server id; Run shares its counts.
func New(cfg Config) *Registry {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.TTL <= 0 {
		cfg.TTL = 3 * cfg.Interval
	}
	if cfg.PollWindow <= 0 {
		cfg.PollWindow = DefaultPollWindow
	}
	if cfg.Shown <= 0 {
		cfg.Shown = DefaultShown
	}
	if cfg.LockPID == nil {
		cfg.LockPID = func() uint32 { return 0 }
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Registry{cfg: cfg, server: newUUID(), started: time.Now(),
		local: make(map[int64]*local), dashes: make(map[int64]*Dashboard),
		others: make(map[int64]sum), written: make(map[int64]row)}
}

// Server is this server's id in the rows.
func (r *Registry) Server() string { return r.server }

// newUUID is a random (version 4) UUID in its text form.
func newUUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Join counts an open stream of dashboard, holding a token labelled label
// ("" for none), until leave is called (once; later calls do nothing).
func (r *Registry) Join(dashboard int64, label string) (leave func()) {
	if r == nil {
		return func() {}
	}
	r.mu.Lock()
	l := r.localOf(dashboard)
	l.streams++
	if label != "" {
		l.streamLabels[label]++
	}
	r.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			l := r.localOf(dashboard)
			l.streams--
			if label != "" {
				if l.streamLabels[label]--; l.streamLabels[label] <= 0 {
					delete(l.streamLabels, label)
				}
			}
		})
	}
}

// Seen counts the long-poll client key of dashboard, at client address
// addr, holding a token labelled label, for PollWindow from now. A new key
// from an address that already counts PerAddress clients of the dashboard
// is not counted.
func (r *Registry) Seen(dashboard int64, key, addr, label string, now time.Time) {
	if r == nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	l := r.localOf(dashboard)
	if _, ok := l.polls[key]; !ok && r.cfg.PerAddress > 0 {
		n := 0
		for _, p := range l.polls {
			if p.addr == addr && now.Sub(p.seen) < r.cfg.PollWindow {
				n++
			}
		}
		if n >= r.cfg.PerAddress {
			return
		}
	}
	l.polls[key] = poll{seen: now, label: label, addr: addr}
}

func (r *Registry) localOf(dashboard int64) *local {
	l := r.local[dashboard]
	if l == nil {
		l = &local{streamLabels: make(map[string]int), polls: make(map[string]poll)}
		r.local[dashboard] = l
	}
	return l
}

// Dashboard returns who is watching dashboard, as of the last round (a
// dashboard asked for the first time: the other servers as last read and
// this server's viewers now). Nil for a nil Registry.
func (r *Registry) Dashboard(dashboard int64) *Dashboard {
	if r == nil {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	d := r.dashes[dashboard]
	if d == nil {
		d = &Dashboard{changed: make(chan struct{})}
		r.dashes[dashboard] = d
		d.set(r.total(dashboard, time.Now()), r.cfg.Shown)
	}
	return d
}

// count is one dashboard's viewers on this server at now, and its row.
func (r *Registry) count(l *local, now time.Time) row {
	labels := make(map[string]bool, len(l.streamLabels))
	for label := range l.streamLabels {
		labels[label] = true
	}
	n := l.streams
	for _, p := range l.polls {
		if now.Sub(p.seen) < r.cfg.PollWindow {
			n++
			if p.label != "" {
				labels[p.label] = true
			}
		}
	}
	return row{viewers: n, labels: slices.Sorted(maps.Keys(labels))}
}

// total is every server's viewers of dashboard and their labels, sorted:
// this server's now and the others' as last read. r.mu is held.
func (r *Registry) total(dashboard int64, now time.Time) row {
	var t row
	labels := make(map[string]bool)
	if l := r.local[dashboard]; l != nil {
		own := r.count(l, now)
		t.viewers = own.viewers
		for _, label := range own.labels {
			labels[label] = true
		}
	}
	if now.Before(r.othersUntil) {
		o := r.others[dashboard]
		t.viewers += o.viewers
		for label := range o.labels {
			labels[label] = true
		}
	}
	t.labels = slices.Sorted(maps.Keys(labels))
	return t
}

// Run writes this server's rows and reads the others' every Interval until
// ctx ends; then it deletes this server's rows (unless KeepRowsOnStop).
// A database error is logged and tried again; meanwhile pages count this
// server's viewers, and the others' as last read until those would have
// expired.
func (r *Registry) Run(ctx context.Context) error {
	t := time.NewTicker(r.cfg.Interval)
	defer t.Stop()
	for {
		r.round(ctx, time.Now())
		select {
		case <-ctx.Done():
			if !r.cfg.KeepRowsOnStop {
				r.goodbye(context.WithoutCancel(ctx))
			}
			return nil
		case <-t.C:
		}
	}
}

// round is one write and read of the rows, then a new count for every
// dashboard asked for.
func (r *Registry) round(ctx context.Context, now time.Time) {
	r.mu.Lock()
	rows := make(map[int64]row, len(r.local))
	for id, l := range r.local {
		c := r.count(l, now)
		for k, p := range l.polls {
			if now.Sub(p.seen) >= r.cfg.PollWindow {
				delete(l.polls, k)
			}
		}
		if c.viewers > 0 {
			if len(c.labels) > rowLabels {
				c.labels = c.labels[:rowLabels]
			}
			rows[id] = c
		} else if l.streams == 0 && len(l.polls) == 0 {
			delete(r.local, id)
		}
	}
	r.mu.Unlock()

	if r.denied && now.Before(r.retryAt) || r.failing && now.Before(r.retryAt) {
		r.recount(now)
		return
	}
	others, err := r.exchange(ctx, rows)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		if r.denied || r.failing {
			r.cfg.Logger.Info("presence: sharing viewer counts with the other servers again")
		}
		r.denied, r.failing = false, false
		r.mu.Lock()
		r.others, r.othersUntil = others, now.Add(r.cfg.TTL)
		r.mu.Unlock()
	case ctx.Err() != nil:
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		if !r.denied {
			r.cfg.Logger.Warn("presence: this server's database role may not write dashboard.presence; "+
				"pages count this server's viewers only. An owner of schema dashboard can run: "+
				"GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard.presence, dashboard.servers TO <the server's role>",
				"err", err)
		}
		r.denied, r.retryAt = true, now.Add(30*time.Second)
		r.forget()
	default:
		if !r.failing {
			r.cfg.Logger.Warn("presence: sharing viewer counts", "err", err)
		}
		r.failing, r.retryAt = true, now.Add(r.cfg.Interval)
		r.rewriteAll = true
	}
	r.recount(now)
}

// forget drops what was read from the others: with no rows of its own in
// the database, this server cannot say which of theirs are current.
func (r *Registry) forget() {
	r.mu.Lock()
	r.others, r.othersUntil = map[int64]sum{}, time.Time{}
	r.mu.Unlock()
}

// recount sets every Dashboard asked for to the current total; those whose
// total changed tell their streams.
func (r *Registry) recount(now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for id, d := range r.dashes {
		d.set(r.total(id, now), r.cfg.Shown)
	}
}

// exchange is one round trip: this server's row in dashboard.servers, the
// expiry of its presence rows refreshed, the changed ones written, those
// at zero deleted, and the other servers' unexpired rows read.
func (r *Registry) exchange(ctx context.Context, rows map[int64]row) (map[int64]sum, error) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Interval, 5*time.Second))
	defer cancel()
	ttl := r.cfg.TTL.Seconds()
	var ids []int64
	var viewers []int32
	var labels []string // each a JSON array
	for id, c := range rows {
		if w, ok := r.written[id]; ok && !r.rewriteAll && w.viewers == c.viewers && slices.Equal(w.labels, c.labels) {
			continue
		}
		j, err := json.Marshal(append([]string{}, c.labels...))
		if err != nil {
			return nil, err
		}
		ids, viewers, labels = append(ids, id), append(viewers, int32(c.viewers)), append(labels, string(j))
	}
	var gone []int64
	for id := range r.written {
		if _, ok := rows[id]; !ok {
			gone = append(gone, id)
		}
	}
	var pid *int32
	if p := r.cfg.LockPID(); p != 0 {
		v := int32(p)
		pid = &v
	}

	b := &pgx.Batch{}
	b.Queue(`INSERT INTO dashboard.servers (server, started_at, expires_at, lock_pid, release)
		VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
		ON CONFLICT (server) DO UPDATE SET expires_at = excluded.expires_at, lock_pid = excluded.lock_pid`,
		r.server, r.started, ttl, pid, r.cfg.Release)
	b.Queue(`UPDATE dashboard.presence SET expires_at = now() + make_interval(secs => $2) WHERE server = $1`, r.server, ttl)
	// A dashboard deleted meanwhile is skipped rather than failing the
	// round on its foreign key.
	b.Queue(`INSERT INTO dashboard.presence (server, dashboard_id, viewers, labels, expires_at)
		SELECT $1, u.id, u.viewers, u.labels::jsonb, now() + make_interval(secs => $2)
		FROM unnest($3::bigint[], $4::int[], $5::text[]) u(id, viewers, labels)
		WHERE EXISTS (SELECT 1 FROM dashboard.dashboards d WHERE d.id = u.id)
		ON CONFLICT (server, dashboard_id) DO UPDATE
		SET viewers = excluded.viewers, labels = excluded.labels, expires_at = excluded.expires_at
		RETURNING dashboard_id`,
		r.server, ttl, ids, viewers, labels)
	b.Queue(`DELETE FROM dashboard.presence WHERE server = $1 AND dashboard_id = ANY($2)`, r.server, gone)
	b.Queue(`SELECT dashboard_id, viewers, labels FROM dashboard.presence WHERE server <> $1 AND expires_at > now()`, r.server)
	br := r.cfg.Pool.SendBatch(ctx, b)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	tag, err := br.Exec()
	if err != nil {
		return nil, err
	}
	// Rows this server wrote that were not there to refresh (a crash or a
	// promotion emptied the unlogged table, or a round failed half way):
	// write all of them again next round.
	stale := int(tag.RowsAffected()) < len(r.written)
	upserted, _ := br.Query()
	wrote, err := pgx.CollectRows(upserted, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	read, _ := br.Query()
	others := make(map[int64]sum)
	var id int64
	var n int
	var ls []string
	_, err = pgx.ForEachRow(read, []any{&id, &n, &ls}, func() error {
		s := others[id]
		s.viewers += n
		if s.labels == nil {
			s.labels = make(map[string]bool)
		}
		for _, l := range ls {
			s.labels[l] = true
		}
		others[id] = s
		return nil
	})
	if err != nil {
		return nil, err
	}
	if err := br.Close(); err != nil {
		return nil, err
	}
	// What the database holds now: the rows written before that were not
	// to change, and those written now (a deleted dashboard's are not).
	written := make(map[int64]row, len(rows))
	for id := range rows {
		if w, ok := r.written[id]; ok && !slices.Contains(ids, id) {
			written[id] = w
		}
	}
	for _, id := range wrote {
		written[id] = rows[id]
	}
	r.written = written
	r.rewriteAll = stale
	return others, nil
}

// goodbye deletes this server's rows, so that its viewers stop counting at
// once instead of at their expiry.
func (r *Registry) goodbye(ctx context.Context) {
	if r.denied {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	b := &pgx.Batch{}
	b.Queue(`DELETE FROM dashboard.presence WHERE server = $1`, r.server)
	b.Queue(`DELETE FROM dashboard.servers WHERE server = $1`, r.server)
	if err := r.cfg.Pool.SendBatch(ctx, b).Close(); err != nil {
		r.cfg.Logger.Warn("presence: deleting this server's rows; they expire by themselves", "err", err)
	}
}

// Dashboard is who watches one dashboard across servers, in the forms the
// transports send: an SSE event made once per change and shared by every
// viewer of its variant (count only; count and labels), and the same as
// long-poll headers.
type Dashboard struct {
	mu      sync.Mutex
	gen     uint64
	public  wire.Presence
	holders wire.Presence
	events  [2][]byte // public, holders
	header  string    // holders' WatchingLabelsHeader
	changed chan struct{}
}

// set takes a new total; if it differs, the bytes are made again and
// Changed fires.
func (d *Dashboard) set(t row, shown int) {
	h := wire.Presence{Watching: t.viewers, Labels: t.labels}
	if len(h.Labels) > shown {
		h.Labels, h.More = h.Labels[:shown:shown], len(h.Labels)-shown
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.gen > 0 && d.holders.Watching == h.Watching && d.holders.More == h.More && slices.Equal(d.holders.Labels, h.Labels) {
		return
	}
	d.gen++
	d.public = wire.Presence{Watching: t.viewers}
	d.holders = h
	d.events = [2][]byte{wire.PresenceEvent(d.public), wire.PresenceEvent(h)}
	d.header = wire.PresenceLabelsHeader(h)
	close(d.changed)
	d.changed = make(chan struct{})
}

// Changed returns a channel closed at the next change.
func (d *Dashboard) Changed() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.changed
}

// Event returns the presence event a viewer is to see, with the token
// labels if labels, and its generation, which grows with every change.
// The bytes are shared and must not be modified.
func (d *Dashboard) Event(labels bool) (gen uint64, msg []byte) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if labels {
		return d.gen, d.events[1]
	}
	return d.gen, d.events[0]
}

// Now returns who is watching, with the token labels if labels; zero for
// a nil Dashboard.
func (d *Dashboard) Now(labels bool) wire.Presence {
	if d == nil {
		return wire.Presence{}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if labels {
		return d.holders
	}
	return d.public
}

// LabelsHeader is the long-poll's wire.WatchingLabelsHeader value for a
// viewer who holds a token.
func (d *Dashboard) LabelsHeader() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.header
}
