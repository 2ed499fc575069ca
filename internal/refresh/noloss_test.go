package refresh_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/refresh"
)

// The no-loss tests prove the gated triggers (migrations/0005) and the
// engine's arming together, and in logical mode the Logical feed's slots and
// resyncs: after every quiet moment every server's view of every panel
// equals the committed state. The safety-net refresh is off, so nothing but
// the feed can bring a lost change back.

// convergeWait bounds how long views may take to catch up after writers
// stop. It covers a pending arm's retry (1s) several times over; a lost
// update never converges.
const convergeWait = 8 * time.Second

// lossFixture is tables a, b and c and one dashboard whose panels count
// them, plus one that reads two tables.
type lossFixture struct {
	db     *testDB
	dash   int64
	panels map[int64]string // panel -> SQL computing its truth
}

func newLossFixture(t *testing.T) *lossFixture {
	t.Helper()
	db := newTestDB(t)
	f := &lossFixture{db: db, panels: make(map[int64]string)}
	for _, tbl := range []string{"a", "b", "c"} {
		db.table(t, tbl)
	}
	f.dash = db.dashboard(t, "loss")
	for _, q := range []string{
		"SELECT count(*) AS n FROM a",
		"SELECT count(*) AS n FROM b",
		"SELECT count(*) AS n FROM c",
		"SELECT (SELECT count(*) FROM a) + 1000 * (SELECT count(*) FROM b) AS n",
	} {
		f.panels[db.panel(t, f.dash, fmt.Sprintf("p%d", len(f.panels)), q)] = q
	}
	return f
}

// panelOf returns the panel that counts table.
func (f *lossFixture) panelOf(t *testing.T, table string) int64 {
	t.Helper()
	for id, q := range f.panels {
		if q == "SELECT count(*) AS n FROM "+table {
			return id
		}
	}
	t.Fatalf("no panel counts %s", table)
	return 0
}

// server starts one server's engine, listener and arms on the fixture's
// database and makes the dashboard live on it.
func (f *lossFixture) server(t *testing.T, o options) *harness {
	t.Helper()
	o.engine.SafetyRefresh = 0
	if o.engine.MaxRefreshHz == 0 {
		o.engine.MaxRefreshHz = 20
	}
	h := start(t, f.db, o)
	t.Cleanup(h.acquire(t, f.dash))
	return h
}

// converged waits until every panel's latest result on h equals the
// committed truth, and reports false (with what differs) when it does not
// within convergeWait.
func (f *lossFixture) converged(t *testing.T, h *harness) (bool, string) {
	t.Helper()
	truth := make(map[int64]int64)
	for id, q := range f.panels {
		var n int64
		if err := f.db.pool.QueryRow(context.Background(), q).Scan(&n); err != nil {
			t.Fatalf("reading the truth of panel %d: %v", id, err)
		}
		truth[id] = n
	}
	deadline := time.NewTimer(convergeWait)
	defer deadline.Stop()
	for {
		h.pub.mu.Lock()
		var diff []string
		for id, want := range truth {
			rs := h.pub.ofLocked(id)
			if len(rs) == 0 || value(rs[len(rs)-1]) != want {
				got := int64(-1)
				if len(rs) > 0 {
					got = value(rs[len(rs)-1])
				}
				diff = append(diff, fmt.Sprintf("panel %d shows %d, committed %d", id, got, want))
			}
		}
		ch := h.pub.changed
		h.pub.mu.Unlock()
		if len(diff) == 0 {
			return true, ""
		}
		select {
		case <-ch:
		case <-deadline.C:
			return false, strings.Join(diff, "; ")
		}
	}
}

// write runs one random transaction: one to three statements on random
// tables at a random isolation level, committed or rolled back.
func write(ctx context.Context, conn *pgx.Conn, rng *rand.Rand) error {
	levels := []pgx.TxIsoLevel{pgx.ReadCommitted, pgx.RepeatableRead, pgx.Serializable}
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: levels[rng.IntN(len(levels))]})
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	for range 1 + rng.IntN(3) {
		tbl := []string{"a", "b", "c"}[rng.IntN(3)]
		if rng.IntN(4) == 0 {
			_, err = tx.Exec(ctx, "DELETE FROM "+tbl+" WHERE id = (SELECT min(id) FROM "+tbl+")")
		} else {
			_, err = tx.Exec(ctx, "INSERT INTO "+tbl+" (v) SELECT 1 FROM generate_series(1, $1::int)", 1+rng.IntN(3))
		}
		if err != nil {
			return err
		}
	}
	if rng.IntN(5) == 0 {
		return tx.Rollback(ctx)
	}
	return tx.Commit(ctx)
}

// serializationFailure reports errors a writer retries in real life.
func serializationFailure(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (pgErr.Code == "40001" || pgErr.Code == "40P01")
}

// terminate ends a backend and waits until it is gone, so that its locks
// are released.
func terminate(t *testing.T, db *testDB, pid uint32) {
	t.Helper()
	if pid == 0 {
		return
	}
	db.exec(t, "SELECT pg_terminate_backend($1)", int32(pid))
	deadline := time.Now().Add(waitTimeout)
	for {
		var n int
		if err := db.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = $1", int32(pid)).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("backend %d still there after %v", pid, waitTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// longWriter writes to c and stays open past the arm bound before it
// commits: if c was not armed when it wrote, it skipped its notification
// and the server must find it by itself.
func longWriter(db *testDB, hold time.Duration) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	conn, err := pgx.Connect(ctx, db.connString)
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	tx, err := conn.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead})
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, "INSERT INTO c (v) VALUES (7)"); err != nil {
		return err
	}
	time.Sleep(hold)
	return tx.Commit(ctx)
}

// waitEnded waits until the backends pids have exited, so that their last
// transactions have committed or aborted.
func waitEnded(t *testing.T, db *testDB, pids []uint32) {
	t.Helper()
	ids := make([]int32, len(pids))
	for i, p := range pids {
		ids[i] = int32(p)
	}
	deadline := time.Now().Add(waitTimeout)
	for {
		var n int
		if err := db.pool.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", ids).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writer sessions still open after %v", n, waitTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// waitUnarmed waits until no server holds a feed key of table, so that a
// writer now skips its notification.
func waitUnarmed(t *testing.T, db *testDB, table string) {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		var held int
		err := db.pool.QueryRow(context.Background(), `
			SELECT count(*) FROM pg_locks l, generate_series(0, dashboard.feed_slots() - 1) s
			WHERE l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock'
			  AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.feed_key(s, $1::regclass)`, table).Scan(&held)
		if err != nil {
			t.Fatal(err)
		}
		if held == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still armed after %v", table, waitTimeout)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// TestNoLossRandomized: two servers on one database; writers at every
// isolation level, with rollbacks and transactions over several tables; a
// writer left open past the arm bound; listeners and lock connections (in
// logical mode walsenders) killed. After every quiet moment, every view
// equals the committed state.
func TestNoLossRandomized(t *testing.T) {
	t.Parallel()
	forEachFeed(t, true, testNoLossRandomized)
}

func testNoLossRandomized(t *testing.T, feed string) {
	f := newLossFixture(t)
	// Creating a slot waits for every open transaction in the cluster, the
	// other tests' too; meanwhile a logical feed resyncs periodically,
	// after a second without a slot, soon enough for convergeWait. (The
	// fault episodes keep the default, so that it cannot mask a fault.)
	o := options{feed: feed, slotWait: time.Second}
	servers := []*harness{f.server(t, o), f.server(t, o)}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	for phase := range 4 {
		ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
		var wg sync.WaitGroup
		var mu sync.Mutex
		var errs []error
		var pids []uint32
		for w := range 4 {
			wrng := rand.New(rand.NewPCG(seed, uint64(phase*10+w+1)))
			wg.Go(func() {
				conn, err := pgx.Connect(context.Background(), f.db.connString)
				if err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
					return
				}
				defer conn.Close(context.Background())
				mu.Lock()
				pids = append(pids, conn.PgConn().PID())
				mu.Unlock()
				for ctx.Err() == nil {
					if err := write(ctx, conn, wrng); err != nil && ctx.Err() == nil && !serializationFailure(err) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
						return
					}
				}
			})
		}
		// A writer that stays open past the arm bound.
		hold := time.Duration(300+rng.IntN(400)) * time.Millisecond
		wg.Go(func() {
			if err := longWriter(f.db, hold); err != nil {
				mu.Lock()
				errs = append(errs, err)
				mu.Unlock()
			}
		})
		// Faults: kill a listener or a lock connection mid-phase.
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		h := servers[rng.IntN(len(servers))]
		if rng.IntN(2) == 0 {
			s, _ := h.listener.State()
			terminate(t, f.db, s.BackendPID)
		} else {
			terminate(t, f.db, h.arms.State().BackendPID)
		}
		wg.Wait()
		cancel()
		if len(errs) > 0 {
			t.Fatalf("phase %d: writer: %v", phase, errs[0])
		}
		// A writer stopped by its context may leave a COMMIT running on
		// the server; the truth is read once every writer's session ended.
		waitEnded(t, f.db, pids)
		for i, h := range servers {
			if ok, diff := f.converged(t, h); !ok {
				st, _ := h.listener.State()
				t.Fatalf("phase %d (seed %d), server %d lost an update: %s; feed %+v; published: %s", phase, seed, i, diff, st, h.pub)
			}
		}
	}
}

// TestNoLossFaultsAreCaught runs each known-bad variant of the protocol
// through the episodes that defeat it and requires a lost update: a test
// that could not see these losses could not prove the design either. The
// same episodes without a fault must lose nothing.
func TestNoLossFaultsAreCaught(t *testing.T) {
	t.Parallel()
	// open: a writer skips because the table is not armed, and stays
	// open past the arm bound.
	open := func(t *testing.T, f *lossFixture, h *harness) {
		// The first write is queried at once; the second's news disarms c
		// and its query waits for the refresh cap (500ms), so c stays
		// unarmed meanwhile.
		f.db.exec(t, "INSERT INTO c (v) VALUES (1)")
		h.pub.waitValue(t, f.panelOf(t, "c"), f.db.count(t, "c"))
		f.db.exec(t, "INSERT INTO c (v) VALUES (1)")
		waitUnarmed(t, f.db, "c")
		// Open past the cap's wait plus the arm bound, so that the query
		// runs without it.
		if err := longWriter(f.db, 1200*time.Millisecond); err != nil {
			t.Fatal(err)
		}
	}
	// killed: the lock connection dies, and a writer skips before the
	// locks come back.
	killed := func(t *testing.T, f *lossFixture, h *harness) {
		terminate(t, f.db, h.arms.State().BackendPID)
		waitUnarmed(t, f.db, "a")
		f.db.exec(t, "INSERT INTO a (v) VALUES (2)")
	}
	// killedFeed: the change feed's connection dies (in logical mode the
	// walsender, and with it the slot), and a writer commits before it is
	// back.
	killedFeed := func(t *testing.T, f *lossFixture, h *harness) {
		before, _ := h.listener.State()
		terminate(t, f.db, before.BackendPID)
		waitState(t, h.listener, "disconnected", func(s listen.State) bool { return !s.Listening })
		f.db.exec(t, "INSERT INTO a (v) VALUES (2)")
		if s, _ := h.listener.State(); s.Listening || s.Connects != before.Connects {
			t.Fatalf("the feed reconnected before the write committed (%+v): the test did not write into the gap", s)
		}
	}
	for _, tt := range []struct {
		name    string
		feed    string
		fault   listen.Fault
		episode func(*testing.T, *lossFixture, *harness)
	}{
		{"no wait for writers that skipped", notifyFeed, listen.FaultNoWait, open},
		{"no re-query once a pending table is armed", notifyFeed, listen.FaultNoLateChange, open},
		{"no resync after the locks were lost", notifyFeed, listen.FaultNoResync, killed},
		{"open writer, no fault", notifyFeed, listen.NoFault, open},
		{"lost locks, no fault", notifyFeed, listen.NoFault, killed},
		{"logical: no resync after the walsender was killed", logicalFeed, listen.FaultNoResync, killedFeed},
		{"logical: no wait for writers that skipped", logicalFeed, listen.FaultNoWait, open},
		{"logical: no resync after the locks were lost", logicalFeed, listen.FaultNoResync, killed},
		{"logical: open writer, no fault", logicalFeed, listen.NoFault, open},
		{"logical: killed walsender, no fault", logicalFeed, listen.NoFault, killedFeed},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := newLossFixture(t)
			// A slow reconnect leaves the writer of "killed" time to skip;
			// a low refresh cap keeps c disarmed a while after its news.
			h := f.server(t, options{feed: tt.feed, fault: tt.fault, armsBackoff: 400 * time.Millisecond,
				listen: listen.Config{BackoffMin: 400 * time.Millisecond, BackoffMax: 500 * time.Millisecond},
				engine: refresh.Config{MaxRefreshHz: 2}})
			if ok, diff := f.converged(t, h); !ok {
				t.Fatalf("not converged before the episode: %s", diff)
			}
			tt.episode(t, f, h)
			ok, diff := f.converged(t, h)
			switch {
			case tt.fault == listen.NoFault && !ok:
				t.Errorf("lost an update without a fault: %s; published: %s", diff, h.pub)
			case tt.fault != listen.NoFault && ok:
				t.Errorf("the fault lost nothing: this episode cannot tell it from the design")
			case !ok:
				t.Logf("lost, as it must: %s", diff)
			}
		})
	}
}
