package refresh

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
)

// Reads from hot standbys (docs/architecture.md, "Reads from standbys").
//
// A panel or variable query goes to a standby only once that standby has
// replayed the primary's WAL insert position read after the query was due:
// after the notification arrived and after Arms armed the query's tables,
// so the position covers the commit that was notified (even one of a
// writer with synchronous_commit=off, not yet written out) and every writer
// that skipped its notification. The position is read on the primary by one
// shared read for all the queries that ask at about the same time
// (positions), and each standby has one poll loop (standby.run) that
// releases every query waiting on it; a query does not wait past
// Config.StandbyMaxWait, and a standby that made one wait that long is
// skipped until it has replayed what it missed, unless it had replayed all
// the primary had flushed (then the primary is nudged to flush: nudger). Whatever goes wrong on a
// standby (lag, down, promoted, a recovery conflict) sends the query to the
// primary, counted by dashboard_standby_fallbacks_total{reason}; the panel
// never shows it.

// Fallback reasons: the fixed label words of
// dashboard_standby_fallbacks_total.
const (
	// fallbackLag: the standby had not replayed the position within
	// StandbyMaxWait, or it is lagging since an earlier query's did not.
	fallbackLag = "lag"
	// fallbackDown: the standby could not be reached, or failed the query
	// for a reason that is not the query's.
	fallbackDown = "down"
	// fallbackPromoted: the standby is not in recovery any more; its data
	// may have left the primary's timeline.
	fallbackPromoted = "promoted"
	// fallbackConflict: replay cancelled the query (a recovery conflict).
	fallbackConflict = "conflict"
	// fallbackRecovery: the query uses something a server in recovery
	// cannot do (SQLSTATE 55000, such as pg_current_wal_lsn()).
	fallbackRecovery = "recovery"
	// fallbackPosition: the primary's WAL position could not be read.
	fallbackPosition = "position"
	// fallbackUnflushed: the standby had not replayed the position within
	// StandbyMaxWait, but had replayed everything the primary had flushed
	// when the position was read: the rest waits for a flush on the
	// primary, not for the standby (which is not marked lagging).
	fallbackUnflushed = "unflushed"
)

var fallbackReasons = []string{fallbackLag, fallbackDown, fallbackPromoted, fallbackConflict, fallbackRecovery, fallbackPosition, fallbackUnflushed}

// standbyPoll is how often a standby's replay position is read while
// queries wait for it. Replay on a healthy standby takes about a
// millisecond, so the wait is usually one or two polls.
const standbyPoll = 2 * time.Millisecond

// standbyIdleCheck is how often a standby in use is checked while no query
// waits, so that a promotion is noticed even on a quiet server.
const standbyIdleCheck = 5 * time.Second

// standbyCheckTimeout bounds one check of a standby.
const standbyCheckTimeout = 2 * time.Second

// nudgeTimeout bounds one nudge of the primary to flush its WAL.
const nudgeTimeout = 2 * time.Second

// standbyLagCheck is how often a standby judged lagging is checked, to
// see whether it has caught up with the position it missed.
const standbyLagCheck = 50 * time.Millisecond

// The sizes of a WAL page header (PostgreSQL's SizeOfXLogShortPHD), and of
// the long header that opens the first page of each WAL segment
// (SizeOfXLogLongPHD).
const (
	walShortPageHeader = 24
	walLongPageHeader  = 40
)

// walEnd turns the primary's insert position (pg_current_wal_insert_lsn())
// into the end of the WAL inserted so far, the position a standby's
// pg_last_wal_replay_lsn() reaches once it has replayed all of it.
//
// The two differ only at a page boundary. PostgreSQL counts inserted WAL
// in bytes without page headers, and turns that count into an LSN in two
// ways: the insert position as the place where the next record would
// start (XLogBytePosToRecPtr: past the header of the page it would start
// on), and a record's end as where its last byte ends
// (XLogBytePosToEndRecPtr: at the page boundary itself). Replay reports
// the latter. So when the inserted WAL ends exactly at a page boundary
// (a record filled its page to the last byte, or an XLOG_SWITCH ended its
// segment), the insert position is the boundary plus the next page's
// header, and replay stops at the boundary until more WAL comes. The
// insert position's offset in its page is at least the header's size, so
// exactly the header's size means nothing of the page is used yet: the
// long header at the start of a segment (offset 40 in the segment), the
// short one on any other page (offset 24 in the page; 24 cannot be a
// segment offset, as the first page's header is 40 long). Any other
// offset is inside a page, where both ways agree.
func walEnd(insert pglogrepl.LSN, blockSize, segmentSize uint64) pglogrepl.LSN {
	switch {
	case segmentSize > 0 && uint64(insert)%segmentSize == walLongPageHeader:
		return insert - walLongPageHeader
	case blockSize > 0 && uint64(insert)%blockSize == walShortPageHeader:
		return insert - walShortPageHeader
	}
	return insert
}

// standbyState is what the engine knows of a standby.
type standbyState int

const (
	standbyUsable   standbyState = iota
	standbyLagging               // missed a position within the bound: skipped until it has replayed it
	standbyDown                  // unreachable: retried every Config.RetryDelay
	standbyPromoted              // not in recovery: rechecked every standbyIdleCheck
)

var standbyStates = []standbyState{standbyUsable, standbyLagging, standbyDown, standbyPromoted}

// String is the state's label in dashboard_standbys.
func (st standbyState) String() string {
	switch st {
	case standbyLagging:
		return "lagging"
	case standbyDown:
		return "down"
	case standbyPromoted:
		return "promoted"
	}
	return "usable"
}

var (
	errStandbyDown     = errors.New("standby unreachable")
	errStandbyPromoted = errors.New("standby is not in recovery")
	errStandbyLag      = errors.New("standby has not replayed the position")
	// errUnflushed: the wait ran out, but the standby had replayed all the
	// primary had flushed; it is not lagging.
	errUnflushed = errors.New("the primary has not flushed the position")
)

// standby is one hot standby: its pool, its state, and the queries waiting
// for its replay.
type standby struct {
	pool   *pgxpool.Pool
	name   string // host:port, for logs
	logger *slog.Logger
	retry  time.Duration
	gauge  *prometheus.GaugeVec // dashboard_standbys{state}

	wake chan struct{} // a waiter arrived, or a query found the standby down

	mu       sync.Mutex
	state    standbyState
	replayed pglogrepl.LSN // as of the last check
	behind   pglogrepl.LSN // while lagging: the position it missed
	waiters  map[*replayWaiter]struct{}
}

// replayWaiter is a query waiting until the standby has replayed target.
type replayWaiter struct {
	target pglogrepl.LSN
	done   chan error // buffered; nil: replayed
}

func newStandby(pool *pgxpool.Pool, logger *slog.Logger, retry time.Duration, gauge *prometheus.GaugeVec) *standby {
	cc := pool.Config().ConnConfig
	gauge.WithLabelValues(standbyUsable.String()).Inc()
	return &standby{
		pool:    pool,
		name:    net.JoinHostPort(cc.Host, strconv.Itoa(int(cc.Port))),
		logger:  logger,
		retry:   retry,
		gauge:   gauge,
		wake:    make(chan struct{}, 1),
		waiters: make(map[*replayWaiter]struct{}),
	}
}

func (s *standby) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// usable reports whether queries may go to the standby, and if not, why.
func (s *standby) usable() (bool, string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case standbyLagging:
		return false, fallbackLag
	case standbyDown:
		return false, fallbackDown
	case standbyPromoted:
		return false, fallbackPromoted
	}
	return true, ""
}

// await returns nil once the standby has replayed target, or an error
// saying why the query must go to the primary instead: errStandbyLag past
// bound or when the standby is lagging, errUnflushed past bound when the
// standby had replayed flushed (the primary's flush position, read with
// target), errStandbyDown, errStandbyPromoted, or ctx's error. A wait
// that ends past bound with the standby short of flushed marks it lagging
// (markLagging).
func (s *standby) await(ctx context.Context, target, flushed pglogrepl.LSN, bound time.Duration) error {
	s.mu.Lock()
	switch {
	case s.state == standbyLagging:
		s.mu.Unlock()
		return errStandbyLag
	case s.state == standbyDown:
		s.mu.Unlock()
		return errStandbyDown
	case s.state == standbyPromoted:
		s.mu.Unlock()
		return errStandbyPromoted
	case s.replayed >= target:
		s.mu.Unlock()
		return nil
	}
	w := &replayWaiter{target: target, done: make(chan error, 1)}
	s.waiters[w] = struct{}{}
	s.mu.Unlock()
	s.poke()

	timer := time.NewTimer(bound)
	defer timer.Stop()
	var err error
	select {
	case err = <-w.done:
		return err
	case <-timer.C:
		err = errStandbyLag
	case <-ctx.Done():
		err = ctx.Err()
	}
	s.mu.Lock()
	delete(s.waiters, w)
	select {
	case err = <-w.done: // answered meanwhile
	default:
		if err == errStandbyLag {
			if s.state == standbyUsable && s.replayed >= flushed {
				// The standby has all the primary sent it: what it lacks
				// is WAL the primary has not flushed yet (an open
				// transaction's, a prune record's), which no standby
				// receives before the next flush.
				err = errUnflushed
			} else {
				s.markLaggingLocked(target)
			}
		}
	}
	s.mu.Unlock()
	return err
}

// run is the standby's one poll loop: it reads the replay position while
// queries wait and releases them, and otherwise checks the standby now and
// then, so that one found down is tried again and a promotion is noticed.
func (s *standby) run(ctx context.Context) {
	timer := time.NewTimer(0) // check at once
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			s.fail(ctx.Err())
			return
		case <-s.wake:
		case <-timer.C:
		}
		s.check(ctx)
		s.mu.Lock()
		next := standbyIdleCheck
		switch {
		case s.state == standbyLagging:
			next = standbyLagCheck
		case s.state == standbyDown:
			next = s.retry
		case s.state == standbyUsable && len(s.waiters) > 0:
			next = standbyPoll
		}
		s.mu.Unlock()
		timer.Reset(next)
	}
}

// check reads whether the standby is in recovery and how far it has
// replayed, and answers the waiters it can.
func (s *standby) check(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, standbyCheckTimeout)
	defer cancel()
	var inRecovery bool
	var replay *string
	err := s.pool.QueryRow(cctx, "SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text").Scan(&inRecovery, &replay)
	if ctx.Err() != nil {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case err != nil:
		s.setState(standbyDown, err)
	case !inRecovery:
		s.setState(standbyPromoted, nil)
	default:
		s.replayed = 0
		if replay != nil {
			if l, err := pglogrepl.ParseLSN(*replay); err == nil {
				// The latest, not the highest seen: a standby restarted
				// from an older copy replays from further back.
				s.replayed = l
			}
		}
		if s.state != standbyLagging || s.replayed >= s.behind {
			s.setState(standbyUsable, nil)
		}
		for w := range s.waiters {
			if w.target <= s.replayed {
				w.done <- nil
				delete(s.waiters, w)
			}
		}
	}
}

// markDown records that a query could not use the standby; the loop
// checks it again at once (a broken pooled connection after a restart
// should cost one fallback, not a retry delay).
func (s *standby) markDown(err error) {
	s.mu.Lock()
	s.setState(standbyDown, err)
	s.mu.Unlock()
	s.poke()
}

// markLagging records that the standby had not replayed target within the
// bound: until a check sees it past target, queries skip it without
// waiting (a paused or far-behind standby would otherwise hold each of
// them, and with them the engine's query slots, for the whole bound), and
// the queries waiting on it now go to the primary too. The loop checks it
// at once, and then every standbyLagCheck.
func (s *standby) markLagging(target pglogrepl.LSN) {
	s.mu.Lock()
	s.markLaggingLocked(target)
	s.mu.Unlock()
	s.poke()
}

func (s *standby) markLaggingLocked(target pglogrepl.LSN) {
	switch s.state {
	case standbyUsable:
		s.behind = target
		s.setState(standbyLagging, nil)
	case standbyLagging:
		s.behind = max(s.behind, target)
	}
}

// markPromoted records that a query found the standby out of recovery.
func (s *standby) markPromoted() {
	s.mu.Lock()
	s.setState(standbyPromoted, nil)
	s.mu.Unlock()
}

// setState moves the standby to state, logging once per change, and sends
// the waiters to the primary when it cannot be used. Called with mu held.
func (s *standby) setState(state standbyState, err error) {
	if state != s.state {
		switch state {
		case standbyLagging:
			// Counted and shown by the metrics: a standby that lags
			// about the bound would come and go several times a second.
			s.logger.Debug("standby lags; its queries go to the primary until it has replayed the position it missed",
				"standby", s.name, "position", s.behind)
		case standbyDown:
			s.logger.Warn("standby unreachable; its queries go to the primary until it answers", "standby", s.name, "err", err)
		case standbyPromoted:
			s.logger.Error("standby is not in recovery (promoted?); its data may have left the primary's, so queries go to the primary until it follows again",
				"standby", s.name)
		case standbyUsable:
			if s.state == standbyLagging {
				s.logger.Debug("standby caught up", "standby", s.name)
			} else {
				s.logger.Info("standby in use again", "standby", s.name)
			}
		}
		s.gauge.WithLabelValues(s.state.String()).Dec()
		s.gauge.WithLabelValues(state.String()).Inc()
		s.state = state
	}
	switch state {
	case standbyLagging:
		s.failLocked(errStandbyLag)
	case standbyDown:
		s.failLocked(errStandbyDown)
	case standbyPromoted:
		s.failLocked(errStandbyPromoted)
	}
}

func (s *standby) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failLocked(err)
}

func (s *standby) failLocked(err error) {
	for w := range s.waiters {
		w.done <- err
		delete(s.waiters, w)
	}
}

// positions reads the end of the WAL inserted on the primary so far, and
// how far the primary has flushed its WAL (pg_current_wal_flush_lsn(), in
// the same statement). A caller gets a read that started after it asked,
// and callers that ask while one read runs share the next one: one query
// for a whole round of panels.
//
// The insert position, not pg_current_wal_lsn(): that one is how far WAL
// has been written out, and the commit record of a writer with
// synchronous_commit=off is inserted, and its notification delivered,
// before the WAL writer writes it (up to wal_writer_delay later). A
// standby that had replayed the written position could run the query
// without the notified commit. The standby receives the commit once it is
// flushed, so waiting for the insert position waits for that flush too.
//
// The flush position tells a standby that lags from a primary that has not
// flushed: WAL that is not a commit (an open transaction's rows, the prune
// records of SELECTs, other databases' work) may stay in a partial page,
// unflushed and so unsent, until the next commit, a full page or the
// background writer's running-transactions record (about 15 s). A standby
// that has replayed the flush position has everything it could have.
type positions struct {
	pool    *pgxpool.Pool
	mu      sync.Mutex
	running *positionRead // started; too early for whoever asks now
	next    *positionRead // not started; whoever asks now joins it
}

type positionRead struct {
	done  chan struct{}
	pos   pglogrepl.LSN // walEnd of the insert position
	flush pglogrepl.LSN // the flush position
	err   error
}

// read returns the end of the inserted WAL (walEnd of the insert position)
// and the flush position, read in one statement.
func (p *positions) read(ctx context.Context) (pos, flush pglogrepl.LSN, err error) {
	p.mu.Lock()
	if r := p.next; r != nil {
		p.mu.Unlock()
		select {
		case <-r.done:
			return r.pos, r.flush, r.err
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		}
	}
	r := &positionRead{done: make(chan struct{})}
	p.next = r
	prev := p.running
	p.mu.Unlock()
	// This caller leads the read, for everyone who joins it: it waits
	// for the read before (bounded by that one's timeout), whatever its
	// own context says.
	if prev != nil {
		<-prev.done
	}
	p.mu.Lock()
	p.next, p.running = nil, r
	p.mu.Unlock()
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), standbyCheckTimeout)
	var (
		text, flushText        string
		blockSize, segmentSize int64
	)
	r.err = p.pool.QueryRow(rctx, `SELECT pg_current_wal_insert_lsn()::text, pg_current_wal_flush_lsn()::text,
		current_setting('wal_block_size')::int8, pg_size_bytes(current_setting('wal_segment_size'))`).
		Scan(&text, &flushText, &blockSize, &segmentSize)
	cancel()
	if r.err == nil {
		var insert pglogrepl.LSN
		insert, r.err = pglogrepl.ParseLSN(text)
		if r.err != nil {
			r.err = fmt.Errorf("reading the primary's WAL position %q: %w", text, r.err)
		}
		r.pos = walEnd(insert, uint64(blockSize), uint64(segmentSize))
	}
	if r.err == nil {
		r.flush, r.err = pglogrepl.ParseLSN(flushText)
		if r.err != nil {
			r.err = fmt.Errorf("reading the primary's WAL flush position %q: %w", flushText, r.err)
		}
	}
	close(r.done)
	p.mu.Lock()
	if p.running == r {
		p.running = nil
	}
	p.mu.Unlock()
	if ctx.Err() != nil {
		return 0, 0, ctx.Err()
	}
	return r.pos, r.flush, r.err
}

// readTarget is where one read-only query runs: a standby that has
// replayed pos, or the primary (s nil).
type readTarget struct {
	s   *standby
	pos pglogrepl.LSN
}

// pickStandby chooses where a query runs. With standbys it reads the
// primary's position, takes the standbys in turn (round robin, skipping
// those lagging, down or promoted) and waits for the chosen one to replay
// the position. A fallback to the primary is counted. The error is ctx's
// only.
func (e *Engine) pickStandby(ctx context.Context) (readTarget, error) {
	if len(e.standbys) == 0 {
		return readTarget{}, nil
	}
	n := uint64(len(e.standbys))
	first := e.nextStandby.Add(1) - 1
	var s *standby
	reason := ""
	for i := range n {
		c := e.standbys[(first+i)%n]
		ok, why := c.usable()
		if ok {
			s = c
			break
		}
		if reason == "" {
			reason = why
		}
	}
	if s == nil {
		e.fallback(reason)
		return readTarget{}, nil
	}
	pos, flushed, err := e.positions.read(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return readTarget{}, ctx.Err()
		}
		e.fallback(fallbackPosition)
		return readTarget{}, nil
	}
	began := time.Now()
	err = s.await(ctx, pos, flushed, e.cfg.StandbyMaxWait)
	e.cfg.Metrics.replayWait.Observe(time.Since(began).Seconds())
	switch {
	case err == nil:
		return readTarget{s: s, pos: pos}, nil
	case ctx.Err() != nil:
		return readTarget{}, ctx.Err()
	case errors.Is(err, errUnflushed):
		// The standby is fine; the primary holds WAL back. This query
		// goes to the primary, and a nudge makes the primary flush, so
		// that the next ones need not wait out the bound too.
		e.fallback(fallbackUnflushed)
		e.nudger.nudge(ctx, e.cfg.StandbyMaxWait)
	case errors.Is(err, errStandbyLag):
		// await marked the standby lagging: the queries after this one
		// skip it at once.
		e.fallback(fallbackLag)
	case errors.Is(err, errStandbyPromoted):
		e.fallback(fallbackPromoted)
	default:
		e.fallback(fallbackDown)
	}
	return readTarget{}, nil
}

// nudger makes the primary flush its WAL when a standby waited for WAL the
// primary had not flushed (errUnflushed): a tiny transaction commits, and
// its commit flushes the WAL up to its commit record, with every earlier
// record in it (XLogFlush); the walsenders then send it.
// synchronous_commit is local for it, so it never waits for a synchronous
// standby. One nudge at a time per engine, and at most one per
// StandbyMaxWait; a failure is logged once per new message and costs
// nothing else.
type nudger struct {
	pool   *pgxpool.Pool
	logger *slog.Logger

	mu      sync.Mutex
	running chan struct{} // closed when the nudge in flight ends; nil when none
	last    time.Time     // when the latest nudge started
	lastErr string        // the latest failure's message; "" after a success
}

// nudgeSQL runs as one simple-protocol query: one round trip.
//
// A commit flushes at once only if its transaction has a transaction ID
// and wrote WAL before the commit record (RecordTransactionCommit:
// wrote_xlog); a transaction that only took an ID (pg_current_xact_id())
// commits asynchronously, and its commit is flushed by the WAL writer up
// to wal_writer_delay later. A transactional logical decoding message
// does both: it takes an ID and writes a record of a few bytes. Its prefix
// is not the logical feed's (listen.MessagePrefix), which ignores it.
const nudgeSQL = "BEGIN; SET LOCAL synchronous_commit = local; " +
	"SELECT pg_catalog.pg_logical_emit_message(true, 'dashboard_flush', ''); COMMIT"

// nudge starts a nudge in the background unless one is in flight or one
// started less than every ago. It does not wait for it.
func (n *nudger) nudge(ctx context.Context, every time.Duration) {
	if n.pool == nil {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.running != nil || (!n.last.IsZero() && time.Since(n.last) < every) {
		return
	}
	done := make(chan struct{})
	n.running, n.last = done, time.Now()
	go func() {
		defer close(done)
		nctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), nudgeTimeout)
		_, err := n.pool.Exec(nctx, nudgeSQL)
		cancel()
		n.mu.Lock()
		defer n.mu.Unlock()
		n.running = nil
		switch {
		case err == nil:
			n.lastErr = ""
		case err.Error() != n.lastErr:
			n.lastErr = err.Error()
			n.logger.Warn("could not make the primary flush its WAL for the standbys; their queries may go to the primary until it flushes",
				"err", err)
		}
	}()
}

// wait waits for the nudge in flight, if any.
func (n *nudger) wait() {
	n.mu.Lock()
	done := n.running
	n.mu.Unlock()
	if done != nil {
		<-done
	}
}

func (e *Engine) fallback(reason string) {
	e.cfg.Metrics.standbyFallbacks.WithLabelValues(reason).Inc()
}

// verify checks, on the very connection the query's transaction will use
// and before it begins, that the standby is still in recovery and has
// replayed the position: the shared poll may have seen another backend of
// a standby that restarted since, and a promotion may have come between.
func (t readTarget) verify(ctx context.Context, conn *pgxpool.Conn) error {
	var inRecovery, replayed bool
	err := conn.QueryRow(ctx, "SELECT pg_is_in_recovery(), coalesce(pg_last_wal_replay_lsn() >= $1::pg_lsn, false)",
		t.pos.String()).Scan(&inRecovery, &replayed)
	switch {
	case err != nil:
		return err
	case !inRecovery:
		return errStandbyPromoted
	case !replayed:
		return errStandbyLag
	}
	return nil
}

// standbyFailure says why a query that failed on a standby must run on
// the primary instead (a fallback reason), or "" when the failure is the
// query's own and the primary would fail it the same way.
func standbyFailure(err error) string {
	var pgErr *pgconn.PgError
	switch {
	case errors.Is(err, errStandbyPromoted):
		return fallbackPromoted
	case errors.Is(err, errStandbyLag):
		return fallbackLag
	case errors.As(err, &pgErr):
		switch pgErr.Code {
		case "40001", // "canceling statement due to conflict with recovery" (snapshot, lock, buffer pin, tablespace), and its FATAL "terminating connection" for a session idle in a transaction
			"40P01", // the same, when the startup process found a buffer-pin deadlock
			"57P04": // "terminating connection due to conflict with recovery": the database was dropped
			return fallbackConflict
		case "55000": // object_not_in_prerequisite_state: "recovery is in progress"
			return fallbackRecovery
		}
		if infrastructure(err) {
			return fallbackDown
		}
		return ""
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return ""
	}
	if infrastructure(err) {
		return fallbackDown
	}
	return ""
}

// readOnly runs fn in a read-only, repeatable-read transaction with the
// statement timeout, in the dashboard's time zone (so that timestamp
// without time zone parameters, date_trunc and to_char agree with what the
// page shows): how every panel and variable query runs. With standbys it
// runs on one that has replayed the primary's current position, and on the
// primary when none can (see pickStandby); a query the standby could not
// finish for a reason of its own (a recovery conflict, a lost connection,
// a promotion) runs once more on the primary. fn may so run twice and
// must start afresh each time. onStandby says where the answer came from.
func (e *Engine) readOnly(ctx context.Context, dashboard int64, fn func(pgx.Tx) error) (onStandby bool, err error) {
	target, err := e.pickStandby(ctx)
	if err != nil {
		return false, err
	}
	if target.s != nil {
		ran := false
		err := e.readOn(ctx, target.s.pool, target.verify, dashboard, func(tx pgx.Tx) error {
			ran = true
			return fn(tx)
		})
		reason := ""
		if err != nil && ctx.Err() == nil {
			reason = standbyFailure(err)
			if reason == "" && !ran {
				// Not even the transaction started: a standby that refuses
				// the login (a wrong database, user or password) is as good
				// as down, and its failure is not the panel's.
				reason = fallbackDown
			}
		}
		if reason == "" {
			return true, err
		}
		switch reason {
		case fallbackLag:
			target.s.markLagging(target.pos)
		case fallbackDown:
			target.s.markDown(err)
		case fallbackPromoted:
			target.s.markPromoted()
		}
		e.fallback(reason)
	}
	return false, e.readOn(ctx, e.cfg.Pool, nil, dashboard, fn)
}

// readOn runs fn in a read-only transaction on a connection of pool, after
// verify (if not nil) has passed on that connection.
func (e *Engine) readOn(ctx context.Context, pool *pgxpool.Pool, verify func(context.Context, *pgxpool.Conn) error,
	dashboard int64, fn func(pgx.Tx) error) error {
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return err
	}
	defer conn.Release()
	if verify != nil {
		if err := verify(ctx, conn); err != nil {
			return err
		}
	}
	opts := pgx.TxOptions{AccessMode: pgx.ReadOnly, IsoLevel: pgx.RepeatableRead}
	return pgx.BeginTxFunc(ctx, conn, opts, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true), set_config('TimeZone', $2, true)",
			strconv.FormatInt(e.cfg.QueryTimeout.Milliseconds(), 10), e.zone(dashboard))
		if err != nil {
			return err
		}
		return fn(tx)
	})
}
