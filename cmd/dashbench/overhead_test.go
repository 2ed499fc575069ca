package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/livedash/dashboard/internal/pgtest"
)

// TestPgbenchAndBulkSmall runs -pgbench and -bulk tiny, so that they keep
// working: both viewer cases, both variants, one run each. It checks what
// they report, never how fast.
func TestPgbenchAndBulkSmall(t *testing.T) {
	if testing.Short() {
		t.Skip("starts server processes")
	}
	dir := t.TempDir()
	for _, feed := range feeds {
		t.Run("pgbench/"+feed, func(t *testing.T) { pgbenchSmall(t, dir, feed) })
	}
	t.Run("bulk", func(t *testing.T) {
		jsonFile := filepath.Join(dir, "bulk.json")
		var stdout, stderr bytes.Buffer
		err := run(t.Context(), []string{"-database-url", pgtest.NewDB(t), "-bulk", "-bulk-rows", "2000",
			"-bulk-runs", "1", "-json", jsonFile}, &stdout, &stderr)
		if err != nil {
			t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
		}
		t.Logf("\n%s", stdout.String())
		var rep report
		readJSON(t, jsonFile, &rep)
		if rep.Bulk == nil || len(rep.Bulk.Cells) != 2 || rep.Bulk.Rows != 2000 {
			t.Fatalf("want 2 cells of 2000 rows, got %+v", rep.Bulk)
		}
		for i, c := range rep.Bulk.Cells {
			for _, s := range []bulkStatement{c.Copy, c.Update} {
				if len(s.Watched.Runs) != 1 || len(s.Unwatched.Runs) != 1 || s.Ratio <= 0 {
					t.Errorf("cell %d: %+v", i, s)
				}
			}
		}
	})
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("JSON: %v", err)
	}
}

// pgbenchSmall runs -pgbench tiny with one feed mode.
func pgbenchSmall(t *testing.T, dir, feed string) {
	bin, err := findPgbench("")
	if err != nil {
		t.Skip(err)
	}
	if _, err := exec.LookPath(bin); err != nil {
		t.Skip(err)
	}
	jsonFile := filepath.Join(dir, "pgbench-"+feed+".json")
	var stdout, stderr bytes.Buffer
	err = run(t.Context(), []string{"-database-url", pgtest.NewDB(t), "-pgbench", "-feed", feed, "-pgbench-scale", "1",
		"-pgbench-clients", "2", "-pgbench-runs", "1", "-pgbench-time", "1s", "-json", jsonFile}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	var rep report
	readJSON(t, jsonFile, &rep)
	if rep.Pgbench == nil || len(rep.Pgbench.Cells) != 2 {
		t.Fatalf("want 2 cells, got %+v", rep.Pgbench)
	}
	for i, c := range rep.Pgbench.Cells {
		if c.Viewers != []string{viewerNone, viewerAll}[i] || c.Clients != 2 || c.Feed != feed || c.WalLevel == "" {
			t.Errorf("cell %d: %+v", i, c)
		}
		if len(c.Watched.Runs) != 1 || len(c.Unwatched.Runs) != 1 || c.Watched.Median <= 0 || c.Unwatched.Median <= 0 || c.Ratio <= 0 {
			t.Errorf("cell %d: runs missing: %+v", i, c)
		}
	}
}
