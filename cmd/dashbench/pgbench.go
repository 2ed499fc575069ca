package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
)

var pgbenchTables = []string{"pgbench_accounts", "pgbench_branches", "pgbench_tellers", "pgbench_history"}

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchOverhead compares pgbench tpcb-like throughput with its four
// tables watched and not, while a server listens on the database, in
// interleaved runs.
func (b *bench) pgbenchOverhead(ctx context.Context) (*pgbenchResult, error) {
	bin, err := findPgbench(b.o.pgbenchBin)
	if err != nil {
		return nil, err
	}
	_, stopServer, err := b.target(ctx)
	if err != nil {
		return nil, err
	}
	defer stopServer()
	if out, err := exec.CommandContext(ctx, bin, "-i", "-q", "-s", strconv.Itoa(b.o.pgbenchScale), b.db.connString).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	r := &pgbenchResult{Clients: b.o.pgbenchClients, Scale: b.o.pgbenchScale, Seconds: b.o.pgbenchTime.Seconds()}
	for i := range b.o.pgbenchRuns {
		for _, watched := range []bool{i%2 == 1, i%2 == 0} {
			fn := "unwatch"
			if watched {
				fn = "watch"
			}
			for _, t := range pgbenchTables {
				if _, err := b.conn.Exec(ctx, "SELECT dashboard."+fn+"($1::regclass)", t); err != nil {
					return nil, fmt.Errorf("%s %s: %w", fn, t, err)
				}
			}
			if _, err := b.conn.Exec(ctx, "CHECKPOINT"); err != nil {
				return nil, err
			}
			tps, err := runPgbench(ctx, bin, b.db.connString, b.o.pgbenchClients, int(b.o.pgbenchTime.Seconds()))
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(b.stderr, "dashbench: pgbench watched=%v: %.0f tps\n", watched, tps)
			if watched {
				r.Watched = append(r.Watched, tps)
			} else {
				r.Unwatched = append(r.Unwatched, tps)
			}
		}
	}
	for _, t := range pgbenchTables {
		b.conn.Exec(ctx, "SELECT dashboard.unwatch($1::regclass)", t)
	}
	r.UnwatchedMd, r.WatchedMd = medianOf(r.Unwatched), medianOf(r.Watched)
	if r.UnwatchedMd > 0 {
		r.Ratio = r.WatchedMd / r.UnwatchedMd
	}
	return r, nil
}

func runPgbench(ctx context.Context, bin, conn string, clients, secs int) (float64, error) {
	cmd := exec.CommandContext(ctx, bin, "-c", strconv.Itoa(clients), "-j", "2", "-T", strconv.Itoa(max(secs, 1)), conn)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("pgbench: %w\n%s", err, out)
	}
	m := tpsLine.FindSubmatch(out)
	if m == nil {
		return 0, fmt.Errorf("pgbench: no tps in its output:\n%s", out)
	}
	return strconv.ParseFloat(string(m[1]), 64)
}

func findPgbench(bin string) (string, error) {
	if bin != "" {
		return bin, nil
	}
	if p, err := exec.LookPath("pgbench"); err == nil {
		return p, nil
	}
	matches, _ := filepath.Glob("/usr/lib/postgresql/*/bin/pgbench")
	for _, m := range slices.Backward(matches) {
		if _, err := os.Stat(m); err == nil {
			return m, nil
		}
	}
	return "", fmt.Errorf("pgbench not found: install PostgreSQL's client programs or pass -pgbench-bin")
}

func medianOf(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	return s[len(s)/2]
}
