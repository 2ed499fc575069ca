package main

import (
	"context"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/livedash/dashboard/internal/config"
	"github.com/livedash/dashboard/internal/pgserver"
)

// database is the connection string to use and, when the program started a
// private PostgreSQL for it, the server to stop at the end.
type database struct {
	connString string
	server     *pgserver.Server
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
		return nil, err
	}
	db := &database{connString: srv.ConnString("dashboard"), server: srv}
	if err := srv.CreateDatabase(ctx, "dashboard"); err != nil {
		db.Close()
		return nil, fmt.Errorf("creating database: %w", err)
	}
	return db, nil
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
