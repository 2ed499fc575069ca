package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestSummarize(t *testing.T) {
	for _, tc := range []struct {
		in            []float64
		med, min, max float64
	}{
		{nil, 0, 0, 0},
		{[]float64{7}, 7, 7, 7},
		{[]float64{5, 1, 3}, 3, 1, 5},
		{[]float64{4, 1, 3, 2}, 2.5, 1, 4},
		{[]float64{10, 30, 20, 50, 40}, 30, 10, 50},
	} {
		s := summarize(tc.in)
		if s.Median != tc.med || s.Min != tc.min || s.Max != tc.max {
			t.Errorf("summarize(%v) = median %g, range %g-%g; want %g, %g-%g", tc.in, s.Median, s.Min, s.Max, tc.med, tc.min, tc.max)
		}
		if !slices.Equal(s.Runs, tc.in) {
			t.Errorf("summarize(%v) kept runs %v, in their order", tc.in, s.Runs)
		}
	}
	if got := pairRatios([]float64{90, 50}, []float64{100, 0, 7}); !slices.Equal(got, []float64{0.9, 0}) {
		t.Errorf("pairRatios = %v, want [0.9 0]", got)
	}
}

func TestMatrixExpansion(t *testing.T) {
	cells := pgbenchCells([]bool{false, true}, []int{8, 32}, []string{viewerNone, viewerAll})
	if len(cells) != 8 {
		t.Fatalf("got %d cells, want 8", len(cells))
	}
	// One PostgreSQL per fsync setting: fsync changes once, outermost.
	if cells[0] != (pgbenchSpec{false, 8, viewerNone}) || cells[1] != (pgbenchSpec{false, 8, viewerAll}) ||
		cells[2] != (pgbenchSpec{false, 32, viewerNone}) || cells[7] != (pgbenchSpec{true, 32, viewerAll}) {
		t.Errorf("cells in the wrong order: %v", cells)
	}
	// Interleaved: ABBA, each variant once per pair.
	var order []bool
	for i := range 4 {
		o := variantOrder(i)
		if o[0] == o[1] {
			t.Fatalf("pair %d runs one variant twice", i)
		}
		order = append(order, o[0], o[1])
	}
	if want := []bool{false, true, true, false, false, true, true, false}; !slices.Equal(order, want) {
		t.Errorf("order %v, want %v", order, want)
	}
}

func TestMatrixFlags(t *testing.T) {
	o, err := parseFlags([]string{"-pgbench"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(o.pgbenchClients, []int{8, 32}) || !slices.Equal(o.pgbenchFsync, []bool{false, true}) ||
		!slices.Equal(o.viewers, []string{viewerNone, viewerAll}) || o.pgbenchRuns != 5 || o.pgbenchTime != 10*time.Second ||
		o.feed != "notify" || o.maxHzSet {
		t.Errorf("defaults: clients %v fsync %v viewers %v runs %d time %s feed %q max-hz set %v",
			o.pgbenchClients, o.pgbenchFsync, o.viewers, o.pgbenchRuns, o.pgbenchTime, o.feed, o.maxHzSet)
	}
	if est := estimatePgbench(o, len(o.pgbenchFsync)); est > 20*time.Minute {
		t.Errorf("the default matrix is estimated at %s, want at most 20 minutes", est)
	}
	if serverHz(o) <= 0 {
		t.Errorf("serverHz: cannot read the server's default refresh cap")
	}
	o, err = parseFlags([]string{"-bulk"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.bulkRows != 1_000_000 || o.bulkRuns < 3 {
		t.Errorf("bulk defaults: %d rows, %d runs", o.bulkRows, o.bulkRuns)
	}
	if est := estimateBulk(o); est > 20*time.Minute {
		t.Errorf("the default bulk run is estimated at %s", est)
	}
	o, err = parseFlags([]string{"-pgbench", "-database-url", "postgres://x/y"}, io.Discard)
	if err != nil || o.pgbenchFsync != nil {
		t.Errorf("-database-url: fsync %v, err %v; want the database's own (nil)", o.pgbenchFsync, err)
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-feed", "nope"}, `-feed "nope"`},
		{[]string{"-pgbench", "-pgbench-clients", "8,x"}, "-pgbench-clients"},
		{[]string{"-pgbench", "-pgbench-clients", "0"}, "-pgbench-clients"},
		{[]string{"-pgbench", "-pgbench-fsync", "maybe"}, "-pgbench-fsync"},
		{[]string{"-pgbench", "-viewers", "some"}, "-viewers"},
		{[]string{"-pgbench", "-fsync"}, "-pgbench-fsync"},
		{[]string{"-pgbench", "-bulk"}, "separate"},
		{[]string{"-bulk", "-server", "http://x", "-database-url", "postgres://x/y"}, "drop -server"},
		{[]string{"-pgbench", "-database-url", "postgres://x/y", "-pgbench-fsync", "off,on"}, "one fsync setting"},
		{[]string{"-pgbench", "-pgbench-runs", "0"}, "-pgbench-runs"},
		{[]string{"-bulk", "-bulk-rows", "0"}, "-bulk-rows"},
		{[]string{"-views", "0"}, "-views"},
		{[]string{"-pgbench", "-views", "10"}, "-views"},
	} {
		_, err := parseFlags(tc.args, io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: got %v, want an error about %s", tc.args, err, tc.want)
		}
	}
	// The latency run keeps its flags.
	if o, err := parseFlags([]string{"-n", "50", "-fsync", "-max-hz", "20"}, io.Discard); err != nil || o.views != 1 {
		t.Errorf("latency flags: got views %d, error %v; want 1 view, no error", o.views, err)
	}
	if o, err := parseFlags([]string{"-n", "50", "-views", "10"}, io.Discard); err != nil || o.views != 10 {
		t.Errorf("-views 10: got views %d, error %v; want 10, no error", o.views, err)
	}
}

func TestWithUser(t *testing.T) {
	got, err := withUser("postgres://admin:secret@db.example:5433/app?sslmode=disable", "reader", "pw")
	if err != nil || got != "postgres://reader:pw@db.example:5433/app?sslmode=disable" {
		t.Errorf("URL: got %q, %v", got, err)
	}
	got, _ = withUser("host=/tmp port=5432 user=postgres dbname=x", "reader", "pw")
	if !strings.HasSuffix(got, " user=reader password=pw") {
		t.Errorf("keyword/value: got %q", got)
	}
}
