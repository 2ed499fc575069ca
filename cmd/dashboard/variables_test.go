package main

import (
	"context"
	"fmt"
	"html"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/access"
)

// This file tests variables and time ranges against the real program: the
// address chooses the view, each view has its own data and stream, hostile
// choices are refused before a stream opens, a token's fixed variables
// cannot be switched, and the views of a dashboard are bounded.

// salesFixture is a dashboard "sales" with a chained pair of query
// variables (regions, then the customers of the chosen regions), a list
// variable, a free-text variable and a time range.
func salesFixture(t *testing.T, s *testServer, public bool) int64 {
	t.Helper()
	s.exec(t, `CREATE TABLE customers (name text PRIMARY KEY, region text NOT NULL)`)
	s.exec(t, `CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL, region text NOT NULL,
		at timestamptz NOT NULL DEFAULT now())`)
	s.exec(t, `INSERT INTO customers VALUES ('acme', 'eu'), ('globex', 'us'), ('initech', 'us')`)
	s.exec(t, `INSERT INTO orders (customer, region) VALUES ('acme', 'eu'), ('globex', 'us'), ('globex', 'us'), ('initech', 'us')`)
	s.exec(t, `INSERT INTO orders (customer, region, at) VALUES ('acme', 'eu', now() - interval '2 days')`)
	id := createDashboard(t, s.pool, "sales", public,
		[3]string{"total", "stat", "SELECT count(*) AS n FROM orders WHERE region = ANY(:region) AND at >= :from AND at < :to"},
		[3]string{"cust", "stat", "SELECT count(*) AS n FROM orders WHERE customer = :customer"},
		[3]string{"echo", "table", "SELECT :note::text AS note, :status AS status, ':region' AS literal"})
	s.exec(t, `UPDATE dashboard.dashboards SET time_from = 'now-6h', time_to = 'now', variables = $1 WHERE id = $2`, `[
		{"name": "region", "kind": "query", "sql": "SELECT DISTINCT region FROM customers ORDER BY 1", "multi": true},
		{"name": "customer", "kind": "query", "sql": "SELECT name FROM customers WHERE region = ANY(:region) ORDER BY 1"},
		{"name": "status", "kind": "list", "options": ["open", "closed"], "default": ["open"]},
		{"name": "note", "kind": "text"},
		{"name": "tags", "kind": "text", "multi": true}
	]`, id)
	eventually(t, "sales with its variables in the catalog", func() bool {
		snap := s.engine.Snapshot()
		d := snap.Dashboard("sales")
		return d != nil && len(d.Variables) == 5 && len(snap.Dependencies(d.Panels[0].ID)) > 0
	})
	return id
}

var statRE = regexp.MustCompile(`id="panel-(\w+)"[\s\S]*?class="stat-value[^"]*">([^<]*)<`)

// waitStat reads the stream's updates until one shows the stat panel with
// want (each panel's change may come as an update of its own).
func (c *sseClient) waitStat(t testing.TB, panel, want string) {
	t.Helper()
	var seen []string
	for range 20 {
		got := stats(c.nextUpdate(t).body())
		if v, ok := got[panel]; ok {
			if v == want {
				return
			}
			seen = append(seen, v)
		}
	}
	t.Fatalf("stream: panel %s showed %v, never %s", panel, seen, want)
}

// stats returns the stat panels' values in a page.
func stats(body string) map[string]string {
	out := map[string]string{}
	for _, m := range statRE.FindAllStringSubmatch(body, -1) {
		out[m[1]] = m[2]
	}
	return out
}

func TestVariablesChooseTheView(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	salesFixture(t, s, true)

	// Defaults: every... no: a multi-valued query variable without a
	// default takes its first option (eu), then customer the first of eu's.
	resp, body := s.get(t, "/d/sales")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /d/sales: %d %s", resp.StatusCode, trim(body))
	}
	if got := stats(body); got["total"] != "1" || got["cust"] != "2" {
		t.Errorf("default view: got %v, want total 1 (eu, last 6 h) and cust 2 (acme)", got)
	}
	_, body = s.get(t, "/d/sales?var-region=us&var-customer=globex")
	if got := stats(body); got["total"] != "3" || got["cust"] != "2" {
		t.Errorf("region us, customer globex: got %v, want total 3 and cust 2", got)
	}
	_, body = s.get(t, "/d/sales?var-region=us&var-region=eu&var-customer=initech&from=now-7d&to=now")
	if got := stats(body); got["total"] != "5" || got["cust"] != "1" {
		t.Errorf("both regions over 7 days: got %v, want total 5 and cust 1", got)
	}
	// The pickers show the choice, and the stream and poll ask for the same
	// view (the canonical query: sorted names and values).
	for _, want := range []string{
		`<option value="eu" selected>`, `<option value="us" selected>`, `<option value="initech" selected>`,
		`name="from" value="now-1w"`,
		`/d/sales/events?from=now-1w&amp;to=now&amp;var-customer=initech&amp;var-note=&amp;var-region=eu&amp;var-region=us&amp;var-status=open&amp;var-tags=`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %q", want)
		}
	}
	// Unknown names are ignored: a renamed variable does not break a link.
	resp, body = s.get(t, "/d/sales?var-renamed=x&var-region=us&var-customer=globex&foo=bar")
	if resp.StatusCode != http.StatusOK || stats(body)["cust"] != "2" {
		t.Errorf("unknown names: got %d %v, want 200 and the us view", resp.StatusCode, stats(body))
	}
	// The echo panel gets the text as a bound value; ':region' in quotes is
	// text, not a placeholder.
	note := `x'); DROP TABLE orders; -- $1 :region`
	_, body = s.get(t, "/d/sales?var-note="+url.QueryEscape(note)+"&var-status=closed")
	for _, want := range []string{html.EscapeString(note), ">closed<", ">:region<"} {
		if !strings.Contains(body, want) {
			t.Errorf("echo panel lacks %q", want)
		}
	}
	var exists bool
	if err := s.pool.QueryRow(context.Background(), "SELECT to_regclass('orders') IS NOT NULL").Scan(&exists); err != nil || !exists {
		t.Fatalf("table orders after a hostile note: exists %v (%v)", exists, err)
	}

	// Two views, two streams: a write that changes one view's data reaches
	// that view's stream with its own numbers.
	eu := openSSE(t, nil, s.URL+"/d/sales/events?var-region=eu")
	us := openSSE(t, nil, s.URL+"/d/sales/events?var-region=us&var-customer=globex")
	for _, c := range []*sseClient{eu, us} {
		c.hello(t)
		wantUpdate(t, c.nextUpdate(t), "#heading", "#grid")
	}
	s.exec(t, `INSERT INTO orders (customer, region) VALUES ('globex', 'us')`)
	us.waitStat(t, "total", "4")
	s.exec(t, `INSERT INTO orders (customer, region) VALUES ('acme', 'eu')`)
	eu.waitStat(t, "total", "2")
	if got := promValue(t, s, "dashboard_views"); got < 2 {
		t.Errorf("dashboard_views: got %v, want at least 2", got)
	}
}

// TestVariablesHostileInput: every malformed or hostile choice is a 400 on
// the page, the long-poll and the stream (before a stream opens), never a
// crash, an injection or an unbounded query.
func TestVariablesHostileInput(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	salesFixture(t, s, true)
	many := url.Values{}
	for i := range 101 {
		many.Add("var-region", fmt.Sprint("r", i))
	}
	large := url.Values{}
	for i := range 20 {
		large.Add("var-tags", fmt.Sprint(i, strings.Repeat("t", 1000)))
	}
	thousand := url.Values{}
	for range 1000 {
		thousand.Add("var-region", "eu")
	}
	for _, tc := range []struct{ name, query string }{
		{"list value not offered", "var-status=bogus"},
		{"query value not offered", "var-region=asia"},
		{"chained value of another region", "var-region=us&var-customer=acme"},
		{"value over 1 KB", "var-note=" + strings.Repeat("x", 1025)},
		{"10 KB value", "var-note=" + strings.Repeat("y", 10240)},
		{"20 values of 1 KB (a choice over 16 KB)", large.Encode()},
		{"101 values", many.Encode()},
		{"1,000 values", thousand.Encode()},
		{"NUL byte", "var-note=a%00b"},
		{"control character", "var-note=a%07b"},
		{"invalid UTF-8", "var-note=%ff%fe"},
		{"two values for a single-valued variable", "var-status=open&var-status=closed"},
		{"from after to", "from=now&to=now-1h"},
		{"from equal to to", "from=now-1h&to=now-60m"},
		{"huge offset", "from=now-99999999y"},
		{"malformed time", "from=yesterday"},
		{"quote in a list variable", "var-status=" + url.QueryEscape("open'; DROP TABLE orders; --")},
	} {
		for _, route := range []string{"/d/sales", "/d/sales/poll", "/d/sales/events"} {
			path := route + "?" + tc.query
			if got := s.status(t, "GET", path); got != http.StatusBadRequest {
				t.Errorf("%s on %s: got %d, want 400", tc.name, route, got)
			}
		}
		if got := s.status(t, "HEAD", "/d/sales/events?"+tc.query); got != http.StatusBadRequest {
			t.Errorf("%s on HEAD events: got %d, want 400", tc.name, got)
		}
	}
	resp, body := s.get(t, "/d/sales/poll?var-status=bogus")
	if !strings.Contains(body, "status") || strings.Contains(body, "SQLSTATE") {
		t.Errorf("400 body %q: want a message naming the variable, no database error", trim(body))
	}
	if resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Errorf("400 on poll: Content-Type %q", resp.Header.Get("Content-Type"))
	}
	if got := promValue(t, s, "dashboard_sse_clients"); got != 0 {
		t.Errorf("sse clients after refused streams: %v, want 0", got)
	}
	if got := promValue(t, s, "dashboard_bad_choice_total"); got < 17*4 {
		t.Errorf("dashboard_bad_choice_total: got %v, want at least %d", got, 17*4)
	}
	var n int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM orders").Scan(&n); err != nil || n != 5 {
		t.Errorf("orders after hostile input: %d (%v), want 5", n, err)
	}
}

// TestVariablesLockedByToken: a token that fixes customer=acme shows acme
// whatever the address asks for, and its picker cannot change it.
func TestVariablesLockedByToken(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	salesFixture(t, s, false)
	if _, _, err := access.Create(context.Background(), s.pool, "sales", "tv", time.Hour, map[string][]string{"nope": {"x"}}); err == nil ||
		!strings.Contains(err.Error(), "no variable") {
		t.Errorf("token fixing an undeclared variable: got %v, want an error naming it", err)
	}
	secret, _, err := access.Create(context.Background(), s.pool, "sales", "acme tv", time.Hour,
		map[string][]string{"region": {"eu"}, "customer": {"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	s.awaitStatus(t, "/d/sales/poll?wait=0", http.StatusOK, cookie(secret)...)
	for _, q := range []string{"", "?var-customer=globex", "?var-region=us&var-customer=globex", "?var-customer=initech&var-region=us&var-region=eu"} {
		resp, body := s.get(t, "/d/sales"+q, cookie(secret)...)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /d/sales%s with the token: %d %s", q, resp.StatusCode, trim(body))
		}
		if got := stats(body); got["cust"] != "2" || got["total"] != "1" {
			t.Errorf("GET /d/sales%s with a token fixed to acme: got %v, want acme's numbers (cust 2, total 1)", q, got)
		}
		if !strings.Contains(body, `name="var-customer" disabled`) {
			t.Errorf("GET /d/sales%s: the customer picker is not disabled", q)
		}
	}
	// The stream and the long-poll are held to the same view.
	c := openSSE(t, nil, s.URL+"/d/sales/events?var-customer=globex&var-region=us", cookie(secret)...)
	c.hello(t)
	m := c.nextUpdate(t)
	if got := stats(m.body()); got["cust"] != "2" || got["total"] != "1" {
		t.Errorf("stream asking for globex with the acme token: got %v, want acme's numbers", got)
	}
	// Without the token the private dashboard is not there at all.
	if got := s.status(t, "GET", "/d/sales?var-customer=acme"); got != http.StatusNotFound {
		t.Errorf("private dashboard without a token: %d, want 404", got)
	}
}

// TestVariablesMaxViews: with every view of a dashboard watched, a new
// view is refused with 429 (and counted); once one is left, it makes room.
func TestVariablesMaxViews(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxViews = 2
	s := startServer(t, cfg, false)
	salesFixture(t, s, true)
	a := openSSE(t, nil, s.URL+"/d/sales/events?var-note=a")
	a.hello(t)
	b := openSSE(t, nil, s.URL+"/d/sales/events?var-note=b")
	b.hello(t)
	for _, path := range []string{"/d/sales?var-note=c", "/d/sales/poll?var-note=c", "/d/sales/events?var-note=c"} {
		if got := s.status(t, "GET", path); got != http.StatusTooManyRequests {
			t.Errorf("GET %s with two watched views: got %d, want 429", path, got)
		}
	}
	// The same view as an open one is no new view.
	if got := s.status(t, "GET", "/d/sales?var-note=a"); got != http.StatusOK {
		t.Errorf("an existing view: got %d, want 200", got)
	}
	if got := promValue(t, s, "dashboard_views_refused_total"); got != 3 {
		t.Errorf("dashboard_views_refused_total: got %v, want 3", got)
	}
	a.close()
	eventually(t, "a new view once one has no viewers", func() bool {
		return s.status(t, "GET", "/d/sales?var-note=c") == http.StatusOK
	})
}

// TestVariablesLockOutlivesTheVariable: a token's fixed variable that the
// dashboard no longer declares (renamed or removed, even its last one)
// refuses the token instead of freeing it.
func TestVariablesLockOutlivesTheVariable(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE orders (id serial PRIMARY KEY, customer text NOT NULL)`)
	s.exec(t, `INSERT INTO orders (customer) VALUES ('acme'), ('globex'), ('globex')`)
	id := createDashboard(t, s.pool, "cust", false,
		[3]string{"n", "stat", "SELECT count(*) AS n FROM orders WHERE customer = :customer"})
	s.exec(t, `UPDATE dashboard.dashboards SET variables = '[{"name":"customer","kind":"list","options":["acme","globex"]}]' WHERE id = $1`, id)
	eventually(t, "variables loaded", func() bool {
		d := s.engine.Snapshot().Dashboard("cust")
		return d != nil && len(d.Variables) == 1
	})
	secret, _, err := access.Create(context.Background(), s.pool, "cust", "acme tv", time.Hour,
		map[string][]string{"customer": {"acme"}})
	if err != nil {
		t.Fatal(err)
	}
	s.awaitStatus(t, "/d/cust/poll?wait=0", http.StatusOK, cookie(secret)...)
	if _, body := s.get(t, "/d/cust", cookie(secret)...); stats(body)["n"] != "1" {
		t.Fatalf("with the variable: got %v, want acme's 1", stats(body))
	}

	// The author drops the variable (and the filter with it).
	s.exec(t, `UPDATE dashboard.panels SET sql = 'SELECT count(*) AS n FROM orders' WHERE dashboard_id = $1`, id)
	s.exec(t, `UPDATE dashboard.dashboards SET variables = '[]' WHERE id = $1`, id)
	eventually(t, "variables gone", func() bool {
		d := s.engine.Snapshot().Dashboard("cust")
		return d != nil && len(d.Variables) == 0
	})
	resp, body := s.get(t, "/d/cust", cookie(secret)...)
	if resp.StatusCode == http.StatusOK {
		t.Errorf("token fixing customer=acme on a dashboard that no longer declares it: got 200 %v, want a refusal as Select documents", stats(body))
	}
}

// TestVariablesMultiValuedAsOneValue: a multi-valued variable used where
// the SQL wants one value (= :region instead of = ANY(:region)) is the
// panel's error, shown at once, not a query retried forever.
func TestVariablesMultiValuedAsOneValue(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE orders (id serial PRIMARY KEY, region text NOT NULL)`)
	id := createDashboard(t, s.pool, "m", true,
		[3]string{"n", "stat", "SELECT count(*) AS n FROM orders WHERE region = :region"})
	s.exec(t, `UPDATE dashboard.dashboards SET variables = '[{"name":"region","kind":"list","options":["eu","us"],"multi":true}]' WHERE id = $1`, id)
	eventually(t, "variables loaded", func() bool {
		d := s.engine.Snapshot().Dashboard("m")
		return d != nil && len(d.Variables) == 1
	})
	resp, body := s.get(t, "/d/m?var-region=eu")
	i := strings.Index(body, `id="panel-n"`)
	if resp.StatusCode != http.StatusOK || i < 0 || !strings.Contains(body[i:], "Query failed") {
		t.Errorf("got %d, want the panel's error:\n%.400s", resp.StatusCode, body[max(i, 0):])
	}
	if got := promValue(t, s, "dashboard_panels_failing"); got != 1 {
		t.Errorf("dashboard_panels_failing: got %v, want 1", got)
	}
}

// TestVariablesOptionsOfOtherChoices: the options a query variable offers
// for one choice upstream are never taken for another's: with regions
// {"eu west"} asked for just before, a token fixed to {"eu", "west"} still
// cannot choose a customer of "eu west" (fmt printed both as [eu west]).
func TestVariablesOptionsOfOtherChoices(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE customers (name text PRIMARY KEY, region text NOT NULL)`)
	s.exec(t, `INSERT INTO customers VALUES ('acme', 'eu'), ('globex', 'west'), ('secret', 'eu west')`)
	id := createDashboard(t, s.pool, "c", false,
		[3]string{"who", "table", "SELECT name, region FROM customers WHERE name = :customer"})
	s.exec(t, `UPDATE dashboard.dashboards SET variables = $1 WHERE id = $2`, `[
		{"name": "region", "kind": "list", "options": ["eu", "west", "eu west"], "multi": true},
		{"name": "customer", "kind": "query", "sql": "SELECT name FROM customers WHERE region = ANY(:region) ORDER BY 1"}]`, id)
	eventually(t, "variables loaded", func() bool {
		d := s.engine.Snapshot().Dashboard("c")
		return d != nil && len(d.Variables) == 2
	})
	ctx := context.Background()
	scoped, _, err := access.Create(ctx, s.pool, "c", "eu and west", time.Hour, map[string][]string{"region": {"eu", "west"}})
	if err != nil {
		t.Fatal(err)
	}
	other, _, err := access.Create(ctx, s.pool, "c", "eu west", time.Hour, map[string][]string{"region": {"eu west"}})
	if err != nil {
		t.Fatal(err)
	}
	s.awaitStatus(t, "/d/c/poll?wait=0", http.StatusOK, cookie(scoped)...)
	s.awaitStatus(t, "/d/c/poll?wait=0", http.StatusOK, cookie(other)...)
	// Someone else's request fills the cache for region "eu west" ...
	if got := s.status(t, "GET", "/d/c", cookie(other)...); got != http.StatusOK {
		t.Fatalf("other token: %d", got)
	}
	// ... and the scoped token's holder still may not choose its customer.
	resp, body := s.get(t, "/d/c?var-customer=secret", cookie(scoped)...)
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("token fixed to regions eu and west asking for customer secret (region 'eu west'): got %d, want 400:\n%.300s",
			resp.StatusCode, body)
	}
}

// TestVariablesRefreshIntervalEdited: an open view follows an edit of its
// dashboard's refresh interval at once (its clock ticks, and :to rounds,
// with the new one), so rows written after the edit show.
func TestVariablesRefreshIntervalEdited(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	s.exec(t, `CREATE TABLE orders (id serial PRIMARY KEY, at timestamptz NOT NULL DEFAULT now())`)
	id := createDashboard(t, s.pool, "tk", true,
		[3]string{"n", "stat", "SELECT count(*) AS n FROM orders WHERE at >= :from AND at < :to"})
	s.exec(t, `UPDATE dashboard.dashboards SET time_from = 'now-1d', time_to = 'now', refresh_seconds = 3600 WHERE id = $1`, id)
	eventually(t, "time range loaded", func() bool {
		d := s.engine.Snapshot().Dashboard("tk")
		return d != nil && d.Time != nil && d.Refresh == time.Hour
	})
	count := func() string { _, body := s.get(t, "/d/tk"); return stats(body)["n"] }
	s.exec(t, `INSERT INTO orders DEFAULT VALUES`)
	eventually(t, "first row counted", func() bool { return count() == "1" })

	s.exec(t, `UPDATE dashboard.dashboards SET refresh_seconds = 1 WHERE id = $1`, id)
	eventually(t, "refresh 1s loaded", func() bool { return s.engine.Snapshot().Dashboard("tk").Refresh == time.Second })
	s.exec(t, `INSERT INTO orders DEFAULT VALUES`)
	eventually(t, "the row written after the edit counted", func() bool { return count() == "2" })
}

var (
	sseConnectRE = regexp.MustCompile(`hx-sse:connect="([^"]+)"`)
	pollURLRE    = regexp.MustCompile(`data-poll-url="([^"]+)"`)
)

// TestVariablesDefaultViewAdmitted: with every view of a dashboard
// watched, the plain link and its page's own stream and long-poll (whose
// addresses name every variable) are still admitted: the default view is
// known by its value, not by its address.
func TestVariablesDefaultViewAdmitted(t *testing.T) {
	t.Parallel()
	cfg := testConfig(t)
	cfg.MaxViews = 2
	s := startServer(t, cfg, false)
	salesFixture(t, s, true)
	a := openSSE(t, nil, s.URL+"/d/sales/events?var-note=a")
	a.hello(t)
	b := openSSE(t, nil, s.URL+"/d/sales/events?var-note=b")
	b.hello(t)

	resp, body := s.get(t, "/d/sales")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("plain link with every view watched: %d", resp.StatusCode)
	}
	m := sseConnectRE.FindStringSubmatch(body)
	p := pollURLRE.FindStringSubmatch(body)
	if m == nil || p == nil {
		t.Fatalf("no stream/poll URL in the page")
	}
	events, poll := html.UnescapeString(m[1]), html.UnescapeString(p[1])
	// Another new choice is refused, and takes no room of the default's.
	if got := s.status(t, "GET", "/d/sales/events?var-note=c"); got != http.StatusTooManyRequests {
		t.Errorf("a third choice: got %d, want 429", got)
	}
	if got := s.status(t, "GET", poll+"&wait=0"); got != http.StatusOK {
		t.Errorf("the default page's own long-poll %s: got %d, want 200", poll, got)
	}
	if got := s.status(t, "GET", events); got != http.StatusOK {
		t.Errorf("the default page's own stream %s: got %d, want 200", events, got)
	}
}
