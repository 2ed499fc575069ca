package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/config"
)

// feedSwitchWait bounds how long `dashboard feed` waits for transactions
// that were open when the mode switched.
var feedSwitchWait = time.Minute

// feedCommand is `dashboard feed [notify|logical]`: it prints the
// database's change feed mode, or switches it with dashboard.set_feed_mode
// (migrations/0006_logical_feed.sql).
//
// The switch reaches every session at its next statement. A transaction
// open across it may have sent its notices the old way, which a server of
// the new mode does not read: feedCommand waits (at most feedSwitchWait)
// until every transaction open at the switch has ended, so that servers
// started after it returns find all of them in their first queries.
func feedCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) > 1 || len(args) == 1 && args[0] != config.FeedNotify && args[0] != config.FeedLogical {
		return fmt.Errorf("feed takes notify or logical (or nothing, to print the mode), got %q", args)
	}
	return withConn(ctx, cfg, logger, true, func(conn *pgx.Conn) error {
		before, err := feedMode(ctx, conn)
		if err != nil {
			return err
		}
		if len(args) == 0 {
			fmt.Fprintf(stdout, "feed mode: %s\n", before)
			return nil
		}
		mode := args[0]
		if before == mode {
			fmt.Fprintf(stdout, "feed mode is already %s\n", mode)
			return nil
		}
		if _, err := conn.Exec(ctx, "SELECT dashboard.set_feed_mode($1)", mode); err != nil {
			return explainFeedSwitch(err)
		}
		var xmax string
		var at time.Time
		if err := conn.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, clock_timestamp()").Scan(&xmax, &at); err != nil {
			return fmt.Errorf("reading open transactions: %w", err)
		}
		fmt.Fprintf(stdout, "feed mode is now %s; servers must run with DASHBOARD_FEED=%s (one in the other mode refuses to start, and one already running sees no change: restart it)\n", mode, mode)
		return waitSwitchedOver(ctx, conn, xmax, at, stdout)
	})
}

// waitSwitchedOver waits until every transaction that began before xmax
// (at the switch, at) has ended.
func waitSwitchedOver(ctx context.Context, conn *pgx.Conn, xmax string, at time.Time, stdout io.Writer) error {
	deadline := time.Now().Add(feedSwitchWait)
	said := false
	for {
		var done bool
		if err := conn.QueryRow(ctx, "SELECT pg_snapshot_xmin(pg_current_snapshot()) >= $1::xid8", xmax).Scan(&done); err != nil {
			return fmt.Errorf("waiting for open transactions: %w", err)
		}
		if done {
			return nil
		}
		if !said {
			fmt.Fprintln(stdout, "waiting for transactions that were open at the switch to end...")
			said = true
		}
		if time.Now().After(deadline) {
			rows, err := conn.Query(ctx, `SELECT pid::text FROM pg_stat_activity
				WHERE backend_xid IS NOT NULL AND xact_start < $1 ORDER BY xact_start`, at)
			var pids []string
			if err == nil {
				pids, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err != nil {
				return fmt.Errorf("listing open transactions: %w", err)
			}
			fmt.Fprintf(stdout, "gave up after %v: transactions open since before the switch (pids %s) may have sent their change notices the old way; "+
				"servers see those changes at their next full refresh (DASHBOARD_SAFETY_REFRESH)\n", feedSwitchWait, strings.Join(pids, ", "))
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// explainFeedSwitch adds to set_feed_mode's refusals what to do.
func explainFeedSwitch(err error) error {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return fmt.Errorf("switching feed mode: %w", err)
	}
	if pgErr.Code == "42501" {
		return fmt.Errorf("switching feed mode replaces dashboard.feed_mode(), which only the owner of schema dashboard "+
			"(the role that ran the migrations) may do: run 'dashboard feed' as that role: %w", err)
	}
	if pgErr.Hint != "" {
		return fmt.Errorf("switching feed mode: %w (%s)", err, pgErr.Hint)
	}
	return fmt.Errorf("switching feed mode: %w", err)
}
