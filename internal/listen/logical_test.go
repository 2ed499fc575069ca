package listen_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

// logicalDB returns a fresh migrated database in logical mode with watched
// tables t and s, which a server wants news of (wantNews), and a
// connection to it that the test closes.
func logicalDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	pgtest.RequireLogical(t)
	connString := pgtest.NewDB(t)
	conn := connectDB(t, connString)
	if _, err := migrations.Up(t.Context(), conn); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	execDB(t, conn, `SELECT dashboard.set_feed_mode('logical');
		CREATE TABLE t (id int); SELECT dashboard.watch('t');
		CREATE TABLE s (id int); SELECT dashboard.watch('s')`)
	wantNews(t, connString, "t", "s")
	return connString, conn
}

// wantNews holds, until the test ends, the feed keys of tables in slot 0 on
// a connection of its own, as a server that wants news of them does
// (listen.Arms): the gated triggers send only then.
func wantNews(t *testing.T, connString string, tables ...string) {
	t.Helper()
	holder := connectDB(t, connString)
	for _, table := range tables {
		execDB(t, holder, "SELECT pg_advisory_lock(dashboard.feed_key(0, $1::regclass))", table)
	}
}

func connectDB(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func execDB(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

type logicalFixture struct {
	l    *listen.Logical
	sink *sink
	reg  *prometheus.Registry
	stop func()
}

// runLogical starts a Logical feed on connString and stops it when the test
// ends, checking that Run returns nil promptly. The feed hands over to the
// fixture's sink unless cfg names another.
func runLogical(t *testing.T, connString string, cfg listen.LogicalConfig) *logicalFixture {
	t.Helper()
	f := &logicalFixture{sink: newSink(), reg: prometheus.NewRegistry()}
	cc, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig = cc
	if cfg.Sink == nil {
		cfg.Sink = f.sink
	}
	cfg.Metrics = listen.NewMetrics(f.reg)
	if cfg.BackoffMin == 0 {
		cfg.BackoffMin = 50 * time.Millisecond
	}
	if cfg.BackoffMax == 0 {
		cfg.BackoffMax = 300 * time.Millisecond
	}
	f.l = listen.NewLogical(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.l.Run(ctx) }()
	var once sync.Once
	f.stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("Run: got %v, want nil", err)
				}
			case <-time.After(waitTimeout):
				t.Errorf("Run did not return within %v of cancel", waitTimeout)
			}
			if st, _ := f.l.State(); st.Listening || f.l.Ready() == nil {
				t.Errorf("state after Run returned: got %+v, ready %v, want not streaming", st, f.l.Ready())
			}
		})
	}
	t.Cleanup(f.stop)
	return f
}

// slots lists the replication slots of the feed on the database of conn.
func slots(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(context.Background(), `SELECT slot_name || ' ' || slot_type || ' ' || plugin
		|| CASE WHEN temporary THEN ' temporary' ELSE '' END || CASE WHEN active THEN ' active' ELSE '' END
		FROM pg_replication_slots WHERE database = current_database() AND starts_with(slot_name, $1) ORDER BY 1`, listen.SlotPrefix)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// waitSlots waits until the feed's slots on the database are want: a slot
// is dropped by its walsender as it exits, a moment after the connection
// closed.
func waitSlots(t *testing.T, conn *pgx.Conn, want []string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		got := slots(t, conn)
		if slices.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("replication slots: got %q, want %q", got, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLogicalFeed: the feed streams the triggers' messages of committed
// transactions (not of aborted ones) from a temporary pgoutput slot,
// reports its flush position, resyncs after a killed walsender on a new
// slot, and leaves no slot behind when it stops.
func TestLogicalFeed(t *testing.T) {
	t.Parallel()
	connString, conn := logicalDB(t)
	f := runLogical(t, connString, listen.LogicalConfig{StatusInterval: 100 * time.Millisecond})
	st := waitListening(t, f.l, 1)
	f.sink.waitFor(t, "the first resync", func() bool { return f.sink.resyncs == 1 })
	if err := f.l.Ready(); err != nil {
		t.Errorf("Ready while streaming: got %v, want nil", err)
	}
	want := []string{fmt.Sprintf("%s%d logical pgoutput temporary active", listen.SlotPrefix, st.BackendPID)}
	if got := slots(t, conn); !slices.Equal(got, want) || st.Slot != listen.SlotPrefix+fmt.Sprint(st.BackendPID) {
		t.Errorf("slots while streaming: got %q (state %q), want %q", got, st.Slot, want)
	}

	execDB(t, conn, "INSERT INTO t VALUES (1)")
	execDB(t, conn, "BEGIN; INSERT INTO t VALUES (2); ROLLBACK")
	execDB(t, conn, "INSERT INTO s VALUES (1); INSERT INTO t VALUES (3)")
	execDB(t, conn, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('x', 'x')")
	f.sink.waitTable(t, "dashboard.dashboards")
	f.sink.mu.Lock()
	got := slices.Clone(f.sink.tables)
	f.sink.mu.Unlock()
	if want := []string{"public.t", "public.s", "public.t", "dashboard.dashboards"}; !slices.Equal(got, want) {
		t.Errorf("tables handed over: got %q, want %q (in commit order, none of the rollback)", got, want)
	}
	if got := metric(t, f.reg, "dashboard_notifications_total"); got != 4 {
		t.Errorf("notifications_total: got %v, want 4", got)
	}

	// The flush position is reported: the slot confirms everything the
	// sink was handed, so the server may recycle that WAL.
	var lsn string
	if err := conn.QueryRow(context.Background(), "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		var confirmed bool
		if err := conn.QueryRow(context.Background(),
			"SELECT confirmed_flush_lsn >= $1::pg_lsn FROM pg_replication_slots WHERE slot_name = $2", lsn, st.Slot).Scan(&confirmed); err != nil {
			t.Fatal(err)
		}
		if confirmed {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("slot %s did not confirm %s within %v", st.Slot, lsn, waitTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Killing the walsender ends the slot; the feed comes back on a new
	// one and resyncs.
	execDB(t, conn, "SELECT pg_terminate_backend($1)", int32(st.BackendPID))
	st2 := waitListening(t, f.l, 2)
	f.sink.waitFor(t, "the resync after the reconnect", func() bool { return f.sink.resyncs == 2 })
	if st2.BackendPID == st.BackendPID || st2.Slot == st.Slot {
		t.Errorf("after the reconnect: got %+v, want a new walsender and slot (was %+v)", st2, st)
	}
	waitSlots(t, conn, []string{st2.Slot + " logical pgoutput temporary active"})
	execDB(t, conn, "INSERT INTO s VALUES (2)")
	f.sink.waitFor(t, "s after the reconnect", func() bool { return len(f.sink.tables) == 5 && f.sink.tables[4] == "public.s" })
	if got := metric(t, f.reg, "dashboard_listener_reconnects_total"); got != 1 {
		t.Errorf("reconnects_total: got %v, want 1", got)
	}

	// A stopped server retains no WAL: its temporary slot is gone by the
	// time Run returns.
	f.stop()
	if got := slots(t, conn); len(got) != 0 {
		t.Errorf("slots after Run returned: got %q, want none", got)
	}
}

// TestLogicalGateConnectionKilled: the visibility gate's connection dies.
// The next decoded commit finds it dead; the session ends (the commit held
// is dropped), and the feed comes back on a new slot and resyncs, which
// covers that commit, then hands over commits again.
func TestLogicalGateConnectionKilled(t *testing.T) {
	t.Parallel()
	connString, conn := logicalDB(t)
	f := runLogical(t, connString, listen.LogicalConfig{})
	st := waitListening(t, f.l, 1)
	f.sink.waitFor(t, "the first resync", func() bool { return f.sink.resyncs == 1 })
	var pid int32
	if err := conn.QueryRow(t.Context(), `SELECT pid FROM pg_stat_activity
		WHERE application_name = 'dashboard logical feed snapshots' AND datname = current_database()`).Scan(&pid); err != nil {
		t.Fatalf("finding the gate's connection: %v", err)
	}
	execDB(t, conn, "SELECT pg_terminate_backend($1)", pid)
	execDB(t, conn, "INSERT INTO t VALUES (0)")
	st2 := waitListening(t, f.l, 2)
	if st2.Slot == st.Slot {
		t.Errorf("after the gate's connection died: slot %s, want a new one", st2.Slot)
	}
	f.sink.waitFor(t, "the resync after the reconnect", func() bool { return f.sink.resyncs == 2 })
	execDB(t, conn, "INSERT INTO t VALUES (1)")
	f.sink.waitTable(t, "public.t")
}

// TestLogicalSlotWaitsForOpenTransaction: creating the slot waits for a
// transaction that is open; past SlotWait the feed says so and resyncs
// periodically, and streams once the transaction ends. Not parallel: the
// open transaction would hold up the slots of the package's other tests.
func TestLogicalSlotWaitsForOpenTransaction(t *testing.T) {
	connString, conn := logicalDB(t)
	open := connectDB(t, connString)
	execDB(t, open, "BEGIN; CREATE TABLE busy (id int); INSERT INTO busy VALUES (1)")

	f := runLogical(t, connString, listen.LogicalConfig{SlotWait: 200 * time.Millisecond, PollInterval: 50 * time.Millisecond})
	f.sink.waitFor(t, "periodic resyncs while the slot waits", func() bool { return f.sink.resyncs >= 3 })
	if err := f.l.Ready(); err == nil || err.Error() != "creating replication slot: waiting for open transactions" {
		t.Errorf("Ready while the slot waits: got %v, want \"creating replication slot: waiting for open transactions\"", err)
	}
	if st, _ := f.l.State(); st.Listening {
		t.Fatalf("streaming with a transaction open from before the slot: %+v", st)
	}

	execDB(t, open, "COMMIT")
	waitListening(t, f.l, 1)
	execDB(t, conn, "INSERT INTO t VALUES (1)")
	f.sink.waitTable(t, "public.t")
	if err := f.l.Ready(); err != nil {
		t.Errorf("Ready once streaming: got %v, want nil", err)
	}
}

// TestCheckLogical: a database that cannot do logical mode gets an error
// naming what to change, from CheckLogical (which serve calls at start) and
// from a running feed's Ready.
func TestCheckLogical(t *testing.T) {
	t.Parallel()
	pgtest.RequireLogical(t)
	check := func(t *testing.T, connString string, wants ...string) {
		t.Helper()
		cc, err := pgx.ParseConfig(connString)
		if err != nil {
			t.Fatal(err)
		}
		err = listen.CheckLogical(t.Context(), cc)
		if err == nil {
			t.Fatalf("CheckLogical: got nil, want an error naming %q", wants)
		}
		for _, w := range wants {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("CheckLogical: got %q, want it to name %q", err, w)
			}
		}
		// A running feed says the same in Ready, and retries.
		f := runLogical(t, connString, listen.LogicalConfig{})
		deadline := time.Now().Add(waitTimeout)
		for {
			err := f.l.Ready()
			if err != nil && strings.Contains(err.Error(), wants[0]) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("Ready of a running feed: got %v, want it to name %q", err, wants[0])
			}
			time.Sleep(5 * time.Millisecond)
		}
	}

	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		connString, _ := logicalDB(t)
		cc, err := pgx.ParseConfig(connString)
		if err != nil {
			t.Fatal(err)
		}
		if err := listen.CheckLogical(t.Context(), cc); err != nil {
			t.Errorf("CheckLogical: got %v, want nil", err)
		}
	})
	t.Run("not migrated", func(t *testing.T) {
		t.Parallel()
		check(t, pgtest.NewDB(t), "dashboard migrate")
	})
	t.Run("notify mode", func(t *testing.T) {
		t.Parallel()
		connString, conn := logicalDB(t)
		execDB(t, conn, "SELECT dashboard.set_feed_mode('notify')")
		check(t, connString, "dashboard feed logical", "DASHBOARD_FEED=notify")
	})
	t.Run("no publication", func(t *testing.T) {
		t.Parallel()
		connString, conn := logicalDB(t)
		execDB(t, conn, "DROP PUBLICATION "+listen.Publication)
		check(t, connString, "CREATE PUBLICATION "+listen.Publication)
	})
	t.Run("role without REPLICATION", func(t *testing.T) {
		t.Parallel()
		if os.Getenv("TEST_DATABASE_URL") != "" {
			t.Skip("creates a role on the package's own server")
		}
		connString, conn := logicalDB(t)
		role := fmt.Sprintf("feed_noreplication_%d", time.Now().UnixNano())
		execDB(t, conn, "CREATE ROLE "+role+" LOGIN NOREPLICATION")
		t.Cleanup(func() { _, _ = conn.Exec(context.Background(), "DROP ROLE "+role) })
		check(t, connString+" user="+role, "ALTER ROLE \""+role+"\" REPLICATION", "DASHBOARD_FEED=notify")
	})
}

// ownServer starts a PostgreSQL of the test's own with extra settings, for
// what the package's server must not be: wal_level=replica, or too few
// slots.
func ownServer(t *testing.T, conf map[string]string) *pgserver.Server {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a PostgreSQL of its own")
	}
	if _, err := pgserver.Find(); err != nil {
		t.Skip(err)
	}
	dir, err := os.MkdirTemp("", "pglr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	// The data folder's parent must be enterable by the postgres user when
	// the tests run as root.
	if err := os.Chmod(dir, 0o711); err != nil {
		t.Fatal(err)
	}
	s, err := pgserver.Start(t.Context(), pgserver.Options{Dir: filepath.Join(dir, "d"), ExtraConf: conf})
	if err != nil {
		t.Fatalf("starting PostgreSQL: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("stopping PostgreSQL: %v", err)
		}
	})
	if err := s.CreateDatabase(t.Context(), "dashboard"); err != nil {
		t.Fatal(err)
	}
	conn := connectDB(t, s.ConnString("dashboard"))
	if _, err := migrations.Up(t.Context(), conn); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	return s
}

// TestLogicalNeedsWalLevel: on a server with wal_level=replica logical mode
// can be neither switched on nor used, and both say which setting to
// change and that it takes a restart.
func TestLogicalNeedsWalLevel(t *testing.T) {
	t.Parallel()
	s := ownServer(t, map[string]string{"wal_level": "replica"})
	conn := connectDB(t, s.ConnString("dashboard"))
	_, err := conn.Exec(t.Context(), "SELECT dashboard.set_feed_mode('logical')")
	if err == nil || !strings.Contains(err.Error(), "wal_level = logical") {
		t.Errorf("set_feed_mode('logical') at wal_level=replica: got %v, want an error naming wal_level = logical", err)
	}
	cc, err := pgx.ParseConfig(s.ConnString("dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	err = listen.CheckLogical(t.Context(), cc)
	for _, w := range []string{"wal_level is replica", "ALTER SYSTEM SET wal_level = logical", "restart PostgreSQL"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("CheckLogical at wal_level=replica: got %v, want it to name %q", err, w)
		}
	}
}

// TestLogicalRefusesSyncStandby: where synchronous_standby_names would make
// the feed's walsender a synchronous standby ('*'), logical mode refuses
// and names the setting, rather than make every commit wait for it.
func TestLogicalRefusesSyncStandby(t *testing.T) {
	t.Parallel()
	s := ownServer(t, map[string]string{"synchronous_standby_names": "*", "synchronous_commit": "local"})
	conn := connectDB(t, s.ConnString("dashboard"))
	execDB(t, conn, "SELECT dashboard.set_feed_mode('logical')")
	cc, err := pgx.ParseConfig(s.ConnString("dashboard"))
	if err != nil {
		t.Fatal(err)
	}
	err = listen.CheckLogical(t.Context(), cc)
	for _, w := range []string{"synchronous_standby_names = '*'", "dashboard logical feed", "DASHBOARD_FEED=notify"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("CheckLogical with synchronous_standby_names='*': got %v, want it to name %q", err, w)
		}
	}
}

// TestLogicalSlotsExhausted: with every replication slot or walsender
// taken, the feed says which setting to raise, and streams once one is
// free.
func TestLogicalSlotsExhausted(t *testing.T) {
	t.Parallel()
	s := ownServer(t, map[string]string{"max_replication_slots": "1", "max_wal_senders": "1"})
	connString := s.ConnString("dashboard")
	conn := connectDB(t, connString)
	execDB(t, conn, "SELECT dashboard.set_feed_mode('logical')")

	// A slot held by an SQL session takes the only one.
	holder := connectDB(t, connString)
	execDB(t, holder, "SELECT pg_create_logical_replication_slot('other', 'test_decoding', true)")
	f := runLogical(t, connString, listen.LogicalConfig{})
	waitReady(t, f.l, "max_replication_slots")
	holder.Close(t.Context())
	waitListening(t, f.l, 1)

	// Now the feed holds the only walsender: a second feed cannot start.
	cc, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	if err := listen.CheckLogical(t.Context(), cc); err == nil || !strings.Contains(err.Error(), "max_wal_senders") {
		t.Errorf("CheckLogical with every walsender taken: got %v, want an error naming max_wal_senders", err)
	}
}

// waitReady waits until the feed's Ready names want.
func waitReady(t *testing.T, l *listen.Logical, want string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		err := l.Ready()
		if err != nil && strings.Contains(err.Error(), want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ready: got %v, want it to name %q", err, want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// countingSink reads count(*) of a table whenever the feed says it
// changed, as a refresh would, and keeps the last count read.
type countingSink struct {
	*sink
	conn  *pgx.Conn
	table string

	mu    sync.Mutex
	count int64
	reads int
}

func (c *countingSink) TableChanged(table string, at time.Time) {
	if table == "public."+c.table {
		c.read()
	}
	c.sink.TableChanged(table, at)
}

func (c *countingSink) Resync() {
	c.read()
	c.sink.Resync()
}

func (c *countingSink) read() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.conn.QueryRow(context.Background(), "SELECT count(*) FROM "+c.table).Scan(&c.count); err != nil {
		c.count = -1
	}
	c.reads++
}

func (c *countingSink) last() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.count, c.reads
}

// TestLogicalWaitsUntilVisible: a walsender sends a transaction once its
// commit record is flushed, before the transaction is visible to other
// sessions; here a synchronous standby that never answers keeps it in
// between. The feed hands the table over only once a new snapshot sees the
// transaction, so the reader counts the new row. Handing it over at once
// (FaultNoVisibilityWait) leaves the reader with the old count for good:
// that loss is what the no-loss test caught once in eight runs.
func TestLogicalWaitsUntilVisible(t *testing.T) {
	t.Parallel()
	// Commits wait for the standby only where a session asks for it.
	s := ownServer(t, map[string]string{"synchronous_standby_names": "nobody", "synchronous_commit": "local"})
	connString := s.ConnString("dashboard")
	conn := connectDB(t, connString)
	execDB(t, conn, `SELECT dashboard.set_feed_mode('logical');
		CREATE TABLE other (id int); SELECT dashboard.watch('other')`)
	wantNews(t, connString, "other")

	for _, tc := range []struct {
		name  string
		fault listen.Fault
		want  int64
	}{
		{"waits", listen.NoFault, 1},
		{"fault: hands over at once", listen.FaultNoVisibilityWait, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("t%d", tc.fault)
			execDB(t, conn, fmt.Sprintf("CREATE TABLE %s (id int); SELECT dashboard.watch('%s')", table, table))
			wantNews(t, connString, table)
			cs := &countingSink{sink: newSink(), conn: connectDB(t, connString), table: table}
			f := runLogical(t, connString, listen.LogicalConfig{Fault: tc.fault, Sink: cs})
			waitListening(t, f.l, 1)
			cs.waitFor(t, "the first resync", func() bool { return cs.sink.resyncs == 1 })

			writer := connectDB(t, connString)
			var writerPID int32
			if err := writer.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&writerPID); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := writer.Exec(context.Background(), "SET synchronous_commit = on; INSERT INTO "+table+" VALUES (1)")
				done <- err
			}()
			// The commit is flushed and waits for the standby.
			waitRow(t, conn, "SELECT coalesce(wait_event = 'SyncRep', false) FROM pg_stat_activity WHERE pid = $1", writerPID)
			if tc.fault == listen.NoFault {
				// Decoded and held back, not handed over.
				waitMetric(t, f.reg, "dashboard_feed_commits_held_total", 1)
				if n, _ := cs.last(); n != 0 {
					t.Fatalf("count read while the commit is not visible: got %d, want 0", n)
				}
			} else {
				cs.waitTable(t, "public."+table)
			}
			execDB(t, conn, "SELECT pg_cancel_backend($1)", writerPID)
			if err := <-done; err != nil {
				t.Fatalf("writer: %v", err)
			}
			// A later commit to another table: once it is handed over,
			// the feed has handed over everything before it.
			execDB(t, conn, "INSERT INTO other VALUES (1)")
			cs.waitFor(t, "the later commit", func() bool {
				return slices.Contains(cs.sink.tables, "public.other") && slices.Contains(cs.sink.tables, "public."+table)
			})
			if n, _ := cs.last(); n != tc.want {
				t.Errorf("last count of %s: got %d, want %d", table, n, tc.want)
			}
		})
	}
}

// waitRow waits until query (one boolean) answers true.
func waitRow(t *testing.T, conn *pgx.Conn, query string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var ok bool
		err := conn.QueryRow(context.Background(), query, args...).Scan(&ok)
		if err != nil && !errors.Is(err, pgx.ErrNoRows) {
			t.Fatal(err)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still false after %v", query, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitMetric waits until the counter name reaches at least min.
func waitMetric(t *testing.T, reg *prometheus.Registry, name string, min float64) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for metric(t, reg, name) < min {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still below %v after %v", name, min, waitTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestLogicalResyncsAfterRunningEnd: a transaction whose commit record comes
// just before the new slot's consistent point, but which is not visible yet
// (it waits for a synchronous standby that never answers), is neither
// streamed nor seen by the first resync: the snapshot builder waits only for
// transactions that began before its previous running-transactions record.
// The feed resyncs again once the transactions running at the first resync
// have ended; without that (FaultNoRunningResync) the update is lost.
func TestLogicalResyncsAfterRunningEnd(t *testing.T) {
	t.Parallel()
	s := ownServer(t, map[string]string{"synchronous_standby_names": "nobody", "synchronous_commit": "local"})
	connString := s.ConnString("dashboard")
	conn := connectDB(t, connString)
	execDB(t, conn, "SELECT dashboard.set_feed_mode('logical')")
	for _, tc := range []struct {
		name  string
		fault listen.Fault
		lost  bool
	}{
		{"resyncs again", listen.NoFault, false},
		{"fault: resyncs once", listen.FaultNoRunningResync, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			table := fmt.Sprintf("r%d", tc.fault)
			execDB(t, conn, fmt.Sprintf("CREATE TABLE %s (id int); SELECT dashboard.watch('%s')", table, table))
			wantNews(t, connString, table)
			walsenderWaitsFor := func(xid string) {
				t.Helper()
				waitRow(t, conn, `SELECT EXISTS (SELECT FROM pg_locks l JOIN pg_stat_activity a USING (pid)
					WHERE a.backend_type = 'walsender' AND l.locktype = 'transactionid' AND NOT l.granted
					  AND l.transactionid::text = $1)`, xid)
			}
			begin := func() (*pgx.Conn, string) {
				t.Helper()
				c := connectDB(t, connString)
				execDB(t, c, "BEGIN")
				var xid string
				if err := c.QueryRow(t.Context(), "SELECT (pg_current_xact_id()::text::bigint % 4294967296)::text").Scan(&xid); err != nil {
					t.Fatal(err)
				}
				return c, xid
			}

			// O is open while the slot is created: the builder waits for it.
			o, oxid := begin()
			cs := &countingSink{sink: newSink(), conn: connectDB(t, connString), table: table}
			f := runLogical(t, connString, listen.LogicalConfig{Sink: cs, SlotWait: time.Minute, Fault: tc.fault})
			walsenderWaitsFor(oxid)
			// P begins before the builder's next running-transactions
			// record, which will list it: the builder waits for P next.
			p, pxid := begin()
			execDB(t, o, "COMMIT")
			walsenderWaitsFor(pxid)
			// T begins after that record, so the builder never waits for
			// it; its commit is flushed and waits for the standby.
			writer := connectDB(t, connString)
			var writerPID int32
			if err := writer.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&writerPID); err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() {
				_, err := writer.Exec(context.Background(), "SET synchronous_commit = on; INSERT INTO "+table+" VALUES (1)")
				done <- err
			}()
			waitRow(t, conn, "SELECT coalesce(wait_event = 'SyncRep', false) FROM pg_stat_activity WHERE pid = $1", writerPID)
			// P ends: the slot is consistent after T's commit record.
			execDB(t, p, "COMMIT")
			waitListening(t, f.l, 1)
			cs.waitFor(t, "the first resync", func() bool { return cs.sink.resyncs >= 1 })
			if n, _ := cs.last(); n != 0 {
				t.Fatalf("count read by the first resync: got %d, want 0 (T is not visible yet)", n)
			}
			// T becomes visible.
			execDB(t, conn, "SELECT pg_cancel_backend($1)", writerPID)
			if err := <-done; err != nil {
				t.Fatalf("writer: %v", err)
			}
			if !tc.lost {
				cs.waitFor(t, "the resync once T ended", func() bool { return cs.sink.resyncs >= 2 })
			} else {
				// A later commit to another table: once the sink saw it, the
				// feed has handed over everything before it.
				later := "later_" + table
				execDB(t, conn, fmt.Sprintf("CREATE TABLE %s (id int); SELECT dashboard.watch('%s')", later, later))
				wantNews(t, connString, later)
				execDB(t, conn, "INSERT INTO "+later+" VALUES (1)")
				cs.waitTable(t, "public."+later)
			}
			n, _ := cs.last()
			if lost := n != 1; lost != tc.lost {
				t.Errorf("last count of %s: got %d (committed 1); lost %v, want %v", table, n, lost, tc.lost)
			}
		})
	}
}
