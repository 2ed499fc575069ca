package main

import (
	"context"
	"encoding/csv"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/livedash/dashboard/internal/access"
)

// This file tests a panel's data as CSV against the real program: the
// page's access rules and view, the result already in memory (no query of
// its own), formula cells neutralised, a cut result and a failing panel
// marked in headers.

// readCSV parses a CSV body, failing the test if it is not CSV.
func readCSV(t testing.TB, body string) [][]string {
	t.Helper()
	recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	if err != nil {
		t.Fatalf("reading CSV %q: %v", body, err)
	}
	return recs
}

// wantCSV fetches path and checks a 200 with the records want.
func wantCSV(t testing.TB, s *testServer, path string, want [][]string, header ...string) *http.Response {
	t.Helper()
	resp, body := s.get(t, path, header...)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: got %d %q, want 200", path, resp.StatusCode, trim(body))
	}
	if got := readCSV(t, body); !slices.EqualFunc(got, want, slices.Equal) {
		t.Errorf("GET %s: got %q, want %q", path, got, want)
	}
	return resp
}

// promSum returns the sum of a metric over all its labels on /metrics.
func promSum(t testing.TB, s *testServer, name string) float64 {
	t.Helper()
	_, body := s.get(t, "/metrics")
	sum, found := 0.0, false
	for _, line := range strings.Split(body, "\n") {
		if !strings.HasPrefix(line, name+" ") && !strings.HasPrefix(line, name+"{") {
			continue
		}
		f, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum, found = sum+f, true
	}
	if !found {
		t.Fatalf("metric %s not on /metrics", name)
	}
	return sum
}

func TestCSVPublic(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxRows = 3
	s := startServer(t, cfg, false)
	s.exec(t, `CREATE TABLE items (id int PRIMARY KEY, label text, other text, n numeric)`)
	s.exec(t, `INSERT INTO items VALUES (1, '=1+1', '-x', -5), (2, '+x', '@x', 1.5),
		(3, 'a "q", b' || chr(10) || 'c', NULL, NULL)`)
	createDashboard(t, s.pool, "ops", true,
		[3]string{"cells", "table", "SELECT label, other, n FROM items ORDER BY id"},
		[3]string{"many", "table", "SELECT g FROM generate_series(1, 10) g"},
		[3]string{"count", "stat", "SELECT count(*) AS n FROM items"})
	awaitDashboard(t, s, "ops", "items")

	resp := wantCSV(t, s, "/d/ops/panels/cells.csv", [][]string{
		{"label", "other", "n"},
		{"'=1+1", "'-x", "-5"}, // a negative number stays a number
		{"'+x", "'@x", "1.5"},
		{"a \"q\", b\nc", "", ""}, // NULL is empty
	})
	for k, want := range map[string]string{
		"Content-Type":        "text/csv; charset=utf-8",
		"Content-Disposition": `attachment; filename="ops-cells.csv"`,
		"Cache-Control":       "no-cache",
	} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: got %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"X-Dashboard-Truncated", "X-Dashboard-Query-Failing-Since"} {
		if v := resp.Header.Get(k); v != "" {
			t.Errorf("%s: got %q, want none", k, v)
		}
	}
	_, raw := s.get(t, "/d/ops/panels/cells.csv")
	if !strings.HasPrefix(raw, "label,other,n\r\n") {
		t.Errorf("body starts %q, want a header row ending in CRLF", trim(raw))
	}

	// Cut at DASHBOARD_MAX_ROWS: the rows kept, marked in a header only.
	resp = wantCSV(t, s, "/d/ops/panels/many.csv", [][]string{{"g"}, {"1"}, {"2"}, {"3"}})
	if got := resp.Header.Get("X-Dashboard-Truncated"); got != "3" {
		t.Errorf("X-Dashboard-Truncated: got %q, want 3", got)
	}

	// (/d/ops/panels/cells is the panel full screen: docs/screens.md.)
	for _, path := range []string{"/d/ops/panels/nope.csv", "/d/ops/panels/cells.txt",
		"/d/nope/panels/cells.csv", "/d/ops/panels/cells.csv/x"} {
		if got := s.status(t, "GET", path); got != http.StatusNotFound {
			t.Errorf("GET %s: got %d, want 404", path, got)
		}
	}
	if got := s.status(t, "HEAD", "/d/ops/panels/cells.csv"); got != http.StatusOK {
		t.Errorf("HEAD: got %d, want 200", got)
	}

	// The page links each panel's CSV.
	_, page := s.get(t, "/d/ops")
	for _, p := range []string{"cells", "many", "count"} {
		if want := `href="/d/ops/panels/` + p + `.csv"`; !strings.Contains(page, want) {
			t.Errorf("page lacks %s", want)
		}
	}

	// No query of its own: while the view is watched, downloads read the
	// result in memory.
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	c.hello(t)
	c.nextUpdate(t)
	q0 := promSum(t, s, "dashboard_refresh_queries_total")
	d0 := promValue(t, s, "dashboard_csv_downloads_total")
	for range 5 {
		for _, p := range []string{"cells", "many", "count"} {
			if got := s.status(t, "GET", "/d/ops/panels/"+p+".csv"); got != http.StatusOK {
				t.Fatalf("GET %s.csv: got %d, want 200", p, got)
			}
		}
	}
	if got := promSum(t, s, "dashboard_refresh_queries_total"); got != q0 {
		t.Errorf("dashboard_refresh_queries_total: got %v after 15 downloads, want %v (unchanged)", got, q0)
	}
	if got := promValue(t, s, "dashboard_csv_downloads_total"); got != d0+15 {
		t.Errorf("dashboard_csv_downloads_total: got %v, want %v", got, d0+15)
	}
	// And it is the live data.
	s.exec(t, `INSERT INTO items VALUES (4, 'x', 'y', 0)`)
	c.waitStat(t, "count", "4")
	wantCSV(t, s, "/d/ops/panels/count.csv", [][]string{{"n"}, {"4"}})
}

// TestCSVFailingPanel: a failing panel's last good data is served with the
// time it began failing; a panel with only an error answers 503 without the
// database's words on a public dashboard.
func TestCSVFailingPanel(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE t (id serial PRIMARY KEY)`)
	s.exec(t, `INSERT INTO t DEFAULT VALUES`)
	s.exec(t, `INSERT INTO t DEFAULT VALUES`)
	createDashboard(t, s.pool, "ops", true,
		[3]string{"n", "stat", "SELECT count(*) AS n FROM t"},
		[3]string{"bad", "stat", "SELECT 1/0 AS n FROM t"})
	awaitDashboard(t, s, "ops", "t")
	c := openSSE(t, nil, s.URL+"/d/ops/events")
	c.hello(t)
	c.waitStat(t, "n", "2")
	resp := wantCSV(t, s, "/d/ops/panels/n.csv", [][]string{{"n"}, {"2"}})
	if v := resp.Header.Get("X-Dashboard-Query-Failing-Since"); v != "" {
		t.Errorf("a working panel: X-Dashboard-Query-Failing-Since %q, want none", v)
	}

	s.exec(t, `UPDATE dashboard.panels SET sql = 'SELECT count(*) AS n FROM no_such_table' WHERE slug = 'n'`)
	eventually(t, "the failing mark on the CSV", func() bool {
		resp, _ := s.get(t, "/d/ops/panels/n.csv")
		return resp.Header.Get("X-Dashboard-Query-Failing-Since") != ""
	})
	resp = wantCSV(t, s, "/d/ops/panels/n.csv", [][]string{{"n"}, {"2"}})
	since, err := time.Parse(time.RFC3339, resp.Header.Get("X-Dashboard-Query-Failing-Since"))
	if err != nil || time.Since(since) > time.Minute || time.Until(since) > time.Second {
		t.Errorf("X-Dashboard-Query-Failing-Since %q: want the recent start of the failure (%v)",
			resp.Header.Get("X-Dashboard-Query-Failing-Since"), err)
	}

	resp, body := s.get(t, "/d/ops/panels/bad.csv")
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(body, "failing") {
		t.Errorf("a panel with only an error: got %d %q, want 503 saying the query fails", resp.StatusCode, trim(body))
	}
	for _, never := range []string{"division", "SQLSTATE", "no_such_table"} {
		if strings.Contains(body, never) {
			t.Errorf("public 503 shows the database's words %q: %q", never, trim(body))
		}
	}
	if resp.Header.Get("Retry-After") == "" {
		t.Error("503 without Retry-After")
	}
}

// TestCSVPrivateView: a private dashboard's CSV obeys the page's rules: 404
// without a token, the token's fixed variables over the address's, 400 for
// a refused choice, never stored by caches.
func TestCSVPrivateView(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	id := salesFixture(t, s, false)
	s.exec(t, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position)
		VALUES ($1, 'rows', 'Rows', 'table', 'SELECT customer, region FROM orders WHERE customer = :customer ORDER BY id', 9)`, id)
	eventually(t, "the rows panel in the catalog", func() bool {
		d := s.engine.Snapshot().Dashboard("sales")
		return d != nil && len(d.Panels) == 4
	})
	secret, _, err := access.Create(context.Background(), s.pool, "sales", "acme tv", time.Hour,
		map[string][]string{"region": {"eu"}, "customer": {"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	s.awaitStatus(t, "/d/sales/poll?wait=0", http.StatusOK, cookie(secret)...)

	for _, path := range []string{"/d/sales/panels/rows.csv", "/d/sales/panels/rows.csv?var-customer=acme", "/d/sales/panels/nope.csv"} {
		if got := s.status(t, "GET", path); got != http.StatusNotFound {
			t.Errorf("GET %s without a token: got %d, want 404", path, got)
		}
	}
	acme := [][]string{{"customer", "region"}, {"acme", "eu"}, {"acme", "eu"}}
	for _, q := range []string{"", "?var-customer=globex", "?var-region=us&var-customer=globex"} {
		resp := wantCSV(t, s, "/d/sales/panels/rows.csv"+q, acme, cookie(secret)...)
		if got := resp.Header.Get("Cache-Control"); got != "no-store" {
			t.Errorf("private CSV: Cache-Control %q, want no-store", got)
		}
	}
	wantCSV(t, s, "/d/sales/panels/total.csv?var-region=us&var-customer=globex", [][]string{{"n"}, {"1"}}, cookie(secret)...)
	for _, q := range []string{"var-status=bogus", "from=yesterday", "var-note=a%00b"} {
		if got := s.status(t, "GET", "/d/sales/panels/rows.csv?"+q, cookie(secret)...); got != http.StatusBadRequest {
			t.Errorf("GET rows.csv?%s: got %d, want 400", q, got)
		}
	}
	if got := s.status(t, "GET", "/d/sales/panels/nope.csv", cookie(secret)...); got != http.StatusNotFound {
		t.Errorf("unknown panel with a token: got %d, want 404", got)
	}
	// A proxy user the server does not trust is nobody.
	if got := s.status(t, "GET", "/d/sales/panels/rows.csv", "X-Forwarded-User", "alice"); got != http.StatusNotFound {
		t.Errorf("untrusted user header: got %d, want 404", got)
	}
}

// TestBrowserCSVLink: a panel's CSV link in the page asks for the view the
// page shows, also after the panel was replaced by a live update.
func TestBrowserCSVLink(t *testing.T) {
	s := startServer(t, testConfig(t), false)
	salesFixture(t, s, true)
	ctx := newBrowser(t)
	navigate(t, ctx, s, "/d/sales?var-region=us&var-customer=globex")
	waitStat(t, ctx, "total", "3")
	// The link as written, then what fetching it gives.
	fetchCSV := func() string {
		t.Helper()
		v, err := chromedp.Run(ctx, chromedp.Evaluate[string](`(async () => {
			const a = document.querySelector('#panel-total a.panel-csv');
			const r = await fetch(a.href);
			return a.getAttribute('href') + ' ' + r.status + ' ' + JSON.stringify(await r.text());
		})()`, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatalf("fetching the CSV link: %v", err)
		}
		return v
	}
	want := func(n string) string {
		return "/d/sales/panels/total.csv?from=now-6h&to=now&var-customer=globex&var-note=&var-region=us&var-status=open&var-tags" +
			` 200 "n\r\n` + n + `\r\n"`
	}
	if got := fetchCSV(); got != want("3") {
		t.Errorf("CSV link of the us view: got %s, want %s", got, want("3"))
	}
	waitStatus(t, ctx, "live")
	s.exec(t, `INSERT INTO orders (customer, region) VALUES ('globex', 'us')`)
	waitStat(t, ctx, "total", "4")
	if got := fetchCSV(); got != want("4") {
		t.Errorf("CSV link after a live update: got %s, want %s", got, want("4"))
	}
}
