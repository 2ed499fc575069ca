// Command dashbench measures the dashboard server end to end: it commits to
// a watched table at a fixed rate and times, for every commit and every
// connected viewer, how long the viewer waits for a frame that shows it.
// See docs/bench.md for the commands and the results on the reference box.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dashbench:", err)
		os.Exit(1)
	}
}
