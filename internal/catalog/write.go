package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/panel"
)

// ApplyLockKey is the transaction advisory lock that serialises writers of
// whole dashboards (`dashboard apply`, provisioning): servers and CI jobs
// applying at once take turns, and each sees the rows the one before it
// committed. Its bytes spell "dashappl" (classid 0x64617368, objid
// 0x6170706c in pg_locks).
const ApplyLockKey int64 = 0x646173686170706c

// LockForApply takes ApplyLockKey for the rest of tx, waiting for any other
// holder's transaction to end.
func LockForApply(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", ApplyLockKey); err != nil {
		return fmt.Errorf("taking the apply lock: %w", err)
	}
	return nil
}

// dashboardColumns are the columns InsertDashboard and UpdateDashboard
// write, in the order of dashboardArgs.
const dashboardColumns = `slug, title, description, visibility, max_refresh_hz, position,
	time_zone, refresh_seconds, variables, time_from, time_to, source_file, source_hash`

// dashboardArgs returns d's column values as the schema stores them: zero
// optional settings as NULL, the variables as a JSON array.
func dashboardArgs(d *panel.Dashboard) ([]any, error) {
	visibility := "private"
	if d.Public {
		visibility = "public"
	}
	var hz *float64
	if d.MaxRefreshHz > 0 {
		hz = &d.MaxRefreshHz
	}
	var refresh *int
	if d.Refresh > 0 {
		s := int(d.Refresh / time.Second)
		refresh = &s
	}
	vars := d.Variables
	if vars == nil {
		vars = []panel.Variable{}
	}
	variables, err := json.Marshal(vars)
	if err != nil {
		return nil, fmt.Errorf("dashboard %s: encoding variables: %w", d.Slug, err)
	}
	var from, to *string
	if d.Time != nil {
		from, to = &d.Time.From, &d.Time.To
	}
	var file, hash *string
	if d.Source != nil {
		file, hash = &d.Source.File, &d.Source.Hash
	}
	tz := d.TimeZone
	if tz == "" {
		tz = "UTC"
	}
	return []any{d.Slug, d.Title, d.Description, visibility, hz, d.Position,
		tz, refresh, string(variables), from, to, file, hash}, nil
}

// InsertDashboard writes d as a new row, without its panels, and returns
// its id.
func InsertDashboard(ctx context.Context, tx pgx.Tx, d *panel.Dashboard) (int64, error) {
	args, err := dashboardArgs(d)
	if err != nil {
		return 0, err
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO dashboard.dashboards (`+dashboardColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13) RETURNING id`, args...).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("inserting dashboard %s: %w", d.Slug, err)
	}
	return id, nil
}

// UpdateDashboard overwrites every column of the dashboard row id with d,
// its slug included; its panels are left alone. Callers skip it when
// nothing changed, so that an unchanged row keeps its updated_at.
func UpdateDashboard(ctx context.Context, tx pgx.Tx, id int64, d *panel.Dashboard) error {
	args, err := dashboardArgs(d)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE dashboard.dashboards SET (`+dashboardColumns+`)
		= ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10, $11, $12, $13) WHERE id = $14`, append(args, id)...)
	if err != nil {
		return fmt.Errorf("updating dashboard %s: %w", d.Slug, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("updating dashboard %s: no dashboard with id %d", d.Slug, id)
	}
	return nil
}

// DeleteDashboard deletes the dashboard row id; its panels and tokens go
// with it (ON DELETE CASCADE).
func DeleteDashboard(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, "DELETE FROM dashboard.dashboards WHERE id = $1", id); err != nil {
		return fmt.Errorf("deleting dashboard %d: %w", id, err)
	}
	return nil
}

const panelColumns = `slug, title, kind, sql, position, width, height, options, depends_on`

func panelArgs(p *panel.Def) ([]any, error) {
	options, err := json.Marshal(p.Options)
	if err != nil {
		return nil, fmt.Errorf("panel %s: encoding options: %w", p.Slug, err)
	}
	deps := p.DependsOn
	if deps == nil {
		deps = []string{}
	}
	return []any{p.Slug, p.Title, string(p.Kind), p.SQL, p.Position, p.Width, p.Height, string(options), deps}, nil
}

// InsertPanel writes p as a new panel of dashboard dashboardID and returns
// its id.
func InsertPanel(ctx context.Context, tx pgx.Tx, dashboardID int64, p *panel.Def) (int64, error) {
	args, err := panelArgs(p)
	if err != nil {
		return 0, err
	}
	var id int64
	err = tx.QueryRow(ctx, `INSERT INTO dashboard.panels (dashboard_id, `+panelColumns+`)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb, $10) RETURNING id`, append([]any{dashboardID}, args...)...).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("inserting panel %s: %w", p.Slug, err)
	}
	return id, nil
}

// UpdatePanel overwrites every column of panel id with p; callers skip it
// when nothing changed.
func UpdatePanel(ctx context.Context, tx pgx.Tx, id int64, p *panel.Def) error {
	args, err := panelArgs(p)
	if err != nil {
		return err
	}
	tag, err := tx.Exec(ctx, `UPDATE dashboard.panels SET (`+panelColumns+`)
		= ($1, $2, $3, $4, $5, $6, $7, $8::jsonb, $9) WHERE id = $10`, append(args, id)...)
	if err != nil {
		return fmt.Errorf("updating panel %s: %w", p.Slug, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("updating panel %s: no panel with id %d", p.Slug, id)
	}
	return nil
}

// DeletePanel deletes panel id.
func DeletePanel(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, "DELETE FROM dashboard.panels WHERE id = $1", id); err != nil {
		return fmt.Errorf("deleting panel %d: %w", id, err)
	}
	return nil
}

// WatchOptions bound how long Watch queues for a table's lock.
type WatchOptions struct {
	// LockTimeout is the lock_timeout of each attempt (default 2s).
	LockTimeout time.Duration
	// Attempts is how many times the lock is asked for (default 4).
	Attempts int
	// Backoff is the pause after the first attempt that timed out, doubled
	// after each further one (default 250ms).
	Backoff time.Duration
	// OnRetry, if set, is called after an attempt timed out, before the
	// pause, with the sessions that held a conflicting lock then.
	OnRetry func(attempt int, holders []string)
}

// LockedError is Watch's error when no attempt got the table's lock.
type LockedError struct {
	Table    string
	Attempts int
	Timeout  time.Duration
	// Holders describes the sessions that held a lock on the table that
	// CREATE TRIGGER waits for, at the last attempt.
	Holders []string
}

func (e *LockedError) Error() string {
	holders := "no session held it any more when asked"
	if len(e.Holders) > 0 {
		holders = "held by " + strings.Join(e.Holders, "; ")
	}
	return fmt.Sprintf("watching %s: its lock was not granted within %s in %d attempts (%s)",
		e.Table, e.Timeout, e.Attempts, holders)
}

// Watch runs `SELECT dashboard.watch(table)` inside tx, so that the trigger
// comes and goes with whatever else tx writes. CREATE TRIGGER takes a lock
// that waits for every writer of the table, so each attempt runs in a
// savepoint under lock_timeout, and a timed-out attempt is tried again
// after a pause; past the last one the error is a *LockedError naming the
// sessions in the way. Any other failure (not the table's owner, not a
// table) is returned as it is, and tx stays usable after either. A table
// already watched is left alone.
func Watch(ctx context.Context, tx pgx.Tx, table string, opts WatchOptions) error {
	if opts.LockTimeout <= 0 {
		opts.LockTimeout = 2 * time.Second
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 4
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 250 * time.Millisecond
	}
	var previous string
	if err := tx.QueryRow(ctx, "SELECT current_setting('lock_timeout')").Scan(&previous); err != nil {
		return fmt.Errorf("watching %s: %w", table, err)
	}
	pause := opts.Backoff
	var holders []string
	for attempt := 1; attempt <= opts.Attempts; attempt++ {
		if attempt > 1 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			pause *= 2
		}
		err := watchOnce(ctx, tx, table, opts.LockTimeout, previous)
		if err == nil {
			return nil
		}
		var pgErr *pgconn.PgError
		if !errors.As(err, &pgErr) || pgErr.Code != "55P03" { // lock_not_available
			return fmt.Errorf("watching %s: %w", table, err)
		}
		holders, err = lockHolders(ctx, tx, table)
		if err != nil {
			return fmt.Errorf("watching %s: finding who holds its lock: %w", table, err)
		}
		if opts.OnRetry != nil && attempt < opts.Attempts {
			opts.OnRetry(attempt, holders)
		}
	}
	return &LockedError{Table: table, Attempts: opts.Attempts, Timeout: opts.LockTimeout, Holders: holders}
}

// watchOnce is one attempt in a savepoint; the savepoint is rolled back on
// failure, which also undoes its lock_timeout, and lock_timeout is set back
// to previous after a success.
func watchOnce(ctx context.Context, tx pgx.Tx, table string, timeout time.Duration, previous string) error {
	if _, err := tx.Exec(ctx, "SAVEPOINT dashboard_watch"); err != nil {
		return err
	}
	var watched bool
	err := tx.QueryRow(ctx, "SELECT dashboard.is_watched($1::regclass)", table).Scan(&watched)
	if err == nil && !watched {
		_, err = tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", fmt.Sprintf("%dms", timeout.Milliseconds()))
		if err == nil {
			_, err = tx.Exec(ctx, "SELECT dashboard.watch($1::regclass)", table)
		}
	}
	if err != nil {
		if _, rerr := tx.Exec(ctx, "ROLLBACK TO SAVEPOINT dashboard_watch; RELEASE SAVEPOINT dashboard_watch"); rerr != nil {
			return errors.Join(err, rerr)
		}
		return err
	}
	if _, err := tx.Exec(ctx, "RELEASE SAVEPOINT dashboard_watch"); err != nil {
		return err
	}
	_, err = tx.Exec(ctx, "SELECT set_config('lock_timeout', $1, true)", previous)
	return err
}

// lockHolders describes the other sessions holding a lock on table that
// conflicts with CREATE TRIGGER's SHARE ROW EXCLUSIVE.
func lockHolders(ctx context.Context, tx pgx.Tx, table string) ([]string, error) {
	rows, err := tx.Query(ctx, `
		SELECT l.pid, l.mode, coalesce(a.usename, ''), coalesce(a.application_name, ''), coalesce(a.state, ''),
			coalesce(a.xact_start::text, ''), coalesce(left(regexp_replace(a.query, '\s+', ' ', 'g'), 120), '')
		FROM pg_locks l
		LEFT JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'relation' AND l.relation = $1::regclass AND l.granted
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.pid <> pg_backend_pid()
		  AND l.mode NOT IN ('AccessShareLock', 'RowShareLock')
		ORDER BY l.pid, l.mode`, table)
	if err != nil {
		return nil, err
	}
	var out []string
	for rows.Next() {
		var pid int
		var mode, user, app, state, since, query string
		if err := rows.Scan(&pid, &mode, &user, &app, &state, &since, &query); err != nil {
			rows.Close()
			return nil, err
		}
		desc := fmt.Sprintf("pid %d (%s", pid, mode)
		for _, kv := range [][2]string{{"user", user}, {"application", app}, {"state", state}, {"transaction since", since}, {"query", query}} {
			if kv[1] != "" {
				desc += fmt.Sprintf(", %s %q", kv[0], kv[1])
			}
		}
		out = append(out, desc+")")
	}
	return out, rows.Err()
}
