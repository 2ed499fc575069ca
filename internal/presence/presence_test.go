package presence

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/wire"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// migrated returns a pool on a fresh migrated database with the dashboards
// named by slugs, and their ids in that order.
func migrated(t *testing.T, slugs ...string) (*pgxpool.Pool, string, []int64) {
	t.Helper()
	url := pgtest.NewDB(t)
	conn, err := pgx.Connect(t.Context(), url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	if _, err := migrations.Up(t.Context(), conn); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	var ids []int64
	for _, s := range slugs {
		var id int64
		if err := conn.QueryRow(t.Context(), "INSERT INTO dashboard.dashboards (slug, title) VALUES ($1, $1) RETURNING id", s).Scan(&id); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return newPool(t, url, ""), url, ids
}

// newPool is a pool on url; with role set, every connection acts as it.
func newPool(t *testing.T, url, role string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	if role != "" {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			_, err := c.Exec(ctx, "SET ROLE "+role)
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// syncBuffer is a log shared by a registry and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// rounds runs one round of each registry in turn, twice, so that each
// has read what every other wrote.
func rounds(t *testing.T, rs ...*Registry) {
	t.Helper()
	for range 2 {
		for _, r := range rs {
			r.round(t.Context(), time.Now())
		}
	}
}

func want(t *testing.T, what string, d *Dashboard, labels bool, w wire.Presence) {
	t.Helper()
	got := d.Now(labels)
	if got.Watching != w.Watching || got.More != w.More || !slices.Equal(got.Labels, w.Labels) {
		t.Errorf("%s: got %+v, want %+v", what, got, w)
	}
}

// TestCountsAcrossServers: two registries on one database count every
// viewer of both, streams and long-polls; a token's holder sees the labels
// of both servers' viewers, the public only the count; a viewer leaving
// lowers it; a server that stops cleanly takes its streams with it at once,
// while its long-poll client counts on (it asks another server next).
func TestCountsAcrossServers(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops", "sales")
	ops, sales := ids[0], ids[1]
	a := New(Config{Pool: pool, TTL: time.Minute})
	b := New(Config{Pool: pool, TTL: time.Minute})
	now := time.Now()

	leaveTV := a.Join(ops, "lobby TV")
	leavePublic := a.Join(ops, "")
	b.Seen(ops, "client-1", "10.0.0.1", "ops laptop", now)
	b.Seen(ops, "client-1", "10.0.0.1", "ops laptop", now) // the same client again
	b.Join(ops, "lobby TV")
	b.Join(sales, "")
	da, db := a.Dashboard(ops), b.Dashboard(ops)
	changed := da.Changed()
	rounds(t, a, b)
	select {
	case <-changed:
	default:
		t.Errorf("the count changed, but Changed did not fire")
	}
	all := wire.Presence{Watching: 4, Labels: []string{"lobby TV", "ops laptop"}}
	for name, d := range map[string]*Dashboard{"server a": da, "server b": db} {
		want(t, name+", a token's holder", d, true, all)
		want(t, name+", the public", d, false, wire.Presence{Watching: 4})
	}
	want(t, "sales on a", a.Dashboard(sales), false, wire.Presence{Watching: 1})
	gen, msg := da.Event(true)
	if !bytes.Equal(msg, wire.PresenceEvent(all)) {
		t.Errorf("holders' event: got %q, want %q", msg, wire.PresenceEvent(all))
	}
	if _, pub := da.Event(false); !bytes.Equal(pub, wire.PresenceEvent(wire.Presence{Watching: 4})) {
		t.Errorf("public event: got %q", pub)
	}

	// Nothing changed: no new bytes, no wake-up.
	changed = da.Changed()
	rounds(t, a, b)
	if g, _ := da.Event(true); g != gen {
		t.Errorf("a round without change made a new generation: got %d, want %d", g, gen)
	}
	select {
	case <-changed:
		t.Errorf("Changed fired without a change")
	default:
	}

	leaveTV()
	leaveTV() // a second call does nothing
	leavePublic()
	rounds(t, a, b)
	want(t, "after a's viewers left, on b", db, true, wire.Presence{Watching: 2, Labels: []string{"lobby TV", "ops laptop"}})
	var rowsOfA int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.presence WHERE server = $1", a.Server()).Scan(&rowsOfA); err != nil {
		t.Fatal(err)
	}
	if rowsOfA != 0 {
		t.Errorf("a has no viewers left: got %d rows of a, want 0", rowsOfA)
	}

	// b stops cleanly: its stream rows go at once, its long-poll client
	// counts until PollWindow after it was seen.
	b.goodbye(t.Context())
	a.round(t.Context(), time.Now())
	want(t, "after b stopped, on a", da, true, wire.Presence{Watching: 1, Labels: []string{"ops laptop"}})
	var servers int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.servers").Scan(&servers); err != nil {
		t.Fatal(err)
	}
	if servers != 1 {
		t.Errorf("after b stopped: got %d server rows, want 1 (a's)", servers)
	}
}

// TestKilledServerExpires: the rows of a server that stopped without
// deleting them stop counting once they expire.
func TestKilledServerExpires(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	a := New(Config{Pool: pool, TTL: time.Minute})
	b := New(Config{Pool: pool, Interval: 100 * time.Millisecond, TTL: time.Second, KeepRowsOnStop: true})
	a.Join(ids[0], "")
	b.Join(ids[0], "")
	b.Join(ids[0], "")
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	d := a.Dashboard(ids[0])
	eventually(t, "a counts b's viewers", func() bool {
		a.round(t.Context(), time.Now())
		return d.Now(false).Watching == 3
	})
	cancel() // b is "killed": its rows stay behind
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	var left int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.presence WHERE server = $1", b.Server()).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if left != 1 {
		t.Fatalf("b's rows after it was killed: got %d, want 1", left)
	}
	eventually(t, "b's viewers expire", func() bool {
		a.round(t.Context(), time.Now())
		return d.Now(false).Watching == 1
	})
}

// TestLongPollWindow: a long-poll client counts for PollWindow after it
// was last seen, and one address counts as at most PerAddress clients.
// Expired clients' rows are deleted by a later round.
func TestLongPollWindow(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	const window = 2 * time.Second
	r := New(Config{Pool: pool, TTL: time.Minute, PerAddress: 2, PollWindow: window})
	now := time.Now()
	r.Seen(ids[0], "old", "10.0.0.9", "", now.Add(-window))
	for i := range 5 {
		r.Seen(ids[0], fmt.Sprintf("c%d", i), "10.0.0.1", "", now)
	}
	r.Seen(ids[0], "other", "10.0.0.2", "", now)
	r.round(t.Context(), now)
	want(t, "two of one address, one of another, none seen a window ago", r.Dashboard(ids[0]), false, wire.Presence{Watching: 3})
	if n := pollRows(t, pool); n != 3 {
		t.Errorf("long-poll rows: got %d, want 3", n)
	}
	d := r.Dashboard(ids[0])
	eventually(t, "the clients to expire", func() bool {
		r.round(t.Context(), time.Now())
		return d.Now(false).Watching == 0
	})
	eventually(t, "the expired rows to be deleted", func() bool {
		r.round(t.Context(), time.Now())
		return pollRows(t, pool) == 0
	})
}

// pollRows counts the rows of dashboard.presence_polls, expired or not.
func pollRows(t *testing.T, pool *pgxpool.Pool) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.presence_polls").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestLongPollOnceAcrossServers: behind a round-robin load balancer one
// long-poll client reaches every server in turn; it counts once in every
// server's total, with its token's label once, and its row names the
// server that saw it last, whichever server wrote first.
func TestLongPollOnceAcrossServers(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	ops := ids[0]
	a := New(Config{Pool: pool, TTL: time.Minute})
	b := New(Config{Pool: pool, TTL: time.Minute})
	c := New(Config{Pool: pool, TTL: time.Minute})
	now := time.Now()
	// One client, seen by a, then b, then c, within the window.
	a.Seen(ops, "cpoll-client-0001|10.0.0.1", "10.0.0.1", "lobby TV", now.Add(-3*time.Second))
	b.Seen(ops, "cpoll-client-0001|10.0.0.1", "10.0.0.1", "lobby TV", now.Add(-2*time.Second))
	c.Seen(ops, "cpoll-client-0001|10.0.0.1", "10.0.0.1", "lobby TV", now.Add(-time.Second))
	// Another client with a token of the same label, and a stream with it.
	b.Seen(ops, "cpoll-client-0002|10.0.0.2", "10.0.0.2", "lobby TV", now)
	c.Join(ops, "lobby TV")
	// The latest sighting is written first: the older ones must not
	// take the row back.
	rounds(t, c, b, a)
	all := wire.Presence{Watching: 3, Labels: []string{"lobby TV"}}
	for name, r := range map[string]*Registry{"a": a, "b": b, "c": c} {
		want(t, "server "+name, r.Dashboard(ops), true, all)
		want(t, "server "+name+", the public", r.Dashboard(ops), false, wire.Presence{Watching: 3})
	}
	var owner string
	if err := pool.QueryRow(t.Context(), "SELECT server::text FROM dashboard.presence_polls WHERE server = $1", c.Server()).Scan(&owner); err != nil {
		t.Errorf("the client's row does not name c, the server that saw it last: %v", err)
	}
	if n := pollRows(t, pool); n != 2 {
		t.Errorf("long-poll rows: got %d, want 2 (one per client)", n)
	}

	// The client asks a again: a owns it now; still counted once.
	a.Seen(ops, "cpoll-client-0001|10.0.0.1", "10.0.0.1", "lobby TV", time.Now())
	rounds(t, a, b, c)
	for name, r := range map[string]*Registry{"a": a, "b": b, "c": c} {
		want(t, "after the client asked a again, server "+name, r.Dashboard(ops), true, all)
	}
	rows, _ := pool.Query(t.Context(), "SELECT server::text FROM dashboard.presence_polls ORDER BY seen_at")
	servers, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(servers, []string{b.Server(), a.Server()}) {
		t.Errorf("owners of the rows, oldest sighting first: got %q, want b's then a's", servers)
	}
}

// TestKilledServerLongPolls: the long-poll clients that a killed server
// saw last stop counting PollWindow after they were seen, as its streams
// stop at their rows' expiry.
func TestKilledServerLongPolls(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	const window = 2 * time.Second
	a := New(Config{Pool: pool, TTL: time.Minute, PollWindow: window})
	b := New(Config{Pool: pool, Interval: 100 * time.Millisecond, TTL: time.Second, PollWindow: window, KeepRowsOnStop: true})
	a.Join(ids[0], "")
	b.Join(ids[0], "")
	b.Seen(ids[0], "cpoll-client-0001|10.0.0.1", "10.0.0.1", "", time.Now())
	b.Seen(ids[0], "cpoll-client-0002|10.0.0.2", "10.0.0.2", "", time.Now())
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	d := a.Dashboard(ids[0])
	eventually(t, "a counts b's stream and long-poll clients", func() bool {
		a.round(t.Context(), time.Now())
		return d.Now(false).Watching == 4
	})
	cancel() // b is "killed": its rows stay behind
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if n := pollRows(t, pool); n != 2 {
		t.Fatalf("b's long-poll clients' rows after it was killed: got %d, want 2", n)
	}
	eventually(t, "b's stream and long-poll clients stop counting", func() bool {
		a.round(t.Context(), time.Now())
		return d.Now(false).Watching == 1
	})
}

// TestLabelsCapped: a page lists Shown labels and says how many more.
func TestLabelsCapped(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	a := New(Config{Pool: pool, TTL: time.Minute, Shown: 3})
	b := New(Config{Pool: pool, TTL: time.Minute, Shown: 3})
	for _, l := range []string{"e", "c", "a"} {
		a.Join(ids[0], l)
	}
	for _, l := range []string{"b", "d", "a"} {
		b.Join(ids[0], l)
	}
	rounds(t, a, b)
	want(t, "labels", a.Dashboard(ids[0]), true, wire.Presence{Watching: 6, Labels: []string{"a", "b", "c"}, More: 2})
	if got := PresenceLabels(t, a.Dashboard(ids[0]).LabelsHeader()); got != `{"labels":["a","b","c"],"more":2}` {
		t.Errorf("labels header: got %s", got)
	}
}

// PresenceLabels decodes a labels header as the page does
// (decodeURIComponent).
func PresenceLabels(t *testing.T, h string) string {
	t.Helper()
	var out strings.Builder
	for i := 0; i < len(h); i++ {
		if h[i] == '%' && i+2 < len(h) {
			var c byte
			fmt.Sscanf(h[i+1:i+3], "%02X", &c)
			out.WriteByte(c)
			i += 2
			continue
		}
		out.WriteByte(h[i])
	}
	return out.String()
}

// TestRowsWrittenAgain: rows that vanished from under a server (a crash
// or a promotion empties the unlogged table) are written again, and a
// deleted dashboard's viewers do not break the round.
func TestRowsWrittenAgain(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops", "gone")
	a := New(Config{Pool: pool, TTL: time.Minute})
	b := New(Config{Pool: pool, TTL: time.Minute})
	a.Join(ids[0], "")
	a.Join(ids[1], "")
	a.Seen(ids[0], "cpoll-client-0001|10.0.0.1", "10.0.0.1", "", time.Now())
	a.Seen(ids[1], "cpoll-client-0001|10.0.0.1", "10.0.0.1", "", time.Now())
	// b has a long-poll client and no stream: it finds the tables
	// emptied by its servers row, written anew.
	b.Seen(ids[0], "cpoll-client-0002|10.0.0.2", "10.0.0.2", "", time.Now())
	rounds(t, a, b)
	if _, err := pool.Exec(t.Context(), "DELETE FROM dashboard.dashboards WHERE id = $1", ids[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := pool.Exec(t.Context(), "TRUNCATE dashboard.presence, dashboard.presence_polls, dashboard.servers"); err != nil {
		t.Fatal(err)
	}
	// The first round finds its rows gone, the next writes them again.
	rounds(t, a, b)
	if a.failing || a.denied {
		t.Fatalf("a round failed: failing %v, denied %v", a.failing, a.denied)
	}
	want(t, "ops on b after the tables were emptied", b.Dashboard(ids[0]), false, wire.Presence{Watching: 3})
	if n := pollRows(t, pool); n != 2 {
		t.Errorf("long-poll rows after the tables were emptied: got %d, want 2 (the clients of ops)", n)
	}
	var servers int
	if err := pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.servers").Scan(&servers); err != nil {
		t.Fatal(err)
	}
	if servers != 2 {
		t.Errorf("server rows after the table was emptied: got %d, want 2", servers)
	}
}

// TestMissingGrant: a role that may read the dashboards but not write the
// presence rows (granted by hand, after 0011) serves its own count, and
// says once what to grant.
func TestMissingGrant(t *testing.T) {
	t.Parallel()
	pool, url, ids := migrated(t, "ops")
	role := fmt.Sprintf("presence_ro_%d", time.Now().UnixNano())
	if _, err := pool.Exec(t.Context(), "CREATE ROLE "+role+"; GRANT USAGE ON SCHEMA dashboard TO "+role+
		"; GRANT SELECT ON dashboard.dashboards TO "+role); err != nil {
		t.Skipf("cannot create a role: %v", err)
	}
	t.Cleanup(func() {
		pool.Exec(context.Background(), "DROP OWNED BY "+role+"; DROP ROLE "+role)
	})
	other := New(Config{Pool: pool, TTL: time.Minute})
	other.Join(ids[0], "")
	other.round(t.Context(), time.Now())

	logs := &syncBuffer{}
	r := New(Config{Pool: newPool(t, url, role), TTL: time.Minute,
		Logger: slog.New(slog.NewTextHandler(logs, nil))})
	r.Join(ids[0], "")
	r.Join(ids[0], "")
	r.Seen(ids[0], "cpoll-client-0001|10.0.0.1", "10.0.0.1", "", time.Now())
	for range 3 {
		r.round(t.Context(), time.Now())
		r.retryAt = time.Time{} // try the database every round
	}
	want(t, "without the grant", r.Dashboard(ids[0]), false, wire.Presence{Watching: 3})
	if n := strings.Count(logs.String(), "GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard.presence"); n != 1 {
		t.Errorf("got the GRANT to run logged %d times, want once; logs:\n%s", n, logs)
	}
}

// eventually fails the test unless cond turns true within a generous bound.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestLongPollLongLabel: a token label longer than a row holds (tokens
// from before 0003 were not checked) is cut, not a failed round.
func TestLongPollLongLabel(t *testing.T) {
	t.Parallel()
	pool, _, ids := migrated(t, "ops")
	a := New(Config{Pool: pool, TTL: time.Minute})
	b := New(Config{Pool: pool, TTL: time.Minute})
	long := strings.Repeat("é", labelLength+50)
	a.Seen(ids[0], "cpoll-client-0001|10.0.0.1", "10.0.0.1", long, time.Now())
	rounds(t, a, b)
	if a.failing || a.denied {
		t.Fatalf("a round failed: failing %v, denied %v", a.failing, a.denied)
	}
	want(t, "on b", b.Dashboard(ids[0]), true, wire.Presence{Watching: 1, Labels: []string{strings.Repeat("é", labelLength)}})
}
