// Package presence owns who is watching: this server's viewers of each
// dashboard (open streams, and long-poll clients seen lately), the rows that
// share them with the other servers through Postgres (dashboard.presence for
// streams, one row per server and dashboard; dashboard.presence_polls for
// long-poll clients, one row per client and dashboard whichever servers it
// reached; this server's row in dashboard.servers), the loop that writes and
// reads those rows, and per dashboard the current count and token labels in
// the form each transport sends them (bytes made by internal/wire).
//
// It does not know panels, views or versions: presence is not part of what
// the hub hashes, so a viewer coming or going never changes a version or
// sends a panel. It does not write to connections either; internal/stream
// and internal/web send what Dashboard holds.
package presence

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

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
	// dashboard, and the most labels of long-poll clients read per
	// dashboard; beyond it, the labels shown across servers may miss some.
	rowLabels = 100
	// labelLength is the most characters of a label a long-poll client's
	// row holds (access_tokens_label_length; older tokens may be longer).
	labelLength = 200
	// sweepEvery is how many rounds pass between two deletions of expired
	// long-poll clients' rows by one server.
	sweepEvery = 10
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
	// others are, as last read and summed per dashboard, the other
	// servers' unexpired stream rows and every server's (this one's too)
	// unexpired long-poll clients; othersUntil is when that read stops
	// being trusted. Until then a count is this server's streams now plus
	// others; after it, this server's streams and long-poll clients only.
	others      map[int64]sum
	othersUntil time.Time

	// Owned by Run.
	written    map[int64]row // what this server's stream rows hold in the database
	rewriteAll bool          // write every row again (the tables were emptied)
	registered bool          // this server's row in dashboard.servers was written
	rounds     int
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
	// flushed is the seen time last written to its row; a client whose
	// seen differs is written at the next round.
	flushed time.Time
}

// pollRow is a long-poll client's row as a round writes it.
type pollRow struct {
	dashboard int64
	key       string
	client    []byte // digest of key
	label     string
	seen      time.Time
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
	l.polls[key] = poll{seen: now, label: label, addr: addr, flushed: l.polls[key].flushed}
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

// count is one dashboard's viewers on this server at now: its open
// streams, and with polls its long-poll clients seen within PollWindow.
// Without polls it is the dashboard's row in dashboard.presence.
func (r *Registry) count(l *local, now time.Time, polls bool) row {
	labels := make(map[string]bool, len(l.streamLabels))
	for label := range l.streamLabels {
		labels[label] = true
	}
	n := l.streams
	for _, p := range l.polls {
		if polls && now.Sub(p.seen) < r.cfg.PollWindow {
			n++
			if p.label != "" {
				labels[p.label] = true
			}
		}
	}
	return row{viewers: n, labels: slices.Sorted(maps.Keys(labels))}
}

// total is every server's viewers of dashboard and their labels, sorted:
// this server's streams now plus the other servers' streams and every
// server's long-poll clients as last read; without a trusted read, this
// server's streams and long-poll clients only. r.mu is held.
func (r *Registry) total(dashboard int64, now time.Time) row {
	var t row
	labels := make(map[string]bool)
	shared := now.Before(r.othersUntil)
	if l := r.local[dashboard]; l != nil {
		own := r.count(l, now, !shared)
		t.viewers = own.viewers
		for _, label := range own.labels {
			labels[label] = true
		}
	}
	if shared {
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
	var polls []pollRow
	for id, l := range r.local {
		for k, p := range l.polls {
			if now.Sub(p.seen) >= r.cfg.PollWindow {
				delete(l.polls, k)
			} else if r.rewriteAll || !p.seen.Equal(p.flushed) {
				polls = append(polls, pollRow{dashboard: id, key: k, label: p.label, seen: p.seen})
			}
		}
		if c := r.count(l, now, false); c.viewers > 0 {
			if len(c.labels) > rowLabels {
				c.labels = c.labels[:rowLabels]
			}
			rows[id] = c
		} else if len(l.polls) == 0 {
			delete(r.local, id)
		}
	}
	r.mu.Unlock()

	if r.denied && now.Before(r.retryAt) || r.failing && now.Before(r.retryAt) {
		r.recount(now)
		return
	}
	others, err := r.exchange(ctx, rows, polls, now)
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		if r.denied || r.failing {
			r.cfg.Logger.Info("presence: sharing viewer counts with the other servers again")
		}
		r.denied, r.failing = false, false
		r.mu.Lock()
		r.others, r.othersUntil = others, now.Add(r.cfg.TTL)
		// The clients written are current in the database unless seen
		// again meanwhile.
		for _, p := range polls {
			if l := r.local[p.dashboard]; l != nil {
				if c, ok := l.polls[p.key]; ok && c.seen.Equal(p.seen) {
					c.flushed = c.seen
					l.polls[p.key] = c
				}
			}
		}
		r.mu.Unlock()
	case ctx.Err() != nil:
	case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
		if !r.denied {
			r.cfg.Logger.Warn("presence: this server's database role may not write dashboard.presence; "+
				"pages count this server's viewers only. An owner of schema dashboard can run: "+
				"GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard.presence, dashboard.presence_polls, dashboard.servers TO <the server's role>",
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
// expiry of its stream rows refreshed, the changed ones written, those at
// zero deleted, the long-poll clients seen since the last round written,
// now and then the expired clients' rows deleted, and in one read the
// other servers' unexpired stream rows and every unexpired long-poll
// client, summed per dashboard.
func (r *Registry) exchange(ctx context.Context, rows map[int64]row, polls []pollRow, now time.Time) (map[int64]sum, error) {
	ctx, cancel := context.WithTimeout(ctx, max(r.cfg.Interval, 5*time.Second))
	defer cancel()
	ttl := r.cfg.TTL.Seconds()
	window := r.cfg.PollWindow.Seconds()
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
	// Long-poll clients in key order, so that servers writing the same
	// clients at once lock their rows in the same order. seen_at is on
	// the database's clock: now there minus how long ago this server saw
	// the client, so that servers whose clocks differ agree.
	for i := range polls {
		d := sha256.Sum256([]byte(polls[i].key))
		polls[i].client = d[:16]
	}
	slices.SortFunc(polls, func(a, b pollRow) int {
		return cmp.Or(cmp.Compare(a.dashboard, b.dashboard), bytes.Compare(a.client, b.client))
	})
	pollIDs := make([]int64, len(polls))
	clients := make([][]byte, len(polls))
	pollLabels := make([]string, len(polls))
	ages := make([]float64, len(polls))
	for i, p := range polls {
		pollIDs[i], clients[i], ages[i] = p.dashboard, p.client, max(now.Sub(p.seen).Seconds(), 0)
		pollLabels[i] = p.label
		if utf8.RuneCountInString(p.label) > labelLength {
			pollLabels[i] = string([]rune(p.label)[:labelLength])
		}
	}

	b := &pgx.Batch{}
	b.Queue(`INSERT INTO dashboard.servers (server, started_at, expires_at, lock_pid, release)
		VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5)
		ON CONFLICT (server) DO UPDATE SET expires_at = excluded.expires_at, lock_pid = excluded.lock_pid
		RETURNING xmax = 0`,
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
	if len(polls) > 0 {
		// The latest sighting wins, whichever server writes first.
		b.Queue(`INSERT INTO dashboard.presence_polls AS p (dashboard_id, client, server, label, seen_at)
			SELECT u.id, u.client, $1, u.label, now() - make_interval(secs => u.age)
			FROM unnest($2::bigint[], $3::bytea[], $4::text[], $5::float8[]) u(id, client, label, age)
			WHERE EXISTS (SELECT 1 FROM dashboard.dashboards d WHERE d.id = u.id)
			-- Key order, whatever plan the EXISTS gets: servers that write
			-- the same clients lock them in the same order (no deadlock).
			ORDER BY u.id, u.client
			ON CONFLICT (dashboard_id, client) DO UPDATE
			SET server = excluded.server, label = excluded.label, seen_at = excluded.seen_at
			WHERE p.seen_at < excluded.seen_at`,
			r.server, pollIDs, clients, pollLabels, ages)
	}
	sweep := r.rounds%sweepEvery == 0
	r.rounds++
	if sweep {
		// Rows another server is writing are left to a later sweep, so
		// that no server waits for another here.
		b.Queue(`DELETE FROM dashboard.presence_polls WHERE (dashboard_id, client) IN (
			SELECT dashboard_id, client FROM dashboard.presence_polls
			WHERE seen_at <= now() - make_interval(secs => $1)
			FOR UPDATE SKIP LOCKED)`, window)
	}
	b.Queue(`SELECT dashboard_id, viewers, labels FROM dashboard.presence WHERE server <> $1 AND expires_at > now()
		UNION ALL
		SELECT dashboard_id, count(*)::int,
			coalesce(to_jsonb((array_agg(DISTINCT label ORDER BY label) FILTER (WHERE label <> ''))[1:$3]), '[]')
		FROM dashboard.presence_polls WHERE seen_at > now() - make_interval(secs => $2)
		GROUP BY dashboard_id`, r.server, window, rowLabels)
	br := r.cfg.Pool.SendBatch(ctx, b)
	defer br.Close()
	var inserted bool
	if err := br.QueryRow().Scan(&inserted); err != nil {
		return nil, err
	}
	tag, err := br.Exec()
	if err != nil {
		return nil, err
	}
	// Rows this server wrote that were not there to refresh, or its
	// servers row written anew (a crash or a promotion emptied the
	// unlogged tables, or a round failed half way): write all of them
	// again next round.
	stale := int(tag.RowsAffected()) < len(r.written) || inserted && r.registered
	upserted, _ := br.Query()
	wrote, err := pgx.CollectRows(upserted, pgx.RowTo[int64])
	if err != nil {
		return nil, err
	}
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	if len(polls) > 0 {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
	}
	if sweep {
		if _, err := br.Exec(); err != nil {
			return nil, err
		}
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
	r.registered = true
	return others, nil
}

// goodbye deletes this server's rows, so that its streams stop counting at
// once instead of at their expiry. Its long-poll clients' rows stay: such
// a client counts for PollWindow after it was last seen, whichever server
// saw it, and asks another server next.
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
