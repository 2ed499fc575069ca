package provision

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// ApplyOptions are Apply's settings.
type ApplyOptions struct {
	// Prune deletes the dashboards that are not in the directory.
	Prune bool
	// QueryTimeout bounds each EXPLAIN of the lint (default 5s).
	QueryTimeout time.Duration
	// Watch bounds the wait for each table's lock when it is watched.
	Watch catalog.WatchOptions

	// afterLock, if set, runs once the apply lock is held (tests).
	afterLock func()
}

// Unwatched is a table Apply could not watch for a reason other than its
// lock (typically: the applying role does not own it). Its panels refresh
// on the server's safety net, and show the statement an owner must run.
type Unwatched struct {
	Table  string
	Reason string
}

// Result is what Apply did.
type Result struct {
	// Plan is what was written; Empty when the database already matched.
	Plan *Plan
	// Applied is set when a transaction committed changes.
	Applied   bool
	Unwatched []Unwatched
}

// Apply makes the database hold exactly the dashboards and playlists of
// set (playlists as dashboards are: matched by slug, recorded with their
// file and hash, pruned alike; an item naming a dashboard that would not
// exist is a problem, DiffPlaylists). For the dashboards: lint
// (catalog.Explain: every query must plan and only read), then one
// transaction, all or nothing, under catalog.ApplyLockKey, so that servers
// and CI jobs applying at once take turns. Dashboards are matched by slug
// and panels by slug within their dashboard; changed ones are updated in
// place (they keep their ids), unchanged rows are not written at all,
// panels missing from a file are deleted, and dashboards missing from the
// directory only with opts.Prune (never all of them: a directory without
// a dashboard is refused when pruning). Each dashboard records its file and the
// Hash of its content. The tables the panels read are watched in the same
// transaction; a table whose lock cannot be had (catalog.Watch's retries)
// fails the whole apply. When the database already matches, nothing is
// written and no lock is taken. Problems with files come back as Problems.
func Apply(ctx context.Context, db DB, set *Set, opts ApplyOptions) (*Result, error) {
	if opts.Prune && len(set.Docs) == 0 {
		// An empty mount or a wrong path, far more likely than a wish to
		// delete every dashboard.
		return nil, fmt.Errorf("%s holds no dashboard file; refusing to prune every dashboard", set.Dir)
	}
	// Cheap first look, outside the lock: a server restarting on the same
	// files, or the second of two servers, stops here.
	plan, err := Compare(ctx, db, set, opts.Prune)
	if err != nil {
		return nil, err
	}
	if plan.Empty() {
		return &Result{Plan: plan}, nil
	}
	tables, err := Lint(ctx, db, set, opts.QueryTimeout)
	if err != nil {
		return nil, err
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{})
	if err != nil {
		return nil, fmt.Errorf("applying: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if err := catalog.LockForApply(ctx, tx); err != nil {
		return nil, err
	}
	if opts.afterLock != nil {
		opts.afterLock()
	}
	// Again under the lock: another apply may have written the same.
	if plan, err = readPlan(ctx, tx, set, opts.Prune); err != nil {
		return nil, err
	}
	res := &Result{Plan: plan}
	if plan.Empty() {
		return res, nil
	}
	if res.Unwatched, err = watchAll(ctx, tx, tables, opts.Watch); err != nil {
		return nil, fmt.Errorf("%w; nothing was applied", err)
	}
	if err := write(ctx, tx, plan); err != nil {
		return nil, err
	}
	if err := tx.Commit(ctx); err != nil {
		return nil, fmt.Errorf("applying: %w", err)
	}
	res.Applied = true
	return res, nil
}

// Compare reads the dashboards and playlists in a read-only transaction and returns what
// applying set would do: what `dashboard diff` shows.
func Compare(ctx context.Context, db DB, set *Set, prune bool) (*Plan, error) {
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("reading dashboards: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	return readPlan(ctx, tx, set, prune)
}

// plan_ reads the dashboards and the playlists in tx and compares set
// with them (Diff, DiffPlaylists).
func readPlan(ctx context.Context, tx pgx.Tx, set *Set, prune bool) (*Plan, error) {
	have, err := catalog.ReadDashboards(ctx, tx)
	if err != nil {
		return nil, err
	}
	playlists, err := catalog.ReadPlaylists(ctx, tx)
	if err != nil {
		return nil, err
	}
	plan, err := Diff(set, have, prune)
	if err != nil {
		return nil, err
	}
	if plan.Playlists, err = DiffPlaylists(set, playlists, have, prune); err != nil {
		return nil, err
	}
	return plan, nil
}

// watchAll watches every table some panel reads. Tables in the system
// catalogs can never be watched and are skipped.
func watchAll(ctx context.Context, tx pgx.Tx, tables Tables, opts catalog.WatchOptions) ([]Unwatched, error) {
	var all []string
	for _, panels := range tables {
		for _, ts := range panels {
			all = append(all, ts...)
		}
	}
	slices.Sort(all)
	var unwatched []Unwatched
	for _, t := range slices.Compact(all) {
		if strings.HasPrefix(t, "pg_catalog.") || strings.HasPrefix(t, "information_schema.") {
			continue
		}
		err := catalog.Watch(ctx, tx, t, opts)
		var locked *catalog.LockedError
		switch {
		case err == nil:
		case errors.As(err, &locked), ctx.Err() != nil:
			return nil, err
		default:
			unwatched = append(unwatched, Unwatched{Table: t, Reason: catalog.QueryError(err)})
		}
	}
	return unwatched, nil
}

// write carries out plan in tx: deletions first, then updates, then
// inserts, so that no slug is ever held twice.
func write(ctx context.Context, tx pgx.Tx, plan *Plan) error {
	for _, c := range plan.Dashboards {
		if c.Op == Remove {
			if err := catalog.DeleteDashboard(ctx, tx, c.Have.ID); err != nil {
				return err
			}
		}
	}
	for _, c := range plan.Dashboards {
		if c.Op != Add && c.Op != Change {
			continue
		}
		doc := c.Want
		at := func(path string, err error) error {
			return Problems{{File: doc.File, Line: doc.Line(path), Msg: err.Error()}}
		}
		id := int64(0)
		if c.Op == Add {
			var err error
			if id, err = catalog.InsertDashboard(ctx, tx, doc.Dashboard); err != nil {
				return at("", err)
			}
		} else {
			id = c.Have.ID
			if c.Row {
				if err := catalog.UpdateDashboard(ctx, tx, id, doc.Dashboard); err != nil {
					return at("", err)
				}
			}
		}
		index := make(map[*panel.Def]int)
		for i, p := range doc.Dashboard.Panels {
			index[p] = i
		}
		for _, op := range []Op{Remove, Change, Add} {
			for _, pc := range c.Panels {
				if pc.Op != op {
					continue
				}
				var err error
				switch op {
				case Remove:
					err = catalog.DeletePanel(ctx, tx, pc.Have.ID)
				case Change:
					err = catalog.UpdatePanel(ctx, tx, pc.Have.ID, pc.Want)
				case Add:
					_, err = catalog.InsertPanel(ctx, tx, id, pc.Want)
				}
				if err != nil {
					path := ""
					if pc.Want != nil {
						path = fmt.Sprintf("panels[%d]", index[pc.Want])
					}
					return at(path, err)
				}
			}
		}
	}
	return writePlaylistRows(ctx, tx, plan)
}
