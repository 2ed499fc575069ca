package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/provision"
)

// exitError ends the program with its own status: 1 with no message for
// `diff --exit-code` that found differences, 2 for its failures.
type exitError struct {
	code int
	err  error // nil: print nothing
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// parseArgs parses flags and positional arguments in any order, as
// `export sales -o out` and `export -o out sales` both read naturally.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	fs.SetOutput(io.Discard)
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return positional, nil
		}
		if args[0] == "--" {
			return append(positional, args[1:]...), nil
		}
		positional, args = append(positional, args[0]), args[1:]
	}
}

// oneDir is the folder argument of lint, diff and apply.
func oneDir(cmd string, args []string) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("%s needs one folder of dashboard files, got %q", cmd, args)
	}
	return args[0], nil
}

// loadDir reads the folder; its problems go to stderr, one file:line:
// message a line, and the error says how many.
func loadDir(dir string, stderr io.Writer) (*provision.Set, error) {
	set, err := provision.LoadDir(dir)
	if err != nil {
		return nil, reportProblems(dir, err, stderr)
	}
	return set, nil
}

// reportProblems prints Problems to stderr, each on its own line so that
// editors and CI logs link them, and returns a one-line error; any other
// error is returned as it is.
func reportProblems(dir string, err error, stderr io.Writer) error {
	var probs provision.Problems
	if !errors.As(err, &probs) {
		return err
	}
	for _, p := range probs {
		fmt.Fprintln(stderr, p.String())
	}
	s := "s"
	if len(probs) == 1 {
		s = ""
	}
	return fmt.Errorf("%d problem%s in %s; nothing was changed", len(probs), s, dir)
}

// notMigrated adds what to run when the dashboard tables do not exist.
func notMigrated(err error) error {
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P01" {
		return fmt.Errorf("%w; run 'dashboard migrate'", err)
	}
	return err
}

// sizes says what a folder holds: "2 dashboards, 5 panels", and its
// playlists when it has any.
func sizes(set *provision.Set) string {
	panels := 0
	for _, d := range set.Docs {
		panels += len(d.Dashboard.Panels)
	}
	s := fmt.Sprintf("%d dashboards, %d panels", len(set.Docs), panels)
	if n := len(set.Playlists); n > 0 {
		s += fmt.Sprintf(", %d playlists", n)
	}
	return s
}

// exportCommand is `dashboard export [SLUG...] -o DIR`.
func exportCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("export", flag.ContinueOnError)
	out := fs.String("o", "", "folder to write the files into")
	slugs, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	if *out == "" {
		return errors.New("export needs -o DIR, the folder to write the files into")
	}
	return withConn(ctx, cfg, logger, false, func(conn *pgx.Conn) error {
		written, err := provision.Export(ctx, conn, slugs, *out)
		if err != nil {
			return fmt.Errorf("export: %w", notMigrated(err))
		}
		for _, name := range written {
			fmt.Fprintf(stdout, "wrote %s\n", strings.TrimSuffix(*out, "/")+"/"+name)
		}
		return nil
	})
}

// lintCommand is `dashboard lint [--offline] DIR`: the files' own rules
// always; with a database (unless --offline), every query prepared and
// explained there.
func lintCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("lint", flag.ContinueOnError)
	offline := fs.Bool("offline", false, "check the files only; do not connect to a database")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("lint", pos)
	if err != nil {
		return err
	}
	set, err := loadDir(dir, stderr)
	if err != nil {
		return err
	}
	if *offline {
		fmt.Fprintf(stdout, "%s: %s: ok (offline: SQL not checked against a database)\n", dir, sizes(set))
		return nil
	}
	return withConn(ctx, cfg, logger, false, func(conn *pgx.Conn) error {
		if _, err := provision.Lint(ctx, conn, set, cfg.QueryTimeout); err != nil {
			return reportProblems(dir, err, stderr)
		}
		fmt.Fprintf(stdout, "%s: %s: ok\n", dir, sizes(set))
		return nil
	})
}

// diffCommand is `dashboard diff [--prune] [--exit-code] DIR`.
func diffCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("diff", flag.ContinueOnError)
	prune := fs.Bool("prune", false, "count dashboards missing from the folder as removed, as apply --prune would")
	exitCode := fs.Bool("exit-code", false, "exit with status 1 when there are differences, 2 on failure")
	pos, err := parseArgs(fs, args)
	if err == nil {
		var dir string
		if dir, err = oneDir("diff", pos); err == nil {
			err = diff(ctx, cfg, logger, dir, *prune, *exitCode, stdout, stderr)
		}
	}
	var exit *exitError
	if err != nil && *exitCode && !errors.As(err, &exit) {
		// Like diff(1) and kubectl diff: 1 means differences, so trouble
		// must be something else.
		return &exitError{code: 2, err: err}
	}
	return err
}

func diff(ctx context.Context, cfg config.Config, logger *slog.Logger, dir string, prune, exitCode bool, stdout, stderr io.Writer) error {
	set, err := loadDir(dir, stderr)
	if err != nil {
		return err
	}
	return withConn(ctx, cfg, logger, false, func(conn *pgx.Conn) error {
		plan, err := provision.Compare(ctx, conn, set, prune)
		if err != nil {
			return fmt.Errorf("diff: %w", notMigrated(err))
		}
		if err := plan.Write(stdout); err != nil {
			return err
		}
		if plan.Empty() {
			fmt.Fprintf(stdout, "no differences: the database holds the %d dashboards of %s\n", len(set.Docs), dir)
			return nil
		}
		if exitCode {
			return &exitError{code: 1}
		}
		return nil
	})
}

// applyCommand is `dashboard apply [--prune] DIR`.
func applyCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("apply", flag.ContinueOnError)
	prune := fs.Bool("prune", false, "also delete the dashboards that are not in the folder")
	pos, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	dir, err := oneDir("apply", pos)
	if err != nil {
		return err
	}
	set, err := loadDir(dir, stderr)
	if err != nil {
		return err
	}
	return withConn(ctx, cfg, logger, true, func(conn *pgx.Conn) error {
		res, err := provision.Apply(ctx, conn, set, provision.ApplyOptions{Prune: *prune, QueryTimeout: cfg.QueryTimeout})
		if err != nil {
			return reportProblems(dir, err, stderr)
		}
		if err := res.Plan.Write(stdout); err != nil {
			return err
		}
		for _, u := range res.Unwatched {
			fmt.Fprintf(stdout, "not watched: %s (%s); its panels refresh every DASHBOARD_SAFETY_REFRESH until an owner runs SELECT dashboard.watch('%s');\n",
				u.Table, u.Reason, strings.ReplaceAll(u.Table, "'", "''"))
		}
		if res.Applied {
			fmt.Fprintf(stdout, "applied %s: %s\n", dir, sizes(set))
		} else {
			fmt.Fprintf(stdout, "up to date: the database already holds the %d dashboards of %s\n", len(set.Docs), dir)
		}
		return nil
	})
}

// schemaCommand is `dashboard schema [playlist]`: the JSON Schema of a
// dashboard file, or of a playlist file.
func schemaCommand(args []string, stdout io.Writer) error {
	schema := provision.Schema
	switch {
	case len(args) == 1 && args[0] == "playlist":
		schema = provision.PlaylistSchema
	case len(args) > 0:
		return fmt.Errorf("schema takes no argument, or playlist; got %q", args)
	}
	b, err := schema()
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}
