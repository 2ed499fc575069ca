package main

import (
	"context"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5"
)

// panelCallsQuery sums the executions of the bench panel's query in this
// database, as pg_stat_statements counts them. pg_stat_statements stores
// the text with its constants replaced by $n, so 'seqno-' is not in it:
// the match is on what stays, "|| n AS n" and the table. That excludes the
// bench's own reads of bench.seq; EXPLAIN (a utility statement, stored as
// sent) is excluded by name, though the server's EXPLAIN EXECUTE does not
// carry the panel's text anyway.
const panelCallsQuery = `SELECT coalesce(sum(calls), 0)::float8 FROM pg_stat_statements
	WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
	AND query LIKE '%|| n AS n%FROM bench.seq%' AND query NOT ILIKE 'explain%'`

// statements counts panel queries at the database, so that the server's
// own count (dashboard_refresh_queries_total) has a check it cannot sway.
// A database without pg_stat_statements loaded leaves it off: reads then
// return ok false.
type statements struct {
	conn *pgx.Conn
	ok   bool
}

// openStatements creates the extension if it can and tries one read; if
// either fails it says so once on stderr and counts nothing. Creating the
// extension succeeds even when the library is not preloaded: only a read
// tells.
func openStatements(ctx context.Context, conn *pgx.Conn, stderr io.Writer) *statements {
	s := &statements{conn: conn}
	_, err := conn.Exec(ctx, `CREATE EXTENSION IF NOT EXISTS pg_stat_statements`)
	if err == nil {
		_, err = s.read(ctx)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dashbench: pg_stat_statements is not available (%v): no database count of panel queries, the db queries/commit column stays empty\n", err)
		return s
	}
	s.ok = true
	return s
}

func (s *statements) read(ctx context.Context) (float64, error) {
	var calls float64
	if err := s.conn.QueryRow(ctx, panelCallsQuery).Scan(&calls); err != nil {
		return 0, fmt.Errorf("reading pg_stat_statements: %w", err)
	}
	return calls, nil
}

// panelCalls is the panel query's executions so far; ok is false when the
// database does not count them.
func (s *statements) panelCalls(ctx context.Context) (calls float64, ok bool, err error) {
	if s == nil || !s.ok {
		return 0, false, nil
	}
	calls, err = s.read(ctx)
	return calls, err == nil, err
}
