package migrations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgtest"
)

// The tests of the gated trigger (0005): a watched user table notifies only
// while some server holds its feed key in one of the slots, and a server
// taking the key waits for every writer that skipped its notification.

// waitFor polls query (a single integer) until it returns want, or fails the
// test when ctx ends first or when the operation that should be waiting
// reports on gone (nil: never). It waits on a condition that the server
// reports, never on time.
func waitFor(ctx context.Context, t *testing.T, conn *pgx.Conn, what string, want int, gone <-chan error, query string, args ...any) {
	t.Helper()
	for {
		var got int
		if err := conn.QueryRow(ctx, query, args...).Scan(&got); err != nil {
			t.Fatalf("waiting until %s: %v", what, err)
		}
		if got == want {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waiting until %s: %v (last count %d, want %d)", what, ctx.Err(), got, want)
		case err := <-gone:
			t.Fatalf("waiting until %s: it returned instead (%v)", what, err)
		case <-time.After(5 * time.Millisecond): // polling pg_locks, not hoping
		}
	}
}

// feedKeysHeld counts the advisory locks in mode that the session pid holds
// on table's feed keys, over every slot.
const feedKeysHeld = `SELECT count(*)::int FROM pg_locks l
	WHERE l.locktype = 'advisory' AND l.granted AND l.pid = $1 AND l.mode = $3
	  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
	  AND ((l.classid::bigint << 32) | l.objid::bigint) IN (
		SELECT dashboard.feed_key(s, $2::regclass) FROM generate_series(0, dashboard.feed_slots() - 1) s)`

func pid(c *pgx.Conn) uint32 { return c.PgConn().PID() }

func TestGatedNotWantedNoNotify(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t'); CREATE TABLE old (id int)")
	installOldTriggers(t, f.writer, "old")
	if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
		t.Fatalf("setup: got notifications %q, want %q", got, want)
	}
	var slots int
	if err := f.writer.QueryRow(t.Context(), "SELECT dashboard.feed_slots()").Scan(&slots); err != nil || slots != 4 {
		t.Fatalf("feed_slots(): got %d, %v, want 4", slots, err)
	}

	for _, s := range []string{
		"INSERT INTO t VALUES (1), (2)",
		"UPDATE t SET id = id + 1",
		"DELETE FROM t WHERE id = 2",
		"TRUNCATE t",
		"BEGIN; INSERT INTO t VALUES (1); UPDATE t SET id = 3; DELETE FROM t; COMMIT",
	} {
		exec(t, f.writer, s)
	}
	if _, err := f.writer.CopyFrom(t.Context(), pgx.Identifier{"t"}, []string{"id"}, pgx.CopyFromRows([][]any{{1}, {2}})); err != nil {
		t.Fatalf("COPY: %v", err)
	}
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("writes to a table nobody wants: got notifications %q, want none", got)
	}

	// A writer that skipped holds every slot's key shared until it ends:
	// that is what a server's re-arm waits for.
	tx, err := f.writer.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), "INSERT INTO t VALUES (9)"); err != nil {
		t.Fatal(err)
	}
	var held int
	if err := f.server.QueryRow(t.Context(), feedKeysHeld, pid(f.writer), "t", "ShareLock").Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != slots {
		t.Errorf("writer in its transaction after skipping: holds %d of the table's feed keys shared, want %d", held, slots)
	}
	if err := tx.Commit(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := f.server.QueryRow(t.Context(), feedKeysHeld, pid(f.writer), "t", "ShareLock").Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != 0 {
		t.Errorf("writer after commit: holds %d feed keys, want 0", held)
	}

	// The dashboard schema's tables, and user tables still on the old
	// triggers, notify whether or not anyone wants news.
	exec(t, f.writer, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('ops', 'Ops')")
	exec(t, f.writer, "INSERT INTO old VALUES (1)")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got, want := f.notifications(t), []string{"dashboard.dashboards", "public.old"}; !slices.Equal(got, want) {
		t.Errorf("nobody armed: got notifications %q, want %q", got, want)
	}
}

func TestGatedWantedNotifies(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t'); CREATE TABLE u (id int); SELECT dashboard.watch('u')")
	if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
		t.Fatalf("setup: got notifications %q, want %q", got, want)
	}
	writes := []string{"INSERT INTO t VALUES (1)", "UPDATE t SET id = 2", "DELETE FROM t", "TRUNCATE t"}
	each := slices.Repeat([]string{"public.t"}, len(writes))
	write := func() {
		t.Helper()
		for _, s := range writes {
			exec(t, f.writer, s)
		}
	}

	// Every slot is asked: a server in any one of them gets the news.
	for slot := range 4 {
		f.armSlot(t, slot, "t")
		write()
		if got := f.notifications(t); !slices.Equal(got, each) {
			t.Errorf("slot %d armed: got notifications %q, want %q", slot, got, each)
		}
		f.disarm(t, slot, "t")
		write()
		if got := f.notifications(t); len(got) != 0 {
			t.Errorf("slot %d released: got notifications %q, want none", slot, got)
		}
	}

	// A key beyond the slots is nobody's; another table's key is not t's.
	f.armSlot(t, 4, "t")
	f.arm(t, "u")
	write()
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("only slot 4 of t and slot 0 of u armed: got notifications %q, want none", got)
	}
	f.disarm(t, 4, "t")
	f.disarm(t, 0, "u")

	// Two servers wanting the same table: one notification per transaction.
	f.armSlot(t, 0, "t")
	f.armSlot(t, 2, "t")
	write()
	if got := f.notifications(t); !slices.Equal(got, each) {
		t.Errorf("slots 0 and 2 armed: got notifications %q, want %q", got, each)
	}
	f.disarm(t, 0, "t")
	write()
	if got := f.notifications(t); !slices.Equal(got, each) {
		t.Errorf("slot 2 still armed: got notifications %q, want %q", got, each)
	}
	f.disarm(t, 2, "t")
	write()
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("all released: got notifications %q, want none", got)
	}
}

// TestGatedRearmWaitsForSkippers checks the invariant that no update is lost:
// a server's re-arm (taking the feed key) returns only after every writer
// that skipped its notification has ended, so the query it runs next sees
// the skippers' commits. Advisory locks are not MVCC, so this must hold at
// every isolation level and through rollbacks, and never fail the writer.
func TestGatedRearmWaitsForSkippers(t *testing.T) {
	t.Parallel()
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable} {
		for _, commit := range []bool{true, false} {
			end := "commit"
			if !commit {
				end = "rollback"
			}
			t.Run(fmt.Sprintf("%s %s", iso, end), func(t *testing.T) {
				t.Parallel()
				testRearmWaitsForSkipper(t, iso, commit, 4, 0)
			})
		}
	}
}

// testRearmWaitsForSkipper runs the episode with the server in slot of
// slots (set with dashboard.set_feed_slots unless 4, the default).
func testRearmWaitsForSkipper(t *testing.T, iso pgx.TxIsoLevel, commit bool, slots, slot int) {
	f := newFeed(t)
	if slots != 4 {
		exec(t, f.writer, "SELECT dashboard.set_feed_slots($1)", slots)
	}
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t')")
	f.notifications(t) // the reload from watch
	observer := connect(t, f.connString)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	// W: a writer that finds t not wanted and stays open.
	w := connect(t, f.connString)
	tx, err := w.BeginTx(ctx, pgx.TxOptions{IsoLevel: iso})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	var n int
	if err := tx.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil { // W's snapshot, before the arm
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (1)"); err != nil {
		t.Fatal(err)
	}

	// The server re-arms while W is open.
	armed := make(chan error, 1)
	go func() {
		_, err := f.server.Exec(ctx, "SELECT pg_advisory_lock(dashboard.feed_key($1, 't'::regclass))", slot)
		armed <- err
	}()
	waitFor(ctx, t, observer, "the server's re-arm waits for its feed key", 1, armed,
		"SELECT count(*)::int FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND pid = $1", pid(f.server))
	var blockedByW bool
	if err := observer.QueryRow(ctx, "SELECT $1::int = ANY(pg_blocking_pids($2))", pid(w), pid(f.server)).Scan(&blockedByW); err != nil {
		t.Fatal(err)
	}
	if !blockedByW {
		t.Error("the server's re-arm waits, but not for the writer that skipped")
	}
	select {
	case err := <-armed:
		t.Fatalf("re-arm returned (%v) while a writer that skipped is still open", err)
	default:
	}

	// Meanwhile a new writer finds the server's request queued: it notifies.
	exec(t, f.writer, "INSERT INTO t VALUES (2)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("a new writer while the re-arm waits: got notifications %q, want %q", got, want)
	}
	// W writes again: it holds the keys already, so it neither blocks nor
	// notifies (the re-arm waits for it anyway).
	if _, err := tx.Exec(ctx, "INSERT INTO t VALUES (3)"); err != nil {
		t.Fatalf("W's second write while the re-arm waits: %v", err)
	}
	select {
	case err := <-armed:
		t.Fatalf("re-arm returned (%v) while a writer that skipped is still open", err)
	default:
	}

	if commit {
		err = tx.Commit(ctx)
	} else {
		err = tx.Rollback(ctx)
	}
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) && pgErr.Code == "40001" {
			t.Fatalf("W's %s: serialization failure caused by the feed: %v", iso, err)
		}
		t.Fatalf("W's end: %v", err)
	}
	select {
	case err := <-armed:
		if err != nil {
			t.Fatalf("re-arm: %v", err)
		}
	case <-ctx.Done():
		t.Fatalf("re-arm did not return after the writer that skipped ended: %v", ctx.Err())
	}

	// The server's next query, on a new snapshot, sees what W committed.
	var seen int
	if err := f.server.QueryRow(ctx, "SELECT count(*)::int FROM t WHERE id IN (1, 3)").Scan(&seen); err != nil {
		t.Fatal(err)
	}
	want := 0
	if commit {
		want = 2
	}
	if seen != want {
		t.Errorf("server's query after the re-arm: sees %d of W's rows, want %d", seen, want)
	}
	// W skipped: its end sent nothing. Now armed, the next write notifies.
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("W's end: got notifications %q, want none", got)
	}
	exec(t, f.writer, "DELETE FROM t")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("after the re-arm: got notifications %q, want %q", got, want)
	}
}

// TestGatedNoPrivilegesNeeded checks that writers need nothing beyond their
// own write: no USAGE on schema dashboard, no EXECUTE on its functions.
func TestGatedNoPrivilegesNeeded(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	role := newRole(t, f.writer, "mig_writer")
	exec(t, f.writer, "REVOKE ALL ON SCHEMA dashboard FROM PUBLIC")
	exec(t, f.writer, "REVOKE EXECUTE ON ALL FUNCTIONS IN SCHEMA dashboard FROM PUBLIC")
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t'); GRANT INSERT ON t TO "+role)
	if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
		t.Fatalf("setup: got notifications %q, want %q", got, want)
	}
	exec(t, f.writer, "SET ROLE "+role)
	var usage, execute bool
	if err := f.writer.QueryRow(t.Context(), `SELECT has_schema_privilege('dashboard', 'USAGE'),
		has_function_privilege((SELECT oid FROM pg_proc WHERE proname = 'notify_if_wanted'), 'EXECUTE')`).Scan(&usage, &execute); err != nil {
		t.Fatal(err)
	}
	if usage || execute {
		t.Fatalf("setup: role %s has USAGE on dashboard %v, EXECUTE on notify_if_wanted %v, want neither", role, usage, execute)
	}

	// Not wanted: the write goes through (taking the shared keys) and is silent.
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("write by %s, nobody armed: got notifications %q, want none", role, got)
	}
	// Wanted: it notifies.
	f.arm(t, "t")
	exec(t, f.writer, "INSERT INTO t VALUES (2)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("write by %s, armed: got notifications %q, want %q", role, got, want)
	}
	exec(t, f.writer, "RESET ROLE")
}

// TestWatchReplacesOldTriggers checks that watch moves a user table from the
// old four triggers to the gated one, keeps the dashboard schema's tables on
// the four, and that unwatch removes either form.
func TestWatchReplacesOldTriggers(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "CREATE TABLE t (id int); CREATE TABLE partial (id int); CREATE TABLE both_forms (id int)")
	installOldTriggers(t, f.writer, "t")
	installOldTriggers(t, f.writer, "partial")
	exec(t, f.writer, "DROP TRIGGER dashboard_notify_update ON partial")
	if got := triggerMode(t, f.writer, "t"); got != "always" {
		t.Fatalf("setup: old triggers: got trigger_mode %q, want always", got)
	}
	if got := triggerMode(t, f.writer, "partial"); got != "" {
		t.Fatalf("setup: three old triggers: got trigger_mode %q, want NULL", got)
	}

	for _, table := range []string{"t", "partial"} {
		exec(t, f.writer, "SELECT dashboard.watch($1::regclass)", table)
		if got := notifyTriggers(t, f.writer, table); !slices.Equal(got, gatedTriggers) {
			t.Errorf("%s after watch: got triggers %q, want %q", table, got, gatedTriggers)
		}
		if got := triggerMode(t, f.writer, table); got != "gated" {
			t.Errorf("%s after watch: got trigger_mode %q, want gated", table, got)
		}
		if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
			t.Errorf("watch(%s): got notifications %q, want %q", table, got, want)
		}
	}
	// Gated now: silent unless wanted (the old triggers would notify).
	exec(t, f.writer, "INSERT INTO t VALUES (1); UPDATE t SET id = 2; DELETE FROM t; TRUNCATE t")
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("t after watch, nobody armed: got notifications %q, want none", got)
	}
	f.arm(t, "t")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("t after watch, armed: got notifications %q, want %q", got, want)
	}

	// The dashboard schema's tables stay on the always-notifying triggers.
	exec(t, f.writer, "SELECT dashboard.watch('dashboard.panels')")
	if got := notifyTriggers(t, f.writer, "dashboard.panels"); !slices.Equal(got, alwaysTriggers) {
		t.Errorf("dashboard.panels after watch: got triggers %q, want %q", got, alwaysTriggers)
	}
	if got := triggerMode(t, f.writer, "dashboard.panels"); got != "always" {
		t.Errorf("dashboard.panels after watch: got trigger_mode %q, want always", got)
	}
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("watch(dashboard.panels), already watched: got notifications %q, want none", got)
	}

	// unwatch removes the gated form, the old form, and both together.
	exec(t, f.writer, "CREATE TRIGGER dashboard_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON both_forms FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted()")
	installOldTriggers(t, f.writer, "both_forms")
	for _, table := range []string{"t", "both_forms", "dashboard.panels"} {
		exec(t, f.writer, "SELECT dashboard.unwatch($1::regclass)", table)
		if got := notifyTriggers(t, f.writer, table); len(got) != 0 {
			t.Errorf("%s after unwatch: got triggers %q, want none", table, got)
		}
		if got := triggerMode(t, f.writer, table); got != "" {
			t.Errorf("%s after unwatch: got trigger_mode %q, want NULL", table, got)
		}
		if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
			t.Errorf("unwatch(%s): got notifications %q, want %q", table, got, want)
		}
	}
	f.arm(t, "both_forms")
	exec(t, f.writer, "INSERT INTO t VALUES (1); INSERT INTO both_forms VALUES (1); INSERT INTO dashboard.dashboards (slug, title) VALUES ('ops', 'Ops')")
	exec(t, f.writer, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql) SELECT id, 'p', 'P', 'stat', 'SELECT 1' FROM dashboard.dashboards`)
	if got, want := f.notifications(t), []string{"dashboard.dashboards"}; !slices.Equal(got, want) {
		t.Errorf("after unwatch: got notifications %q, want %q", got, want)
	}
	exec(t, f.writer, "SELECT dashboard.watch('dashboard.panels')")
	if got := triggerMode(t, f.writer, "dashboard.panels"); got != "always" {
		t.Errorf("dashboard.panels watched again: got trigger_mode %q, want always", got)
	}
}

// oldDB returns a database migrated up to 0004, as the release before the
// gated trigger left it, and a connection to it.
func oldDB(t *testing.T) (string, *pgx.Conn) {
	t.Helper()
	connString := pgtest.NewDB(t)
	conn := connect(t, connString)
	if _, err := up(t.Context(), conn, upTo(t, 4)); err != nil {
		t.Fatalf("applying migrations up to 0004: %v", err)
	}
	return connString, conn
}

// TestUpgradeGatesOldTriggers checks that 0005 moves the user tables watched
// with the old triggers (by 0004's watch or by hand) to the gated trigger.
func TestUpgradeGatesOldTriggers(t *testing.T) {
	t.Parallel()
	connString, conn := oldDB(t)
	exec(t, conn, `CREATE TABLE a (id int); SELECT dashboard.watch('a');
		CREATE TABLE m (id int, k int) PARTITION BY RANGE (k); CREATE TABLE m1 PARTITION OF m FOR VALUES FROM (0) TO (10);
		SELECT dashboard.watch('m');
		CREATE TABLE b (id int);
		CREATE SCHEMA "Sales"; CREATE TABLE "Sales"."order items" (id int);
		CREATE TABLE plain (id int)`)
	installOldTriggers(t, conn, "b")
	installOldTriggers(t, conn, `"Sales"."order items"`)
	old := []string{"a", "m", "b", `"Sales"."order items"`}
	for _, table := range old {
		if got := notifyTriggers(t, conn, table); !slices.Equal(got, alwaysTriggers) {
			t.Fatalf("setup: %s: got triggers %q, want %q", table, got, alwaysTriggers)
		}
	}
	f := feedOn(t, connString)

	applied, err := up(t.Context(), conn, upTo(t, 5))
	if err != nil || !slices.Equal(applied, []int{5}) {
		t.Fatalf("Up from 0004: got %v, %v, want [5], nil", applied, err)
	}
	for _, table := range old {
		if got := notifyTriggers(t, conn, table); !slices.Equal(got, gatedTriggers) {
			t.Errorf("%s after 0005: got triggers %q, want %q", table, got, gatedTriggers)
		}
		if got := triggerMode(t, conn, table); got != "gated" {
			t.Errorf("%s after 0005: got trigger_mode %q, want gated", table, got)
		}
	}
	for _, table := range []string{"plain", "m1"} {
		if got := notifyTriggers(t, conn, table); len(got) != 0 {
			t.Errorf("%s after 0005: got triggers %q, want none", table, got)
		}
	}
	for _, table := range []string{"dashboard.dashboards", "dashboard.panels", "dashboard.access_tokens"} {
		if got := notifyTriggers(t, conn, table); !slices.Equal(got, alwaysTriggers) {
			t.Errorf("%s after 0005: got triggers %q, want %q", table, got, alwaysTriggers)
		}
	}
	// The servers reload their catalogs when the upgrade commits.
	if got, want := f.notifications(t), []string{reload}; !slices.Equal(got, want) {
		t.Errorf("Up: got notifications %q, want %q", got, want)
	}

	writes := `INSERT INTO a VALUES (1); INSERT INTO m VALUES (1, 1); INSERT INTO b VALUES (1);
		INSERT INTO "Sales"."order items" VALUES (1); INSERT INTO plain VALUES (1)`
	exec(t, f.writer, writes)
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("after 0005, nobody armed: got notifications %q, want none", got)
	}
	f.arm(t, append(old, "plain")...)
	exec(t, f.writer, writes)
	if got, want := f.notifications(t), []string{"public.a", "public.m", "public.b", `"Sales"."order items"`}; !slices.Equal(got, want) {
		t.Errorf("after 0005, all armed: got notifications %q, want %q", got, want)
	}
}

// TestUpgradeSkipsLockedTable checks that 0005 does not wait on a table that
// another session holds: the migration succeeds within its bound, the table
// keeps the old triggers (correct, only dearer), and a later watch upgrades it.
func TestUpgradeSkipsLockedTable(t *testing.T) {
	t.Parallel()
	connString, _ := oldDB(t)
	conn, notes := connectNoticed(t, connString)
	exec(t, conn, "CREATE TABLE busy (id int); SELECT dashboard.watch('busy'); CREATE TABLE free (id int); SELECT dashboard.watch('free')")
	locker := connect(t, connString)
	exec(t, locker, "BEGIN; LOCK TABLE busy IN ACCESS EXCLUSIVE MODE")

	// The migration gives up on a table after a 2 s lock_timeout: 15 s bounds
	// it with room to spare; a migration that waited for the lock would end
	// with the context instead.
	ctx, cancel := context.WithTimeout(t.Context(), 15*time.Second)
	defer cancel()
	applied, err := up(ctx, conn, upTo(t, 5))
	if err != nil || !slices.Equal(applied, []int{5}) {
		t.Fatalf("Up from 0004 with busy locked: got %v, %v, want [5], nil", applied, err)
	}
	if got := triggerMode(t, conn, "busy"); got != "always" {
		t.Errorf("busy after 0005: got trigger_mode %q, want always", got)
	}
	wantNotice(t, notes.all(), "busy keeps its old triggers", "lock timeout", "SELECT dashboard.watch('busy')")
	if got := notifyTriggers(t, conn, "busy"); !slices.Equal(got, alwaysTriggers) {
		t.Errorf("busy after 0005: got triggers %q, want %q", got, alwaysTriggers)
	}
	if got := triggerMode(t, conn, "free"); got != "gated" {
		t.Errorf("free after 0005: got trigger_mode %q, want gated", got)
	}
	exec(t, locker, "ROLLBACK")

	// busy still notifies on every change, wanted or not.
	f := feedOn(t, connString)
	exec(t, f.writer, "INSERT INTO busy VALUES (1); INSERT INTO free VALUES (1)")
	if got, want := f.notifications(t), []string{"public.busy"}; !slices.Equal(got, want) {
		t.Errorf("after 0005, nobody armed: got notifications %q, want %q", got, want)
	}
	exec(t, conn, "SELECT dashboard.watch('busy')")
	if got := notifyTriggers(t, conn, "busy"); !slices.Equal(got, gatedTriggers) {
		t.Errorf("busy after a later watch: got triggers %q, want %q", got, gatedTriggers)
	}
}

// notices collects the notices a connection receives.
type notices struct {
	mu   sync.Mutex
	msgs []string
}

func (n *notices) all() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return slices.Clone(n.msgs)
}

// connectNoticed is connect that also records the connection's notices.
func connectNoticed(t *testing.T, connString string) (*pgx.Conn, *notices) {
	t.Helper()
	cfg, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	n := &notices{}
	cfg.OnNotice = func(_ *pgconn.PgConn, notice *pgconn.Notice) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.msgs = append(n.msgs, notice.Message)
	}
	conn, err := pgx.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn, n
}

// wantNotice fails unless one of got contains every one of parts.
func wantNotice(t *testing.T, got []string, parts ...string) {
	t.Helper()
	for _, msg := range got {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(msg, p) }) {
			return
		}
	}
	t.Errorf("got notices %q, want one containing each of %q", got, parts)
}

// TestUpgradeSkipsTableNotOwned follows the README's roles: migrations run as
// the dashboard schema's owner, and each table's owner ran watch. Replacing
// triggers needs the table's ownership, which the migrating role lacks
// (TRIGGER privilege or not); the upgrade must leave such a table on its old
// triggers rather than fail the migration and with it the server's start.
func TestUpgradeSkipsTableNotOwned(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	admin := connect(t, connString)
	migrator := newRole(t, admin, "mig_schema_owner")
	tableOwner := newRole(t, admin, "mig_table_owner")
	var db string
	if err := admin.QueryRow(t.Context(), "SELECT current_database()").Scan(&db); err != nil {
		t.Fatal(err)
	}
	exec(t, admin, "GRANT CREATE ON DATABASE "+pgx.Identifier{db}.Sanitize()+" TO "+migrator)

	conn, notes := connectNoticed(t, connString)
	exec(t, conn, "SET ROLE "+migrator)
	if _, err := up(t.Context(), conn, upTo(t, 4)); err != nil {
		t.Fatalf("applying migrations up to 0004 as %s: %v", migrator, err)
	}
	exec(t, admin, `CREATE TABLE orders (id int); ALTER TABLE orders OWNER TO `+tableOwner+`;
		GRANT TRIGGER ON orders TO `+migrator+`;
		CREATE TABLE mine (id int); ALTER TABLE mine OWNER TO `+migrator+`;
		GRANT USAGE ON SCHEMA dashboard TO `+tableOwner)
	exec(t, admin, "SET ROLE "+tableOwner+"; SELECT dashboard.watch('orders'); RESET ROLE")
	exec(t, conn, "SELECT dashboard.watch('mine')")

	applied, err := up(t.Context(), conn, upTo(t, 5))
	if err != nil || !slices.Equal(applied, []int{5}) {
		t.Fatalf("Up from 0004 as %s: got %v, %v, want [5], nil", migrator, applied, err)
	}
	if got := triggerMode(t, conn, "orders"); got != "always" {
		t.Errorf("orders (not the migrator's) after 0005: got trigger_mode %q, want always", got)
	}
	wantNotice(t, notes.all(), "orders keeps its old triggers", "must be owner", "SELECT dashboard.watch('orders')")
	if got := triggerMode(t, conn, "mine"); got != "gated" {
		t.Errorf("mine (the migrator's) after 0005: got trigger_mode %q, want gated", got)
	}
	// Its owner upgrades it.
	exec(t, admin, "SET ROLE "+tableOwner+"; SELECT dashboard.watch('orders'); RESET ROLE")
	if got := triggerMode(t, conn, "orders"); got != "gated" {
		t.Errorf("orders after its owner's watch: got trigger_mode %q, want gated", got)
	}
}

// TestUpgradeYieldsOnDeadlock: the upgrade holds each table it upgraded until
// the migration commits. A writer that holds the next table and then writes
// to an upgraded one closes a cycle; when the migration is the one that
// detects it, it must give up that table (keep its old triggers) rather than
// fail the migration. The writer waits for the commit and goes on.
func TestUpgradeYieldsOnDeadlock(t *testing.T) {
	t.Parallel()
	connString, setup := oldDB(t)
	var super bool
	if err := setup.QueryRow(t.Context(), "SELECT current_setting('is_superuser')::bool").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("needs a superuser to set deadlock_timeout")
	}
	exec(t, setup, "CREATE TABLE a (id int); SELECT dashboard.watch('a'); CREATE TABLE b (id int); SELECT dashboard.watch('b')")
	holders := map[string]*pgx.Conn{"a": connect(t, connString), "b": connect(t, connString)}
	for table, h := range holders {
		// The writers never detect the deadlock themselves: the migration,
		// waiting first, does (1.5 s, within its 2 s lock_timeout).
		exec(t, h, "SET deadlock_timeout = '60s'; BEGIN; INSERT INTO "+table+" VALUES (1)")
	}
	conn, notes := connectNoticed(t, connString)
	exec(t, conn, "SET deadlock_timeout = '1500ms'")
	observer := connect(t, connString)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	type result struct {
		applied []int
		err     error
	}
	upDone := make(chan result, 1)
	upGone := make(chan error, 1)
	to5 := upTo(t, 5)
	go func() {
		applied, err := up(ctx, conn, to5)
		upDone <- result{applied, err}
		upGone <- err
	}()
	waitingOn := func(table string) {
		t.Helper()
		waitFor(ctx, t, observer, "the migration waits for "+table, 1, upGone,
			"SELECT count(*)::int FROM pg_locks WHERE pid = $1 AND locktype = 'relation' AND NOT granted AND relation = $2::regclass",
			pid(conn), table)
	}
	// The migration goes through the tables in its own order: find the
	// first it waits for, let it have that one, and see it wait for the other.
	var first string
	for first == "" {
		err := observer.QueryRow(ctx, `SELECT coalesce((SELECT relation::regclass::text FROM pg_locks
			WHERE pid = $1 AND locktype = 'relation' AND NOT granted AND relation IN ('a'::regclass, 'b'::regclass)), '')`,
			pid(conn)).Scan(&first)
		if err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-upGone:
			t.Fatalf("Up returned (%v) before waiting for a held table", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	second := map[string]string{"a": "b", "b": "a"}[first]
	exec(t, holders[first], "COMMIT")
	waitingOn(second)

	// The holder of the second table now writes to the first, which the
	// migration holds: a deadlock.
	writerDone := make(chan error, 1)
	go func() {
		_, err := holders[second].Exec(ctx, "INSERT INTO "+first+" VALUES (2)")
		writerDone <- err
	}()
	var r result
	select {
	case r = <-upDone:
	case <-ctx.Done():
		t.Fatalf("Up did not return: %v", ctx.Err())
	}
	if r.err != nil || !slices.Equal(r.applied, []int{5}) {
		t.Fatalf("Up in a deadlock with a writer: got %v, %v, want [5], nil", r.applied, r.err)
	}
	wantNotice(t, notes.all(), second+" keeps its old triggers", "deadlock detected", "SELECT dashboard.watch('"+second+"')")
	if err := <-writerDone; err != nil {
		t.Errorf("the writer in the deadlock: got %v, want its write to go through after the migration", err)
	}
	exec(t, holders[second], "COMMIT")
	if got := triggerMode(t, observer, first); got != "gated" {
		t.Errorf("%s (upgraded before the deadlock): got trigger_mode %q, want gated", first, got)
	}
	if got := triggerMode(t, observer, second); got != "always" {
		t.Errorf("%s (given up in the deadlock): got trigger_mode %q, want always", second, got)
	}
}
