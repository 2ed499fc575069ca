package migrations

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// connect opens a connection that the test closes when it ends.
func connect(t *testing.T, connString string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func exec(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// migratedDB returns a fresh database with every migration applied.
func migratedDB(t *testing.T) string {
	t.Helper()
	connString := pgtest.NewDB(t)
	if _, err := Up(t.Context(), connect(t, connString)); err != nil {
		t.Fatalf("Up: %v", err)
	}
	return connString
}

// feed is a migrated database with a writer, a LISTEN connection, and a
// server connection that arms tables the way a dashboard server does.
type feed struct {
	connString string
	writer     *pgx.Conn
	listener   *pgx.Conn
	server     *pgx.Conn // holds feed keys (session advisory locks), like a server's feed connection
	seq        atomic.Int64
}

func newFeed(t *testing.T) *feed {
	t.Helper()
	return feedOn(t, migratedDB(t))
}

// feedOn is newFeed on a database the caller prepared.
func feedOn(t *testing.T, connString string) *feed {
	t.Helper()
	f := &feed{
		connString: connString,
		writer:     connect(t, connString),
		listener:   connect(t, connString),
		server:     connect(t, connString),
	}
	exec(t, f.listener, "LISTEN dashboard")
	return f
}

// arm makes the tables wanted, as a server in slot 0 does before it queries
// them: it takes each table's feed key (session lock, exclusive) on the
// server connection and holds it until disarm or the end of the test. Taking
// a key waits for every writer that skipped its notification, so arm is
// bounded.
func (f *feed) arm(t *testing.T, tables ...string) { f.armSlot(t, 0, tables...) }

func (f *feed) armSlot(t *testing.T, slot int, tables ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for _, table := range tables {
		if _, err := f.server.Exec(ctx, "SELECT pg_advisory_lock(dashboard.feed_key($1, $2::regclass))", slot, table); err != nil {
			t.Fatalf("arming %s in slot %d: %v", table, slot, err)
		}
	}
}

// disarm releases what armSlot took; each key must have been held.
func (f *feed) disarm(t *testing.T, slot int, tables ...string) {
	t.Helper()
	for _, table := range tables {
		var held bool
		if err := f.server.QueryRow(t.Context(), "SELECT pg_advisory_unlock(dashboard.feed_key($1, $2::regclass))", slot, table).Scan(&held); err != nil {
			t.Fatalf("disarming %s in slot %d: %v", table, slot, err)
		}
		if !held {
			t.Fatalf("disarming %s in slot %d: the server did not hold its feed key", table, slot)
		}
	}
}

// userTables names every ordinary and partitioned table outside the system
// and dashboard schemas (temporary tables excluded), for tests that arm all.
func userTables(t *testing.T, conn *pgx.Conn) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT c.oid::regclass::text
		FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
		WHERE c.relkind IN ('r', 'p') AND n.nspname NOT LIKE 'pg\_%' AND n.nspname NOT IN ('information_schema', 'dashboard')
		ORDER BY 1`)
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("listing tables: %v", err)
	}
	return tables
}

// notifications returns the payloads delivered on channel dashboard since the
// previous call, in order. The writer sends a sentinel in a transaction of its
// own; notifications are delivered in commit order, so everything committed
// before has arrived once the sentinel has, and counts are exact without
// sleeping.
func (f *feed) notifications(t *testing.T) []string {
	t.Helper()
	sentinel := fmt.Sprintf("sentinel-%d", f.seq.Add(1))
	exec(t, f.writer, "SELECT pg_notify('dashboard', $1)", sentinel)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	got := []string{}
	for {
		n, err := f.listener.WaitForNotification(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v (received before: %q)", sentinel, err, got)
		}
		if n.Channel != "dashboard" {
			t.Fatalf("got notification on channel %q, want dashboard", n.Channel)
		}
		if n.Payload == sentinel {
			return got
		}
		got = append(got, n.Payload)
	}
}

// reload is the payload watch and unwatch send when they change triggers:
// servers reload their catalogs on it.
const reload = "dashboard.panels"

// notifyTriggers names the triggers on table that dashboard.watch and
// unwatch own (dashboard_notify and the old dashboard_notify_*), sorted.
func notifyTriggers(t *testing.T, conn *pgx.Conn, table string) []string {
	t.Helper()
	rows, err := conn.Query(t.Context(),
		`SELECT tgname::text FROM pg_trigger WHERE tgrelid = $1::regclass AND tgname LIKE 'dashboard\_notify%' ORDER BY 1`,
		table)
	if err != nil {
		t.Fatalf("listing triggers on %s: %v", table, err)
	}
	names, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("listing triggers on %s: %v", table, err)
	}
	return names
}

var (
	gatedTriggers  = []string{"dashboard_notify"}
	alwaysTriggers = []string{"dashboard_notify_delete", "dashboard_notify_insert", "dashboard_notify_truncate", "dashboard_notify_update"}
)

// triggerMode is dashboard.trigger_mode(table), "" for NULL.
func triggerMode(t *testing.T, conn *pgx.Conn, table string) string {
	t.Helper()
	var mode *string
	if err := conn.QueryRow(t.Context(), "SELECT dashboard.trigger_mode($1::regclass)", table).Scan(&mode); err != nil {
		t.Fatalf("trigger_mode(%s): %v", table, err)
	}
	if mode == nil {
		return ""
	}
	return *mode
}

// installOldTriggers puts the four always-notifying triggers of 0002 on
// table, as dashboard.watch did before 0005.
func installOldTriggers(t *testing.T, conn *pgx.Conn, table string) {
	t.Helper()
	exec(t, conn, fmt.Sprintf(`
		CREATE TRIGGER dashboard_notify_insert AFTER INSERT ON %[1]s
			REFERENCING NEW TABLE AS dashboard_new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_new_rows();
		CREATE TRIGGER dashboard_notify_update AFTER UPDATE ON %[1]s
			REFERENCING NEW TABLE AS dashboard_new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_new_rows();
		CREATE TRIGGER dashboard_notify_delete AFTER DELETE ON %[1]s
			REFERENCING OLD TABLE AS dashboard_old_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_old_rows();
		CREATE TRIGGER dashboard_notify_truncate AFTER TRUNCATE ON %[1]s
			FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_statement();`, table))
}

func isWatched(t *testing.T, conn *pgx.Conn, table string) bool {
	t.Helper()
	var watched bool
	if err := conn.QueryRow(t.Context(), "SELECT dashboard.is_watched($1::regclass)", table).Scan(&watched); err != nil {
		t.Fatalf("is_watched(%s): %v", table, err)
	}
	return watched
}

// TestNotify runs each case's statements twice: first with no server
// wanting news of the tables (no notification at all), then with every user
// table armed (the notifications a server receives). The gated trigger is a
// plain statement trigger: it keeps no transition table, so a statement that
// changes no row notifies too when the table is wanted (a spare refresh);
// only a rollback sends nothing.
func TestNotify(t *testing.T) {
	t.Parallel()
	const watched = `CREATE TABLE t (id int, v text);
		INSERT INTO t SELECT i, 'x' FROM generate_series(1, 3) i;
		SELECT dashboard.watch('t');`
	tests := []struct {
		name  string
		setup string
		stmts []string
		want  []string // when armed
	}{
		{"update matching zero rows", watched, []string{"UPDATE t SET v = 'y' WHERE id < 0"}, []string{"public.t"}},
		{"delete matching zero rows", watched, []string{"DELETE FROM t WHERE id < 0"}, []string{"public.t"}},
		{"insert of zero rows", watched, []string{"INSERT INTO t SELECT 1, 'x' WHERE false"}, []string{"public.t"}},
		{"insert of one row", watched, []string{"INSERT INTO t VALUES (4, 'x')"}, []string{"public.t"}},
		{"insert of 10000 rows", watched,
			[]string{"INSERT INTO t SELECT i, 'x' FROM generate_series(1, 10000) i"}, []string{"public.t"}},
		{"update of rows", watched, []string{"UPDATE t SET v = 'y'"}, []string{"public.t"}},
		{"update setting the same values", watched, []string{"UPDATE t SET v = v"}, []string{"public.t"}},
		{"delete of rows", watched, []string{"DELETE FROM t WHERE id <= 2"}, []string{"public.t"}},
		{"truncate", watched, []string{"TRUNCATE t"}, []string{"public.t"}},
		{"upsert", watched + "ALTER TABLE t ADD PRIMARY KEY (id);",
			[]string{"INSERT INTO t VALUES (1, 'z') ON CONFLICT (id) DO UPDATE SET v = excluded.v"}, []string{"public.t"}},
		{"100 statements in one transaction", watched,
			slices.Concat([]string{"BEGIN"}, slices.Repeat([]string{"INSERT INTO t VALUES (5, 'x')", "UPDATE t SET v = 'y'", "DELETE FROM t WHERE id = 5", "UPDATE t SET v = 'z' WHERE id < 0"}, 25), []string{"COMMIT"}),
			[]string{"public.t"}},
		{"statements in two transactions", watched,
			[]string{"INSERT INTO t VALUES (5, 'x')", "DELETE FROM t WHERE id = 5"}, []string{"public.t", "public.t"}},
		{"rolled back transaction", watched,
			[]string{"BEGIN", "INSERT INTO t VALUES (5, 'x')", "TRUNCATE t", "ROLLBACK"}, nil},
		{"rolled back savepoint", watched,
			[]string{"BEGIN", "SAVEPOINT s", "INSERT INTO t VALUES (5, 'x')", "ROLLBACK TO SAVEPOINT s", "COMMIT"}, nil},
		{"two tables in one transaction", watched + "CREATE TABLE u (id int); SELECT dashboard.watch('u');",
			[]string{"BEGIN", "INSERT INTO u VALUES (1)", "INSERT INTO t VALUES (5, 'x')", "INSERT INTO u VALUES (2)", "COMMIT"},
			[]string{"public.u", "public.t"}},
		{"table that is not watched", "CREATE TABLE t (id int)",
			[]string{"INSERT INTO t VALUES (1)", "TRUNCATE t"}, nil},
		{"name that needs quotes",
			`CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."order items" (id int); SELECT dashboard.watch('"Sales"."order items"');`,
			[]string{`INSERT INTO "Sales"."order items" VALUES (1)`}, []string{`"Sales"."order items"`}},
		{"name with a dot and a quote",
			`CREATE SCHEMA "a.b"; CREATE TABLE "a.b"."it""s" (id int); SELECT dashboard.watch('"a.b"."it""s"');`,
			[]string{`INSERT INTO "a.b"."it""s" VALUES (1)`}, []string{`"a.b"."it""s"`}},
		{"schema outside the search path",
			"CREATE SCHEMA other; CREATE TABLE other.t (id int); SELECT dashboard.watch('other.t');",
			[]string{"INSERT INTO other.t VALUES (1)"}, []string{"other.t"}},
		{"inheritance child",
			"CREATE TABLE base (id int); CREATE TABLE child () INHERITS (base); SELECT dashboard.watch('child');",
			[]string{"INSERT INTO child VALUES (1)", "UPDATE base SET id = 2"}, []string{"public.child"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newFeed(t)
			exec(t, f.writer, tt.setup)
			for _, n := range f.notifications(t) {
				if n != reload {
					t.Fatalf("setup: got notification %q, want none but %q (from watch)", n, reload)
				}
			}
			for _, s := range tt.stmts {
				exec(t, f.writer, s)
			}
			if got := f.notifications(t); len(got) != 0 {
				t.Errorf("no table wanted: got notifications %q, want none", got)
			}
			tables := userTables(t, f.writer)
			if len(tables) == 0 {
				t.Fatal("setup created no table to arm")
			}
			f.arm(t, tables...)
			for _, s := range tt.stmts {
				exec(t, f.writer, s)
			}
			if got := f.notifications(t); !slices.Equal(got, tt.want) {
				t.Errorf("%q armed: got notifications %q, want %q", tables, got, tt.want)
			}
		})
	}
}

// TestNotifyDashboardTables checks that the migration watches its own tables,
// so editing a panel updates every open screen. They always notify: no server
// arms anything here. Their triggers still skip statements that change no
// row, through transition tables that temporary tables of the same names
// must not shadow.
func TestNotifyDashboardTables(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, `CREATE TEMP TABLE dashboard_new_rows (id int); CREATE TEMP TABLE dashboard_old_rows (id int);
		INSERT INTO dashboard_new_rows VALUES (1); INSERT INTO dashboard_old_rows VALUES (1)`)
	steps := []struct {
		sql  string
		want []string
	}{
		{"INSERT INTO dashboard.dashboards (slug, title) VALUES ('ops', 'Ops')", []string{"dashboard.dashboards"}},
		{`INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql)
		  SELECT id, 'orders', 'Orders', 'stat', 'SELECT 1' FROM dashboard.dashboards`, []string{"dashboard.panels"}},
		{"UPDATE dashboard.panels SET title = 'Orders today'", []string{"dashboard.panels"}},
		{"UPDATE dashboard.panels SET title = 'x' WHERE false", nil},
		{"DELETE FROM dashboard.panels WHERE false", nil},
		{"INSERT INTO dashboard.dashboards (slug, title) SELECT slug, title FROM dashboard.dashboards WHERE false", nil},
		{"INSERT INTO dashboard.access_tokens (token_hash, label) VALUES (sha256('secret'), 'kiosk')", []string{"dashboard.access_tokens"}},
		{"INSERT INTO dashboard.access_tokens (token_hash, label, dashboard_id) SELECT sha256('other'), 'tv', id FROM dashboard.dashboards", []string{"dashboard.access_tokens"}},
		{"DELETE FROM dashboard.access_tokens WHERE dashboard_id IS NULL", []string{"dashboard.access_tokens"}},
		// The cascade deletes the panel and the token: every table notifies.
		{"DELETE FROM dashboard.dashboards", []string{"dashboard.access_tokens", "dashboard.dashboards", "dashboard.panels"}},
		{"DELETE FROM dashboard.panels", nil},
	}
	for _, s := range steps {
		exec(t, f.writer, s.sql)
		got := f.notifications(t)
		slices.Sort(got)
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: got notifications %q, want %q", s.sql, got, s.want)
		}
	}
	for _, table := range []string{"dashboard.dashboards", "dashboard.panels", "dashboard.access_tokens"} {
		if !isWatched(t, f.writer, table) {
			t.Errorf("is_watched(%s): got false, want true", table)
		}
		if got := triggerMode(t, f.writer, table); got != "always" {
			t.Errorf("trigger_mode(%s): got %q, want always", table, got)
		}
		if got := notifyTriggers(t, f.writer, table); !slices.Equal(got, alwaysTriggers) {
			t.Errorf("%s: got triggers %q, want %q", table, got, alwaysTriggers)
		}
	}
}

func TestWatchTwice(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int)")
	exec(t, f.writer, "SELECT dashboard.watch('t')")
	exec(t, f.writer, "SELECT dashboard.watch('t')")
	exec(t, f.writer, "SELECT dashboard.watch('t'), dashboard.watch('public.t')")
	if got := notifyTriggers(t, f.writer, "t"); !slices.Equal(got, gatedTriggers) {
		t.Errorf("got triggers %q, want %q", got, gatedTriggers)
	}
	if got := triggerMode(t, f.writer, "t"); got != "gated" {
		t.Errorf("got trigger_mode %q, want gated", got)
	}
	f.arm(t, "t")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	exec(t, f.writer, "DELETE FROM t")
	// Only the first watch changed anything.
	if got, want := f.notifications(t), []string{reload, "public.t", "public.t"}; !slices.Equal(got, want) {
		t.Errorf("got notifications %q, want %q", got, want)
	}
}

func TestUnwatch(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int); CREATE TABLE never (id int)")
	exec(t, f.writer, "SELECT dashboard.watch('t')")
	exec(t, f.writer, "SELECT dashboard.unwatch('t')")
	exec(t, f.writer, "SELECT dashboard.unwatch('t')")     // again: harmless
	exec(t, f.writer, "SELECT dashboard.unwatch('never')") // never watched: harmless
	for _, table := range []string{"t", "never"} {
		if got := notifyTriggers(t, f.writer, table); len(got) != 0 {
			t.Errorf("%s: got triggers %q, want none", table, got)
		}
		if got := triggerMode(t, f.writer, table); got != "" {
			t.Errorf("%s: got trigger_mode %q, want NULL", table, got)
		}
	}
	// The first watch and the first unwatch changed triggers; the rest did not.
	if got, want := f.notifications(t), []string{reload, reload}; !slices.Equal(got, want) {
		t.Errorf("watch, then unwatch three times: got notifications %q, want %q", got, want)
	}
	// Wanted, but no longer watched: silent.
	f.arm(t, "t", "never")
	for _, s := range []string{"INSERT INTO t VALUES (1)", "UPDATE t SET id = 2", "DELETE FROM t", "TRUNCATE t"} {
		exec(t, f.writer, s)
	}
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("got notifications %q, want none", got)
	}
	// Watching again after unwatch works.
	exec(t, f.writer, "SELECT dashboard.watch('t')")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got, want := f.notifications(t), []string{reload, "public.t"}; !slices.Equal(got, want) {
		t.Errorf("after watching again: got notifications %q, want %q", got, want)
	}
}

// TestIsWatched checks is_watched and trigger_mode against triggers that
// look like ours but would miss changes, and that watch repairs each.
func TestIsWatched(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int)")
	const replace = "DROP TRIGGER IF EXISTS dashboard_notify ON t; CREATE TRIGGER dashboard_notify "
	steps := []struct {
		sql      string
		wantMode string // "" means NULL: not watched
	}{
		{"", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{"SELECT dashboard.unwatch('t')", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{"DROP TRIGGER dashboard_notify ON t", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{"ALTER TABLE t DISABLE TRIGGER dashboard_notify", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		// Fires only with session_replication_role = replica.
		{"ALTER TABLE t ENABLE REPLICA TRIGGER dashboard_notify", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		// Fires in every session_replication_role: still the real thing.
		{"ALTER TABLE t ENABLE ALWAYS TRIGGER dashboard_notify", "gated"},
		// Same name, other definition: not the real thing, and watch replaces it.
		{replace + "AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH ROW EXECUTE FUNCTION dashboard.notify_if_wanted()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "AFTER INSERT OR UPDATE OR DELETE ON t FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "AFTER INSERT OR UPDATE OF id OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT WHEN (pg_backend_pid() < 0) EXECUTE FUNCTION dashboard.notify_if_wanted()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted('x')", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		{replace + "AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON t FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_statement()", ""},
		{"SELECT dashboard.watch('t')", "gated"},
		// The old triggers (0002) count as watched while all four are right.
		{"DROP TRIGGER dashboard_notify ON t", ""},
		{"-- old triggers", "always"},
		{"DROP TRIGGER dashboard_notify_truncate ON t", ""},
		{"SELECT dashboard.watch('t')", "gated"},
	}
	for _, s := range steps {
		switch {
		case s.sql == "-- old triggers":
			installOldTriggers(t, f.writer, "t")
		case s.sql != "":
			exec(t, f.writer, s.sql)
		}
		if got := triggerMode(t, f.writer, "t"); got != s.wantMode {
			t.Errorf("after %q: got trigger_mode %q, want %q", s.sql, got, s.wantMode)
		}
		if got, want := isWatched(t, f.writer, "t"), s.wantMode != ""; got != want {
			t.Errorf("after %q: got is_watched %v, want %v", s.sql, got, want)
		}
		// Every watch and unwatch here changes triggers (TestWatchNotifiesCatalog).
		var want []string
		if strings.Contains(s.sql, "watch(") {
			want = []string{reload}
		}
		if got := f.notifications(t); !slices.Equal(got, want) {
			t.Errorf("after %q: got notifications %q, want %q", s.sql, got, want)
		}
	}
	if got := notifyTriggers(t, f.writer, "t"); !slices.Equal(got, gatedTriggers) {
		t.Errorf("got triggers %q, want %q", got, gatedTriggers)
	}
	f.arm(t, "t")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	exec(t, f.writer, "UPDATE t SET id = 2")
	exec(t, f.writer, "TRUNCATE t")
	if got, want := f.notifications(t), []string{"public.t", "public.t", "public.t"}; !slices.Equal(got, want) {
		t.Errorf("after repair: got notifications %q, want %q", got, want)
	}
	for _, fn := range []string{"is_watched", "trigger_mode"} {
		var null *string
		if err := f.writer.QueryRow(t.Context(), "SELECT dashboard."+fn+"(NULL)::text").Scan(&null); err != nil || null != nil {
			t.Errorf("%s(NULL): got %v, %v, want NULL, no error", fn, null, err)
		}
	}
}

func TestWatchRejectsUnsupportedRelations(t *testing.T) {
	t.Parallel()
	conn := connect(t, migratedDB(t))
	exec(t, conn, `CREATE TABLE t (id int PRIMARY KEY);
		CREATE VIEW v AS SELECT * FROM t;
		CREATE MATERIALIZED VIEW mv AS SELECT * FROM t;
		CREATE SEQUENCE seq;
		CREATE TYPE pair AS (a int, b int);`)
	tests := []struct {
		target   string
		wantCode string
		wantMsg  string
	}{
		{"v", "42809", "public.v is a view"},
		{"mv", "42809", "public.mv is a materialized view"},
		{"seq", "42809", "public.seq is a sequence"},
		{"t_pkey", "42809", "public.t_pkey is an index"},
		{"pair", "42809", "public.pair is a composite type"},
		{"NULL", "22004", "must not be null"},
	}
	for _, tt := range tests {
		arg := "'" + tt.target + "'"
		if tt.target == "NULL" {
			arg = "NULL"
		}
		_, err := conn.Exec(t.Context(), "SELECT dashboard.watch("+arg+")")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) {
			t.Errorf("watch(%s): got error %v, want a server error", tt.target, err)
			continue
		}
		if pgErr.Code != tt.wantCode || !strings.Contains(pgErr.Message, tt.wantMsg) {
			t.Errorf("watch(%s): got %s %q, want %s containing %q", tt.target, pgErr.Code, pgErr.Message, tt.wantCode, tt.wantMsg)
		}
	}
}

func TestWatchPartitioned(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, `CREATE TABLE m (id int, k int) PARTITION BY RANGE (k);
		CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (100);
		CREATE TABLE m2 PARTITION OF m FOR VALUES FROM (100) TO (200);
		SELECT dashboard.watch('m');`)
	if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
		t.Fatalf("setup: got notifications %q, want %q", got, want)
	}
	// The parent's statement trigger is not cloned to the partitions.
	for _, p := range []string{"m1", "m2"} {
		if got := notifyTriggers(t, f.writer, p); len(got) != 0 {
			t.Errorf("%s: got triggers %q, want none", p, got)
		}
	}
	// Every table wanted, so only missing triggers keep a statement silent.
	f.arm(t, "m", "m1", "m2")
	steps := []struct {
		sql  string
		want []string
	}{
		{"INSERT INTO m VALUES (1, 1), (2, 150)", []string{"public.m"}},
		{"UPDATE m SET k = 151 WHERE id = 1", []string{"public.m"}},
		{"DELETE FROM m WHERE id = 2", []string{"public.m"}},
		// A statement naming a partition fires only the partition's triggers.
		{"INSERT INTO m1 VALUES (3, 3)", nil},
		{"SELECT dashboard.watch('m1')", []string{reload}},
		{"INSERT INTO m1 VALUES (4, 4)", []string{"public.m1"}},
		// TRUNCATE of the parent truncates, and fires, the partitions too.
		{"TRUNCATE m", []string{"public.m", "public.m1"}},
	}
	for _, s := range steps {
		exec(t, f.writer, s.sql)
		got := f.notifications(t)
		slices.Sort(got)
		if !slices.Equal(got, s.want) {
			t.Errorf("%s: got notifications %q, want %q", s.sql, got, s.want)
		}
	}
}

// newRole creates a role that the test drops when it ends, or skips the test
// when the connection may not create roles.
func newRole(t *testing.T, conn *pgx.Conn, prefix string) string {
	t.Helper()
	var super bool
	if err := conn.QueryRow(t.Context(), "SELECT current_setting('is_superuser')::bool").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("needs a superuser to create roles")
	}
	role := fmt.Sprintf("%s_%d", prefix, time.Now().UnixNano())
	exec(t, conn, "CREATE ROLE "+role)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = conn.Exec(ctx, "RESET ROLE")
		if _, err := conn.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
			t.Errorf("dropping role %s: %v", role, err)
		}
	})
	return role
}

// TestWatchNeedsTriggerPrivilege checks that watch runs with the caller's
// rights. (Writers need nothing: TestGatedNoPrivilegesNeeded.)
func TestWatchNeedsTriggerPrivilege(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	role := newRole(t, f.writer, "mig_watcher")
	exec(t, f.writer, "GRANT USAGE ON SCHEMA dashboard TO "+role+"; CREATE TABLE u (id int); GRANT INSERT ON u TO "+role)
	exec(t, f.writer, "SET ROLE "+role)
	_, err := f.writer.Exec(t.Context(), "SELECT dashboard.watch('u')")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("watch by a role without TRIGGER privilege: got %v, want SQLSTATE 42501 (insufficient_privilege)", err)
	}
	exec(t, f.writer, "RESET ROLE")
	if got := notifyTriggers(t, f.writer, "u"); len(got) != 0 {
		t.Errorf("after the refused watch: got triggers %q, want none", got)
	}
}

func TestSchemaConstraints(t *testing.T) {
	t.Parallel()
	conn := connect(t, migratedDB(t))
	exec(t, conn, `INSERT INTO dashboard.dashboards (slug, title, created_at, updated_at)
		VALUES ('ops', 'Ops', '2000-01-01', '2000-01-01')`)
	tests := []struct {
		name, sql, wantCode string
	}{
		{"slug with upper case", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('Ops2', 'x')", "23514"},
		{"slug starting with a dash", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('-ops', 'x')", "23514"},
		{"slug of 64 characters", "INSERT INTO dashboard.dashboards (slug, title) VALUES (repeat('a', 64), 'x')", "23514"},
		{"slug of 63 characters", "INSERT INTO dashboard.dashboards (slug, title) VALUES (repeat('a', 63), 'x')", ""},
		{"duplicate slug", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('ops', 'x')", "23505"},
		{"unknown visibility", "INSERT INTO dashboard.dashboards (slug, title, visibility) VALUES ('v', 'x', 'secret')", "23514"},
		{"zero refresh cap", "INSERT INTO dashboard.dashboards (slug, title, max_refresh_hz) VALUES ('z', 'x', 0)", "23514"},
		{"explicit id", "INSERT INTO dashboard.dashboards (id, slug, title) VALUES (99, 'i', 'x')", "428C9"},
		{"unknown kind", panelSQL("'pie'", "1", "'p1'"), "23514"},
		{"width 5", panelSQL("'stat'", "5", "'p2'"), "23514"},
		{"width 0", panelSQL("'stat'", "0", "'p3'"), "23514"},
		{"valid panel", panelSQL("'feed'", "4", "'p4'"), ""},
		{"duplicate panel slug", panelSQL("'feed'", "4", "'p4'"), "23505"},
		{"bad panel slug", panelSQL("'stat'", "1", "'P5'"), "23514"},
		{"token hash not sha256", "INSERT INTO dashboard.access_tokens (token_hash, label) VALUES ('\\x01', 'x')", "23514"},
		{"token for a missing dashboard", "INSERT INTO dashboard.access_tokens (token_hash, label, dashboard_id) VALUES (sha256('a'), 'x', -1)", "23503"},
	}
	for _, tt := range tests {
		_, err := conn.Exec(t.Context(), tt.sql)
		var code string
		if pgErr := (*pgconn.PgError)(nil); errors.As(err, &pgErr) {
			code = pgErr.Code
		} else if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if code != tt.wantCode {
			t.Errorf("%s: got SQLSTATE %q (%v), want %q", tt.name, code, err, tt.wantCode)
		}
	}

	// updated_at follows updates; created_at does not.
	exec(t, conn, "UPDATE dashboard.dashboards SET title = 'Operations' WHERE slug = 'ops'")
	exec(t, conn, "UPDATE dashboard.panels SET title = 'Renamed'")
	var dashboardsFresh, panelsFresh, createdKept bool
	err := conn.QueryRow(t.Context(), `SELECT
		(SELECT updated_at > '2001-01-01' FROM dashboard.dashboards WHERE slug = 'ops'),
		(SELECT bool_and(updated_at >= created_at) FROM dashboard.panels),
		(SELECT created_at = '2000-01-01' FROM dashboard.dashboards WHERE slug = 'ops')`).
		Scan(&dashboardsFresh, &panelsFresh, &createdKept)
	if err != nil {
		t.Fatal(err)
	}
	if !dashboardsFresh || !panelsFresh || !createdKept {
		t.Errorf("got dashboards updated_at moved %v, panels updated_at >= created_at %v, created_at kept %v, want all true",
			dashboardsFresh, panelsFresh, createdKept)
	}
}

func panelSQL(kind, width, slug string) string {
	return fmt.Sprintf(`INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, width)
		SELECT id, %s, 'x', %s, 'SELECT 1', %s FROM dashboard.dashboards WHERE slug = 'ops'`, slug, kind, width)
}

// TestUpIdempotent also covers Pending before and after.
func TestUpIdempotent(t *testing.T) {
	t.Parallel()
	conn := connect(t, pgtest.NewDB(t))
	all, err := load(files)
	if err != nil {
		t.Fatal(err)
	}
	var want []int
	for _, m := range all {
		want = append(want, m.version)
	}

	pending, err := Pending(t.Context(), conn)
	if err != nil || !slices.Equal(pending, want) {
		t.Fatalf("Pending on an empty database: got %v, %v, want %v, nil", pending, err, want)
	}
	applied, err := Up(t.Context(), conn)
	if err != nil || !slices.Equal(applied, want) {
		t.Fatalf("first Up: got %v, %v, want %v, nil", applied, err, want)
	}
	applied, err = Up(t.Context(), conn)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Up: got %v, %v, want [], nil", applied, err)
	}
	pending, err = Pending(t.Context(), conn)
	if err != nil || len(pending) != 0 {
		t.Fatalf("Pending after Up: got %v, %v, want [], nil", pending, err)
	}
	if got := recorded(t, conn); !slices.Equal(got, want) {
		t.Errorf("got recorded versions %v, want %v", got, want)
	}
	var locks int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()").Scan(&locks); err != nil {
		t.Fatal(err)
	}
	if locks != 0 {
		t.Errorf("got %d advisory locks held by the session after Up, want 0", locks)
	}
}

func recorded(t *testing.T, conn *pgx.Conn) []int {
	t.Helper()
	rows, err := conn.Query(t.Context(), "SELECT version FROM dashboard.schema_migrations ORDER BY version")
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("reading schema_migrations: %v", err)
	}
	return versions
}

// TestUpConcurrent starts two Up calls while a third session holds the lock,
// waits until both are queued on it, then lets them run.
func TestUpConcurrent(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	holder := connect(t, connString)
	exec(t, holder, "SELECT pg_advisory_lock($1)", lockKey)

	conns := []*pgx.Conn{connect(t, connString), connect(t, connString)}
	results := make([][]int, len(conns))
	errs := make([]error, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Go(func() { results[i], errs[i] = Up(t.Context(), c) })
	}

	// Wait for the explicit signal: two sessions waiting on the lock.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		var waiting int
		err := holder.QueryRow(ctx, `SELECT count(*) FROM pg_locks
			WHERE locktype = 'advisory' AND NOT granted AND database = (SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&waiting)
		if err != nil {
			t.Fatalf("waiting for both Up calls to queue on the lock: %v", err)
		}
		if waiting == 2 {
			break
		}
		time.Sleep(5 * time.Millisecond) // polling pg_locks, not hoping
	}
	exec(t, holder, "SELECT pg_advisory_unlock($1)", lockKey)
	wg.Wait()

	var all []int
	for i := range conns {
		if errs[i] != nil {
			t.Errorf("Up %d: got error %v, want nil", i, errs[i])
		}
		all = append(all, results[i]...)
	}
	slices.Sort(all)
	want := recorded(t, holder)
	if len(want) == 0 || !slices.Equal(all, want) {
		t.Errorf("got versions applied across both calls %v, want each of %v exactly once", all, want)
	}
}

func TestUpBrokenSets(t *testing.T) {
	t.Parallel()
	first := &fstest.MapFile{Data: []byte("CREATE TABLE first (id int);")}
	ok := func(table string) *fstest.MapFile {
		return &fstest.MapFile{Data: []byte("CREATE TABLE " + table + " (id int);\n")}
	}
	tests := []struct {
		name         string
		files        fstest.MapFS
		wantErr      []string
		wantVersions []int
		absent       []string // tables that must not exist afterwards
	}{
		{"version without four digits", fstest.MapFS{"0001_first.sql": first, "2_second.sql": ok("second")},
			[]string{"2_second.sql", "NNNN_name.sql"}, []int{1}, []string{"second"}},
		{"dash instead of underscore", fstest.MapFS{"0001_first.sql": first, "0002-second.sql": ok("second")},
			[]string{"0002-second.sql"}, []int{1}, []string{"second"}},
		{"upper-case name", fstest.MapFS{"0001_first.sql": first, "0002_Second.sql": ok("second")},
			[]string{"0002_Second.sql"}, []int{1}, []string{"second"}},
		{"version zero", fstest.MapFS{"0000_zero.sql": ok("zero"), "0001_first.sql": first},
			[]string{"0000_zero.sql"}, []int{1}, []string{"zero"}},
		{"duplicate version", fstest.MapFS{"0001_first.sql": first, "0002_a.sql": ok("a"), "0002_b.sql": ok("b")},
			[]string{"0002_a.sql", "0002_b.sql", "duplicate version 2"}, []int{1}, []string{"a", "b"}},
		{"empty file", fstest.MapFS{"0001_first.sql": first, "0002_empty.sql": {Data: []byte("  \n")}},
			[]string{"0002_empty.sql", "empty"}, []int{1}, nil},
		{"no files", fstest.MapFS{"README.md": {Data: []byte("x")}},
			[]string{"no migrations"}, []int{1}, nil},
		{"failing SQL", fstest.MapFS{
			"0001_first.sql":  first,
			"0002_second.sql": ok("second"),
			"0003_broken.sql": {Data: []byte("CREATE TABLE third (id int);\n\nINSERT INTO nope VALUES (1);\n")},
			"0004_later.sql":  ok("later"),
		}, []string{"applying migration 0003_broken.sql", "line 3", `relation "nope" does not exist`}, []int{1, 2}, []string{"third", "later"}},
		{"transaction control", fstest.MapFS{"0001_first.sql": first, "0002_commit.sql": {Data: []byte("COMMIT;")}},
			[]string{"0002_commit.sql", "transaction"}, []int{1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			conn := connect(t, pgtest.NewDB(t))
			if _, err := up(t.Context(), conn, fstest.MapFS{"0001_first.sql": first}); err != nil {
				t.Fatalf("applying the good set: %v", err)
			}
			applied, err := up(t.Context(), conn, tt.files)
			if err == nil {
				t.Fatalf("got applied %v and no error, want an error", applied)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("got error %q, want it to contain %q", err, w)
				}
			}
			if got := recorded(t, conn); !slices.Equal(got, tt.wantVersions) {
				t.Errorf("got recorded versions %v, want %v", got, tt.wantVersions)
			}
			for _, table := range tt.absent {
				var exists bool
				if err := conn.QueryRow(t.Context(), "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil {
					t.Fatal(err)
				}
				if exists {
					t.Errorf("got table %s, want it rolled back or never created", table)
				}
			}
			// The lock is released after a failure, so the next start can run.
			if _, err := up(t.Context(), conn, fstest.MapFS{"0001_first.sql": first}); err != nil {
				t.Errorf("Up after the failure: got %v, want nil", err)
			}
		})
	}
}

// upTo returns the embedded migrations up to and including version, so a
// test can build the database an older release left behind.
func upTo(t *testing.T, version int) fstest.MapFS {
	t.Helper()
	ms, err := load(files)
	if err != nil {
		t.Fatal(err)
	}
	fsys := fstest.MapFS{}
	for _, m := range ms {
		if m.version <= version {
			fsys[m.file] = &fstest.MapFile{Data: []byte(m.sql)}
		}
	}
	return fsys
}

// wantCheckViolation fails unless err is a check_violation of constraint.
func wantCheckViolation(t *testing.T, what string, err error, constraint string) {
	t.Helper()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "23514" || pgErr.ConstraintName != constraint {
		t.Errorf("%s: got %v, want SQLSTATE 23514 (check_violation) of constraint %s", what, err, constraint)
	}
}

// TestPlaylistsReadableByReaders: a role that reads the dashboard tables
// (granted on the tables that existed then, as the README's role recipe
// does) reads the playlist tables after the upgrade that adds them; a role
// that could not read the dashboards gets nothing new.
func TestPlaylistsReadableByReaders(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	conn := connect(t, connString)
	if _, err := up(t.Context(), conn, upTo(t, 9)); err != nil {
		t.Fatalf("applying migrations up to 0009: %v", err)
	}
	suffix := strconv.Itoa(os.Getpid()) + "_" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	reader, other := "reader_"+suffix, "other_"+suffix
	for _, role := range []string{reader, other} {
		exec(t, conn, "CREATE ROLE "+role+" NOLOGIN")
		t.Cleanup(func() {
			for _, sql := range []string{"DROP OWNED BY " + role, "DROP ROLE " + role} {
				if _, err := conn.Exec(context.Background(), sql); err != nil {
					t.Errorf("%s: %v", sql, err)
				}
			}
		})
		exec(t, conn, "GRANT USAGE ON SCHEMA dashboard TO "+role)
	}
	exec(t, conn, "GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+reader)
	if _, err := Up(t.Context(), conn); err != nil {
		t.Fatalf("Up: %v", err)
	}
	for _, tt := range []struct {
		role string
		want bool
	}{{reader, true}, {other, false}} {
		for _, table := range []string{"dashboard.playlists", "dashboard.playlist_items"} {
			var ok bool
			if err := conn.QueryRow(t.Context(), "SELECT has_table_privilege($1, $2, 'SELECT')", tt.role, table).Scan(&ok); err != nil {
				t.Fatal(err)
			}
			if ok != tt.want {
				t.Errorf("%s may read %s: got %v, want %v", tt.role, table, ok, tt.want)
			}
		}
	}
}

// TestSizeLimits checks the limits on operator-written text, and that they
// do not make migrate fail on a database that already holds longer values:
// those rows stay, but a new or updated row must fit.
func TestSizeLimits(t *testing.T) {
	t.Parallel()
	conn := connect(t, pgtest.NewDB(t))
	if _, err := up(t.Context(), conn, upTo(t, 2)); err != nil {
		t.Fatalf("applying migrations up to 0002: %v", err)
	}
	// Rows an older release accepted, every column over its limit.
	exec(t, conn, `INSERT INTO dashboard.dashboards (slug, title, description)
		VALUES ('old', repeat('t', 201), repeat('d', 2001))`)
	exec(t, conn, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, options, depends_on)
		SELECT id, 'old', repeat('t', 201), 'stat', 'SELECT 1' || repeat(' ', 65536),
			jsonb_build_object('note', repeat('o', 65536)), array_fill('public.t'::text, ARRAY[65])
		FROM dashboard.dashboards`)
	exec(t, conn, `INSERT INTO dashboard.access_tokens (token_hash, label) VALUES (sha256('old'), repeat('l', 201))`)

	applied, err := Up(t.Context(), conn)
	if err != nil {
		t.Fatalf("Up over oversized rows: got %v, want nil", err)
	}
	if !slices.Contains(applied, 3) {
		t.Errorf("Up over oversized rows: got applied %v, want 3 among them", applied)
	}
	var rows int
	if err := conn.QueryRow(t.Context(), `SELECT
		(SELECT count(*) FROM dashboard.dashboards WHERE slug = 'old') +
		(SELECT count(*) FROM dashboard.panels WHERE slug = 'old') +
		(SELECT count(*) FROM dashboard.access_tokens WHERE token_hash = sha256('old'))`).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != 3 {
		t.Errorf("got %d of the oversized rows after Up, want all 3 kept", rows)
	}

	exec(t, conn, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('new', 'New')")
	const panel = `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, options, depends_on)
		SELECT id, %s, %s, 'stat', %s, %s, %s FROM dashboard.dashboards WHERE slug = 'new'`
	tests := []struct {
		name, sql, constraint string // constraint "": must succeed
	}{
		{"dashboard title of 200 characters", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('t200', repeat('é', 200))", ""},
		{"dashboard title of 201 characters", "INSERT INTO dashboard.dashboards (slug, title) VALUES ('t201', repeat('t', 201))", "dashboards_title_length"},
		{"description of 2000 characters", "INSERT INTO dashboard.dashboards (slug, title, description) VALUES ('d2000', 'x', repeat('é', 2000))", ""},
		{"description of 2001 characters", "INSERT INTO dashboard.dashboards (slug, title, description) VALUES ('d2001', 'x', repeat('d', 2001))", "dashboards_description_length"},
		{"renaming a dashboard beyond the limit", "UPDATE dashboard.dashboards SET title = repeat('t', 201) WHERE slug = 'new'", "dashboards_title_length"},
		{"panel at every limit", fmt.Sprintf(panel, "'max'", "repeat('é', 200)", "'SELECT 1' || repeat(' ', 65528)",
			"jsonb_build_object('note', repeat('o', 65536 - 12))", "array_fill('public.t'::text, ARRAY[64])"), ""},
		{"panel title of 201 characters", fmt.Sprintf(panel, "'p1'", "repeat('t', 201)", "'SELECT 1'", "'{}'", "'{}'"), "panels_title_length"},
		{"panel SQL of 64 KiB and a byte", fmt.Sprintf(panel, "'p2'", "'x'", "'SELECT 1' || repeat(' ', 65529)", "'{}'", "'{}'"), "panels_sql_length"},
		{"panel SQL of 64 KiB in multi-byte characters", fmt.Sprintf(panel, "'p3'", "'x'", "'SELECT ''' || repeat('é', 32764) || ''''", "'{}'", "'{}'"), "panels_sql_length"},
		{"panel options of 64 KiB and a byte", fmt.Sprintf(panel, "'p4'", "'x'", "'SELECT 1'",
			"jsonb_build_object('note', repeat('o', 65536 - 11))", "'{}'"), "panels_options_size"},
		{"panel with 65 explicit dependencies", fmt.Sprintf(panel, "'p5'", "'x'", "'SELECT 1'", "'{}'",
			"array_fill('public.t'::text, ARRAY[65])"), "panels_depends_on_count"},
		{"token label of 200 characters", "INSERT INTO dashboard.access_tokens (token_hash, label) VALUES (sha256('a'), repeat('é', 200))", ""},
		{"token label of 201 characters", "INSERT INTO dashboard.access_tokens (token_hash, label) VALUES (sha256('b'), repeat('l', 201))", "access_tokens_label_length"},
		// An oversized row that predates the limits must be brought within
		// them by the next edit, whichever column it touches.
		{"editing an old oversized dashboard", "UPDATE dashboard.dashboards SET title = 'ok', position = 1 WHERE slug = 'old'", "dashboards_description_length"},
		{"editing an old oversized panel", "UPDATE dashboard.panels SET title = 'ok', options = '{}', depends_on = '{}' WHERE slug = 'old'", "panels_sql_length"},
		{"editing an old oversized token", "UPDATE dashboard.access_tokens SET expires_at = now() WHERE token_hash = sha256('old')", "access_tokens_label_length"},
	}
	for _, tt := range tests {
		_, err := conn.Exec(t.Context(), tt.sql)
		if tt.constraint == "" {
			if err != nil {
				t.Errorf("%s: got %v, want success", tt.name, err)
			}
			continue
		}
		wantCheckViolation(t, tt.name, err, tt.constraint)
	}
}

// TestWatchNotifiesCatalog checks that watch and unwatch, when they change a
// table's triggers, notify dashboard.panels: the servers then reload their
// catalogs, so a panel's "watch this table" notice goes at once instead of
// at the next full refresh. Calls that change nothing stay silent, so the
// reload that follows a server's own watch finds nothing more to do.
func TestWatchNotifiesCatalog(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int)")
	if got := f.notifications(t); len(got) != 0 {
		t.Fatalf("setup: got notifications %q, want none", got)
	}
	steps := []struct {
		sql  string
		want []string
	}{
		{"SELECT dashboard.watch('t')", []string{reload}},
		{"SELECT dashboard.watch('t')", nil},
		{"SELECT dashboard.unwatch('t')", []string{reload}},
		{"SELECT dashboard.unwatch('t')", nil},
		{"BEGIN; SELECT dashboard.watch('t'); ROLLBACK", nil},
		{"SELECT dashboard.watch('t')", []string{reload}},
		{"DROP TRIGGER dashboard_notify ON t", nil},
		{"SELECT dashboard.watch('t')", []string{reload}},
		{"ALTER TABLE t DISABLE TRIGGER dashboard_notify", nil},
		{"SELECT dashboard.watch('t')", []string{reload}},
		// The dashboard schema's tables keep their always-notifying triggers.
		{"SELECT dashboard.watch('dashboard.panels')", nil},
		{"DROP TRIGGER dashboard_notify_update ON dashboard.panels", nil},
		{"SELECT dashboard.watch('dashboard.panels')", []string{reload}},
	}
	for _, s := range steps {
		exec(t, f.writer, s.sql)
		if got := f.notifications(t); !slices.Equal(got, s.want) {
			t.Errorf("%s: got notifications %q, want %q", s.sql, got, s.want)
		}
	}

	// The notification is what a LISTEN connection receives on its own,
	// without the sentinel: wait for it with a deadline (a bound, not a
	// timed assertion).
	exec(t, f.writer, "CREATE TABLE u (id int)")
	exec(t, f.writer, "SELECT dashboard.watch('u')")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	n, err := f.listener.WaitForNotification(ctx)
	if err != nil || n.Channel != "dashboard" || n.Payload != reload {
		t.Errorf("after watch: got notification %+v, %v, want %s on channel dashboard", n, err, reload)
	}
}

// TestPresenceTables: the presence rows (0011) are written by every role
// that reads the dashboards (granted before the upgrade, as the README's
// role recipe does) and by no other; writing them sends no notification,
// so no server reloads anything for them; and a deleted dashboard takes
// its rows with it.
func TestPresenceTables(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	conn := connect(t, connString)
	if _, err := up(t.Context(), conn, upTo(t, 10)); err != nil {
		t.Fatalf("applying migrations up to 0010: %v", err)
	}
	reader, other := newRole(t, conn, "presence_reader"), newRole(t, conn, "presence_other")
	for _, role := range []string{reader, other} {
		exec(t, conn, "GRANT USAGE ON SCHEMA dashboard TO "+role)
	}
	exec(t, conn, "GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+reader)
	if _, err := Up(t.Context(), conn); err != nil {
		t.Fatalf("Up: %v", err)
	}
	for _, tt := range []struct {
		role string
		want bool
	}{{reader, true}, {other, false}} {
		for _, table := range []string{"dashboard.presence", "dashboard.presence_polls", "dashboard.servers"} {
			for _, priv := range []string{"SELECT", "INSERT", "UPDATE", "DELETE"} {
				var ok bool
				if err := conn.QueryRow(t.Context(), "SELECT has_table_privilege($1, $2, $3)", tt.role, table, priv).Scan(&ok); err != nil {
					t.Fatal(err)
				}
				if ok != tt.want {
					t.Errorf("%s may %s %s: got %v, want %v", tt.role, priv, table, ok, tt.want)
				}
			}
		}
	}

	f := feedOn(t, connString)
	exec(t, f.writer, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('ops', 'Ops')")
	if got := f.notifications(t); !slices.Equal(got, []string{"dashboard.dashboards"}) {
		t.Fatalf("creating a dashboard: got notifications %q, want dashboard.dashboards", got)
	}
	server := "5f0c6a1e-8f5e-4c1e-9d6a-2b7f3c4d5e6f"
	exec(t, f.writer, "SET ROLE "+reader)
	for _, sql := range []string{
		`INSERT INTO dashboard.servers (server, started_at, expires_at, lock_pid) VALUES ('` + server + `', now(), now() + interval '6 s', pg_backend_pid())`,
		`INSERT INTO dashboard.presence (server, dashboard_id, viewers, labels, expires_at)
		 SELECT '` + server + `', id, 3, '["lobby TV"]', now() + interval '6 s' FROM dashboard.dashboards`,
		`UPDATE dashboard.presence SET viewers = 4, expires_at = now() + interval '6 s'`,
		`UPDATE dashboard.servers SET expires_at = now() + interval '6 s'`,
		`INSERT INTO dashboard.presence_polls (dashboard_id, client, server, label, seen_at)
		 SELECT id, '\x000102030405060708090a0b0c0d0e0f', '` + server + `', 'lobby TV', now() FROM dashboard.dashboards`,
		`UPDATE dashboard.presence_polls SET seen_at = now(), server = '` + server + `'`,
	} {
		exec(t, f.writer, sql)
		if got := f.notifications(t); len(got) != 0 {
			t.Errorf("%s: got notifications %q, want none", sql, got)
		}
	}
	exec(t, f.writer, "RESET ROLE")
	for _, table := range []string{"dashboard.presence", "dashboard.presence_polls", "dashboard.servers"} {
		if got := triggerMode(t, f.writer, table); got != "" {
			t.Errorf("trigger_mode(%s): got %q, want none (not watched)", table, got)
		}
	}
	_, err := f.writer.Exec(t.Context(), `INSERT INTO dashboard.presence (server, dashboard_id, viewers, expires_at)
		SELECT '`+server+`', id, 0, now() FROM dashboard.dashboards ON CONFLICT (server, dashboard_id) DO UPDATE SET viewers = 0`)
	wantCheckViolation(t, "a presence row of no viewers", err, "presence_viewers_positive")
	_, err = f.writer.Exec(t.Context(), `INSERT INTO dashboard.presence_polls (dashboard_id, client, server, seen_at)
		SELECT id, '\x00', '`+server+`', now() FROM dashboard.dashboards`)
	wantCheckViolation(t, "a long-poll client's row with a short key", err, "presence_polls_client_length")
	exec(t, f.writer, "DELETE FROM dashboard.dashboards")
	for _, table := range []string{"dashboard.presence", "dashboard.presence_polls"} {
		var left int
		if err := f.writer.QueryRow(t.Context(), "SELECT count(*) FROM "+table).Scan(&left); err != nil {
			t.Fatal(err)
		}
		if left != 0 {
			t.Errorf("after deleting the dashboard: got %d rows of %s, want 0", left, table)
		}
	}
}
