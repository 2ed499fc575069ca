package migrations

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgtest"
)

// messages reads, on the decoder connection, the logical decoding messages
// with prefix dashboard committed since the previous call, through a
// temporary test_decoding slot the decoder created (slot names are
// unique in the cluster, hence the backend's pid). The SQL interface of
// logical decoding returns what was committed before the call, so the
// result is exact without sleeping.
func (f *feed) messages(t *testing.T, decoder *pgx.Conn) []string {
	t.Helper()
	rows, err := decoder.Query(t.Context(), `
		SELECT substr(data, strpos(data, 'content:') + length('content:'))
		FROM pg_logical_slot_get_changes(format('dashboard_test_%s', pg_backend_pid()), NULL, NULL)
		WHERE data LIKE 'message: transactional: 1 prefix: dashboard,%'`)
	if err != nil {
		t.Fatalf("reading the slot: %v", err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatalf("reading the slot: %v", err)
	}
	return append([]string{}, got...)
}

// logicalFeed is newFeed switched to logical mode, with a decoder
// connection that holds a temporary slot (gone when the test ends).
func logicalFeed(t *testing.T) (*feed, *pgx.Conn) {
	t.Helper()
	pgtest.RequireLogical(t)
	f := newFeed(t)
	decoder := connect(t, f.connString)
	exec(t, decoder, "SELECT pg_create_logical_replication_slot(format('dashboard_test_%s', pg_backend_pid()), 'test_decoding', true)")
	exec(t, f.writer, "SELECT dashboard.set_feed_mode('logical')")
	return f, decoder
}

// TestLogicalModeSendsMessages checks the triggers in logical mode: gated
// as in notify mode (0008), a statement on a watched table that some server
// wants news of sends a transactional message naming it, and one nobody
// wants sends nothing; aborts send nothing; the dashboard schema's own
// tables and watch/unwatch always send theirs the same way; and nothing is
// sent with NOTIFY.
func TestLogicalModeSendsMessages(t *testing.T) {
	t.Parallel()
	f, decoder := logicalFeed(t)
	exec(t, f.writer, `CREATE TABLE t (id int); CREATE TABLE "Odd Name" (id int)`)
	exec(t, f.writer, `SELECT dashboard.watch('t'); SELECT dashboard.watch('"Odd Name"')`)
	if got, want := f.messages(t, decoder), []string{reload, reload}; !slices.Equal(got, want) {
		t.Errorf("watch: got messages %q, want %q", got, want)
	}

	// Nobody wants news: silent.
	exec(t, f.writer, "INSERT INTO t VALUES (0)")
	if got := f.messages(t, decoder); len(got) != 0 {
		t.Errorf("write nobody wants: got messages %q, want none", got)
	}
	f.arm(t, "t", `"Odd Name"`)
	for _, tt := range []struct {
		sql  string
		want []string
	}{
		{"INSERT INTO t VALUES (1)", []string{"public.t"}},
		// While wanted, each statement sends.
		{"INSERT INTO t VALUES (2); UPDATE t SET id = id + 1", []string{"public.t", "public.t"}},
		{"DELETE FROM t WHERE false", []string{"public.t"}},
		{"TRUNCATE t", []string{"public.t"}},
		{`INSERT INTO "Odd Name" VALUES (1)`, []string{`public."Odd Name"`}},
		{"BEGIN; INSERT INTO t VALUES (3); ROLLBACK", nil},
		{"INSERT INTO dashboard.dashboards (slug, title) VALUES ('x', 'x')", []string{"dashboard.dashboards"}},
		{"UPDATE dashboard.dashboards SET title = 'y' WHERE false", nil},
		{"SELECT dashboard.unwatch('t')", []string{reload}},
		{"INSERT INTO t VALUES (4)", nil},
	} {
		exec(t, f.writer, tt.sql)
		if got := f.messages(t, decoder); !slices.Equal(got, tt.want) {
			t.Errorf("%s: got messages %q, want %q", tt.sql, got, tt.want)
		}
	}
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("notifications in logical mode: got %q, want none", got)
	}
}

// TestSetFeedMode checks the switch: it reaches a session opened before it
// at its next statement, back and forth, and refuses bad modes and roles
// that do not own the dashboard schema's functions.
func TestSetFeedMode(t *testing.T) {
	t.Parallel()
	pgtest.RequireLogical(t)
	f := newFeed(t)
	decoder := connect(t, f.connString)
	exec(t, decoder, "SELECT pg_create_logical_replication_slot(format('dashboard_test_%s', pg_backend_pid()), 'test_decoding', true)")
	switcher := connect(t, f.connString)
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t')")
	f.notifications(t)
	f.arm(t, "t")
	// The writer's session has run the trigger, so its plan is cached.
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Fatalf("notify mode: got notifications %q, want %q", got, want)
	}

	mode := func() string {
		var m string
		if err := f.writer.QueryRow(t.Context(), "SELECT dashboard.feed_mode()").Scan(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	exec(t, switcher, "SELECT dashboard.set_feed_mode('logical')")
	exec(t, switcher, "SELECT dashboard.set_feed_mode('logical')") // idempotent
	if got := mode(); got != "logical" {
		t.Errorf("feed_mode after the switch: got %q, want logical", got)
	}
	exec(t, f.writer, "INSERT INTO t VALUES (2)")
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("logical mode, same session: got notifications %q, want none", got)
	}
	if got, want := f.messages(t, decoder), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("logical mode, same session: got messages %q, want %q", got, want)
	}

	exec(t, switcher, "SELECT dashboard.set_feed_mode('notify')")
	exec(t, f.writer, "INSERT INTO t VALUES (3)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("back in notify mode: got notifications %q, want %q", got, want)
	}
	if got := f.messages(t, decoder); len(got) != 0 {
		t.Errorf("back in notify mode: got messages %q, want none", got)
	}

	for _, bad := range []string{"'bogus'", "NULL"} {
		_, err := switcher.Exec(t.Context(), "SELECT dashboard.set_feed_mode("+bad+")")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" {
			t.Errorf("set_feed_mode(%s): got %v, want SQLSTATE 22023", bad, err)
		}
	}

	role := newRole(t, switcher, "mig_switcher")
	exec(t, switcher, "GRANT USAGE ON SCHEMA dashboard TO "+role+"; SET ROLE "+role)
	_, err := switcher.Exec(t.Context(), "SELECT dashboard.set_feed_mode('logical')")
	var pgErr *pgconn.PgError
	// Replacing feed_mode needs CREATE on schema dashboard and its ownership.
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" {
		t.Errorf("set_feed_mode by a role that does not own the schema: got %v, want SQLSTATE 42501", err)
	}
	exec(t, switcher, "RESET ROLE")
	if got := mode(); got != "notify" {
		t.Errorf("feed_mode after the refused switch: got %q, want notify", got)
	}
}

// TestLogicalModeNoPrivilegesNeeded: writers still need nothing beyond
// their own write in logical mode.
func TestLogicalModeNoPrivilegesNeeded(t *testing.T) {
	t.Parallel()
	f, decoder := logicalFeed(t)
	role := newRole(t, f.writer, "mig_lwriter")
	exec(t, f.writer, "REVOKE ALL ON SCHEMA dashboard FROM PUBLIC")
	exec(t, f.writer, "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA dashboard FROM PUBLIC")
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t'); GRANT INSERT ON t TO "+role)
	f.messages(t, decoder)
	f.arm(t, "t")
	exec(t, f.writer, "SET ROLE "+role)
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	exec(t, f.writer, "RESET ROLE")
	if got, want := f.messages(t, decoder), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("write by %s: got messages %q, want %q", role, got, want)
	}
}

// TestFeedPublicationEmpty: the publication pgoutput needs publishes no
// table, so no row is streamed and no table needs a replica identity.
func TestFeedPublicationEmpty(t *testing.T) {
	t.Parallel()
	pgtest.RequireLogical(t)
	conn := connect(t, migratedDB(t))
	exec(t, conn, "CREATE TABLE nokey (v int); SELECT dashboard.watch('nokey'); SELECT dashboard.set_feed_mode('logical')")
	var all bool
	var tables int
	if err := conn.QueryRow(t.Context(), `SELECT puballtables,
		(SELECT count(*) FROM pg_publication_tables WHERE pubname = 'dashboard_feed')
		FROM pg_publication WHERE pubname = 'dashboard_feed'`).Scan(&all, &tables); err != nil {
		t.Fatalf("reading publication dashboard_feed: %v", err)
	}
	if all || tables != 0 {
		t.Errorf("publication dashboard_feed: got all tables %v, %d tables, want none", all, tables)
	}
	// A published table without a replica identity would refuse these.
	exec(t, conn, "INSERT INTO nokey VALUES (1); UPDATE nokey SET v = 2; DELETE FROM nokey")
}

// TestTriggerFunctionLean checks the form of the watched tables' trigger
// function, which runs for every statement on them: it runs as the writer
// (no SECURITY DEFINER, no SET clause, both measurable per call) and does
// not read the mode per call; set_feed_mode writes its body for the mode,
// and 0007 and 0008 keep the mode a database already had.
func TestTriggerFunctionLean(t *testing.T) {
	t.Parallel()
	pgtest.RequireLogical(t)
	connString := pgtest.NewDB(t)
	conn := connect(t, connString)
	if _, err := up(t.Context(), conn, upTo(t, 6)); err != nil {
		t.Fatalf("applying migrations up to 0006: %v", err)
	}
	exec(t, conn, "SELECT dashboard.set_feed_mode('logical')")
	if _, err := Up(t.Context(), conn); err != nil {
		t.Fatalf("Up from 0006: %v", err)
	}
	check := func(when, wantCall, notCall string) {
		t.Helper()
		var secdef, hasConfig bool
		var src string
		if err := conn.QueryRow(t.Context(), `SELECT prosecdef, proconfig IS NOT NULL, prosrc FROM pg_proc
			WHERE oid = 'dashboard.notify_if_wanted()'::regprocedure`).Scan(&secdef, &hasConfig, &src); err != nil {
			t.Fatal(err)
		}
		if secdef || hasConfig {
			t.Errorf("%s: SECURITY DEFINER %v, SET clause %v; want neither", when, secdef, hasConfig)
		}
		for _, bad := range []string{notCall, "feed_mode"} {
			if strings.Contains(src, bad) {
				t.Errorf("%s: body calls %s:\n%s", when, bad, src)
			}
		}
		if !strings.Contains(src, wantCall) {
			t.Errorf("%s: body lacks %s:\n%s", when, wantCall, src)
		}
	}
	check("logical mode kept across 0007 and 0008", "pg_catalog.pg_logical_emit_message", "pg_notify")
	check("logical mode, gated", "pg_catalog.pg_try_advisory_xact_lock_shared", "pg_notify")
	exec(t, conn, "SELECT dashboard.set_feed_mode('notify')")
	check("notify mode", "pg_catalog.pg_try_advisory_xact_lock_shared", "emit_message")
	check("notify mode", "pg_catalog.pg_notify", "emit_message")
	exec(t, conn, "SELECT dashboard.set_feed_mode('logical')")
	check("logical mode", "pg_catalog.pg_logical_emit_message", "pg_notify")
}
