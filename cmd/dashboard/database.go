package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/pgserver"
)

// database is the connection string to use and, when the program started a
// private PostgreSQL for it, the server to stop at the end.
type database struct {
	connString string
	server     *pgserver.Server
	dataDir    string // DASHBOARD_DATA_DIR, for the private server
}

// openDatabase returns DATABASE_URL, or starts (or joins) the private
// PostgreSQL in DASHBOARD_DATA_DIR.
func openDatabase(ctx context.Context, cfg config.Config, logger *slog.Logger) (*database, error) {
	if cfg.DatabaseURL != "" {
		return &database{connString: cfg.DatabaseURL}, nil
	}
	binDir, err := pgserver.Find()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(cfg.DataDir, "postgres")
	logger.Info("starting private postgresql", "dir", dir)
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: dir, BinDir: binDir, Logger: logger, Fsync: true})
	if err != nil {
		return nil, fmt.Errorf("the private PostgreSQL in DASHBOARD_DATA_DIR=%s (or set DATABASE_URL): %w", cfg.DataDir, err)
	}
	db := &database{connString: srv.ConnString("dashboard"), server: srv, dataDir: cfg.DataDir}
	if err := srv.CreateDatabase(ctx, "dashboard"); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating database: %w", err)
	}
	return db, nil
}

// unreachable says, on one line and once, why the database could not be
// reached, naming the setting that points at it. pgx puts every address it
// tried on a line of its own, and the same line twice when it tried with and
// without TLS.
func (db *database) unreachable(err error) error {
	var lines []string
	seen := make(map[string]bool)
	for _, l := range strings.Split(err.Error(), "\n") {
		l = strings.Join(strings.Fields(l), " ")
		if l != "" && !seen[l] {
			seen[l] = true
			lines = append(lines, l)
		}
	}
	where := "DATABASE_URL=" + config.RedactURL(db.connString)
	if db.dataDir != "" {
		where = "the private PostgreSQL in DASHBOARD_DATA_DIR=" + db.dataDir
	}
	var msg strings.Builder
	for i, l := range lines {
		if i > 0 {
			if strings.HasSuffix(lines[i-1], ":") {
				msg.WriteString(" ")
			} else {
				msg.WriteString("; ")
			}
		}
		msg.WriteString(l)
	}
	return fmt.Errorf("database unreachable (%s): %s", where, msg.String())
}

// Close stops the private server if this program started it; a server
// found running (for example by a concurrent `dashboard serve`) is left
// alone.
func (db *database) Close() {
	if db.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := db.server.Stop(ctx); err != nil {
		slog.Error("stopping private postgresql", "err", err)
	}
}
