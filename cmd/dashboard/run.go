package main

import (
	"context"
	"os"

	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/migrations"
)

const usage = `dashboard: live dashboards from a PostgreSQL change feed

Usage:
  dashboard [serve]            serve dashboards (default)
  dashboard demo               serve with demo data and live traffic
  dashboard migrate            apply database migrations
  dashboard watch TABLE...     install the change triggers on tables
  dashboard unwatch TABLE...   remove them
  dashboard status [--json]    the change feed as a DBA sees it
  dashboard feed [notify|logical]
                               print or switch the database's change feed mode
                               (servers must run with the same DASHBOARD_FEED)
  dashboard feed slots [N]     print or set how many servers can watch the
                               database at once (1-256, default 4)
  dashboard token create DASHBOARD --label TEXT [--ttl DURATION] [--var NAME=VALUE...]
                         [--kiosk] [--theme dark|light] [--view QUERY]
                               a kiosk link; --var fixes a variable for its holders;
                               --kiosk, --theme and --view go into the link
  dashboard token create --playlist SLUG --label TEXT [--ttl DURATION]
                               a kiosk link rotating through a playlist
  dashboard token list | token revoke ID
  dashboard psql [PSQL ARGS...] psql on the configured or the embedded database
  dashboard export [SLUG...] -o DIR
                               write dashboards as YAML files (docs/files.md)
  dashboard lint [--offline] DIR
                               check dashboard files; unless --offline, also
                               prepare every query on the database
  dashboard diff [--prune] [--exit-code] DIR
                               what apply would change, and drift (rows edited
                               in SQL since they were applied); --exit-code:
                               status 1 when there are differences
  dashboard apply [--prune] DIR
                               make the database hold the folder's dashboards,
                               in one transaction (--prune: delete the others)
  dashboard schema [playlist]  the JSON Schema of dashboard (or playlist) files
  dashboard help               this text and every setting

Settings come from the environment:
`

// run is the whole program; main only adds signals and the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	if cmd == "help" || cmd == "-h" || cmd == "--help" {
		fmt.Fprint(stdout, usage)
		return config.PrintHelp(stdout)
	}
	if cmd == "schema" {
		// Needs no configuration: editors and CI run it anywhere.
		return schemaCommand(args, stdout)
	}
	cfg, err := config.Load()
	if err != nil {
		// One line, each bad variable after the other, so the message reads
		// whole in a terminal and in a log line.
		return fmt.Errorf("configuration: %s", strings.ReplaceAll(err.Error(), "\n", "; "))
	}
	if cmd != "serve" && cmd != "demo" && os.Getenv("DASHBOARD_LOG_LEVEL") == "" {
		// A one-shot command prints its result; the private PostgreSQL's
		// comings and goings are noise there unless asked for.
		cfg.LogLevel = "warn"
	}
	logger := newLogger(cfg, stderr)
	slog.SetDefault(logger)

	switch cmd {
	case "serve":
		if len(args) > 0 {
			return fmt.Errorf("serve takes no arguments, got %q", args)
		}
		return serve(ctx, cfg, logger, serveOptions{})
	case "demo":
		if len(args) > 0 {
			return fmt.Errorf("demo takes no arguments, got %q", args)
		}
		return serve(ctx, cfg, logger, serveOptions{demo: true, stdout: stdout})
	case "migrate":
		return withConn(ctx, cfg, logger, false, func(conn *pgx.Conn) error {
			applied, err := migrations.Up(ctx, conn)
			if err != nil {
				return err
			}
			if len(applied) == 0 {
				fmt.Fprintln(stdout, "database is up to date")
			}
			for _, v := range applied {
				fmt.Fprintf(stdout, "applied migration %04d\n", v)
			}
			return nil
		})
	case "watch", "unwatch":
		if len(args) == 0 {
			return fmt.Errorf("%s needs at least one table name", cmd)
		}
		return withConn(ctx, cfg, logger, true, func(conn *pgx.Conn) error {
			for _, table := range args {
				if _, err := conn.Exec(ctx, "SELECT dashboard."+cmd+"($1::regclass)", table); err != nil {
					return fmt.Errorf("%s %s: %w", cmd, table, err)
				}
				fmt.Fprintf(stdout, "%sed %s\n", strings.TrimSuffix(cmd, "e"), table)
			}
			return nil
		})
	case "token":
		return tokenCommand(ctx, cfg, logger, args, stdout)
	case "status":
		return statusCommand(ctx, cfg, logger, args, stdout)
	case "feed":
		return feedCommand(ctx, cfg, logger, args, stdout)
	case "psql":
		return psqlCommand(ctx, cfg, logger, args, stdout, stderr)
	case "export":
		return exportCommand(ctx, cfg, logger, args, stdout)
	case "lint":
		return lintCommand(ctx, cfg, logger, args, stdout, stderr)
	case "diff":
		return diffCommand(ctx, cfg, logger, args, stdout, stderr)
	case "apply":
		return applyCommand(ctx, cfg, logger, args, stdout, stderr)
	}
	return fmt.Errorf("unknown command %q; run 'dashboard help'", cmd)
}

func newLogger(cfg config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// withConn runs f on one connection to the configured database, starting
// the private server for the duration if no server runs on it. With
// migrateFirst it applies migrations first so that the dashboard schema
// exists.
func withConn(ctx context.Context, cfg config.Config, logger *slog.Logger, migrateFirst bool, f func(*pgx.Conn) error) error {
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	conn, err := pgx.Connect(ctx, db.connString)
	if err != nil {
		return db.unreachable(err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if migrateFirst {
		if _, err := migrations.Up(ctx, conn); err != nil {
			return fmt.Errorf("migrating: %w", err)
		}
	}
	return f(conn)
}
