package main

import (
	"strings"
	"testing"
)

// TestBrokenPanelKeepsLastGoodData: when a panel's SQL breaks, viewers keep
// its last good data under a "query failing since" mark, a public page
// never shows the database's message, the log has it once, and
// dashboard_panels_failing counts the panel until it is fixed.
func TestBrokenPanelKeepsLastGoodData(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY)`)
	s.exec(t, `INSERT INTO t DEFAULT VALUES`)
	s.exec(t, `INSERT INTO t DEFAULT VALUES`)
	createDashboard(t, s.pool, "ops", true, [3]string{"n", "stat", "SELECT count(*) AS n FROM t"})
	awaitDashboard(t, s, "ops", "t")
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	c.hello(t)
	if got := stats(c.nextUpdate(t).body()); got["n"] != "2" {
		t.Fatalf("first state: got %v, want n 2", got)
	}

	s.exec(t, `UPDATE dashboard.panels SET sql = 'SELECT count(*) AS n FROM no_such_table' WHERE slug = 'n'`)
	m := c.nextUpdate(t)
	body := m.body()
	if got := stats(body); got["n"] != "2" {
		t.Errorf("after the SQL broke: got %v, want the last good n 2", got)
	}
	for _, want := range []string{"Query failing", "since", "<time datetime=", "the server log says why"} {
		if !strings.Contains(body, want) {
			t.Errorf("broken panel lacks %q: %s", want, trim(body))
		}
	}
	for _, never := range []string{"no_such_table", "SQLSTATE", "does not exist"} {
		if strings.Contains(body, never) {
			t.Errorf("public page shows the database's words %q", never)
		}
	}
	_, page := s.get(t, "/d/ops")
	if strings.Contains(page, "SQLSTATE") || !strings.Contains(page, "Query failing") {
		t.Errorf("page of the broken panel: want the mark and no database error")
	}
	eventually(t, "the failing panel counted", func() bool { return promValue(t, s, "dashboard_panels_failing") == 1 })
	if n := strings.Count(s.logs.String(), `msg="panel query failing"`); n != 1 {
		t.Errorf("log lines for the failure: got %d, want 1", n)
	}
	if !strings.Contains(s.logs.String(), "no_such_table") {
		t.Error("the log does not say which relation is missing")
	}

	s.exec(t, `UPDATE dashboard.panels SET sql = 'SELECT count(*) + 1 AS n FROM t' WHERE slug = 'n'`)
	m = c.nextUpdate(t)
	if got := stats(m.body()); got["n"] != "3" || strings.Contains(m.body(), "Query failing") {
		t.Errorf("after the fix: got %v (mark shown: %v), want n 3 and no mark", got, strings.Contains(m.body(), "Query failing"))
	}
	eventually(t, "no failing panel", func() bool { return promValue(t, s, "dashboard_panels_failing") == 0 })
}
