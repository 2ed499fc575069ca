package listen_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

// runArms starts a on connString and stops it when the test ends, checking
// that Run returns nil promptly.
func runArms(t *testing.T, a *listen.Arms) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, newSink()) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Arms.Run: got %v, want nil", err)
			}
		case <-time.After(waitTimeout):
			t.Errorf("Arms.Run did not return within %v of cancel", waitTimeout)
		}
	})
}

// waitArms polls a's state (it has no change signal) until cond holds.
func waitArms(t *testing.T, a *listen.Arms, what string, cond func(listen.ArmsState) bool) listen.ArmsState {
	t.Helper()
	deadline := time.Now().Add(waitTimeout)
	for {
		st := a.State()
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s; last state %+v", waitTimeout, what, st)
		}
		time.Sleep(10 * time.Millisecond) // polling the state, not hoping
	}
}

// TestArmsGivesBackVanishedSlot: a shrink of the slot count commits after a
// server read the old count and before it claims. The slot it then gets no
// longer exists (the triggers do not ask it), so the server gives it back
// and claims again with the new count.
func TestArmsGivesBackVanishedSlot(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	admin := connectDB(t, connString)
	if _, err := migrations.Up(t.Context(), admin); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	execDB(t, admin, "SELECT dashboard.set_feed_slots(8)")
	// Four other servers hold slots 0 to 3: the first free one is 4.
	var holders []*pgx.Conn
	for slot := range 4 {
		c := connectDB(t, connString)
		execDB(t, c, "SELECT pg_advisory_lock(dashboard.slot_key($1))", slot)
		holders = append(holders, c)
	}
	shrinker := connectDB(t, connString)

	cc, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	a := listen.NewArms(listen.ArmsConfig{ConnConfig: cc, BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond})
	var mu sync.Mutex
	var seen []string // attempt:count, as the hook saw them
	a.SetClaimHook(func(attempt, slots int) {
		mu.Lock()
		seen = append(seen, fmt.Sprintf("%d:%d", attempt, slots))
		mu.Unlock()
		ctx := context.Background()
		switch attempt {
		case 0:
			// The server has read 8; the operator shrinks to 4 now.
			if _, err := shrinker.Exec(ctx, "SELECT dashboard.set_feed_slots(4)"); err != nil {
				t.Errorf("shrinking to 4 between the read and the claim: %v", err)
			}
		case 1:
			// The server gave slot 4 back; the server in slot 2 stops.
			if _, err := holders[2].Exec(ctx, "SELECT pg_advisory_unlock(dashboard.slot_key(2))"); err != nil {
				t.Errorf("releasing slot 2: %v", err)
			}
		}
	})
	runArms(t, a)

	st := waitArms(t, a, "a slot claimed", func(s listen.ArmsState) bool { return s.Slot >= 0 })
	if st.Slot != 2 {
		t.Errorf("claimed slot: got %d, want 2 (slot 4 vanished with the shrink to 4)", st.Slot)
	}
	mu.Lock()
	got := slices.Clone(seen)
	mu.Unlock()
	if want := []string{"0:8", "1:4"}; !slices.Equal(got, want) {
		t.Errorf("claim attempts (attempt:count): got %v, want %v", got, want)
	}
	var high int
	if err := admin.QueryRow(t.Context(), `SELECT count(*) FROM pg_locks l, generate_series(4, 7) s
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.slot_key(s)`).Scan(&high); err != nil {
		t.Fatal(err)
	}
	if high != 0 {
		t.Errorf("slots 4 to 7 after the shrink: %d held, want none", high)
	}
}

// TestArmsAllSlotsTaken: with every slot held, the server is not ready and
// says how to raise the count; after a grow it claims one of the new slots
// on its next try.
func TestArmsAllSlotsTaken(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	admin := connectDB(t, connString)
	if _, err := migrations.Up(t.Context(), admin); err != nil {
		t.Fatalf("migrating: %v", err)
	}
	execDB(t, admin, "SELECT dashboard.set_feed_slots(2)")
	for slot := range 2 {
		execDB(t, connectDB(t, connString), "SELECT pg_advisory_lock(dashboard.slot_key($1))", slot)
	}
	cc, err := pgx.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	a := listen.NewArms(listen.ArmsConfig{ConnConfig: cc, BackoffMin: 50 * time.Millisecond, BackoffMax: 300 * time.Millisecond})
	runArms(t, a)
	st := waitArms(t, a, "the claim refused", func(s listen.ArmsState) bool { return s.Err != nil })
	if err := a.Ready(); err == nil || err.Error() != st.Err.Error() {
		t.Errorf("Ready with every slot taken: got %v, want %v", err, st.Err)
	}
	const want = "all 2 feed slots are taken: at most 2 servers can watch one database at once (the owner of schema dashboard can raise it: dashboard feed slots N)"
	if st.Err.Error() != want {
		t.Errorf("error with every slot taken: got %q, want %q", st.Err, want)
	}
	execDB(t, admin, "SELECT dashboard.set_feed_slots(3)")
	st = waitArms(t, a, "a slot claimed after the grow", func(s listen.ArmsState) bool { return s.Slot >= 0 })
	if st.Slot != 2 {
		t.Errorf("claimed slot after growing to 3: got %d, want 2", st.Slot)
	}
}
