package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Arms is this server's side of the gated triggers (migrations/
// 0005_gated_notify.sql): one dedicated connection on which the server
// claims a feed slot and holds, for each table it wants news of, the
// session advisory lock that the table's trigger asks. A trigger notifies
// only while some server holds its table's key; otherwise the writer holds
// a shared lock on the key until it ends.
//
// The engine disarms a table when a notification for it arrives (the rest
// of that refresh cycle costs writers nothing) and arms it again before
// its next query reads the table. Arming waits for every writer that
// skipped its notification, so the query's snapshot, taken after, has them
// all: nothing is lost. A writer that stays open (idle in transaction)
// would stall that wait, so it is bounded: past the bound the query runs
// anyway, the table stays pending, and once its lock comes the sink is told
// the table changed, so its panels run again.
//
// When the connection is lost, so are the locks, and writers skip. After
// reconnecting, Arms claims a slot, re-arms every table it wanted and only
// then tells the sink to resync.
type Arms struct {
	cfg  ArmsConfig
	sink Sink
	// claimHook, if set (tests only), runs before each claim attempt with
	// the slot count just read, so a test can change the count between
	// that read and the claim.
	claimHook func(attempt, slots int)

	arms chan armRequest // arms waiting for an answer
	wake chan struct{}   // disarms or a keep are waiting in mu

	mu      sync.Mutex
	state   ArmsState
	disarms map[string]bool
	keep    []string // nil: no change to what is wanted
	// unarmed lists tables a query read without waiting for their arm
	// (the connection was down or busy past Arm's bound). The session
	// treats them as pending: once armed, the sink is told they changed,
	// so that what a skipped writer committed is read again.
	unarmed map[string]bool
}

// ArmsConfig configures Arms.
type ArmsConfig struct {
	// ConnConfig is the connection to hold the locks on; it must reach the
	// primary, like the listener's.
	ConnConfig *pgx.ConnConfig
	Logger     *slog.Logger
	Metrics    *Metrics
	// Wait bounds how long one arm waits for writers that skipped; the
	// lock_timeout of the connection. Default 200ms.
	Wait time.Duration
	// Retry is how often a pending table is tried again. Default 1s.
	Retry time.Duration
	// PingInterval is how often the idle connection is pinged: a lost
	// connection has lost its locks, and writers skip until the next
	// session re-arms. Default 1s.
	PingInterval time.Duration
	// BackoffMin and BackoffMax bound the reconnect delay; defaults 100ms
	// and 10s.
	BackoffMin, BackoffMax time.Duration
	// Fault turns on a known-bad variant, for the no-loss tests only.
	Fault Fault
}

// Fault names a deliberately wrong variant of the protocol. The no-loss
// test runs each and must see it lose an update, which shows that the test
// catches losses.
type Fault int

const (
	// NoFault is the protocol as designed.
	NoFault Fault = iota
	// FaultNoWait arms without waiting: a lock that does not come at once
	// counts as armed, so the query may run before a writer that skipped
	// has ended ("wait for writers in flight", left out).
	FaultNoWait
	// FaultNoResync re-arms after a reconnect but does not resync: writes
	// made while the locks were gone are never looked at.
	FaultNoResync
	// FaultNoLateChange drops the news that a pending table was finally
	// armed: a writer that stayed open past the bound is never looked at
	// ("skip if a refresh is already under way").
	FaultNoLateChange
	// FaultNoVisibilityWait hands a decoded commit's tables to the sink at
	// once, in logical mode: the refresh may read the table before the
	// transaction is visible ("the message arrived, so it committed").
	FaultNoVisibilityWait
	// FaultNoRunningResync resyncs a new logical session once, not again
	// when the transactions running at that resync have ended: one whose
	// commit record came before the slot's consistent point, but which was
	// not yet visible, is then never looked at.
	FaultNoRunningResync
)

// ArmsState is what /readyz and the metrics say about Arms.
type ArmsState struct {
	// Slot is the feed slot this server holds, or -1.
	Slot int
	// Armed and Pending count tables.
	Armed, Pending int
	// Err is why no slot is held, if none is.
	Err error
	// BackendPID is the server process holding the locks; 0 when none.
	BackendPID uint32
}

type armRequest struct {
	tables []string
	done   chan struct{} // closed once every table was tried
}

// NewArms returns an Arms; it connects when Run is called.
func NewArms(cfg ArmsConfig) *Arms {
	if cfg.Wait <= 0 {
		cfg.Wait = 200 * time.Millisecond
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = time.Second
	}
	if cfg.BackoffMin <= 0 {
		cfg.BackoffMin = 100 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	return &Arms{cfg: cfg, arms: make(chan armRequest), wake: make(chan struct{}, 1),
		state: ArmsState{Slot: -1}, disarms: make(map[string]bool), unarmed: make(map[string]bool)}
}

// State returns the current slot and counts.
func (a *Arms) State() ArmsState {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.state
}

// Ready reports whether this server holds a feed slot: without one no
// trigger can tell it anything. It is Arms' part of /readyz.
func (a *Arms) Ready() error {
	s := a.State()
	if s.Slot >= 0 {
		return nil
	}
	if s.Err != nil {
		return s.Err
	}
	return errors.New("no feed slot yet")
}

// Arm asks for news of tables and returns once each of them is armed, or
// pending past the wait bound, or the connection is down for longer than a
// few bounds (its reconnect re-arms and resyncs), or ctx ends. A query that
// reads the tables must start only after Arm returns. Tables of the
// dashboard schema always notify and are skipped.
func (a *Arms) Arm(ctx context.Context, tables []string) {
	tables = userTables(tables)
	if len(tables) == 0 {
		return
	}
	bound := time.NewTimer(4*a.cfg.Wait + time.Second)
	defer bound.Stop()
	done := make(chan struct{})
	select {
	case a.arms <- armRequest{tables: tables, done: done}:
	case <-bound.C:
		a.missed(tables)
		return
	case <-ctx.Done():
		a.missed(tables)
		return
	}
	select {
	case <-done:
	case <-ctx.Done():
	}
}

// Disarm stops asking for news of tables until they are armed again; the
// engine calls it when a notification for them arrived. It never blocks.
func (a *Arms) Disarm(tables []string) {
	tables = userTables(tables)
	if len(tables) == 0 {
		return
	}
	a.mu.Lock()
	for _, t := range tables {
		a.disarms[t] = true
	}
	a.mu.Unlock()
	a.poke()
}

// Keep drops every table not in wanted: nobody watches a panel that reads
// it any more. It never blocks.
func (a *Arms) Keep(wanted []string) {
	a.mu.Lock()
	a.keep = append(make([]string, 0, len(wanted)), wanted...)
	a.mu.Unlock()
	a.poke()
}

// missed records tables that a query is about to read unarmed.
func (a *Arms) missed(tables []string) {
	a.mu.Lock()
	for _, t := range tables {
		a.unarmed[t] = true
	}
	a.mu.Unlock()
	a.poke()
}

func (a *Arms) poke() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// takeQueued returns the disarms, the keep set and the tables read
// unarmed that arrived since the last call.
func (a *Arms) takeQueued() (disarms map[string]bool, keep []string, unarmed map[string]bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	disarms, keep, unarmed = a.disarms, a.keep, a.unarmed
	a.disarms, a.keep, a.unarmed = make(map[string]bool), nil, make(map[string]bool)
	return disarms, keep, unarmed
}

func userTables(tables []string) []string {
	out := tables[:0:0]
	for _, t := range tables {
		if len(t) < len("dashboard.") || t[:len("dashboard.")] != "dashboard." {
			out = append(out, t)
		}
	}
	return out
}

// Run holds the connection until ctx is cancelled, reconnecting with
// backoff, and returns nil. sink is told when a late arm came through
// (TableChanged) and after every reconnect, once everything wanted is armed
// again (Resync); it is the engine whose Arms this is, hence not a setting.
func (a *Arms) Run(ctx context.Context, sink Sink) error {
	a.sink = sink
	// wanted survives reconnects: it is what the engine asked for and did
	// not take back.
	wanted := make(map[string]bool)
	first := true
	reconnect(ctx, a.cfg.BackoffMin, a.cfg.BackoffMax, func(ctx context.Context, up func()) error {
		// The first session needs no resync unless a query ran unarmed
		// before it: no lock was ever held, so no writer skipped one.
		resync := !first
		first = false
		err := a.session(ctx, wanted, resync, up)
		a.setState(func(s *ArmsState) { *s = ArmsState{Slot: -1, Err: err} })
		return err
	}, func(err error, retryIn time.Duration) {
		a.cfg.Logger.Warn("feed locks lost", "err", err, "retry_in", retryIn.Round(time.Millisecond))
	})
	return nil
}

func (a *Arms) setState(f func(*ArmsState)) {
	a.mu.Lock()
	f(&a.state)
	a.mu.Unlock()
}

// armSession is one connection's locks.
type armSession struct {
	a       *Arms
	conn    *pgx.Conn
	slot    int
	armed   map[string]int64 // table -> the key held
	pending map[string]bool
}

// session runs one connection: claim a slot, re-arm what is wanted,
// resync, then serve requests until the connection fails.
func (a *Arms) session(ctx context.Context, wanted map[string]bool, resync bool, onReady func()) error {
	conn, err := connect(ctx, a.cfg.ConnConfig, "feed locks")
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if _, err := conn.Exec(ctx, "SELECT set_config('lock_timeout', $1, false)",
		fmt.Sprintf("%dms", a.cfg.Wait.Milliseconds())); err != nil {
		return fmt.Errorf("setting lock_timeout: %w", err)
	}
	s := &armSession{a: a, conn: conn, slot: -1, armed: make(map[string]int64), pending: make(map[string]bool)}
	if err := s.claim(ctx); err != nil {
		return err
	}
	onReady()
	a.cfg.Logger.Info("feed slot claimed", "slot", s.slot, "backend_pid", conn.PgConn().PID())
	// Every table wanted before the connection was lost is armed again
	// before anything is re-queried: the resync's queries then see every
	// writer that skipped while the locks were gone.
	for t := range wanted {
		if err := s.arm(ctx, t); err != nil {
			return err
		}
	}
	s.publish()
	if resync && a.cfg.Fault != FaultNoResync {
		a.sink.Resync()
	}

	retry := time.NewTicker(a.cfg.Retry)
	defer retry.Stop()
	ping := time.NewTicker(a.cfg.PingInterval)
	defer ping.Stop()
	for {
		// Disarms and keeps that came before an arm are applied first, so
		// that an arm after a disarm of the same table really re-arms.
		if err := s.applyQueued(ctx, wanted); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-a.wake:
		case r := <-a.arms:
			if err := s.applyQueued(ctx, wanted); err != nil {
				close(r.done)
				return err
			}
			var err error
			for _, t := range r.tables {
				wanted[t] = true
				if err = s.arm(ctx, t); err != nil {
					break
				}
			}
			close(r.done)
			if err != nil {
				return err
			}
		case <-retry.C:
			for _, t := range slices.Sorted(maps.Keys(s.pending)) {
				if err := s.armTable(ctx, t, true); err != nil {
					return err
				}
				if _, ok := s.armed[t]; ok && a.cfg.Fault != FaultNoLateChange {
					// Writers that skipped while it was pending have
					// ended: look at the table again.
					a.sink.TableChanged(t, time.Now())
				}
			}
		case <-ping.C:
			pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := conn.Ping(pctx)
			cancel()
			if err != nil {
				return fmt.Errorf("pinging feed locks: %w", err)
			}
		}
		s.publish()
	}
}

// claimAttempts bounds how often one session starts its claim over after
// the slot count shrank under it; past it the session fails and the
// reconnect loop tries again after its backoff.
const claimAttempts = 3

// claim takes the first free feed slot. The count (dashboard.feed_slots(),
// set by dashboard.set_feed_slots) is read again once a slot is held: a
// shrink that committed between the first read and the claim may have
// removed the slot, and the triggers no longer ask it. Such a slot is given
// back and the claim starts over. The second read is final for the slot
// held: a shrink refuses while a slot it removes is held, and holds those
// slots itself while it runs, so no later shrink can remove it.
//
// The count is read only here: a server that holds a slot keeps it across
// a grow and takes one of the new slots only when it claims again (after a
// reconnect); servers started after a grow find the new slots at once.
func (s *armSession) claim(ctx context.Context) error {
	for attempt := 0; ; attempt++ {
		slots, err := s.feedSlots(ctx)
		if err != nil {
			return err
		}
		if s.a.claimHook != nil {
			s.a.claimHook(attempt, slots)
		}
		slot := -1
		for i := range slots {
			var ok bool
			if err := s.conn.QueryRow(ctx, "SELECT pg_try_advisory_lock(dashboard.slot_key($1))", i).Scan(&ok); err != nil {
				return fmt.Errorf("claiming feed slot %d: %w", i, err)
			}
			if ok {
				slot = i
				break
			}
		}
		if slot < 0 {
			return fmt.Errorf("all %d feed slots are taken: at most %d servers can watch one database at once "+
				"(the owner of schema dashboard can raise it: dashboard feed slots N)", slots, slots)
		}
		now, err := s.feedSlots(ctx)
		if err != nil {
			return err
		}
		if slot < now {
			s.slot = slot
			pid := s.conn.PgConn().PID()
			s.a.setState(func(st *ArmsState) { st.Slot, st.Err, st.BackendPID = slot, nil, pid })
			return nil
		}
		s.a.cfg.Logger.Info("feed slot count shrank while claiming; giving the slot back", "slot", slot, "feed_slots", now)
		if _, err := s.conn.Exec(ctx, "SELECT pg_advisory_unlock(dashboard.slot_key($1))", slot); err != nil {
			return fmt.Errorf("giving back feed slot %d: %w", slot, err)
		}
		if attempt+1 >= claimAttempts {
			return fmt.Errorf("claiming a feed slot: the slot count changed %d times while claiming", claimAttempts)
		}
	}
}

// feedSlots reads how many slots the database has now.
func (s *armSession) feedSlots(ctx context.Context) (int, error) {
	var slots int
	if err := s.conn.QueryRow(ctx, "SELECT dashboard.feed_slots()").Scan(&slots); err != nil {
		return 0, fmt.Errorf("reading feed slots (is the database migrated?): %w", err)
	}
	return slots, nil
}

// applyQueued releases the tables disarmed since last time and those no
// longer wanted.
func (s *armSession) applyQueued(ctx context.Context, wanted map[string]bool) error {
	disarms, keep, unarmed := s.a.takeQueued()
	for t := range disarms {
		if err := s.disarm(ctx, t); err != nil {
			return err
		}
	}
	for t := range unarmed {
		// Armed or not by now, the query did not wait: arm it afresh
		// (waiting for whoever skipped) and then have it read again.
		wanted[t] = true
		if err := s.disarm(ctx, t); err != nil {
			return err
		}
		s.pending[t] = true
	}
	if keep == nil {
		return nil
	}
	want := make(map[string]bool, len(keep))
	for _, t := range keep {
		want[t] = true
	}
	for t := range wanted {
		if !want[t] {
			delete(wanted, t)
			delete(s.pending, t)
			if err := s.disarm(ctx, t); err != nil {
				return err
			}
		}
	}
	return nil
}

// arm takes the table's key, waiting at most the lock_timeout for writers
// that skipped; past it the table is pending. An error is returned only
// when the connection is unusable.
func (s *armSession) arm(ctx context.Context, table string) error {
	return s.armTable(ctx, table, false)
}

// armTable arms table. A pending table is tried again only by the retry
// (retry true): a query's Arm does not wait for it once more, since the
// table is read again anyway once it is armed.
func (s *armSession) armTable(ctx context.Context, table string, retry bool) error {
	if _, ok := s.armed[table]; ok {
		return nil
	}
	if s.pending[table] && !retry {
		return nil
	}
	start := time.Now()
	// The key is kept, so that the lock can be released even after the
	// table was dropped or renamed.
	sql := "SELECT k, pg_advisory_lock(k)::text FROM (SELECT dashboard.feed_key($1, $2::regclass) AS k) s"
	if s.a.cfg.Fault == FaultNoWait {
		sql = "SELECT k, pg_try_advisory_lock(k)::text FROM (SELECT dashboard.feed_key($1, $2::regclass) AS k) s"
	}
	var key int64
	err := s.conn.QueryRow(ctx, sql, s.slot, table).Scan(&key, nil)
	s.a.cfg.Metrics.armWait.Observe(time.Since(start).Seconds())
	var pgErr *pgconn.PgError
	switch {
	case err == nil:
		s.armed[table] = key
		delete(s.pending, table)
	case errors.As(err, &pgErr) && pgErr.Code == "55P03": // lock_not_available
		if !s.pending[table] {
			s.a.cfg.Logger.Info("a writer that skipped its notification is still open; its table is armed when it ends",
				"table", table, "waited", s.a.cfg.Wait)
		}
		s.pending[table] = true
		s.a.cfg.Metrics.armTimeouts.Inc()
	case errors.As(err, &pgErr):
		// The table is gone: nothing to arm; the catalog reload that
		// follows drops it.
		s.a.cfg.Logger.Debug("cannot arm table", "table", table, "err", err)
		delete(s.pending, table)
	default:
		return fmt.Errorf("arming %s: %w", table, err)
	}
	return nil
}

// disarm releases the table's key, if held.
func (s *armSession) disarm(ctx context.Context, table string) error {
	key, ok := s.armed[table]
	if !ok {
		return nil
	}
	delete(s.armed, table)
	if _, err := s.conn.Exec(ctx, "SELECT pg_advisory_unlock($1)", key); err != nil {
		return fmt.Errorf("disarming %s: %w", table, err)
	}
	return nil
}

func (s *armSession) publish() {
	armed, pending := len(s.armed), len(s.pending)
	s.a.setState(func(st *ArmsState) { st.Armed, st.Pending = armed, pending })
	s.a.cfg.Metrics.armed.Set(float64(armed))
	s.a.cfg.Metrics.pending.Set(float64(pending))
}
