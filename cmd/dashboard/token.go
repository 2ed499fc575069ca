package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/config"
)

// tokenCommand is `dashboard token create|list|revoke`.
func tokenCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("token needs create, list or revoke")
	}
	sub, args := args[0], args[1:]
	var run func(*pgxpool.Pool) error
	switch sub {
	case "create":
		fs := flag.NewFlagSet("token create", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		label := fs.String("label", "", "where the token is used, e.g. \"lobby TV\"")
		ttl := fs.Duration("ttl", 0, "lifetime, e.g. 720h; 0 never expires")
		all := fs.Bool("all", false, "valid for every dashboard")
		// Accept the dashboard before or after the flags.
		var dashboard string
		if len(args) > 0 && len(args[0]) > 0 && args[0][0] != '-' {
			dashboard, args = args[0], args[1:]
		}
		if err := fs.Parse(args); err != nil {
			return fmt.Errorf("token create: %w", err)
		}
		if dashboard == "" && fs.NArg() > 0 {
			dashboard = fs.Arg(0)
		}
		if dashboard == "" && !*all {
			return fmt.Errorf("token create needs a dashboard slug, or --all")
		}
		if *ttl < 0 {
			return fmt.Errorf("token create: --ttl must not be negative")
		}
		run = func(pool *pgxpool.Pool) error {
			secret, t, err := access.Create(ctx, pool, dashboard, *label, *ttl)
			if err != nil {
				return err
			}
			path := "/"
			if dashboard != "" {
				path = "/d/" + dashboard
			}
			fmt.Fprintf(stdout, "token %d created for %s; it is shown only now:\n  %s%s?token=%s\n",
				t.ID, scope(t.Dashboard), cfg.PublicBase(), path, secret)
			return nil
		}
	case "list":
		run = func(pool *pgxpool.Pool) error {
			tokens, err := access.List(ctx, pool)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tDASHBOARD\tLABEL\tCREATED\tEXPIRES")
			for _, t := range tokens {
				exp := "never"
				if t.ExpiresAt != nil {
					exp = t.ExpiresAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", t.ID, scope(t.Dashboard), t.Label, t.CreatedAt.UTC().Format(time.RFC3339), exp)
			}
			return tw.Flush()
		}
	case "revoke":
		if len(args) != 1 {
			return fmt.Errorf("token revoke needs one token id (see token list)")
		}
		id, err := strconv.ParseInt(args[0], 10, 64)
		if err != nil {
			return fmt.Errorf("token revoke: %q is not a token id", args[0])
		}
		run = func(pool *pgxpool.Pool) error {
			if err := access.Revoke(ctx, pool, id); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "token %d revoked; its open streams close now\n", id)
			return nil
		}
	default:
		return fmt.Errorf("unknown token command %q; want create, list or revoke", sub)
	}
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	pool, err := pgxpool.New(ctx, db.connString)
	if err != nil {
		return fmt.Errorf("connecting to database: %w", err)
	}
	defer pool.Close()
	if err := migrate(ctx, pool); err != nil {
		return err
	}
	return run(pool)
}

func scope(dashboard string) string {
	if dashboard == "" {
		return "every dashboard"
	}
	return dashboard
}
