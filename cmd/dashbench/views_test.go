package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/internal/variables"
)

func TestClientPaths(t *testing.T) {
	t.Parallel()
	tests := []struct {
		i, views     int
		events, poll string
	}{
		{0, 1, "/d/bench/events", "/d/bench/poll?wait=25"},
		{7, 1, "/d/bench/events", "/d/bench/poll?wait=25"},
		{0, 10, "/d/bench/events?var-v=0", "/d/bench/poll?wait=25&var-v=0"},
		{3, 10, "/d/bench/events?var-v=3", "/d/bench/poll?wait=25&var-v=3"},
		{13, 10, "/d/bench/events?var-v=3", "/d/bench/poll?wait=25&var-v=3"},
		{999, 10, "/d/bench/events?var-v=9", "/d/bench/poll?wait=25&var-v=9"},
	}
	for _, tt := range tests {
		if got := eventsPath(tt.i, tt.views); got != tt.events {
			t.Errorf("eventsPath(%d, %d): got %q, want %q", tt.i, tt.views, got, tt.events)
		}
		if got := pollPath(tt.i, tt.views); got != tt.poll {
			t.Errorf("pollPath(%d, %d): got %q, want %q", tt.i, tt.views, got, tt.poll)
		}
	}
}

// TestSetupBenchViews switches the bench dashboard from one view to three
// and back on one database, and loads it each time through the server's own
// catalog: the variable must be valid, the panel SQL must use it and
// explain without a notice, and one view must be today's dashboard again.
func TestSetupBenchViews(t *testing.T) {
	t.Parallel()
	ctx := t.Context()
	url := pgtest.NewDB(t)
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	loader := &catalog.Loader{Pool: pool}

	for _, views := range []int{1, 3, 3, 1, 1} {
		if _, err := setupBench(ctx, conn, views); err != nil {
			t.Fatalf("views=%d: %v", views, err)
		}
		snap, err := loader.Load(ctx)
		if err != nil {
			t.Fatalf("views=%d: loading catalog: %v", views, err)
		}
		d := snap.Dashboard(benchSlug)
		if d == nil || len(d.Panels) != 1 {
			t.Fatalf("views=%d: got dashboard %+v, want the bench dashboard with one panel", views, d)
		}
		p := d.Panels[0]
		if n := snap.Notice(p.ID); n != "" {
			t.Errorf("views=%d: panel notice %q, want none", views, n)
		}
		if errs := variables.Check(d); len(errs) > 0 {
			t.Errorf("views=%d: variables.Check: %v", views, errs)
		}
		if views == 1 {
			if len(d.Variables) != 0 || p.SQL != panelQuery || len(p.Params) != 0 {
				t.Errorf("views=1: got variables %+v, SQL %q, params %v; want none, %q, none", d.Variables, p.SQL, p.Params, panelQuery)
			}
			continue
		}
		if len(d.Variables) != 1 || d.Variables[0].Name != "v" || !slices.Equal(d.Variables[0].Options, []string{"0", "1", "2"}) {
			t.Errorf("views=%d: got variables %+v, want v with options 0, 1, 2", views, d.Variables)
		}
		if p.SQL != viewsPanelQuery || !slices.Equal(p.Params, []string{"v"}) {
			t.Errorf("views=%d: got SQL %q, params %v; want %q, [v]", views, p.SQL, p.Params, viewsPanelQuery)
		}
	}
}

// TestBenchViews runs the real bench over three views. The test database
// has no pg_stat_statements, so the database count must be left empty
// with one note, not fail the run.
func TestBenchViews(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server process")
	}
	jsonFile := filepath.Join(t.TempDir(), "bench.json")
	var stdout, stderr bytes.Buffer
	err := run(t.Context(), []string{
		"-database-url", pgtest.NewDB(t), "-views", "3",
		"-n", "30", "-m", "3", "-rate", "20", "-duration", "2s", "-warmup", "1s", "-grace", "5s",
		"-json", jsonFile,
	}, &stdout, &stderr)
	if err != nil {
		t.Fatalf("run: %v\nstderr:\n%s", err, stderr.String())
	}
	t.Logf("\n%s", stdout.String())
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	var rep report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatalf("JSON: %v", err)
	}
	if len(rep.Results) != 1 {
		t.Fatalf("got %d results, want 1", len(rep.Results))
	}
	r := rep.Results[0]
	if r.Views != 3 || rep.Config.Views != 3 {
		t.Errorf("got views %d (config %d), want 3", r.Views, rep.Config.Views)
	}
	if r.ConnectErrors != 0 || r.Missing != 0 {
		t.Errorf("got %d connect errors and %d missing deliveries, want 0 and 0", r.ConnectErrors, r.Missing)
	}
	// Three views run three queries per commit; merged refreshes on a
	// busy machine may make it fewer, but one view alone would be 1.
	if r.QueriesPerCommit <= 1 {
		t.Errorf("got %g queries per commit, want more than one view's 1", r.QueriesPerCommit)
	}
	if r.DBQueriesPerCommit == nil {
		if n := strings.Count(stderr.String(), "pg_stat_statements is not available"); n != 1 {
			t.Errorf("no database count, and the note about it appears %d times, want once\nstderr:\n%s", n, stderr.String())
		}
	} else if *r.DBQueriesPerCommit <= 1 {
		t.Errorf("got %g database queries per commit, want more than 1", *r.DBQueriesPerCommit)
	}
	if !strings.Contains(stdout.String(), "db queries/commit") {
		t.Errorf("table has no db queries/commit column:\n%s", stdout.String())
	}
}

func TestMedOptional(t *testing.T) {
	t.Parallel()
	f := func(v float64) *float64 { return &v }
	get := func(r result) *float64 { return r.DBQueriesPerCommit }
	if got := medOptional([]result{{}, {}}, get); got != nil {
		t.Errorf("no run counted: got %v, want nil", *got)
	}
	rows := []result{{DBQueriesPerCommit: f(10)}, {}, {DBQueriesPerCommit: f(9)}, {DBQueriesPerCommit: f(11)}}
	if got := medOptional(rows, get); got == nil || *got != 10 {
		t.Errorf("got %v, want 10 (the runs without a count left out)", got)
	}
}
