package main

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgtest"
)

// TestServeReadsFromStandby: with DASHBOARD_READ_DATABASE_URL naming a
// standby that does not exist and a real streaming one, the server starts,
// is ready, and its panels show every commit, read from the real standby.
func TestServeReadsFromStandby(t *testing.T) {
	db := pgtest.NewDB(t)
	standby := pgtest.NewStandby(t, pgtest.Server(t))
	pc, err := pgx.ParseConfig(db)
	if err != nil {
		t.Fatal(err)
	}
	cfg := configFor(db)
	missing := "postgres:///" + pc.Database + "?host=/nonexistent-standby&sslmode=disable"
	cfg.ReadDatabaseURL = missing + " " + standbyURL(standby, pc.Database)
	s := newContractFixture(t, cfg)
	if resp, body := s.get(t, "/readyz"); resp.StatusCode != http.StatusOK {
		t.Fatalf("/readyz with one standby down: got %d %q, want 200", resp.StatusCode, body)
	}
	if !strings.Contains(s.logs.String(), "standby unreachable at start") {
		t.Errorf("logs: no line about the unreachable standby:\n%s", s.logs.String())
	}

	c := openSSE(t, nil, s.URL+"/d/ops/events")
	wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	for i := 1; i <= 5; i++ {
		insertRow(t, s.testServer)
		showsUntil(t, c, strconv.Itoa(i))
	}
	if got := promLine(t, s.testServer, `dashboard_panel_queries_total{db="standby"}`); got < 1 {
		t.Errorf(`dashboard_panel_queries_total{db="standby"}: got %v, want at least 1`, got)
	}
}

// TestServeRefusesBadStandbyURL: a standby URL that cannot be parsed stops
// the start with a message naming the variable, and no password.
func TestServeRefusesBadStandbyURL(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.ReadDatabaseURL = "postgres://reader:s3cret@127.0.0.1/x?sslmode=bogus"
	err := serveErr(t, cfg)
	if err == nil || !strings.Contains(err.Error(), "DASHBOARD_READ_DATABASE_URL") {
		t.Fatalf("serve: got %v, want an error naming DASHBOARD_READ_DATABASE_URL", err)
	}
	if strings.Contains(err.Error(), "s3cret") {
		t.Errorf("serve: the error shows the password: %v", err)
	}
}

// standbyURL is a postgres:// URL (DASHBOARD_READ_DATABASE_URL takes URLs,
// separated by spaces) for database name on standby.
func standbyURL(standby *pgtest.Standby, name string) string {
	pc, err := pgx.ParseConfig(standby.ConnString(name))
	if err != nil {
		panic(err)
	}
	q := url.Values{"host": {pc.Host}, "port": {strconv.Itoa(int(pc.Port))}, "user": {pc.User}, "sslmode": {"disable"}}
	return "postgres:///" + url.PathEscape(name) + "?" + q.Encode()
}

// promLine returns the value of one series of a metric on /metrics, given
// as it is written there (name{labels}).
func promLine(t testing.TB, s *testServer, series string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	for _, line := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("%s not on /metrics", series)
	return 0
}
