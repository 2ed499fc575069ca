package listen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/prometheus/client_golang/prometheus"
)

// ErrNotMigrated is returned by ReadStatus when the database lacks the
// change feed's functions (migration 0005 or the whole dashboard schema).
var ErrNotMigrated = errors.New("the database has no dashboard change feed (dashboard.feed_key is missing)")

// Trigger modes of a watched table, as dashboard.trigger_mode reports them.
const (
	// ModeGated tables notify only while some server wants news of them.
	ModeGated = "gated"
	// ModeAlways tables carry the four old triggers and notify on every
	// change: the dashboard schema's own tables, and user tables the
	// 0005 upgrade could not lock or alter.
	ModeAlways = "always"
	// ModeIncomplete tables carry some of the trigger names but no working
	// set (a disabled trigger, or one of the four missing): their changes
	// may reach no server.
	ModeIncomplete = "incomplete"
)

// Status is the change feed as the database sees it, across every server:
// what `dashboard status` prints and the feed gauges export. It is read
// from the catalogs and pg_locks, so it needs no server running.
type Status struct {
	// Feed is the change feed mode: "notify" (LISTEN/NOTIFY with gated
	// triggers), the only mode of this build.
	Feed string `json:"feed"`
	// FeedSlots is how many servers can watch the database at once.
	FeedSlots int `json:"feed_slots"`
	// Tables are the tables that carry a dashboard trigger, by name.
	Tables []TableStatus `json:"tables"`
	// Servers are the claimed feed slots, by slot.
	Servers []ServerStatus `json:"servers"`
	// QueueUsage is pg_notification_queue_usage(): the fraction of the
	// cluster's notification queue in use. Near 1, every NOTIFY fails.
	QueueUsage float64 `json:"notify_queue_usage"`
	// LogicalSlots are the logical replication slots of this database
	// whose names start with "dashboard": the logical feed mode's.
	LogicalSlots []LogicalSlot `json:"logical_slots"`
}

// TableStatus is one watched table.
type TableStatus struct {
	// Table is the schema-qualified name in the notification payload's
	// form, quoted only where Postgres needs quotes.
	Table string `json:"table"`
	// Mode is ModeGated, ModeAlways or ModeIncomplete.
	Mode string `json:"mode"`
	// Wanted reports whether some server holds the table's feed key now,
	// so that its writers notify.
	Wanted bool `json:"wanted"`
	// WantedBy counts the servers that hold its feed key.
	WantedBy int `json:"wanted_by"`
	// Waiting counts the servers waiting for its feed key behind a writer
	// that skipped its notification and is still open (the server's
	// feed_tables_pending). Writers notify meanwhile.
	Waiting int `json:"waiting"`
}

// ServerStatus is one claimed feed slot: a running server's feed-lock
// session.
type ServerStatus struct {
	Slot int   `json:"slot"`
	PID  int32 `json:"pid"`
	// ApplicationName, ClientAddr and BackendStart come from
	// pg_stat_activity; ClientAddr is empty over a Unix socket, and all
	// three are empty for another role's session unless the reader has
	// pg_read_all_stats.
	ApplicationName string     `json:"application_name"`
	ClientAddr      string     `json:"client_addr"`
	BackendStart    *time.Time `json:"backend_start"`
	// Armed counts the tables whose feed key the slot's server holds.
	Armed int `json:"armed"`
}

// LogicalSlot is a replication slot of the logical feed mode.
type LogicalSlot struct {
	Name      string `json:"name"`
	Temporary bool   `json:"temporary"`
	Active    bool   `json:"active"`
	ActivePID *int32 `json:"active_pid"`
	// LagBytes is the WAL written since the slot's confirmed flush
	// position; nil on a standby or before the first confirmation.
	LagBytes *int64 `json:"lag_bytes"`
}

// Querier runs queries: a *pgx.Conn (the status command) or a
// *pgxpool.Pool (the server's metrics).
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
	QueryRow(ctx context.Context, sql string, args ...any) pgx.Row
}

// advisoryLocks are this database's exclusive advisory locks on one bigint
// key (objsubid 1), held or awaited: the form pg_advisory_lock takes. Other
// databases' locks share the key space but not the triggers, so they are
// left out.
const advisoryLocks = `
    SELECT (l.classid::bigint << 32) | l.objid::bigint AS key, l.granted, l.pid
    FROM pg_locks l
    WHERE l.locktype = 'advisory' AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())`

// tablesSQL lists every table with a trigger under one of the feed's names,
// and for each slot whether its server holds or awaits the table's key.
const tablesSQL = `
WITH locks AS (` + advisoryLocks + `),
watched AS (
    SELECT DISTINCT tg.tgrelid AS rel
    FROM pg_trigger tg
    WHERE tg.tgname = 'dashboard_notify' OR tg.tgname LIKE 'dashboard\_notify\_%'
)
SELECT format('%I.%I', n.nspname, c.relname),
       coalesce(dashboard.trigger_mode(w.rel), 'incomplete'),
       count(DISTINCT s) FILTER (WHERE l.granted),
       count(DISTINCT s) FILTER (WHERE NOT l.granted)
FROM watched w
JOIN pg_class c ON c.oid = w.rel
JOIN pg_namespace n ON n.oid = c.relnamespace
CROSS JOIN generate_series(0, dashboard.feed_slots() - 1) s
LEFT JOIN locks l ON l.key = dashboard.feed_key(s, w.rel)
GROUP BY w.rel, n.nspname, c.relname
ORDER BY 1`

// serversSQL lists the claimed slots with their sessions and how many feed
// keys of the slot are held.
const serversSQL = `
WITH locks AS (` + advisoryLocks + `)
SELECT s, l.pid, coalesce(a.application_name, ''), coalesce(host(a.client_addr), ''), a.backend_start,
       (SELECT count(*) FROM locks f
        WHERE f.granted AND f.key >> 32 = dashboard.feed_key(s, 0) >> 32)
FROM generate_series(0, dashboard.feed_slots() - 1) s
JOIN locks l ON l.granted AND l.key = dashboard.slot_key(s)
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
ORDER BY s`

// logicalSlotsSQL reads the logical mode's slots. pg_current_wal_lsn()
// fails on a standby, hence the guard.
const logicalSlotsSQL = `
SELECT slot_name, temporary, active, active_pid,
       CASE WHEN NOT pg_is_in_recovery() AND confirmed_flush_lsn IS NOT NULL
            THEN pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint END
FROM pg_replication_slots
WHERE slot_type = 'logical' AND database = current_database() AND slot_name LIKE 'dashboard%'
ORDER BY slot_name`

// ReadStatus reads the change feed's state from the database. It only
// reads; it returns ErrNotMigrated when the feed's functions are missing.
func ReadStatus(ctx context.Context, q Querier) (*Status, error) {
	var migrated bool
	if err := q.QueryRow(ctx, `SELECT to_regprocedure('dashboard.feed_mode()') IS NOT NULL
            AND to_regprocedure('dashboard.feed_key(integer,oid)') IS NOT NULL
            AND to_regprocedure('dashboard.slot_key(integer)') IS NOT NULL
            AND to_regprocedure('dashboard.trigger_mode(regclass)') IS NOT NULL`).Scan(&migrated); err != nil {
		return nil, fmt.Errorf("reading feed status: %w", err)
	}
	if !migrated {
		return nil, ErrNotMigrated
	}
	st := &Status{Tables: []TableStatus{}, Servers: []ServerStatus{}, LogicalSlots: []LogicalSlot{}}
	if err := q.QueryRow(ctx, "SELECT dashboard.feed_slots(), pg_notification_queue_usage(), dashboard.feed_mode()").
		Scan(&st.FeedSlots, &st.QueueUsage, &st.Feed); err != nil {
		return nil, fmt.Errorf("reading feed slots: %w", err)
	}

	rows, _ := q.Query(ctx, tablesSQL)
	var err error
	st.Tables, err = pgx.AppendRows(st.Tables, rows, func(r pgx.CollectableRow) (TableStatus, error) {
		var t TableStatus
		err := r.Scan(&t.Table, &t.Mode, &t.WantedBy, &t.Waiting)
		t.Wanted = t.WantedBy > 0
		return t, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading watched tables: %w", err)
	}

	rows, _ = q.Query(ctx, serversSQL)
	st.Servers, err = pgx.AppendRows(st.Servers, rows, func(r pgx.CollectableRow) (ServerStatus, error) {
		var s ServerStatus
		err := r.Scan(&s.Slot, &s.PID, &s.ApplicationName, &s.ClientAddr, &s.BackendStart, &s.Armed)
		return s, err
	})
	if err != nil {
		return nil, fmt.Errorf("reading feed servers: %w", err)
	}

	// The logical mode's part: its servers read changes through these
	// slots, and their lag is WAL the database keeps for them.
	rows, _ = q.Query(ctx, logicalSlotsSQL)
	st.LogicalSlots, err = pgx.AppendRows(st.LogicalSlots, rows, pgx.RowToStructByPos[LogicalSlot])
	if err != nil {
		return nil, fmt.Errorf("reading replication slots: %w", err)
	}
	return st, nil
}

// StatusCollector exports the feed's database-wide gauges, read on each
// scrape: dashboard_feed_watched_tables{mode}, dashboard_feed_wanted_tables
// and dashboard_feed_servers. Reading on scrape, not on a ticker, keeps the
// values current and needs no goroutine; the read is bounded by a short
// timeout, and when it fails the gauges are left out of that scrape (and
// the failure logged) rather than failing /metrics or showing stale values.
// No label names a table: the mode is the only label.
type StatusCollector struct {
	q       Querier
	timeout time.Duration
	logger  *slog.Logger

	watched, wanted, servers *prometheus.Desc
}

// NewStatusCollector returns a collector that reads through q with at most
// timeout per scrape (default 2s). Register it with the server's registry.
func NewStatusCollector(q Querier, timeout time.Duration, logger *slog.Logger) *StatusCollector {
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &StatusCollector{
		q: q, timeout: timeout, logger: logger,
		watched: prometheus.NewDesc("dashboard_feed_watched_tables",
			"Tables with dashboard triggers, by trigger mode: gated (notify when wanted), always (notify on every change), incomplete (a trigger disabled or missing: changes may reach no server).",
			[]string{"mode"}, nil),
		wanted: prometheus.NewDesc("dashboard_feed_wanted_tables",
			"Gated tables that some server, any server, wants news of now: their writers notify.",
			nil, nil),
		servers: prometheus.NewDesc("dashboard_feed_servers",
			"Feed slots held: servers watching this database.",
			nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *StatusCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.watched
	ch <- c.wanted
	ch <- c.servers
}

// Collect implements prometheus.Collector.
func (c *StatusCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	st, err := ReadStatus(ctx, c.q)
	if err != nil {
		c.logger.Warn("reading feed status for metrics", "err", err)
		return
	}
	modes := map[string]int{ModeGated: 0, ModeAlways: 0, ModeIncomplete: 0}
	wanted := 0
	for _, t := range st.Tables {
		modes[t.Mode]++
		if t.Mode == ModeGated && t.Wanted {
			wanted++
		}
	}
	for mode, n := range modes {
		ch <- prometheus.MustNewConstMetric(c.watched, prometheus.GaugeValue, float64(n), mode)
	}
	ch <- prometheus.MustNewConstMetric(c.wanted, prometheus.GaugeValue, float64(wanted))
	ch <- prometheus.MustNewConstMetric(c.servers, prometheus.GaugeValue, float64(len(st.Servers)))
}
