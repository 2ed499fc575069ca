// Command dashboard serves live dashboards from a PostgreSQL change feed.
// Run `dashboard help` for the subcommands and settings.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	// The first SIGTERM or interrupt drains (serve's shutdown, bounded by
	// DASHBOARD_SHUTDOWN_TIMEOUT); a second one ends the process at once.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		stop()
	}()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		code := 1
		var exit *exitError
		if errors.As(err, &exit) {
			code, err = exit.code, exit.err
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "dashboard:", err)
		}
		stop()
		os.Exit(code)
	}
}
