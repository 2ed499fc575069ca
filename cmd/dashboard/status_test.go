package main

import (
	"context"
	"encoding/json"
	"io"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/listen"
	"github.com/livedash/dashboard/internal/pgtest"
)

func TestStatusCommand(t *testing.T) {
	url := pgtest.NewDB(t)
	t.Setenv("DATABASE_URL", url)
	ctx := context.Background()

	// A read-only command does not migrate: it says what to run.
	err := run(ctx, []string{"status"}, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "dashboard migrate") {
		t.Fatalf("status on an unmigrated database: got %v, want an error that says to run 'dashboard migrate'", err)
	}
	if err := run(ctx, []string{"status", "extra"}, io.Discard, io.Discard); err == nil {
		t.Errorf("status extra: got no error, want one")
	}

	runOK(t, "migrate")
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, `CREATE TABLE quiet (id int); CREATE TABLE busy (id int)`); err != nil {
		t.Fatal(err)
	}
	runOK(t, "watch", "quiet", "busy")
	// A server: a feed slot and busy's key, on its own session.
	cc, err := pgx.ParseConfig(url)
	if err != nil {
		t.Fatal(err)
	}
	cc.RuntimeParams["application_name"] = "dashboard feed locks"
	server, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close(ctx)
	if _, err := server.Exec(ctx, "SELECT pg_advisory_lock(dashboard.slot_key(2)), pg_advisory_lock(dashboard.feed_key(2, 'busy'::regclass))"); err != nil {
		t.Fatal(err)
	}
	pid := strconv.Itoa(int(server.PgConn().PID()))

	out := runOK(t, "status")
	t.Logf("dashboard status:\n%s", out)
	for _, re := range []string{
		`(?m)^public\.quiet\s+gated\s+no\s+0\s+0$`,
		`(?m)^public\.busy\s+gated\s+yes\s+1\s+0$`,
		`(?m)^dashboard\.panels\s+always\s+always\s+-\s+-$`,
		`(?m)^servers: 1 of 4 feed slots held$`,
		`(?m)^2\s+` + pid + `\s+dashboard feed locks\s+\S+\s+\S+\s+1$`,
		`(?m)^notification queue usage: \d+\.\d\d%$`,
		`(?m)^feed mode: notify$`,
		`(?m)^logical slots: none$`,
	} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("status output does not match %s", re)
		}
	}

	var st listen.Status
	if err := json.Unmarshal([]byte(runOK(t, "status", "--json")), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	tables := make(map[string]listen.TableStatus)
	for _, ts := range st.Tables {
		tables[ts.Table] = ts
	}
	for _, want := range []listen.TableStatus{
		{Table: "public.quiet", Mode: "gated"},
		{Table: "public.busy", Mode: "gated", Wanted: true, WantedBy: 1},
		{Table: "dashboard.panels", Mode: "always"},
	} {
		if got := tables[want.Table]; got != want {
			t.Errorf("status --json, table %s: got %+v, want %+v", want.Table, got, want)
		}
	}
	if len(st.Servers) != 1 || st.Servers[0].Slot != 2 || strconv.Itoa(int(st.Servers[0].PID)) != pid ||
		st.Servers[0].ApplicationName != "dashboard feed locks" || st.Servers[0].Armed != 1 {
		t.Errorf("status --json servers: got %+v, want slot 2, pid %s, dashboard feed locks, 1 armed", st.Servers, pid)
	}
	if st.Feed != "notify" || st.FeedSlots != 4 || st.LogicalSlots == nil || len(st.LogicalSlots) != 0 {
		t.Errorf("status --json: got feed %q, %d slots, logical slots %#v; want notify, 4, []", st.Feed, st.FeedSlots, st.LogicalSlots)
	}
}

// TestStatusOfServe: a running server shows in `dashboard status` under
// its feed-lock session's name, and its /metrics carries the feed gauges.
func TestStatusOfServe(t *testing.T) {
	cfg := testConfig(t)
	s := startServer(t, cfg, false)
	t.Setenv("DATABASE_URL", cfg.DatabaseURL)

	var st listen.Status
	if err := json.Unmarshal([]byte(runOK(t, "status", "--json")), &st); err != nil {
		t.Fatalf("status --json: %v", err)
	}
	arms := s.arms.State()
	if len(st.Servers) != 1 || st.Servers[0].Slot != arms.Slot || uint32(st.Servers[0].PID) != arms.BackendPID ||
		st.Servers[0].ApplicationName != "dashboard feed locks" {
		t.Errorf("status of a running server: got %+v, want slot %d, pid %d, dashboard feed locks", st.Servers, arms.Slot, arms.BackendPID)
	}
	if got := promValue(t, s, "dashboard_feed_servers"); got != 1 {
		t.Errorf("dashboard_feed_servers: got %v, want 1", got)
	}
	_, body := s.get(t, "/metrics")
	for _, mode := range []string{"gated", "always", "incomplete"} {
		if !strings.Contains(body, `dashboard_feed_watched_tables{mode="`+mode+`"}`) {
			t.Errorf("/metrics lacks dashboard_feed_watched_tables{mode=%q}", mode)
		}
	}
	if !strings.Contains(body, "dashboard_feed_wanted_tables ") {
		t.Errorf("/metrics lacks dashboard_feed_wanted_tables")
	}
}
