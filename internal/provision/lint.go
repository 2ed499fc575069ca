package provision

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// DB is what Lint and Apply need of a database: a pool or a connection.
type DB interface {
	BeginTx(ctx context.Context, opts pgx.TxOptions) (pgx.Tx, error)
}

// Tables lists the tables each panel reads, in payload form, by dashboard
// slug and panel slug.
type Tables map[string]map[string][]string

// DefaultQueryTimeout bounds each EXPLAIN of Lint when no timeout is given.
const DefaultQueryTimeout = 5 * time.Second

// Lint checks every query of set against the database without running
// any: each is rewritten as the server will (:name to $n), prepared and
// its generic plan explained (catalog.Explain), in one READ ONLY
// transaction that is rolled back. A query that does not parse or plan,
// is not a plain query, or whose plan writes or locks rows (a
// ModifyTable node anywhere, so data-modifying CTEs too), and a depends_on
// that names no table, is a problem at its file and line, with the full
// PostgreSQL error; the error is then Problems. Lint returns the tables
// each panel reads.
func Lint(ctx context.Context, db DB, set *Set, timeout time.Duration) (Tables, error) {
	if timeout <= 0 {
		timeout = DefaultQueryTimeout
	}
	tx, err := db.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		return nil, fmt.Errorf("checking queries: %w", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SELECT set_config('statement_timeout', $1, true)", fmt.Sprint(timeout.Milliseconds())); err != nil {
		return nil, fmt.Errorf("checking queries: %w", err)
	}
	tables := make(Tables)
	var probs Problems
	for _, doc := range set.Docs {
		d := doc.Dashboard
		tables[d.Slug] = make(map[string][]string)
		// Rewritten as the server's catalog does (variables.Check has
		// already refused names used out of order).
		declared := variables.Declared(d)
		for _, q := range queriesOf(d) {
			problem := func(line int, format string, args ...any) {
				probs = append(probs, Problem{File: doc.File, Line: line, Msg: q.what + ": " + fmt.Sprintf(format, args...)})
			}
			rewritten, _, err := variables.Rewrite(q.sql, declared)
			if err != nil {
				problem(doc.Line(q.path), "%v", err)
				continue
			}
			var dependsOn []string
			if q.panel != nil {
				dependsOn = q.panel.DependsOn
				missing, err := catalog.MissingTables(ctx, tx, dependsOn)
				if err != nil {
					if ctx.Err() != nil || !isPgError(err) {
						return nil, fmt.Errorf("checking queries: %w", err)
					}
					problem(doc.Line(strings.TrimSuffix(q.path, ".sql")+".depends_on"), "depends_on: %s", pgMessage(err))
					continue
				}
				for _, m := range missing {
					problem(doc.Line(strings.TrimSuffix(q.path, ".sql")+".depends_on"), "depends_on: no table %s", m)
				}
				if len(missing) > 0 {
					continue
				}
			}
			plan, err := catalog.Explain(ctx, tx, rewritten, dependsOn)
			switch {
			case errors.Is(err, catalog.ErrNotQuery):
				problem(doc.Line(q.path), "%v", err)
			case isPgError(err):
				problem(doc.sqlLine(q.path, errorLine(rewritten, err)), "%s", pgMessage(err))
			case err != nil:
				return nil, fmt.Errorf("checking %s of %s: %w", q.what, doc.File, err)
			case len(plan.Writes) > 0:
				problem(doc.Line(q.path), "the query writes (%s); queries may only read", strings.Join(plan.Writes, ", "))
			case q.panel != nil:
				tables[d.Slug][q.panel.Slug] = plan.Tables
			}
		}
	}
	if len(probs) > 0 {
		probs.sort()
		return tables, probs
	}
	return tables, nil
}

// query is one SQL text of a dashboard: a query variable's or a panel's.
type query struct {
	path  string // in the file: "variables[0].sql", "panels[2].sql"
	what  string // for people: "variable region", "panel revenue"
	sql   string
	panel *panel.Def // nil for a variable
}

// queriesOf lists d's queries in file order: variables, then panels.
func queriesOf(d *panel.Dashboard) []query {
	var qs []query
	for i, v := range d.Variables {
		if v.Kind == panel.QueryVariable && v.SQL != "" {
			qs = append(qs, query{path: fmt.Sprintf("variables[%d].sql", i), what: "variable " + v.Name, sql: v.SQL})
		}
	}
	for i, p := range d.Panels {
		qs = append(qs, query{path: fmt.Sprintf("panels[%d].sql", i), what: "panel " + p.Slug, sql: p.SQL, panel: p})
	}
	return qs
}

func isPgError(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr)
}

// pgMessage is PostgreSQL's whole error: severity, message, SQLSTATE,
// detail, hint and context.
func pgMessage(err error) string {
	var e *pgconn.PgError
	if !errors.As(err, &e) {
		return err.Error()
	}
	s := fmt.Sprintf("%s: %s (SQLSTATE %s)", e.Severity, e.Message, e.Code)
	if e.Detail != "" {
		s += "; DETAIL: " + e.Detail
	}
	if e.Hint != "" {
		s += "; HINT: " + e.Hint
	}
	if e.Where != "" {
		s += "; CONTEXT: " + strings.ReplaceAll(e.Where, "\n", "; ")
	}
	return s
}

// errorLine is the line (0-based) of query at which PostgreSQL placed err,
// or 0. Rewrite changes only the text of placeholders, never the lines.
func errorLine(query string, err error) int {
	var e *pgconn.PgError
	if !errors.As(err, &e) || e.Position <= 0 {
		return 0
	}
	n, line := 0, 0
	for _, r := range query { // Position counts characters, from 1
		n++
		if n >= int(e.Position) {
			break
		}
		if r == '\n' {
			line++
		}
	}
	return line
}
