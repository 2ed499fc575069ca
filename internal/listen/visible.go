package listen

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
)

// A decoded commit is not yet a visible one. A walsender sends a
// transaction as soon as its commit record is flushed, while the
// committing backend leaves the list of running transactions (and so
// becomes visible to new snapshots) a moment later, or much later when it
// waits for a synchronous standby. A refresh started on the message alone
// could read the table without that transaction and, hearing nothing
// more, keep the stale result for good. The visibility gate holds each
// decoded commit's tables until a snapshot taken on an ordinary connection
// includes the transaction; every snapshot taken after that one does too,
// so the refresh the sink starts sees it.

// commit is a decoded transaction that sent messages: its 32-bit id, as
// pgoutput's Begin gives it, and the tables named. resync instead marks
// the transactions running when the session resynced, by an id newer than
// all of them: once every transaction up to it has ended, the sink
// resyncs again.
type commit struct {
	xid    uint32
	tables []string
	resync bool
}

// minSnapshotGap spaces the gate's snapshot reads: under a steady stream of
// commits one read covers every commit decoded in the gap, instead of one
// round trip per commit (at 3,000 commits/s those cost the server a
// quarter of a core). A commit after a quiet moment is read at once.
const minSnapshotGap = 5 * time.Millisecond

// gate releases decoded commits to the sink once they are visible.
type gate struct {
	sink    Sink
	resync  func() // asks the sink to resync
	metrics *Metrics
	owed    atomic.Bool // a resync is held until running transactions end

	mu      sync.Mutex
	pending []commit
	wake    chan struct{} // capacity 1: a commit was added
}

func newGate(sink Sink, resync func(), metrics *Metrics) *gate {
	return &gate{sink: sink, resync: resync, metrics: metrics, wake: make(chan struct{}, 1)}
}

// add queues a decoded commit; it never blocks the stream.
func (g *gate) add(c commit) {
	g.mu.Lock()
	g.pending = append(g.pending, c)
	g.mu.Unlock()
	select {
	case g.wake <- struct{}{}:
	default:
	}
}

// holdRunning waits, at most wait, until every transaction running now has
// ended, so that the resync that follows sees them; past wait it makes the
// sink resync again once they have. See Logical.session. A snapshot cannot
// list them: one whose id is at or above its xmax (one past the latest to
// end) is running but not in xip. So conn takes a transaction id of its
// own, newer than all of theirs, and rolls back: once every id up to that
// one has ended, they have.
func (g *gate) holdRunning(ctx context.Context, conn *pgx.Conn, wait time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	tx, err := conn.Begin(ctx)
	if err != nil {
		return fmt.Errorf("taking a transaction id: %w", err)
	}
	defer tx.Rollback(ctx)
	var id uint64
	if err := tx.QueryRow(ctx, "SELECT pg_current_xact_id()::text::bigint").Scan(&id); err != nil {
		return fmt.Errorf("taking a transaction id: %w", err)
	}
	// A snapshot taken after the id: if it shows nothing below the id
	// running, nothing is owed (the usual case on a quiet database).
	snap, err := readSnapshot(ctx, tx)
	if err != nil {
		return err
	}
	if err := tx.Rollback(ctx); err != nil {
		return fmt.Errorf("taking a transaction id: %w", err)
	}
	// Usually they end within milliseconds; an idle transaction must not
	// hold the resync up for longer than wait.
	deadline := time.Now().Add(wait)
	for pause := time.Millisecond; snap.runningBefore(id) && time.Now().Before(deadline); pause = min(2*pause, 50*time.Millisecond) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		if snap, err = readSnapshot(ctx, conn); err != nil {
			return err
		}
	}
	if !snap.runningBefore(id) {
		return nil
	}
	g.owed.Store(true)
	g.add(commit{xid: uint32(id), resync: true})
	return nil
}

// readSnapshot reads pg_current_snapshot() on conn (a connection or a
// transaction), within a bound: a connection that hangs must not stop the
// feed for good.
func readSnapshot(ctx context.Context, conn interface {
	QueryRow(context.Context, string, ...any) pgx.Row
}) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var text string
	if err := conn.QueryRow(ctx, "SELECT pg_current_snapshot()::text").Scan(&text); err != nil {
		return snapshot{}, fmt.Errorf("reading a snapshot: %w", err)
	}
	return parseSnapshot(text)
}

// run releases the queued commits as they become visible to conn's
// snapshots, until ctx ends or conn fails. Commits still queued then are
// dropped: the caller ends the session, and the next one resyncs once its
// slot exists and the transactions running then have ended (holdRunning),
// which covers them.
func (g *gate) run(ctx context.Context, conn *pgx.Conn) error {
	delay := time.Duration(0)
	var last time.Time // of the last snapshot read
	for {
		g.mu.Lock()
		n := len(g.pending)
		g.mu.Unlock()
		if n == 0 {
			delay = 0
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-g.wake:
			}
			continue
		}
		if delay > 0 {
			// Still running: wait a little, or for a new commit.
			t := time.NewTimer(delay)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-g.wake:
			case <-t.C:
			}
			t.Stop()
		}
		if wait := minSnapshotGap - time.Since(last); wait > 0 {
			t := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				t.Stop()
				return ctx.Err()
			case <-t.C:
			}
		}
		last = time.Now()
		snap, err := readSnapshot(ctx, conn)
		if err != nil {
			return err
		}
		var ready []string
		resync := false
		g.mu.Lock()
		keep := g.pending[:0]
		for _, c := range g.pending {
			switch {
			case c.resync && snap.endedThrough(c.xid):
				resync = true
			case !c.resync && snap.visible(c.xid):
				ready = append(ready, c.tables...)
			default:
				keep = append(keep, c)
			}
		}
		clear(g.pending[len(keep):])
		g.pending = keep
		waiting := len(keep) > 0
		g.mu.Unlock()
		for _, table := range ready {
			g.sink.TableChanged(table, time.Now())
		}
		if resync {
			g.resync()
			g.owed.Store(false)
		}
		if waiting {
			// A commit decoded before it is visible: a few microseconds
			// usually, as long as a synchronous standby takes otherwise.
			if delay == 0 {
				g.metrics.heldBack.Inc()
			}
			delay = min(max(2*delay, time.Millisecond), 100*time.Millisecond)
		} else {
			delay = 0
		}
	}
}

// snapshot is pg_current_snapshot(): every transaction below xmin has
// ended, none from xmax on had started, and xip lists those in between
// still running.
type snapshot struct {
	xmin, xmax uint64
	xip        map[uint64]bool
}

func parseSnapshot(s string) (snapshot, error) {
	bad := fmt.Errorf("reading a snapshot: unexpected %q", s)
	parts := strings.Split(s, ":")
	if len(parts) != 3 {
		return snapshot{}, bad
	}
	var snap snapshot
	var err error
	if snap.xmin, err = strconv.ParseUint(parts[0], 10, 64); err != nil {
		return snapshot{}, bad
	}
	if snap.xmax, err = strconv.ParseUint(parts[1], 10, 64); err != nil {
		return snapshot{}, bad
	}
	if parts[2] != "" {
		ids := strings.Split(parts[2], ",")
		snap.xip = make(map[uint64]bool, len(ids))
		for _, id := range ids {
			x, err := strconv.ParseUint(id, 10, 64)
			if err != nil {
				return snapshot{}, bad
			}
			snap.xip[x] = true
		}
	}
	if snap.xmin > snap.xmax {
		return snapshot{}, errors.Join(bad, errors.New("xmin above xmax"))
	}
	return snap, nil
}

// visible reports whether the transaction with the 32-bit id xid has
// ended in this snapshot. Its 64-bit id is the one with those low 32 bits
// nearest xmax: live ids span less than 2^31. An id at or above xmax
// (which is one past the latest transaction to end, not the next id to
// assign) has not ended.
func (s snapshot) visible(xid uint32) bool {
	full := s.widen(xid)
	if full < s.xmin {
		return true
	}
	return full < s.xmax && !s.xip[full]
}

// runningBefore reports whether a transaction with an id below id (a
// 64-bit id) may still run in this snapshot: one is listed, or ids from
// xmax up to id are unaccounted for.
func (s snapshot) runningBefore(id uint64) bool {
	if s.xmax < id {
		return true
	}
	for x := range s.xip {
		if x < id {
			return true
		}
	}
	return false
}

// endedThrough reports whether every transaction with an id up to xid's
// has ended in this snapshot.
func (s snapshot) endedThrough(xid uint32) bool {
	return s.widen(xid) < s.xmin
}

// widen returns the 64-bit id with the low 32 bits of xid nearest xmax.
func (s snapshot) widen(xid uint32) uint64 {
	full := s.xmax&^0xffffffff | uint64(xid)
	switch {
	case full > s.xmax && full-s.xmax > 1<<31 && full >= 1<<32:
		full -= 1 << 32
	case full < s.xmax && s.xmax-full > 1<<31:
		full += 1 << 32
	}
	return full
}
