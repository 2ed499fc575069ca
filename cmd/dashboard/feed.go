package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/listen"
)

// feedSwitchWait bounds how long `dashboard feed` waits for transactions
// that were open when the mode switched.
var feedSwitchWait = time.Minute

// feedCommand is `dashboard feed [notify|logical]`: it prints the
// database's change feed mode, or switches it with dashboard.set_feed_mode
// (migrations/0006_logical_feed.sql). `dashboard feed slots [N]` goes to
// feedSlotsCommand.
//
// The switch reaches every session at its next statement. A transaction
// open across it may have sent its notices the old way, which a server of
// the new mode does not read: feedCommand waits (at most feedSwitchWait)
// until every transaction open at the switch has ended, so that servers
// started after it returns find all of them in their first queries.
func feedCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) > 0 && args[0] == "slots" {
		return feedSlotsCommand(ctx, cfg, logger, args[1:], stdout)
	}
	if len(args) > 1 || len(args) == 1 && args[0] != config.FeedNotify && args[0] != config.FeedLogical {
		return fmt.Errorf("feed takes notify or logical (or nothing, to print the mode), or slots [N], got %q", args)
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
		return waitSwitchedOver(ctx, conn, xmax, at, stdout,
			"may have sent their change notices the old way; servers see those changes at their next full refresh (DASHBOARD_SAFETY_REFRESH)")
	})
}

// waitSwitchedOver waits until every transaction that began before xmax
// (at the switch, at) has ended. Past feedSwitchWait it names those still
// open and what they risk (risk, after "transactions open since before the
// switch (pids ...)").
func waitSwitchedOver(ctx context.Context, conn *pgx.Conn, xmax string, at time.Time, stdout io.Writer, risk string) error {
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
			fmt.Fprintf(stdout, "gave up after %v: transactions open since before the switch (pids %s) %s\n", feedSwitchWait, strings.Join(pids, ", "), risk)
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

// maxFeedSlots is dashboard.set_feed_slots' upper bound (migration 0012).
const maxFeedSlots = 256

// feedSlotsCommand is `dashboard feed slots [N]`: it prints how many
// servers can watch the database (the feed slots) and how many hold one, or
// sets the count with dashboard.set_feed_slots (migrations/0012_feed_slots.sql).
//
// A grow reaches writers at their next statement, but a transaction open
// across it that skipped its notice under the old trigger holds no shared
// lock on a new slot's feed keys, so a server claiming a new slot would not
// wait for it and could miss its commit. The command therefore claims the
// new slots itself in the transaction that grows, holds them until every
// transaction open at the grow has ended (at most feedSwitchWait), and only
// then lets servers have them. A shrink needs no wait: the slots that go are
// free (set_feed_slots refuses otherwise), so no server relies on them.
func feedSlotsCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return fmt.Errorf("feed slots takes one number from 1 to %d (or nothing, to print the count), got %q", maxFeedSlots, args)
	}
	n := 0
	if len(args) == 1 {
		v, err := strconv.Atoi(args[0])
		if err != nil || v < 1 || v > maxFeedSlots {
			return fmt.Errorf("feed slots takes a number from 1 to %d, got %q", maxFeedSlots, args[0])
		}
		n = v
	}
	return withConn(ctx, cfg, logger, true, func(conn *pgx.Conn) error {
		st, err := listen.ReadStatus(ctx, conn)
		if err != nil {
			return err
		}
		if n == 0 {
			fmt.Fprintf(stdout, "feed slots: %d (%d held by servers)\n", st.FeedSlots, len(st.Servers))
			return nil
		}
		var before int
		err = pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			// The lock set_feed_slots takes, first, so that the count read
			// here is the one it replaces.
			if err := tx.QueryRow(ctx, "SELECT pg_advisory_xact_lock(dashboard.slot_key(2147483647))::text, dashboard.feed_slots()").
				Scan(nil, &before); err != nil {
				return fmt.Errorf("reading feed slots: %w", err)
			}
			if before == n {
				return nil
			}
			if _, err := tx.Exec(ctx, "SELECT dashboard.set_feed_slots($1)", n); err != nil {
				return explainFeedSlots(err)
			}
			// Session locks, so they outlast the commit: no server can
			// claim a new slot before the wait below is over.
			_, err := tx.Exec(ctx, "SELECT pg_try_advisory_lock(dashboard.slot_key(s)) FROM generate_series($1::int, $2::int - 1) s", before, n)
			return err
		})
		if err != nil {
			return err
		}
		if before == n {
			fmt.Fprintf(stdout, "feed slots are already %d\n", n)
			return nil
		}
		fmt.Fprintf(stdout, "feed slots are now %d (were %d): up to %d servers can watch this database\n", n, before, n)
		if err := printSlotCost(ctx, conn, n, stdout); err != nil {
			return err
		}
		if n < before {
			return nil
		}
		var xmax string
		var at time.Time
		if err := conn.QueryRow(ctx, "SELECT pg_snapshot_xmax(pg_current_snapshot())::text, clock_timestamp()").Scan(&xmax, &at); err != nil {
			return fmt.Errorf("reading open transactions: %w", err)
		}
		if err := waitSwitchedOver(ctx, conn, xmax, at, stdout,
			"skipped their notices without asking the new slots; a server that claims a new slot sees their changes at its next full refresh (DASHBOARD_SAFETY_REFRESH)"); err != nil {
			return err
		}
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock(dashboard.slot_key(s)) FROM generate_series($1::int, $2::int - 1) s", before, n); err != nil {
			return fmt.Errorf("handing the new feed slots to servers: %w", err)
		}
		fmt.Fprintln(stdout, "servers waiting for a slot claim the new ones at their next try; running servers keep theirs")
		return nil
	})
}

// printSlotCost says what n slots cost writers, with the database's lock
// table size.
func printSlotCost(ctx context.Context, conn *pgx.Conn, n int, stdout io.Writer) error {
	var perTx, conns, prepared int
	if err := conn.QueryRow(ctx, `SELECT current_setting('max_locks_per_transaction')::int,
		current_setting('max_connections')::int, current_setting('max_prepared_transactions')::int`).Scan(&perTx, &conns, &prepared); err != nil {
		return fmt.Errorf("reading the lock table size: %w", err)
	}
	fmt.Fprintf(stdout, "cost: every statement on a watched table that no server wants tries %d advisory locks, and its transaction "+
		"holds them until it ends: %d per watched table it changes. They share the lock table with all other locks: "+
		"max_locks_per_transaction (%d) x (max_connections (%d) + max_prepared_transactions (%d)) = %d; "+
		"keep %d x the watched tables one transaction changes below max_locks_per_transaction, or raise it (restart needed)\n",
		n, n, perTx, conns, prepared, perTx*(conns+prepared), n)
	return nil
}

// explainFeedSlots adds to set_feed_slots' refusals what to do.
func explainFeedSlots(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Hint != "" {
		return fmt.Errorf("setting feed slots: %w (%s)", err, pgErr.Hint)
	}
	return fmt.Errorf("setting feed slots: %w", err)
}
