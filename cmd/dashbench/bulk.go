package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
)

// The bulk tables: the same shape, one watched, one not.
const (
	bulkWatched   = "bench.bulk_watched"
	bulkUnwatched = "bench.bulk_unwatched"
	bulkSlug      = "bulk"
)

func bulkTable(watched bool) string {
	if watched {
		return bulkWatched
	}
	return bulkUnwatched
}

// estimateBulk is how long -bulk should take.
func estimateBulk(o options) time.Duration {
	runs := len(o.viewers) * o.bulkRuns * 2
	return estBulkCluster + time.Duration(runs)*(time.Duration(o.bulkRows)*estBulkRowsCost+estBulkRun)
}

// bulkOverhead times a COPY of -bulk-rows rows into, and then an UPDATE of
// every row of, a watched and an unwatched table of the same shape, in
// interleaved runs, per viewer case.
func bulkOverhead(ctx context.Context, o options, stderr io.Writer) (*bulkResult, error) {
	r := &bulkResult{Feed: o.feed, Rows: o.bulkRows, Runs: o.bulkRuns, MaxRefreshHz: serverHz(o)}
	est := estimateBulk(o)
	fmt.Fprintf(stderr, "dashbench: bulk: %d viewer cases x %d runs x 2 tables x (COPY + UPDATE of %d rows); expect about %s (done about %s)\n",
		len(o.viewers), o.bulkRuns, o.bulkRows, roughly(est), time.Now().Add(est).Format("15:04"))
	start := time.Now()
	c, err := openCluster(ctx, o, o.dataDir, o.fsync)
	if err != nil {
		return nil, err
	}
	defer c.close()
	r.Fsync, r.WalLevel = c.fsync, c.walLevel
	for _, s := range []string{
		`CREATE SCHEMA IF NOT EXISTS bench`,
		`DROP TABLE IF EXISTS ` + bulkWatched + `, ` + bulkUnwatched,
		`CREATE TABLE ` + bulkWatched + ` (id bigint PRIMARY KEY, v int NOT NULL, note text NOT NULL)`,
		`CREATE TABLE ` + bulkUnwatched + ` (id bigint PRIMARY KEY, v int NOT NULL, note text NOT NULL)`,
	} {
		if _, err := c.conn.Exec(ctx, s); err != nil {
			return nil, fmt.Errorf("creating bulk tables: %w", err)
		}
	}
	defer c.conn.Exec(context.WithoutCancel(ctx), `DROP TABLE IF EXISTS `+bulkWatched+`, `+bulkUnwatched)
	if err := setupBoard(ctx, c.conn, bulkSlug, "bulk tables", [][2]string{
		{"watched", `SELECT v FROM ` + bulkWatched + ` WHERE id = 1`},
		{"unwatched", `SELECT v FROM ` + bulkUnwatched + ` WHERE id = 1`},
	}); err != nil {
		return nil, err
	}
	if err := c.createReader(ctx, "GRANT USAGE ON SCHEMA bench TO %s",
		"GRANT SELECT ON "+bulkWatched+", "+bulkUnwatched+" TO %s"); err != nil {
		return nil, err
	}
	for _, viewers := range o.viewers {
		cell, err := c.bulkCell(ctx, o, viewers, stderr)
		if err != nil {
			return nil, err
		}
		for _, s := range []struct {
			name string
			st   bulkStatement
		}{{"COPY", cell.Copy}, {"UPDATE", cell.Update}} {
			fmt.Fprintf(stderr, "dashbench: viewers %s, %s: watched takes %+.1f%% (unwatched median %.2fs, watched %.2fs)\n",
				viewers, s.name, (s.st.Ratio-1)*100, s.st.Unwatched.Median, s.st.Watched.Median)
		}
		r.Cells = append(r.Cells, cell)
	}
	fmt.Fprintf(stderr, "dashbench: bulk took %s\n", time.Since(start).Round(time.Second))
	return r, nil
}

// bulkCell runs one viewer case with its own server.
func (c *cluster) bulkCell(ctx context.Context, o options, viewers string, stderr io.Writer) (bulkCell, error) {
	cell := bulkCell{Viewers: viewers}
	_, stop, err := c.startCellServer(ctx, o, bulkSlug, viewers, stderr)
	if err != nil {
		return cell, err
	}
	defer stop()
	var copies, updates [2][]float64 // [0] unwatched, [1] watched
	for i := range o.bulkRuns {
		for _, w := range variantOrder(i) {
			cp, up, err := c.bulkRun(ctx, bulkTable(w), w, viewers, o.bulkRows)
			if err != nil {
				return cell, err
			}
			fmt.Fprintf(stderr, "dashbench:   run %d, watched=%v: COPY %.2fs, UPDATE %.2fs\n", i+1, w, cp, up)
			k := 0
			if w {
				k = 1
			}
			copies[k] = append(copies[k], cp)
			updates[k] = append(updates[k], up)
		}
	}
	cell.Copy = newBulkStatement(copies[1], copies[0])
	cell.Update = newBulkStatement(updates[1], updates[0])
	return cell, nil
}

func newBulkStatement(watched, unwatched []float64) bulkStatement {
	s := bulkStatement{Unwatched: summarize(unwatched), Watched: summarize(watched)}
	s.Ratio = ratio(s.Watched.Median, s.Unwatched.Median)
	s.PairRatios = summarize(pairRatios(watched, unwatched))
	return s
}

// bulkRun empties table, COPYs rows into it, then UPDATEs every row, and
// returns the seconds of each statement (its commit included). Before
// each, the trigger and the server's wish for news are checked and a
// CHECKPOINT taken; a VACUUM between them sets the hint bits the COPY left
// unset, on both tables alike.
func (c *cluster) bulkRun(ctx context.Context, table string, watched bool, viewers string, rows int) (copySecs, updateSecs float64, err error) {
	if _, err := c.conn.Exec(ctx, "TRUNCATE "+table); err != nil {
		return 0, 0, fmt.Errorf("truncating %s: %w", table, err)
	}
	if err := c.prepareVariant(ctx, []string{table}, watched, viewers); err != nil {
		return 0, 0, err
	}
	schema, name, _ := strings.Cut(table, ".")
	i := 0
	start := time.Now()
	n, err := c.conn.CopyFrom(ctx, pgx.Identifier{schema, name}, []string{"id", "v", "note"},
		pgx.CopyFromFunc(func() ([]any, error) {
			if i == rows {
				return nil, nil
			}
			i++
			return []any{int64(i), int32(0), "bulk row"}, nil
		}))
	copySecs = time.Since(start).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("COPY into %s: %w", table, err)
	}
	if n != int64(rows) {
		return 0, 0, fmt.Errorf("COPY into %s: %d rows, want %d", table, n, rows)
	}
	if _, err := c.conn.Exec(ctx, "VACUUM (ANALYZE) "+table); err != nil {
		return 0, 0, fmt.Errorf("vacuuming %s: %w", table, err)
	}
	if err := c.prepareVariant(ctx, []string{table}, watched, viewers); err != nil {
		return 0, 0, err
	}
	start = time.Now()
	tag, err := c.conn.Exec(ctx, "UPDATE "+table+" SET v = v + 1")
	updateSecs = time.Since(start).Seconds()
	if err != nil {
		return 0, 0, fmt.Errorf("UPDATE of %s: %w", table, err)
	}
	if tag.RowsAffected() != int64(rows) {
		return 0, 0, fmt.Errorf("UPDATE of %s: %d rows, want %d", table, tag.RowsAffected(), rows)
	}
	return copySecs, updateSecs, nil
}
