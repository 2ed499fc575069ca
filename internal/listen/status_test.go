package listen_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

// dial opens a connection to connString that closes when the test ends.
func dial(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// gauges gathers reg and returns each dashboard_feed_* gauge by name and
// label value ("" without labels).
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]float64)
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "{" + l.GetName() + "=" + l.GetValue() + "}"
			}
			out[key] = m.GetGauge().GetValue()
		}
	}
	return out
}

func TestStatusNotMigrated(t *testing.T) {
	cs := pgtest.NewDB(t)
	conn := dial(t, cs)
	if _, err := listen.ReadStatus(context.Background(), conn); !errors.Is(err, listen.ErrNotMigrated) {
		t.Errorf("ReadStatus on an empty database: got %v, want ErrNotMigrated", err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(listen.NewStatusCollector(conn, time.Second, nil))
	if g := gauges(t, reg); len(g) != 0 {
		t.Errorf("metrics on an empty database: got %v, want none (and no scrape error)", g)
	}
}

// TestStatus sets up what two servers would hold, on their own
// connections, and checks what ReadStatus and the collector make of it.
func TestStatus(t *testing.T) {
	ctx := context.Background()
	cs := pgtest.NewDB(t)
	admin := dial(t, cs)
	if _, err := migrations.Up(ctx, admin); err != nil {
		t.Fatal(err)
	}
	mustExec(t, admin, `CREATE TABLE idle (id int); CREATE TABLE hot (id int); CREATE TABLE "Odd Name" (id int);
		CREATE TABLE off (id int); CREATE TABLE unwatched (id int);
		SELECT dashboard.watch(t) FROM unnest('{idle,hot,"\"Odd Name\"",off}'::regclass[]) t;
		ALTER TABLE off DISABLE TRIGGER dashboard_notify`)

	// Server A in slot 0 and server B in slot 1 both want hot.
	cc, err := pgx.ParseConfig(cs)
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = "dashboard feed locks"
	a, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	b := dial(t, cs)
	mustExec(t, a, "SELECT pg_advisory_lock(dashboard.slot_key(0)), pg_advisory_lock(dashboard.feed_key(0, 'hot'::regclass))")
	mustExec(t, b, "SELECT pg_advisory_lock(dashboard.slot_key(1)), pg_advisory_lock(dashboard.feed_key(1, 'hot'::regclass))")

	// The same keys taken in another database are another database's
	// servers: not counted here.
	var hotKey, slot2 int64
	if err := admin.QueryRow(ctx, "SELECT dashboard.feed_key(2, 'hot'::regclass), dashboard.slot_key(2)").Scan(&hotKey, &slot2); err != nil {
		t.Fatal(err)
	}
	other := dial(t, pgtest.NewDB(t))
	mustExec(t, other, "SELECT pg_advisory_lock($1), pg_advisory_lock($2)", slot2, hotKey)

	// A writer to idle skips its notification (nobody wants idle) and stays
	// open, so B's arm of idle waits for it.
	writer := dial(t, cs)
	mustExec(t, writer, "BEGIN; INSERT INTO idle VALUES (1)")
	armed := make(chan error, 1)
	go func() {
		_, err := b.Exec(ctx, "SELECT pg_advisory_lock(dashboard.feed_key(1, 'idle'::regclass))")
		armed <- err
	}()
	deadline := time.Now().Add(waitTimeout)
	for {
		var waiting bool
		if err := admin.QueryRow(ctx, "SELECT EXISTS (SELECT FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1)",
			b.PgConn().PID()).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B's arm of idle does not wait for the writer after %v", waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	st, err := listen.ReadStatus(ctx, admin)
	if err != nil {
		t.Fatal(err)
	}
	if st.Feed != "notify" || st.FeedSlots != 4 {
		t.Errorf("feed: got %q with %d slots, want notify with 4", st.Feed, st.FeedSlots)
	}
	tables := make(map[string]listen.TableStatus)
	for _, ts := range st.Tables {
		tables[ts.Table] = ts
	}
	for _, want := range []listen.TableStatus{
		{Table: "public.idle", Mode: "gated", Waiting: 1},
		{Table: "public.hot", Mode: "gated", Wanted: true, WantedBy: 2},
		{Table: `public."Odd Name"`, Mode: "gated"},
		{Table: "public.off", Mode: "incomplete"},
		{Table: "dashboard.panels", Mode: "always"},
		{Table: "dashboard.dashboards", Mode: "always"},
	} {
		if got, ok := tables[want.Table]; !ok || got != want {
			t.Errorf("table %s: got %+v (listed %t), want %+v", want.Table, got, ok, want)
		}
	}
	if _, ok := tables["public.unwatched"]; ok {
		t.Errorf("public.unwatched is listed; it has no trigger")
	}
	if len(st.Servers) != 2 {
		t.Fatalf("servers: got %+v, want slots 0 and 1", st.Servers)
	}
	for i, want := range []struct {
		pid   uint32
		armed int
	}{{a.PgConn().PID(), 1}, {b.PgConn().PID(), 1}} {
		s := st.Servers[i]
		if s.Slot != i || uint32(s.PID) != want.pid || s.Armed != want.armed || s.BackendStart == nil {
			t.Errorf("server %d: got %+v, want slot %d, pid %d, %d armed, a start time", i, s, i, want.pid, want.armed)
		}
	}
	if got := st.Servers[0].ApplicationName; got != "dashboard feed locks" {
		t.Errorf("server 0 application_name: got %q, want %q", got, "dashboard feed locks")
	}
	if st.QueueUsage < 0 || st.QueueUsage > 1 {
		t.Errorf("queue usage: got %v, want a fraction", st.QueueUsage)
	}
	if st.LogicalSlots == nil || len(st.LogicalSlots) != 0 {
		t.Errorf("logical slots: got %#v, want an empty list", st.LogicalSlots)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(listen.NewStatusCollector(admin, 5*time.Second, nil))
	always := 0
	for _, ts := range st.Tables {
		if ts.Mode == "always" {
			always++
		}
	}
	g := gauges(t, reg)
	for name, want := range map[string]float64{
		"dashboard_feed_watched_tables{mode=gated}":      3,
		"dashboard_feed_watched_tables{mode=always}":     float64(always),
		"dashboard_feed_watched_tables{mode=incomplete}": 1,
		"dashboard_feed_wanted_tables":                   1,
		"dashboard_feed_servers":                         2,
	} {
		if got, ok := g[name]; !ok || got != want {
			t.Errorf("%s: got %v (present %t), want %v", name, got, ok, want)
		}
	}
	if len(g) != 5 {
		t.Errorf("metrics: got %v, want the five above", g)
	}

	// The writer ends: B's arm comes through, and idle is wanted.
	mustExec(t, writer, "COMMIT")
	if err := <-armed; err != nil {
		t.Fatalf("B's arm of idle: %v", err)
	}
	if st, err = listen.ReadStatus(ctx, admin); err != nil {
		t.Fatal(err)
	}
	for _, ts := range st.Tables {
		if ts.Table == "public.idle" && (!ts.Wanted || ts.WantedBy != 1 || ts.Waiting != 0) {
			t.Errorf("idle after the writer ended: got %+v, want wanted by 1, none waiting", ts)
		}
	}
	if st.Servers[1].Armed != 2 {
		t.Errorf("server 1 after arming idle: got %d armed, want 2", st.Servers[1].Armed)
	}
	if g := gauges(t, reg); g["dashboard_feed_wanted_tables"] != 2 {
		t.Errorf("dashboard_feed_wanted_tables after arming idle: got %v, want 2", g["dashboard_feed_wanted_tables"])
	}
}
