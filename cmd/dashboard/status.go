package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/listen"
)

// statusCommand is `dashboard status [--json]`: the change feed as a DBA
// sees it. It only reads, so it does not migrate: an unmigrated database is
// an error that says what to run.
func statusCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("status takes no arguments, got %q", fs.Args())
	}
	return withConn(ctx, cfg, logger, false, func(conn *pgx.Conn) error {
		st, err := listen.ReadStatus(ctx, conn)
		if errors.Is(err, listen.ErrNotMigrated) {
			return fmt.Errorf("status: %w; run 'dashboard migrate'", err)
		}
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if *asJSON {
			enc := json.NewEncoder(stdout)
			enc.SetIndent("", "  ")
			return enc.Encode(st)
		}
		return printStatus(stdout, st)
	})
}

// printStatus writes st as tables for a terminal.
func printStatus(w io.Writer, st *listen.Status) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "watched tables: %d\n", len(st.Tables))
	if len(st.Tables) > 0 {
		fmt.Fprintln(tw, "TABLE\tMODE\tWANTED\tBY SERVERS\tWAITING")
		for _, t := range st.Tables {
			wanted, by, waiting := "no", strconv.Itoa(t.WantedBy), strconv.Itoa(t.Waiting)
			switch {
			case t.Mode == listen.ModeAlways:
				// Notifies on every change, wanted or not.
				wanted, by, waiting = "always", "-", "-"
			case t.Wanted:
				wanted = "yes"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", t.Table, t.Mode, wanted, by, waiting)
		}
	}
	fmt.Fprintf(tw, "\nservers: %d of %d feed slots held\n", len(st.Servers), st.FeedSlots)
	if len(st.Servers) > 0 {
		fmt.Fprintln(tw, "SLOT\tPID\tAPPLICATION\tCLIENT\tSINCE\tARMED")
		for _, s := range st.Servers {
			client, since := s.ClientAddr, "-"
			if client == "" {
				client = "local"
			}
			if s.BackendStart != nil {
				since = s.BackendStart.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%d\n", s.Slot, s.PID, orDash(s.ApplicationName), client, since, s.Armed)
		}
	}
	fmt.Fprintf(tw, "\nnotification queue usage: %.2f%%\n", 100*st.QueueUsage)
	fmt.Fprintf(tw, "feed mode: %s\n", st.Feed)

	// Logical mode (DASHBOARD_FEED=logical): its slots and their lag.
	if len(st.LogicalSlots) == 0 {
		fmt.Fprintln(tw, "logical slots: none")
	} else {
		fmt.Fprintln(tw, "logical slots:")
		fmt.Fprintln(tw, "SLOT\tTEMPORARY\tACTIVE PID\tLAG")
		for _, s := range st.LogicalSlots {
			pid, lag := "-", "unknown"
			if s.ActivePID != nil {
				pid = strconv.Itoa(int(*s.ActivePID))
			}
			if s.LagBytes != nil {
				lag = strconv.FormatInt(*s.LagBytes, 10) + " bytes"
			}
			fmt.Fprintf(tw, "%s\t%t\t%s\t%s\n", s.Name, s.Temporary, pid, lag)
		}
	}
	return tw.Flush()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
