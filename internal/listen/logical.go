package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pglogrepl"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

const (
	// Publication is the publication the logical feed reads through
	// pgoutput, which requires one. It publishes no table (migrations/
	// 0006_logical_feed.sql): only the triggers' messages are wanted, and a
	// published table would stream every changed row and refuse UPDATE and
	// DELETE without a replica identity.
	Publication = "dashboard_feed"
	// MessagePrefix is the prefix of the logical decoding messages the
	// triggers send in logical mode; the content is a schema-qualified
	// table name, as a notification's payload is.
	MessagePrefix = "dashboard"
	// SlotPrefix starts the name of every replication slot the logical feed
	// creates; the rest is the walsender's process id.
	SlotPrefix = "dashboard_feed_"
)

// waitingForTransactions is what the logical feed says while creating its
// slot takes longer than LogicalConfig.SlotWait.
var waitingForTransactions = errors.New("creating replication slot: waiting for open transactions")

// LogicalConfig configures a Logical feed.
type LogicalConfig struct {
	// ConnConfig is the database to watch; the feed opens its replication
	// connection (replication=database) with it. Its role needs the
	// REPLICATION attribute and the server wal_level = logical.
	ConnConfig *pgx.ConnConfig
	Sink       Sink
	Logger     *slog.Logger
	Metrics    *Metrics
	// StatusInterval is how often a standby status update reports the
	// flush position and asks for a reply; a connection that stays silent
	// for StatusInterval plus Timeout is taken for dead. Default 5s.
	StatusInterval time.Duration
	// Timeout bounds the wait for that reply; default 5s.
	Timeout time.Duration
	// RunningWait bounds how long a new session's resync waits for the
	// transactions running at that moment to end (see session); one still
	// running then brings another resync when it ends. Default 2s.
	RunningWait time.Duration
	// SlotWait is how long the feed may be without a slot, for instance
	// while creating one waits for every open transaction, before it says
	// so in Ready and the log and starts telling the sink to resync every
	// PollInterval. Default 10s.
	SlotWait time.Duration
	// PollInterval is the resync period while there is no slot; default 2s.
	PollInterval time.Duration
	// BackoffMin and BackoffMax bound the jittered exponential reconnect
	// delay; defaults 100ms and 10s.
	BackoffMin, BackoffMax time.Duration
	// Fault turns on a known-bad variant, for the no-loss tests only;
	// FaultNoResync, which skips the resync after a reconnect,
	// FaultNoVisibilityWait, which hands decoded commits over before they
	// are visible, and FaultNoRunningResync, which does not resync again
	// when the transactions running at the first resync end, are the ones
	// that apply.
	Fault Fault
}

// Logical is the change feed of logical mode: it learns which tables
// changed from the messages the triggers write to the WAL
// (pg_logical_emit_message), decoded by pgoutput over a temporary
// replication slot. A temporary slot ends with its connection, so a
// stopped server keeps no WAL from being removed; after every (re)connect
// the sink resyncs, as with the Listener. Run it with Run.
//
// Creating a slot waits until every transaction open at that moment has
// ended. An idle-in-transaction session can make that long: past SlotWait
// the feed says so (Ready, the log) and tells the sink to resync every
// PollInterval until the slot is there, so screens stay at most that stale.
type Logical struct {
	cfg LogicalConfig

	gate atomic.Pointer[gate] // of the current session, if any

	mu      sync.Mutex
	state   State
	why     error     // why not streaming
	downAt  time.Time // when streaming last stopped, or Run started
	changed chan struct{}
}

// NewLogical returns a Logical feed; it connects when Run is called.
func NewLogical(cfg LogicalConfig) *Logical {
	if cfg.StatusInterval <= 0 {
		cfg.StatusInterval = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.SlotWait <= 0 {
		cfg.SlotWait = 10 * time.Second
	}
	if cfg.RunningWait <= 0 {
		cfg.RunningWait = 2 * time.Second
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = 2 * time.Second
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
	return &Logical{cfg: cfg, why: errors.New("not started"), changed: make(chan struct{})}
}

// State returns the current state and a channel that is closed at the next
// change. Listening means streaming from a slot; BackendPID is the
// walsender's process.
func (l *Logical) State() (State, <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.state
	if g := l.gate.Load(); g != nil {
		st.Owed = g.owed.Load()
	}
	return st, l.changed
}

// resync asks the sink to resync and counts it.
func (l *Logical) resync() {
	l.mu.Lock()
	l.state.Resyncs++
	l.mu.Unlock()
	l.cfg.Sink.Resync()
}

// Ready reports whether the feed streams from its slot, and if not why:
// it is the feed's part of /readyz.
func (l *Logical) Ready() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.state.Listening {
		return nil
	}
	return l.why
}

// setDown records why the feed does not stream; nil keeps the reason.
func (l *Logical) setDown(why error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if why != nil {
		l.why = why
	}
	if !l.state.Listening && l.state.BackendPID == 0 {
		return
	}
	l.state.Listening, l.state.BackendPID, l.state.Slot = false, 0, ""
	l.downAt = time.Now()
	l.cfg.Metrics.connected.Set(0)
	close(l.changed)
	l.changed = make(chan struct{})
}

func (l *Logical) setStreaming(pid uint32, slot string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.state.Connects++
	l.state.Listening, l.state.BackendPID, l.state.Slot = true, pid, slot
	l.why = nil
	l.cfg.Metrics.connected.Set(1)
	close(l.changed)
	l.changed = make(chan struct{})
}

// Run streams, reconnecting with backoff, until ctx is cancelled; then it
// closes the connection (which drops the slot) and returns nil. It never
// gives up: a database that cannot do logical mode is reported by Ready
// and the log on every attempt.
func (l *Logical) Run(ctx context.Context) error {
	l.mu.Lock()
	l.downAt = time.Now()
	l.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	wg.Go(func() { l.poll(pollCtx) })

	reconnect(ctx, l.cfg.BackoffMin, l.cfg.BackoffMax, l.session, func(err error, retryIn time.Duration) {
		l.setDown(err)
		l.cfg.Logger.Warn("logical feed disconnected", "err", err, "retry_in", retryIn.Round(time.Millisecond))
		l.cfg.Metrics.reconnects.Inc()
	})
	l.setDown(errors.New("stopped"))
	return nil
}

// poll tells the sink to resync every PollInterval while the feed has not
// streamed for SlotWait or longer: without a slot no change is seen, and
// re-querying is the only way to keep screens current.
func (l *Logical) poll(ctx context.Context) {
	t := time.NewTicker(l.cfg.PollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.mu.Lock()
		down := !l.state.Listening && time.Since(l.downAt) >= l.cfg.SlotWait
		l.mu.Unlock()
		if down {
			l.resync()
		}
	}
}

// session runs one replication connection from connect to failure.
func (l *Logical) session(ctx context.Context, onStreaming func()) error {
	conn, err := connectReplication(ctx, l.cfg.ConnConfig)
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		conn.Close(closeCtx)
	}()
	if err := checkLogical(ctx, conn); err != nil {
		return err
	}
	// An ordinary connection beside the walsender's, for the visibility
	// gate's snapshots (visible.go).
	snaps, err := connect(ctx, l.cfg.ConnConfig, "logical feed snapshots")
	if err != nil {
		return err
	}
	defer func() {
		closeCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		snaps.Close(closeCtx)
	}()

	slot := fmt.Sprintf("%s%d", SlotPrefix, conn.PID())
	l.setDown(errors.New("creating replication slot"))
	// Past SlotWait, say why; the poller resyncs meanwhile. The goroutine
	// is waited for, so it cannot overwrite the streaming state.
	created := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTimer(l.cfg.SlotWait)
		defer t.Stop()
		select {
		case <-created:
		case <-t.C:
			l.setDown(waitingForTransactions)
			l.cfg.Logger.Warn("creating replication slot: waiting for open transactions; refreshing every interval meanwhile",
				"waited", l.cfg.SlotWait, "interval", l.cfg.PollInterval,
				"hint", "SELECT pid, state, xact_start FROM pg_stat_activity WHERE backend_xid IS NOT NULL ORDER BY xact_start")
		}
	})
	// TEMPORARY: the slot ends with this connection, so a stopped or
	// crashed server holds back no WAL. No snapshot is exported: the
	// resync below reads the data afresh.
	res, err := pglogrepl.CreateReplicationSlot(ctx, conn, slot, "pgoutput",
		pglogrepl.CreateReplicationSlotOptions{Temporary: true, SnapshotAction: "NOEXPORT_SNAPSHOT"})
	close(created)
	wg.Wait()
	if err != nil {
		return explainLogical(fmt.Errorf("creating replication slot %s: %w", slot, err), l.cfg.ConnConfig.User)
	}
	start, err := pglogrepl.ParseLSN(res.ConsistentPoint)
	if err != nil {
		return fmt.Errorf("creating replication slot %s: consistent point %q: %w", slot, res.ConsistentPoint, err)
	}
	err = pglogrepl.StartReplication(ctx, conn, slot, start, pglogrepl.StartReplicationOptions{PluginArgs: []string{
		"proto_version '1'",
		fmt.Sprintf("publication_names '%s'", Publication),
		"messages 'true'",
	}})
	if err != nil {
		return explainLogical(fmt.Errorf("starting replication from slot %s: %w", slot, err), l.cfg.ConnConfig.User)
	}
	l.setStreaming(conn.PID(), slot)
	defer func() {
		if ctx.Err() != nil {
			dropSlot(conn, slot)
		}
	}()
	onStreaming()
	l.cfg.Logger.Info("logical feed streaming", "slot", slot, "from", start, "backend_pid", conn.PID())
	// Every transaction that commits after the slot's consistent point is
	// decoded and streamed; the resync's queries, which start now, see
	// every one that committed before it and is visible. One that wrote
	// its commit record before that point but is not visible yet (it waits
	// for a synchronous standby, or is a moment from leaving the running
	// list) is neither: the snapshot builder does not wait for it. So the
	// resync waits (at most RunningWait) for the transactions running now
	// to end, and any still running then bring another resync when they
	// do.
	g := newGate(l.cfg.Sink, l.resync, l.cfg.Metrics)
	l.gate.Store(g)
	defer l.gate.Store(nil)
	if st, _ := l.State(); l.cfg.Fault != FaultNoResync || st.Connects == 1 {
		if l.cfg.Fault != FaultNoRunningResync {
			if err := g.holdRunning(ctx, snaps, l.cfg.RunningWait); err != nil {
				return err
			}
		}
		l.resync()
	}
	streamCtx, stop := context.WithCancelCause(ctx)
	var gw sync.WaitGroup
	gw.Go(func() {
		if err := g.run(streamCtx, snaps); streamCtx.Err() == nil {
			stop(err)
		}
	})
	err = l.stream(streamCtx, conn, start, g)
	stop(err)
	gw.Wait()
	if ctx.Err() == nil {
		if cause := context.Cause(streamCtx); cause != nil && !errors.Is(cause, context.Canceled) {
			return cause
		}
	}
	return err
}

// stream hands the decoded messages to the sink and reports progress until
// ctx ends or the connection fails.
func (l *Logical) stream(ctx context.Context, conn *pgconn.PgConn, pos pglogrepl.LSN, g *gate) error {
	// pos is how far the sink has been told everything: the flush position
	// reported to the server, which may then recycle the WAL before it.
	var tx *commit // the transaction being decoded
	heard := time.Now()
	next := time.Now().Add(l.cfg.StatusInterval)
	status := func(reply bool) error {
		err := pglogrepl.SendStandbyStatusUpdate(ctx, conn, pglogrepl.StandbyStatusUpdate{
			WALWritePosition: pos, WALFlushPosition: pos, WALApplyPosition: pos, ReplyRequested: reply})
		if err != nil {
			return fmt.Errorf("sending standby status: %w", err)
		}
		return nil
	}
	var (
		wait       context.Context
		cancelWait = func() {}
		waitUntil  time.Time
	)
	defer func() { cancelWait() }()
	for {
		if !time.Now().Before(next) {
			if silent := time.Since(heard); silent > l.cfg.StatusInterval+l.cfg.Timeout {
				return fmt.Errorf("replication connection silent for %v", silent.Round(time.Millisecond))
			}
			// The reply the server sends at once doubles as a ping.
			if err := status(true); err != nil {
				return err
			}
			next = time.Now().Add(l.cfg.StatusInterval)
		}
		// One deadline context per status interval, not per message: a
		// busy database sends several messages per transaction.
		if waitUntil != next {
			cancelWait()
			wait, cancelWait = withDeadline(ctx, next)
			waitUntil = next
		}
		msg, err := conn.ReceiveMessage(wait)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			if pgconn.Timeout(err) {
				continue
			}
			return fmt.Errorf("receiving from replication connection: %w", err)
		}
		heard = time.Now()
		var data []byte
		switch msg := msg.(type) {
		case *pgproto3.CopyData:
			data = msg.Data
		case *pgproto3.ErrorResponse:
			return explainLogical(fmt.Errorf("streaming: %w", pgconn.ErrorResponseToPgError(msg)), l.cfg.ConnConfig.User)
		default:
			continue
		}
		if len(data) == 0 {
			continue
		}
		switch data[0] {
		case pglogrepl.PrimaryKeepaliveMessageByteID:
			k, err := pglogrepl.ParsePrimaryKeepaliveMessage(data[1:])
			if err != nil {
				return fmt.Errorf("parsing keepalive: %w", err)
			}
			// Between transactions the sender has decoded everything
			// before its position and sent every commit found there:
			// transactions still open are decoded from the slot's
			// restart point when they commit, whatever is confirmed.
			if tx == nil && k.ServerWALEnd > pos {
				pos = k.ServerWALEnd
			}
			if k.ReplyRequested {
				if err := status(false); err != nil {
					return err
				}
			}
		case pglogrepl.XLogDataByteID:
			x, err := pglogrepl.ParseXLogData(data[1:])
			if err != nil {
				return fmt.Errorf("parsing XLogData: %w", err)
			}
			if err := l.decode(x, &pos, &tx, g); err != nil {
				return err
			}
		}
	}
}

// withDeadline is context.WithDeadline, for a context that stream keeps
// over many receives and cancels when it makes the next one or returns.
func withDeadline(ctx context.Context, t time.Time) (context.Context, context.CancelFunc) {
	return context.WithDeadline(ctx, t)
}

// dropSlot ends the stream and drops the slot before a stopping feed closes
// its connection, so that Run returns with the slot gone: the walsender
// would drop a temporary slot by itself, but only as it exits, a moment
// after the connection closed, and until then the slot holds back WAL and
// the database cannot be dropped. It takes at most 2 s; whatever it does
// not finish, the close does.
func dropSlot(conn *pgconn.PgConn, slot string) {
	if conn.IsClosed() {
		return
	}
	deadline := time.Now().Add(2 * time.Second)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	// SendStandbyCopyDone reads without a context: bound it on the socket.
	conn.Conn().SetDeadline(deadline)
	defer conn.Conn().SetDeadline(time.Time{})
	if _, err := pglogrepl.SendStandbyCopyDone(ctx, conn); err != nil {
		return
	}
	_ = pglogrepl.DropReplicationSlot(ctx, conn, slot, pglogrepl.DropReplicationSlotOptions{Wait: true})
}

// decode handles one pgoutput message. The publication holds no table, so
// only transactions that sent a message arrive: Begin, the messages, and
// Commit, which hands the tables named to the visibility gate; the
// position moves to the commit's end.
func (l *Logical) decode(x pglogrepl.XLogData, pos *pglogrepl.LSN, tx **commit, g *gate) error {
	if len(x.WALData) == 0 {
		return nil
	}
	switch pglogrepl.MessageType(x.WALData[0]) {
	case pglogrepl.MessageTypeBegin:
		m, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return fmt.Errorf("parsing decoded begin: %w", err)
		}
		b, ok := m.(*pglogrepl.BeginMessage)
		if !ok {
			return fmt.Errorf("parsing decoded begin: got %T", m)
		}
		*tx = &commit{xid: b.Xid}
	case pglogrepl.MessageTypeMessage:
		m, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return fmt.Errorf("parsing decoded message: %w", err)
		}
		dm, ok := m.(*pglogrepl.LogicalDecodingMessage)
		if !ok || dm.Prefix != MessagePrefix {
			break
		}
		l.cfg.Metrics.notifications.Inc()
		table := string(dm.Content)
		switch {
		case *tx == nil || !dm.Transactional || l.cfg.Fault == FaultNoVisibilityWait:
			// A non-transactional message is sent as it is written,
			// before anything it reports commits.
			l.cfg.Sink.TableChanged(table, time.Now())
		case !slices.Contains((*tx).tables, table):
			(*tx).tables = append((*tx).tables, table)
		}
		if *tx == nil && x.WALStart > *pos {
			*pos = x.WALStart
		}
	case pglogrepl.MessageTypeCommit:
		m, err := pglogrepl.Parse(x.WALData)
		if err != nil {
			return fmt.Errorf("parsing decoded commit: %w", err)
		}
		if *tx != nil && len((*tx).tables) > 0 {
			g.add(**tx)
		}
		*tx = nil
		if c, ok := m.(*pglogrepl.CommitMessage); ok && c.TransactionEndLSN > *pos {
			*pos = c.TransactionEndLSN
		}
	}
	return nil
}

// CheckLogical opens a replication connection to the database of config
// and returns a clear error, naming what to change, when logical mode
// cannot work there: the role may not replicate, wal_level is not logical,
// the publication is missing or the triggers are not in logical mode.
// serve calls it to refuse to start rather than retry forever.
func CheckLogical(ctx context.Context, config *pgx.ConnConfig) error {
	conn, err := connectReplication(ctx, config)
	if err != nil {
		return err
	}
	defer conn.Close(context.WithoutCancel(ctx))
	return checkLogical(ctx, conn)
}

// connectReplication opens a logical replication connection
// (replication=database), which also runs SQL.
func connectReplication(ctx context.Context, config *pgx.ConnConfig) (*pgconn.PgConn, error) {
	cc := config.Copy().Config // RuntimeParams copied too: the pool's stay as they are
	if cc.RuntimeParams == nil {
		cc.RuntimeParams = make(map[string]string)
	}
	cc.RuntimeParams["replication"] = "database"
	// A name in pg_stat_activity, so that a DBA can tell the walsender
	// apart; one set in DATABASE_URL wins.
	if cc.RuntimeParams["application_name"] == "" {
		cc.RuntimeParams["application_name"] = "dashboard logical feed"
	}
	// TCP keepalive finds a peer that vanished without a FIN, as for the
	// listener's connection.
	dialer := &net.Dialer{Timeout: 10 * time.Second, KeepAliveConfig: net.KeepAliveConfig{
		Enable: true, Idle: 5 * time.Second, Interval: 2 * time.Second, Count: 3,
	}}
	cc.DialFunc = dialer.DialContext
	if cc.ConnectTimeout == 0 || cc.ConnectTimeout > 10*time.Second {
		cc.ConnectTimeout = 10 * time.Second
	}
	conn, err := pgconn.ConnectConfig(ctx, &cc)
	if err != nil {
		return nil, explainLogical(fmt.Errorf("connecting logical feed: %w", err), config.User)
	}
	return conn, nil
}

// checkLogical reads, on the replication connection, what logical mode
// needs of the database.
func checkLogical(ctx context.Context, conn *pgconn.PgConn) error {
	// A walsender takes one command per query.
	res, err := conn.Exec(ctx, "SHOW wal_level").ReadAll()
	if err != nil {
		return fmt.Errorf("reading wal_level: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return errors.New("reading wal_level: no answer")
	}
	if level := string(res[0].Rows[0][0]); level != "logical" {
		return walLevelError(level)
	}
	// A walsender that reports flush positions can be picked as a
	// synchronous standby: commits would then wait for the feed's status
	// updates, and writers would take an acknowledgement from a process
	// that keeps nothing for one from a standby.
	res, err = conn.Exec(ctx, "SHOW synchronous_standby_names").ReadAll()
	if err != nil {
		return fmt.Errorf("reading synchronous_standby_names: %w", err)
	}
	if len(res) == 1 && len(res[0].Rows) == 1 {
		names, app := string(res[0].Rows[0][0]), conn.ParameterStatus("application_name")
		if syncStandbyMatches(names, app) {
			return fmt.Errorf("synchronous_standby_names = '%s' matches this feed's application_name %q, so its walsender could become a synchronous standby and every commit would wait for the feed: list the standbys by name instead of '*', or set another application_name in DATABASE_URL, or use DASHBOARD_FEED=notify", names, app)
		}
	}
	res, err = conn.Exec(ctx, fmt.Sprintf(`SELECT to_regprocedure('dashboard.feed_mode()') IS NOT NULL,
		EXISTS (SELECT FROM pg_publication WHERE pubname = '%s')`, Publication)).ReadAll()
	if err != nil {
		return fmt.Errorf("reading the feed mode: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return errors.New("reading the feed mode: no answer")
	}
	if string(res[0].Rows[0][0]) != "t" {
		return errors.New("the database lacks dashboard.feed_mode(): apply the migrations (dashboard migrate) before using DASHBOARD_FEED=logical")
	}
	if string(res[0].Rows[0][1]) != "t" {
		return fmt.Errorf("publication %s does not exist, and DASHBOARD_FEED=logical reads through it: as the database owner run CREATE PUBLICATION %s (it publishes no table)",
			Publication, Publication)
	}
	res, err = conn.Exec(ctx, "SELECT dashboard.feed_mode()").ReadAll()
	if err != nil {
		return fmt.Errorf("reading the feed mode: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return errors.New("reading the feed mode: no answer")
	}
	if mode := string(res[0].Rows[0][0]); mode != "logical" {
		return fmt.Errorf("the database's triggers are in %s mode, so DASHBOARD_FEED=logical would see no change: run 'dashboard feed logical' (as the owner of schema dashboard) first, or use DASHBOARD_FEED=notify", mode)
	}
	return nil
}

// syncStandbyMatches reports whether synchronous_standby_names, in any of
// its forms ("a, b", "FIRST 1 (a, b)", "ANY 2 (a, b)", "2 (a, b)"), names
// app or '*'. PostgreSQL compares the names without regard to case.
func syncStandbyMatches(names, app string) bool {
	list := names
	if i := strings.IndexByte(names, '('); i >= 0 {
		if j := strings.LastIndexByte(names, ')'); j > i {
			list = names[i+1 : j]
		}
	}
	for _, n := range strings.Split(list, ",") {
		n = strings.TrimSpace(n)
		if len(n) >= 2 && n[0] == '"' && n[len(n)-1] == '"' {
			n = strings.ReplaceAll(n[1:len(n)-1], `""`, `"`)
		}
		if n == "*" || (n != "" && strings.EqualFold(n, app)) {
			return true
		}
	}
	return false
}

func walLevelError(level string) error {
	return fmt.Errorf("wal_level is %s, and DASHBOARD_FEED=logical needs wal_level = logical: as a superuser run ALTER SYSTEM SET wal_level = logical and restart PostgreSQL, or use DASHBOARD_FEED=notify", level)
}

// explainLogical turns the server's refusals into errors that name the
// setting or privilege to change; others are returned as they are.
func explainLogical(err error, user string) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return err
	}
	text := strings.ToLower(pgErr.Message + " " + pgErr.Detail)
	role := pgx.Identifier{user}.Sanitize()
	switch {
	case pgErr.Code == "42501" && (strings.Contains(text, "replication") || strings.Contains(text, "wal sender") || strings.Contains(text, "walsender")):
		return fmt.Errorf("role %s may not open a replication connection, which DASHBOARD_FEED=logical needs: as a superuser run ALTER ROLE %s REPLICATION, or use DASHBOARD_FEED=notify (%w)", role, role, err)
	case pgErr.Code == "28000" && strings.Contains(text, "replication"):
		return fmt.Errorf("pg_hba.conf admits no replication connection for role %s, which DASHBOARD_FEED=logical needs: add a line of type %q for it (for example \"host replication %s <address> scram-sha-256\") and reload PostgreSQL (%w)", role, "replication", user, err)
	case pgErr.Code == "53300" && strings.Contains(text, "max_wal_senders"):
		return fmt.Errorf("every walsender is taken: raise max_wal_senders (restart PostgreSQL) or stop other replication clients (%w)", err)
	case pgErr.Code == "53400" && strings.Contains(text, "replication slots"):
		return fmt.Errorf("every replication slot is taken: raise max_replication_slots (restart PostgreSQL) or drop unused slots, listed by SELECT slot_name, active FROM pg_replication_slots (%w)", err)
	case pgErr.Code == "55000" && strings.Contains(text, "wal_level"):
		return fmt.Errorf("%w (%w)", walLevelError("below logical"), err)
	case pgErr.Code == "42704" && strings.Contains(text, Publication):
		return fmt.Errorf("publication %s does not exist: as the database owner run CREATE PUBLICATION %s (%w)", Publication, Publication, err)
	}
	return err
}
