package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/config"
)

// openStandbys opens a pool per URL of DASHBOARD_READ_DATABASE_URL, in its
// order. A URL that cannot be parsed stops the start; a standby that does
// not answer does not: panel queries go to the primary until it does
// (internal/refresh checks it again), and /readyz does not depend on it.
func openStandbys(ctx context.Context, cfg config.Config, logger *slog.Logger) ([]*pgxpool.Pool, error) {
	var pools []*pgxpool.Pool
	fail := func(err error) ([]*pgxpool.Pool, error) {
		for _, p := range pools {
			p.Close()
		}
		return nil, err
	}
	for i, u := range strings.Fields(cfg.ReadDatabaseURL) {
		pc, err := pgxpool.ParseConfig(u)
		if err != nil {
			// pgx's message shows the URL with its password hidden.
			return fail(fmt.Errorf("DASHBOARD_READ_DATABASE_URL: standby %d: %w", i+1, err))
		}
		pc.MaxConns = int32(cfg.QueryConcurrency + 2)
		// A standby that does not answer soon is skipped: the primary
		// answers meanwhile.
		pc.ConnConfig.ConnectTimeout = 2 * time.Second
		pool, err := pgxpool.NewWithConfig(ctx, pc)
		if err != nil {
			return fail(fmt.Errorf("DASHBOARD_READ_DATABASE_URL: standby %d (%s): %w", i+1, config.RedactURL(u), err))
		}
		pools = append(pools, pool)
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		var inRecovery bool
		err = pool.QueryRow(pctx, "SELECT pg_is_in_recovery()").Scan(&inRecovery)
		cancel()
		switch {
		case err != nil:
			logger.Warn("standby unreachable at start; panel queries go to the primary until it answers",
				"standby", config.RedactURL(u), "err", err)
		case !inRecovery:
			logger.Error("DASHBOARD_READ_DATABASE_URL names a server that is not in recovery (not a hot standby, or promoted); panel queries go to the primary until it is one",
				"standby", config.RedactURL(u))
		default:
			logger.Info("reading panels from standby", "standby", config.RedactURL(u))
		}
	}
	return pools, nil
}
