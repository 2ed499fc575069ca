package migrations

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgtest"
)

// The tests of the slot count (0012): dashboard.set_feed_slots(n) lets n
// servers watch one database, and the trigger asks every one of them.

// slotServer is one server's feed-lock session: it claims the first free
// slot as listen.Arms does and arms tables in it.
type slotServer struct {
	conn *pgx.Conn
	slot int
}

// claimSlot opens a session and claims the first free of the database's
// feed slots, failing the test when none is free.
func claimSlot(t *testing.T, connString string) *slotServer {
	t.Helper()
	conn := connect(t, connString)
	for slot := range feedSlots(t, conn) {
		var ok bool
		if err := conn.QueryRow(t.Context(), "SELECT pg_try_advisory_lock(dashboard.slot_key($1))", slot).Scan(&ok); err != nil {
			t.Fatalf("claiming feed slot %d: %v", slot, err)
		}
		if ok {
			return &slotServer{conn: conn, slot: slot}
		}
	}
	t.Fatal("claiming a feed slot: all are taken")
	return nil
}

func (s *slotServer) arm(t *testing.T, table string) {
	t.Helper()
	exec(t, s.conn, "SELECT pg_advisory_lock(dashboard.feed_key($1, $2::regclass))", s.slot, table)
}

func (s *slotServer) disarm(t *testing.T, table string) {
	t.Helper()
	var held bool
	if err := s.conn.QueryRow(t.Context(), "SELECT pg_advisory_unlock(dashboard.feed_key($1, $2::regclass))", s.slot, table).Scan(&held); err != nil || !held {
		t.Fatalf("disarming %s in slot %d: held %v, %v", table, s.slot, held, err)
	}
}

func feedSlots(t *testing.T, conn *pgx.Conn) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT dashboard.feed_slots()").Scan(&n); err != nil {
		t.Fatalf("feed_slots(): %v", err)
	}
	return n
}

func triggerSource(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	var src string
	if err := conn.QueryRow(t.Context(), "SELECT prosrc FROM pg_proc WHERE oid = 'dashboard.notify_if_wanted()'::regprocedure").Scan(&src); err != nil {
		t.Fatalf("reading notify_if_wanted: %v", err)
	}
	return src
}

// TestFeedSlotsSixServers: after set_feed_slots(8), six servers each hold a
// slot (two of the eight came and went, so slots 6 and 7 are among them);
// the trigger asks every slot: a table only one of them wants notifies, one
// nobody wants does not, and a writer that skipped holds all eight keys.
func TestFeedSlotsSixServers(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(8)")
	if got := feedSlots(t, f.writer); got != 8 {
		t.Fatalf("feed_slots() after set_feed_slots(8): got %d, want 8", got)
	}
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t')")
	f.notifications(t)

	var servers []*slotServer
	for range 8 {
		servers = append(servers, claimSlot(t, f.connString))
	}
	for i, s := range servers {
		if s.slot != i {
			t.Fatalf("server %d claimed slot %d, want %d", i, s.slot, i)
		}
	}
	// Two servers stop: six remain, in slots 0, 1, 2, 5, 6 and 7.
	for _, gone := range []int{3, 4} {
		if err := servers[gone].conn.Close(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	servers = slices.Delete(servers, 3, 5)
	// Their backends end a moment after the connections close.
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	waitFor(ctx, t, f.writer, "the two stopped servers' slots are free", 6, nil, `SELECT count(*)::int FROM pg_locks l
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 AND l.mode = 'ExclusiveLock'
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND ((l.classid::bigint << 32) | l.objid::bigint) IN (SELECT dashboard.slot_key(s) FROM generate_series(0, 7) s)`)
	st := claimedSlots(t, f.writer)
	if want := []int{0, 1, 2, 5, 6, 7}; !slices.Equal(st, want) {
		t.Fatalf("claimed slots: got %v, want %v", st, want)
	}

	writes := []string{"INSERT INTO t VALUES (1)", "UPDATE t SET id = 2", "DELETE FROM t", "TRUNCATE t"}
	each := slices.Repeat([]string{"public.t"}, len(writes))
	write := func() {
		t.Helper()
		for _, s := range writes {
			exec(t, f.writer, s)
		}
	}
	write()
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("nobody wants t: got notifications %q, want none", got)
	}
	for _, s := range servers {
		s.arm(t, "t")
		write()
		if got := f.notifications(t); !slices.Equal(got, each) {
			t.Errorf("only the server in slot %d wants t: got notifications %q, want %q", s.slot, got, each)
		}
		s.disarm(t, "t")
		write()
		if got := f.notifications(t); len(got) != 0 {
			t.Errorf("the server in slot %d released t: got notifications %q, want none", s.slot, got)
		}
	}

	// A writer that skipped holds every one of the eight slots' keys.
	tx, err := f.writer.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), "INSERT INTO t VALUES (9)"); err != nil {
		t.Fatal(err)
	}
	var held int
	if err := f.server.QueryRow(t.Context(), feedKeysHeld, pid(f.writer), "t", "ShareLock").Scan(&held); err != nil {
		t.Fatal(err)
	}
	if held != 8 {
		t.Errorf("writer after skipping: holds %d of t's feed keys shared, want 8", held)
	}
}

// claimedSlots lists the claimed feed slots of the database, by slot.
func claimedSlots(t *testing.T, conn *pgx.Conn) []int {
	t.Helper()
	rows, err := conn.Query(t.Context(), `SELECT s FROM generate_series(0, 255) s
		WHERE EXISTS (SELECT FROM pg_locks l WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
			AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
			AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.slot_key(s))
		ORDER BY s`)
	if err != nil {
		t.Fatalf("listing claimed slots: %v", err)
	}
	slots, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatalf("listing claimed slots: %v", err)
	}
	return slots
}

// TestFeedSlotsRearmWaitsHighSlot: the no-loss invariant holds for a slot
// that only exists with more than four: a re-arm in slot 6 of 8 waits for a
// writer that skipped, at every isolation level and through rollbacks.
func TestFeedSlotsRearmWaitsHighSlot(t *testing.T) {
	t.Parallel()
	for _, iso := range []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.Serializable} {
		for _, commit := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s commit=%v", iso, commit), func(t *testing.T) {
				t.Parallel()
				testRearmWaitsForSkipper(t, iso, commit, 8, 6)
			})
		}
	}
}

// TestFeedSlotsShrink: shrinking is refused while a server holds a slot
// that would go, and changes nothing then; once that slot is free it
// succeeds and the trigger stops asking the slots that went.
func TestFeedSlotsShrink(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(8)")
	exec(t, f.writer, "CREATE TABLE t (id int); SELECT dashboard.watch('t')")
	f.notifications(t)
	before := triggerSource(t, f.writer)

	high := connect(t, f.connString)
	exec(t, high, "SELECT pg_advisory_lock(dashboard.slot_key(5))")
	exec(t, high, "SET application_name = 'server five'")
	_, err := f.writer.Exec(t.Context(), "SELECT dashboard.set_feed_slots(4)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55006" {
		t.Fatalf("shrinking to 4 while slot 5 is held: got %v, want SQLSTATE 55006 (object_in_use)", err)
	}
	for _, want := range []string{"slot 5", fmt.Sprintf("pid %d", pid(high)), "server five"} {
		if !strings.Contains(pgErr.Message, want) {
			t.Errorf("refusal %q does not name %q", pgErr.Message, want)
		}
	}
	if got := feedSlots(t, f.writer); got != 8 {
		t.Errorf("feed_slots() after the refused shrink: got %d, want 8", got)
	}
	if got := triggerSource(t, f.writer); got != before {
		t.Errorf("trigger after the refused shrink changed:\n%s", got)
	}
	// Shrinking to a count that keeps slot 5 is fine.
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(6)")
	if got := feedSlots(t, f.writer); got != 6 {
		t.Errorf("feed_slots() after shrinking to 6: got %d, want 6", got)
	}

	// The server in slot 5 wants t: its want reaches the trigger.
	exec(t, high, "SELECT pg_advisory_lock(dashboard.feed_key(5, 't'::regclass))")
	exec(t, f.writer, "INSERT INTO t VALUES (1)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("slot 5 of 6 wants t: got notifications %q, want %q", got, want)
	}

	// It stops; now the shrink goes through and slot 5 is nobody's.
	exec(t, high, "SELECT pg_advisory_unlock_all()")
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(4)")
	if got := feedSlots(t, f.writer); got != 4 {
		t.Errorf("feed_slots() after shrinking to 4: got %d, want 4", got)
	}
	exec(t, high, "SELECT pg_advisory_lock(dashboard.feed_key(5, 't'::regclass))")
	exec(t, f.writer, "INSERT INTO t VALUES (2)")
	if got := f.notifications(t); len(got) != 0 {
		t.Errorf("after shrinking to 4, only slot 5 holds t's key: got notifications %q, want none", got)
	}
	exec(t, high, "SELECT pg_advisory_unlock_all()")
	s := claimSlot(t, f.connString)
	s.arm(t, "t")
	exec(t, f.writer, "INSERT INTO t VALUES (3)")
	if got, want := f.notifications(t), []string{"public.t"}; !slices.Equal(got, want) {
		t.Errorf("after shrinking to 4, slot %d wants t: got notifications %q, want %q", s.slot, got, want)
	}
}

// TestFeedSlotsShrinkBlocksClaims: while a shrink runs, the slots that go
// cannot be claimed, so no server takes one that is about to vanish.
func TestFeedSlotsShrinkBlocksClaims(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(8)")
	tx, err := f.writer.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(t.Context())
	if _, err := tx.Exec(t.Context(), "SELECT dashboard.set_feed_slots(2)"); err != nil {
		t.Fatal(err)
	}
	other := connect(t, f.connString)
	for s := range 8 {
		var ok bool
		if err := other.QueryRow(t.Context(), "SELECT pg_try_advisory_lock(dashboard.slot_key($1))", s).Scan(&ok); err != nil {
			t.Fatal(err)
		}
		if want := s < 2; ok != want {
			t.Errorf("claiming slot %d during the shrink to 2: got %v, want %v", s, ok, want)
		}
	}
}

// TestFeedSlotsTriggerText: for four slots the trigger function is the one
// 0008 wrote, character for character, in both modes, after 0012 and after
// going to another count and back.
func TestFeedSlotsTriggerText(t *testing.T) {
	t.Parallel()
	for _, mode := range []string{"notify", "logical"} {
		t.Run(mode, func(t *testing.T) {
			t.Parallel()
			if mode == "logical" {
				pgtest.RequireLogical(t)
			}
			conn := connect(t, pgtest.NewDB(t))
			if _, err := up(t.Context(), conn, upTo(t, 10)); err != nil {
				t.Fatalf("applying migrations up to 0010: %v", err)
			}
			exec(t, conn, "SELECT dashboard.set_feed_mode($1)", mode)
			want := triggerSource(t, conn)
			if !strings.Contains(want, "7238129038999420928") {
				t.Fatalf("0008's function lacks slot 3's key:\n%s", want)
			}
			if _, err := Up(t.Context(), conn); err != nil {
				t.Fatalf("Up: %v", err)
			}
			if got := triggerSource(t, conn); got != want {
				t.Errorf("after 0012: got\n%s\nwant\n%s", got, want)
			}
			exec(t, conn, "SELECT dashboard.set_feed_slots(16)")
			sixteen := triggerSource(t, conn)
			if got := strings.Count(sixteen, "pg_try_advisory_xact_lock_shared("); got != 16 {
				t.Errorf("16 slots: got %d lock tries, want 16:\n%s", got, sixteen)
			}
			var key int64
			if err := conn.QueryRow(t.Context(), "SELECT dashboard.feed_key(15, 0::oid)").Scan(&key); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(sixteen, fmt.Sprint(key)) {
				t.Errorf("16 slots: slot 15's key %d missing:\n%s", key, sixteen)
			}
			exec(t, conn, "SELECT dashboard.set_feed_slots(4)")
			if got := triggerSource(t, conn); got != want {
				t.Errorf("back to 4 slots: got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestSetFeedSlotsRefuses: bad counts and roles that do not own the schema
// get a clear error and change nothing.
func TestSetFeedSlotsRefuses(t *testing.T) {
	t.Parallel()
	f := newFeed(t)
	before := triggerSource(t, f.writer)
	for _, bad := range []string{"0", "-1", "257", "NULL"} {
		_, err := f.writer.Exec(t.Context(), "SELECT dashboard.set_feed_slots("+bad+")")
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "22023" || !strings.Contains(pgErr.Message, "want 1 to 256") {
			t.Errorf("set_feed_slots(%s): got %v, want SQLSTATE 22023 saying 1 to 256", bad, err)
		}
	}
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(256)")
	if got := feedSlots(t, f.writer); got != 256 {
		t.Errorf("feed_slots() after set_feed_slots(256): got %d, want 256", got)
	}
	exec(t, f.writer, "SELECT dashboard.set_feed_slots(4)")

	role := newRole(t, f.writer, "mig_slots")
	exec(t, f.writer, "GRANT USAGE ON SCHEMA dashboard TO "+role+"; SET ROLE "+role)
	_, err := f.writer.Exec(t.Context(), "SELECT dashboard.set_feed_slots(8)")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42501" || !strings.Contains(pgErr.Message, "does not own schema dashboard") {
		t.Errorf("set_feed_slots by a role that does not own the schema: got %v, want SQLSTATE 42501", err)
	}
	exec(t, f.writer, "RESET ROLE")
	if got := feedSlots(t, f.writer); got != 4 {
		t.Errorf("feed_slots() after the refusals: got %d, want 4", got)
	}
	if got := triggerSource(t, f.writer); got != before {
		t.Errorf("trigger after the refusals changed:\n%s", got)
	}
}

// TestUpAcceptsGap: versions need not be contiguous. A set with a gap
// applies, and the missing version, once it ships, is applied after the
// later one (0012 shipped while 0011 was on another branch).
func TestUpAcceptsGap(t *testing.T) {
	t.Parallel()
	conn := connect(t, pgtest.NewDB(t))
	fsys := fstest.MapFS{
		"0001_first.sql": {Data: []byte("CREATE TABLE first (id int);")},
		"0003_third.sql": {Data: []byte("CREATE TABLE third (id int);")},
	}
	if applied, err := up(t.Context(), conn, fsys); err != nil || !slices.Equal(applied, []int{1, 3}) {
		t.Fatalf("Up with a gap: got %v, %v, want [1 3], nil", applied, err)
	}
	fsys["0002_second.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE second (id int);")}
	if applied, err := up(t.Context(), conn, fsys); err != nil || !slices.Equal(applied, []int{2}) {
		t.Fatalf("Up once the gap is filled: got %v, %v, want [2], nil", applied, err)
	}
	exec(t, conn, "SELECT FROM first, second, third")
}
