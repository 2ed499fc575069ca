package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/pgserver"
)

// psqlCommand opens psql on the database the server would use: DATABASE_URL,
// or the private PostgreSQL in DASHBOARD_DATA_DIR, started for the session
// if it does not run (and stopped after). args follow the connection
// string on psql's command line, so `dashboard psql -c 'SELECT 1'` works.
func psqlCommand(ctx context.Context, cfg config.Config, logger *slog.Logger, args []string, stdout, stderr io.Writer) error {
	bin, err := findPsql()
	if err != nil {
		return err
	}
	db, err := openDatabase(ctx, cfg, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	// Not tied to ctx: Ctrl-C in an interactive session is psql's, to
	// cancel a query, and must not kill it.
	cmd := exec.Command(bin, append([]string{db.connString}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, stdout, stderr
	if err := cmd.Run(); err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return fmt.Errorf("psql exited with status %d", exit.ExitCode())
		}
		return fmt.Errorf("running psql: %w", err)
	}
	return nil
}

// findPsql looks for psql on PATH, then beside the PostgreSQL server
// programs.
func findPsql() (string, error) {
	if p, err := exec.LookPath("psql"); err == nil {
		return p, nil
	}
	if dir, err := pgserver.Find(); err == nil {
		p := filepath.Join(dir, "psql")
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", errors.New("psql not found on PATH or beside the PostgreSQL server programs: install the PostgreSQL client (Debian: apt-get install postgresql-client)")
}
