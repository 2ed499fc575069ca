// Package catalog owns what dashboards exist: it loads dashboards and panels
// from the dashboard schema, finds the tables each panel's query reads (with
// EXPLAIN, plus the operator's explicit list), and makes sure those tables
// are watched, or says which statement an owner must run. It does not run
// panel queries.
package catalog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// Tables whose changes mean the catalog itself must be reloaded. They are
// watched by the migrations, so they arrive through the same feed.
const (
	DashboardsTable = "dashboard.dashboards"
	PanelsTable     = "dashboard.panels"
)

// Snapshot is one consistent, immutable view of every dashboard and panel.
// Readers share it without locks; a reload builds a new one.
type Snapshot struct {
	Dashboards []*panel.Dashboard // by position, then slug
	// Playlists are the playlists, by slug (playlist.go).
	Playlists []*Playlist

	bySlug  map[string]*panel.Dashboard
	byID    map[int64]*panel.Dashboard
	panels  map[int64]*panel.Def
	byTable map[string][]*panel.Def
	deps    map[int64][]string
	notices map[int64]string
	details map[int64]string // the database's reason behind a notice, for operators
}

// Dashboard returns the dashboard with slug, or nil.
func (s *Snapshot) Dashboard(slug string) *panel.Dashboard { return s.bySlug[slug] }

// DashboardByID returns the dashboard with id, or nil.
func (s *Snapshot) DashboardByID(id int64) *panel.Dashboard { return s.byID[id] }

// Panel returns the panel with id, or nil.
func (s *Snapshot) Panel(id int64) *panel.Def { return s.panels[id] }

// PanelsReading returns the panels whose queries read table (schema-
// qualified, as in notification payloads).
func (s *Snapshot) PanelsReading(table string) []*panel.Def { return s.byTable[table] }

// Dependencies returns the tables panel id reads, as notification payloads.
func (s *Snapshot) Dependencies(id int64) []string { return s.deps[id] }

// Notice returns the operator-facing notice for a panel, such as the watch
// statement an owner must run, or "".
func (s *Snapshot) Notice(id int64) string {
	if d := s.details[id]; d != "" {
		return s.notices[id] + ": " + d
	}
	return s.notices[id]
}

// PublicNotice is Notice without the database's own words, for dashboards
// anyone may see: the server log has them.
func (s *Snapshot) PublicNotice(id int64) string {
	if s.details[id] != "" {
		return s.notices[id] + "; the server log says why."
	}
	return s.notices[id]
}

// Loader builds Snapshots. It remembers the dependencies it found per query
// text so that a reload only EXPLAINs panels whose SQL changed or could not
// be explained last time.
type Loader struct {
	Pool         *pgxpool.Pool
	Logger       *slog.Logger
	QueryTimeout time.Duration
	// SafetyRefresh is named in notices so operators know how stale an
	// unwatched panel can get.
	SafetyRefresh time.Duration

	cache map[string]depResult // key: SQL + "\x00" + explicit deps
}

type depResult struct {
	tables []string
	err    string // the notice
	detail string // the database's reason, for operators
}

// Load reads the dashboard tables and returns a new Snapshot. Panels whose
// SQL cannot be explained keep their place with a notice; only a failure to
// read the dashboard tables themselves is an error.
func (l *Loader) Load(ctx context.Context) (*Snapshot, error) {
	if l.Logger == nil {
		// A Loader literal without a Logger must not panic on its first warning.
		l.Logger = slog.New(slog.DiscardHandler)
	}
	if l.cache == nil {
		l.cache = make(map[string]depResult)
	}
	dashboards, err := l.readDashboards(ctx)
	if err != nil {
		return nil, err
	}
	playlists, err := ReadPlaylists(ctx, l.Pool)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" { // insufficient_privilege
		// A role that may read the dashboards but not the playlists (granted
		// before they existed) serves its dashboards; only /p/ is missing.
		l.Logger.Warn("cannot read playlists; /p/ addresses answer 404 until the server's role may: GRANT SELECT ON dashboard.playlists, dashboard.playlist_items TO <role>",
			"err", err)
		playlists, err = nil, nil
	}
	if err != nil {
		return nil, err
	}
	deps := make(map[int64][]string)
	notices := make(map[int64]string)
	details := make(map[int64]string)
	used := make(map[string]depResult)
	var watchNeeded []string
	for _, d := range dashboards {
		declared := variables.Declared(d)
		for i := range d.Variables {
			v := &d.Variables[i]
			v.Query, v.Params, _ = variables.Rewrite(v.SQL, declared)
		}
		for _, p := range d.Panels {
			// A panel whose SQL cannot be lexed (an unclosed quote) keeps
			// Query empty: it runs as written and shows Postgres's error.
			p.Query, p.Params, _ = variables.Rewrite(p.SQL, declared)
			key := p.SQL + "\x00" + strings.Join(p.DependsOn, ",")
			dr, ok := l.cache[key]
			if !ok {
				dr = l.dependencies(ctx, p)
				if ctx.Err() != nil {
					return nil, ctx.Err()
				}
			}
			if dr.err == "" {
				// A failure may pass (a table created later, a lock held
				// for a moment): explain it again at the next load.
				used[key] = dr
			}
			if dr.err != "" {
				notices[p.ID] = dr.err
				details[p.ID] = dr.detail
			}
			deps[p.ID] = dr.tables
			watchNeeded = append(watchNeeded, dr.tables...)
		}
	}
	l.cache = used
	slices.Sort(watchNeeded)
	unwatchable := l.ensureWatched(ctx, slices.Compact(watchNeeded))
	for id, tables := range deps {
		var missing []string
		for _, t := range tables {
			if _, bad := unwatchable[t]; bad {
				missing = append(missing, fmt.Sprintf("SELECT dashboard.watch('%s');", strings.ReplaceAll(t, "'", "''")))
			}
		}
		if len(missing) > 0 && notices[id] == "" {
			notices[id] = fmt.Sprintf("Refreshes every %s only: the server may not watch this panel's tables. For live updates a table owner must run: %s",
				l.SafetyRefresh, strings.Join(missing, " "))
		}
	}
	snap := NewSnapshot(dashboards, deps, notices)
	snap.details = details
	snap.Playlists = playlists
	return snap, nil
}

// NewSnapshot indexes dashboards (with their panels), the tables each panel
// reads (by panel id, in payload form) and the panels' notices.
func NewSnapshot(dashboards []*panel.Dashboard, deps map[int64][]string, notices map[int64]string) *Snapshot {
	s := &Snapshot{
		Dashboards: dashboards,
		bySlug:     make(map[string]*panel.Dashboard),
		byID:       make(map[int64]*panel.Dashboard),
		panels:     make(map[int64]*panel.Def),
		byTable:    make(map[string][]*panel.Def),
		deps:       deps,
		notices:    notices,
	}
	for _, d := range dashboards {
		s.bySlug[d.Slug] = d
		s.byID[d.ID] = d
		for _, p := range d.Panels {
			s.panels[p.ID] = p
			for _, t := range deps[p.ID] {
				s.byTable[t] = append(s.byTable[t], p)
			}
		}
	}
	return s
}

func (l *Loader) readDashboards(ctx context.Context) ([]*panel.Dashboard, error) {
	return ReadDashboards(ctx, l.Pool)
}

// Querier is what ReadDashboards needs: a pool, a connection or a
// transaction.
type Querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

// ReadDashboards reads every dashboard with its panels, in display order.
// It is the one reader of the dashboard tables: the server's catalog, and
// `dashboard export`, `diff` and `apply`, all see rows through it.
func ReadDashboards(ctx context.Context, q Querier) ([]*panel.Dashboard, error) {
	rows, err := q.Query(ctx, `
		SELECT id, slug, title, description, visibility = 'public', coalesce(max_refresh_hz, 0), position,
			time_zone, coalesce(refresh_seconds, 0), variables::text, time_from, time_to, source_file, source_hash
		FROM dashboard.dashboards ORDER BY position, slug`)
	if err != nil {
		return nil, fmt.Errorf("reading dashboards: %w", err)
	}
	var dashboards []*panel.Dashboard
	byID := make(map[int64]*panel.Dashboard)
	for rows.Next() {
		d := &panel.Dashboard{}
		var refresh int
		var variables string
		var from, to, file, hash *string
		if err := rows.Scan(&d.ID, &d.Slug, &d.Title, &d.Description, &d.Public, &d.MaxRefreshHz, &d.Position,
			&d.TimeZone, &refresh, &variables, &from, &to, &file, &hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading dashboards: %w", err)
		}
		d.Refresh = time.Duration(refresh) * time.Second
		// Malformed variables (written by hand in SQL) leave the dashboard
		// without pickers rather than down; lint and apply never write such.
		_ = json.Unmarshal([]byte(variables), &d.Variables)
		if from != nil && to != nil {
			d.Time = &panel.TimeRange{From: *from, To: *to}
		}
		if file != nil {
			d.Source = &panel.Source{File: *file}
			if hash != nil {
				d.Source.Hash = *hash
			}
		}
		dashboards = append(dashboards, d)
		byID[d.ID] = d
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading dashboards: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT id, dashboard_id, slug, title, kind, sql, position, width, height, options::text, depends_on
		FROM dashboard.panels ORDER BY dashboard_id, position, slug`)
	if err != nil {
		return nil, fmt.Errorf("reading panels: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		p := &panel.Def{}
		var kind, options string
		if err := rows.Scan(&p.ID, &p.DashboardID, &p.Slug, &p.Title, &kind, &p.SQL, &p.Position,
			&p.Width, &p.Height, &options, &p.DependsOn); err != nil {
			return nil, fmt.Errorf("reading panels: %w", err)
		}
		p.Kind = panel.Kind(kind)
		// A malformed options object must not take the panel down: it is
		// shown with defaults. The column is jsonb, so this only fails on
		// types that do not fit (e.g. "limit": "ten").
		_ = json.Unmarshal([]byte(options), &p.Options)
		// Rows written in SQL are not checked as files are.
		p.Options.Normalize()
		if d := byID[p.DashboardID]; d != nil {
			d.Panels = append(d.Panels, p)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading panels: %w", err)
	}
	return dashboards, nil
}

// dependencies EXPLAINs the panel's query (Explain) in a read-only
// transaction and returns the tables it reads, plus the explicit list, all
// in payload form. A panel whose :name placeholders were rewritten
// (Def.Query) is explained in that form.
func (l *Loader) dependencies(ctx context.Context, p *panel.Def) depResult {
	ctx, cancel := context.WithTimeout(ctx, l.QueryTimeout+time.Second)
	defer cancel()
	query := p.SQL
	if p.Query != "" {
		query = p.Query
	}
	var plan QueryPlan
	err := pgx.BeginTxFunc(ctx, l.Pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", fmt.Sprint(l.QueryTimeout.Milliseconds())); err != nil {
			return err
		}
		var err error
		plan, err = Explain(ctx, tx, query, p.DependsOn)
		return err
	})
	if err != nil {
		reason := QueryError(err)
		if errors.Is(err, ErrNotQuery) {
			reason = err.Error()
		}
		msg := "Cannot find the tables this query reads, so it refreshes every " + l.SafetyRefresh.String() + " only"
		l.Logger.Warn("explaining panel query", "panel", p.Slug, "err", err)
		return depResult{err: msg, detail: reason}
	}
	return depResult{tables: plan.Tables}
}

// ensureWatched installs the triggers on every table not yet watched and
// returns the tables it could not watch (typically: not their owner).
func (l *Loader) ensureWatched(ctx context.Context, tables []string) map[string]struct{} {
	unwatchable := make(map[string]struct{})
	if len(tables) == 0 {
		return unwatchable
	}
	var unwatched []string
	err := l.Pool.QueryRow(ctx, `
		SELECT coalesce(array_agg(t), '{}') FROM unnest($1::text[]) AS t
		WHERE NOT dashboard.is_watched(t::regclass)`, tables).Scan(&unwatched)
	if err != nil {
		l.Logger.Warn("checking watched tables", "err", err)
		return unwatchable
	}
	for _, t := range unwatched {
		err := pgx.BeginFunc(ctx, l.Pool, func(tx pgx.Tx) error {
			// CREATE TRIGGER waits for a lock on the table: do not queue
			// behind a long writer for long.
			if _, err := tx.Exec(ctx, "SET LOCAL lock_timeout = '2s'"); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "SELECT dashboard.watch($1::regclass)", t)
			return err
		})
		if err != nil {
			unwatchable[t] = struct{}{}
			l.Logger.Warn("cannot watch table", "table", t, "err", err)
			continue
		}
		l.Logger.Info("watching table", "table", t)
	}
	return unwatchable
}

// QueryError turns a query error into the text shown on a panel: the
// server's message and hint, never connection details.
func QueryError(err error) string {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		msg := pgErr.Message
		if pgErr.Code == "57014" {
			msg = "query cancelled: it ran longer than DASHBOARD_QUERY_TIMEOUT"
		}
		if pgErr.Detail != "" {
			msg += ". " + pgErr.Detail
		}
		if pgErr.Hint != "" {
			msg += ". Hint: " + pgErr.Hint
		}
		return msg + " (SQLSTATE " + pgErr.Code + ")"
	}
	if errors.Is(err, context.DeadlineExceeded) {
		return "query took longer than DASHBOARD_QUERY_TIMEOUT"
	}
	return "query failed"
}
