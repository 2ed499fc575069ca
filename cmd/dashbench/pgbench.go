package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/migrations"
)

var pgbenchTables = []string{"public.pgbench_accounts", "public.pgbench_branches", "public.pgbench_tellers", "public.pgbench_history"}

// pgbenchPanels are the viewers' dashboard: one small query of fixed cost
// per pgbench table, so that the figure measures the feed, not the query.
// pgbench_history has no index and grows during a run: its panel stops at
// the first row of its first page, which is never a dead one (pgbench
// only inserts there, and truncates it before each run).
var pgbenchPanels = [][2]string{
	{"accounts", `SELECT abalance FROM public.pgbench_accounts WHERE aid = 1`},
	{"branches", `SELECT bbalance FROM public.pgbench_branches WHERE bid = 1`},
	{"tellers", `SELECT tbalance FROM public.pgbench_tellers WHERE tid = 1`},
	{"history", `SELECT 1 AS any_row FROM public.pgbench_history LIMIT 1`},
}

const pgbenchSlug = "pgbench"

var tpsLine = regexp.MustCompile(`tps = ([0-9.]+) \(without initial connection time\)`)

// pgbenchSpec is one cell of the matrix.
type pgbenchSpec struct {
	fsync   bool
	clients int
	viewers string
}

// pgbenchCells expands the matrix in the order it runs: one PostgreSQL per
// fsync setting, then clients, then viewers.
func pgbenchCells(fsyncs []bool, clients []int, viewers []string) []pgbenchSpec {
	var cells []pgbenchSpec
	for _, f := range fsyncs {
		for _, c := range clients {
			for _, v := range viewers {
				cells = append(cells, pgbenchSpec{fsync: f, clients: c, viewers: v})
			}
		}
	}
	return cells
}

// variantOrder is the order of the watched and unwatched runs of pair i:
// unwatched first, then watched, then the other way round, so that drift
// (a growing table, a warming cache) falls on both alike.
func variantOrder(i int) [2]bool {
	if i%2 == 0 {
		return [2]bool{false, true}
	}
	return [2]bool{true, false}
}

// Rough costs behind the estimates printed at start, from smoke runs on
// a 2-core VM with an ext4 disk: a fresh PostgreSQL with pgbench -i, a
// server start per cell, and per run the CHECKPOINT, pgbench's own VACUUM
// and the watch switch (more after a long run than after a short one).
const (
	estCluster      = 5 * time.Second
	estScaleUnit    = 500 * time.Millisecond // pgbench -i, per unit of -pgbench-scale
	estCell         = 2 * time.Second
	estPgbenchRun   = 2 * time.Second
	estBulkCluster  = 10 * time.Second
	estBulkRowsCost = 8 * time.Microsecond // per row and table run: COPY, VACUUM, UPDATE
	estBulkRun      = time.Second          // TRUNCATE, CHECKPOINTs
)

// estimatePgbench is how long the matrix should take.
func estimatePgbench(o options, clusters int) time.Duration {
	cells := clusters * len(o.pgbenchClients) * len(o.viewers)
	runs := cells * o.pgbenchRuns * 2
	return time.Duration(clusters)*(estCluster+time.Duration(o.pgbenchScale)*estScaleUnit) +
		time.Duration(cells)*estCell + time.Duration(runs)*(o.pgbenchTime+estPgbenchRun)
}

// roughly rounds an estimate for printing.
func roughly(d time.Duration) time.Duration {
	if d < time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(time.Minute)
}

// pgbenchOverhead runs the matrix: for each fsync setting its own
// PostgreSQL (or the given database), pgbench tpcb-like with its four
// tables watched and unwatched in interleaved runs, per client count and
// viewer case.
func pgbenchOverhead(ctx context.Context, o options, stderr io.Writer) (*pgbenchMatrix, error) {
	bin, err := findPgbench(o.pgbenchBin)
	if err != nil {
		return nil, err
	}
	fsyncs := o.pgbenchFsync
	if fsyncs == nil {
		fsyncs = []bool{false} // -database-url: its own setting, read below
	}
	m := &pgbenchMatrix{Feed: o.feed, Scale: o.pgbenchScale, Seconds: o.pgbenchTime.Seconds(),
		Runs: o.pgbenchRuns, MaxRefreshHz: serverHz(o)}
	est := estimatePgbench(o, len(fsyncs))
	fmt.Fprintf(stderr, "dashbench: pgbench matrix: %d cells x %d runs x 2 variants x %s; expect about %s (done about %s)\n",
		len(fsyncs)*len(o.pgbenchClients)*len(o.viewers), o.pgbenchRuns, o.pgbenchTime, roughly(est),
		time.Now().Add(est).Format("15:04"))
	start := time.Now()
	for _, fsync := range fsyncs {
		cells, err := pgbenchCluster(ctx, o, bin, fsync, stderr)
		if err != nil {
			return nil, err
		}
		m.Cells = append(m.Cells, cells...)
	}
	fmt.Fprintf(stderr, "dashbench: pgbench matrix took %s\n", time.Since(start).Round(time.Second))
	return m, nil
}

// pgbenchCluster measures every cell of one fsync setting on one
// PostgreSQL.
func pgbenchCluster(ctx context.Context, o options, bin string, fsync bool, stderr io.Writer) ([]pgbenchCell, error) {
	dir := o.dataDir
	if dir != "" {
		dir += "-fsync-" + onOff(fsync)
	}
	c, err := openCluster(ctx, o, dir, fsync)
	if err != nil {
		return nil, err
	}
	defer c.close()
	fmt.Fprintf(stderr, "dashbench: pgbench -i -s %d (fsync %s, wal_level %s)...\n", o.pgbenchScale, onOff(c.fsync), c.walLevel)
	if out, err := exec.CommandContext(ctx, bin, "-i", "-q", "-s", strconv.Itoa(o.pgbenchScale), c.db.connString).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("pgbench -i: %w\n%s", err, out)
	}
	if err := setupBoard(ctx, c.conn, pgbenchSlug, "pgbench tables", pgbenchPanels); err != nil {
		return nil, err
	}
	if err := c.createReader(ctx, "GRANT SELECT ON "+joinIdents(pgbenchTables)+" TO %s"); err != nil {
		return nil, err
	}
	defer setWatched(context.WithoutCancel(ctx), c.conn, pgbenchTables, false)

	var cells []pgbenchCell
	for _, spec := range pgbenchCells([]bool{c.fsync}, o.pgbenchClients, o.viewers) {
		cell, err := c.pgbenchCell(ctx, o, bin, spec, stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(stderr, "dashbench: fsync %s, %d clients, viewers %s: watched keeps %.1f%% (unwatched median %.0f tps, watched %.0f)\n",
			onOff(cell.Fsync), cell.Clients, cell.Viewers, cell.Ratio*100, cell.Unwatched.Median, cell.Watched.Median)
		cells = append(cells, cell)
	}
	return cells, nil
}

// pgbenchCell runs one cell with its own server, so that a viewer of the
// cell before does not linger in this one.
func (c *cluster) pgbenchCell(ctx context.Context, o options, bin string, spec pgbenchSpec, stderr io.Writer) (pgbenchCell, error) {
	cell := pgbenchCell{Feed: o.feed, Fsync: spec.fsync, WalLevel: c.walLevel, Clients: spec.clients, Viewers: spec.viewers}
	base, stop, err := c.startCellServer(ctx, o, pgbenchSlug, spec.viewers, stderr)
	if err != nil {
		return cell, err
	}
	defer stop()
	var unwatched, watched, queries []float64
	for i := range o.pgbenchRuns {
		for _, w := range variantOrder(i) {
			if err := c.prepareVariant(ctx, pgbenchTables, w, spec.viewers); err != nil {
				return cell, err
			}
			m0, err := scrape(ctx, base)
			if err != nil {
				return cell, err
			}
			t0 := time.Now()
			tps, err := runPgbench(ctx, bin, c.db.connString, spec.clients, int(o.pgbenchTime.Seconds()))
			if err != nil {
				return cell, err
			}
			m1, err := scrape(ctx, base)
			if err != nil {
				return cell, err
			}
			qps := (m1.queries - m0.queries) / time.Since(t0).Seconds()
			fmt.Fprintf(stderr, "dashbench:   run %d, watched=%v: %.0f tps, %.1f panel queries/s\n", i+1, w, tps, qps)
			if w {
				watched = append(watched, tps)
				queries = append(queries, qps)
			} else {
				unwatched = append(unwatched, tps)
			}
		}
	}
	cell.Unwatched, cell.Watched, cell.WatchedQueries = summarize(unwatched), summarize(watched), summarize(queries)
	cell.Ratio = ratio(cell.Watched.Median, cell.Unwatched.Median)
	cell.PairRatios = summarize(pairRatios(watched, unwatched))
	return cell, nil
}

// setupBoard (re)creates the dashboard slug with the given panels (slug,
// SQL), each a stat.
func setupBoard(ctx context.Context, conn *pgx.Conn, slug, title string, panels [][2]string) error {
	if _, err := conn.Exec(ctx, `DELETE FROM dashboard.dashboards WHERE slug = $1`, slug); err != nil {
		return fmt.Errorf("setting up dashboard %s: %w", slug, err)
	}
	var id int64
	if err := conn.QueryRow(ctx, `INSERT INTO dashboard.dashboards (slug, title) VALUES ($1, $2) RETURNING id`, slug, title).Scan(&id); err != nil {
		return fmt.Errorf("setting up dashboard %s: %w", slug, err)
	}
	for _, p := range panels {
		if _, err := conn.Exec(ctx, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql) VALUES ($1, $2, $2, 'stat', $3)`,
			id, p[0], p[1]); err != nil {
			return fmt.Errorf("setting up dashboard %s, panel %s: %w", slug, p[0], err)
		}
	}
	return nil
}

// migrate applies the migrations.
func migrate(ctx context.Context, conn *pgx.Conn) error {
	if _, err := migrations.Up(ctx, conn); err != nil {
		return fmt.Errorf("migrating: %w", err)
	}
	return nil
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
