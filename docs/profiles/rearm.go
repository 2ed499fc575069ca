//go:build ignore

// Rearm (go run docs/profiles/rearm.go CONNSTRING DURATION) emulates one dashboard server that wants news of the four pgbench
// tables at a 10 Hz refresh cap: hold each table's feed key, drop it when a
// notification for it arrives, take it again (waiting for writers that
// skipped) 100 ms after the previous take. It prints notifications/s and the
// share of time spent waiting to re-arm.
package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
)

func main() {
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, os.Args[1])
	if err != nil {
		panic(err)
	}
	dur, _ := time.ParseDuration(os.Args[2])
	tables := []string{"public.pgbench_accounts", "public.pgbench_tellers", "public.pgbench_branches", "public.pgbench_history"}
	arm := func(t string) time.Duration {
		s := time.Now()
		if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(dashboard.feed_key(0, $1::regclass))", t); err != nil {
			panic(err)
		}
		return time.Since(s)
	}
	if _, err := conn.Exec(ctx, "LISTEN dashboard"); err != nil {
		panic(err)
	}
	armed := map[string]time.Time{}
	for _, t := range tables {
		arm(t)
		armed[t] = time.Now()
	}
	end := time.Now().Add(dur)
	var notes int
	var waited time.Duration
	disarmed := map[string]time.Time{}
	for time.Now().Before(end) {
		// Re-arm tables whose cap interval has passed.
		for t, at := range disarmed {
			if time.Since(at) >= 100*time.Millisecond {
				waited += arm(t)
				delete(disarmed, t)
			}
		}
		wctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		if err != nil {
			continue
		}
		notes++
		if _, ok := disarmed[n.Payload]; !ok {
			if _, err := conn.Exec(ctx, "SELECT pg_advisory_unlock(dashboard.feed_key(0, $1::regclass))", n.Payload); err != nil {
				panic(err)
			}
			disarmed[n.Payload] = time.Now()
		}
	}
	fmt.Printf("notifications %.0f/s, re-arm waits %.1f%% of the time\n", float64(notes)/dur.Seconds(), 100*waited.Seconds()/dur.Seconds())
}
