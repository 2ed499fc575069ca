package variables

import (
	"context"
	"errors"
	"net/url"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// The SQL docs/variables.md gives authors, verbatim: the tests below run
// each, and TestDocsIdioms checks that the page still says it.
const (
	idiomAny       = "WHERE region = ANY(:region)"
	idiomAllIfNone = "WHERE cardinality(:region::text[]) = 0 OR region = ANY(:region)"
	idiomIntArray  = "WHERE id = ANY(:ids::int[])"
	idiomIntColumn = "WHERE id = :n"
	idiomSearch    = "name ILIKE '%' || :search || '%'"
	idiomUTCColumn = "created_at >= (:from::timestamptz AT TIME ZONE 'UTC')"
)

func TestDocsIdioms(t *testing.T) {
	t.Parallel()
	doc, err := os.ReadFile("../../docs/variables.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, idiom := range []string{idiomAny, idiomAllIfNone, idiomIntArray, idiomIntColumn, idiomSearch, idiomUTCColumn} {
		if !strings.Contains(string(doc), idiom) {
			t.Errorf("docs/variables.md no longer says %q, which the tests run", idiom)
		}
	}
}

// extendedModes are pgx's modes that send values apart from the text (the
// extended protocol); the refresh engine uses DescribeExec.
var extendedModes = []pgx.QueryExecMode{
	pgx.QueryExecModeDescribeExec,
	pgx.QueryExecModeCacheStatement,
	pgx.QueryExecModeCacheDescribe,
	pgx.QueryExecModeExec,
}

// hostileRegion is both a row's region and one of the values viewers send.
const hostileRegion = "x'); DROP TABLE t; --"

// hostileValues would each change a query if they were spliced into its
// text.
var hostileValues = []string{
	hostileRegion,
	"'; DELETE FROM t; --",
	"eu' OR '1'='1",
	`"; DROP TABLE t; --`,
	"$1", "$2", ":v", ":other", ":region",
	`\'; DROP TABLE t; --`,
	"$$; DROP TABLE t; $$",
	"$x$; DROP TABLE t; --",
	"*/ DROP TABLE t; /*",
	"-- ", "/*", "E'\\x27'",
	"eu', 'us", "{eu,us}", `{"eu","us"}`, "NULL", "",
	"🙂 ünïcödé", strings.Repeat("é", 512),
}

// bindDB makes a database with table t (two rows in eu, one in us, one
// whose region is hostileRegion) and customers.
func bindDB(t *testing.T) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), pgtest.NewDB(t))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	for _, sql := range []string{
		`CREATE TABLE t (id int PRIMARY KEY, region text NOT NULL, at timestamptz NOT NULL, at_local timestamp NOT NULL)`,
		`INSERT INTO t VALUES
			(1, 'eu', '2026-12-03T09:00:00Z', '2026-12-03 10:00'),
			(2, 'us', '2026-12-03T10:00:00Z', '2026-12-03 11:00'),
			(3, 'eu', '2026-12-02T10:00:00Z', '2026-12-02 11:00'),
			(4, 'x''); DROP TABLE t; --', '2026-12-03T10:30:00Z', '2026-12-03 11:30')`,
		`CREATE TABLE customers (name text PRIMARY KEY, region text NOT NULL)`,
		`INSERT INTO customers VALUES ('acme', 'eu'), ('bolt', 'eu'), ('corp', 'us'), ('dyn', 'us')`,
	} {
		if _, err := conn.Exec(t.Context(), sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	return conn
}

// bindDashboard has text variables for hostile values, a query variable
// chained to region, and a time range in Berlin.
func bindDashboard() *panel.Dashboard {
	return &panel.Dashboard{
		Slug:     "bind",
		TimeZone: "Europe/Berlin",
		Time:     &panel.TimeRange{From: "now-6h", To: "now"},
		Variables: []panel.Variable{
			{Name: "v", Kind: panel.TextVariable},
			{Name: "region", Kind: panel.TextVariable, Multi: true, Default: []string{"eu"}},
			{Name: "customer", Kind: panel.QueryVariable, SQL: "SELECT name FROM customers WHERE region = ANY(:region) ORDER BY name"},
			{Name: "n", Kind: panel.TextVariable, Default: []string{"2"}},
			{Name: "ids", Kind: panel.TextVariable, Multi: true},
			{Name: "search", Kind: panel.TextVariable},
		},
	}
}

// query runs sql of dashboard d for choice s the way the program does:
// Rewrite to bind parameters, Args for the values, pgx in mode.
func query(t *testing.T, conn *pgx.Conn, d *panel.Dashboard, s Selection, sql string, mode pgx.QueryExecMode, dest ...any) (rewritten string, err error) {
	t.Helper()
	rewritten, params, err := Rewrite(sql, Declared(d))
	if err != nil {
		t.Fatalf("Rewrite(%q): %v", sql, err)
	}
	args, err := Args(d, s, params, testNow)
	if err != nil {
		t.Fatalf("Args(%q): %v", params, err)
	}
	return rewritten, conn.QueryRow(t.Context(), rewritten, append([]any{mode}, args...)...).Scan(dest...)
}

// dbOptions is an OptionsFunc that runs the variable's SQL.
func dbOptions(t *testing.T, conn *pgx.Conn, d *panel.Dashboard) OptionsFunc {
	return func(v *panel.Variable, upstream Selection) ([]string, error) {
		sql, params, err := Rewrite(v.SQL, Declared(d))
		if err != nil {
			return nil, err
		}
		args, err := Args(d, upstream, params, testNow)
		if err != nil {
			return nil, err
		}
		rows, err := conn.Query(t.Context(), sql, append([]any{pgx.QueryExecModeDescribeExec}, args...)...)
		if err != nil {
			return nil, err
		}
		return pgx.CollectRows(rows, pgx.RowTo[string])
	}
}

func TestBindHostileValues(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	regions := map[string]int{"eu": 2, "us": 1, hostileRegion: 1}
	for _, mode := range extendedModes {
		for _, h := range hostileValues {
			q := url.Values{"var-v": {h}, "var-region": {h, "eu"}}
			s, err := Select(d, q, nil, dbOptions(t, conn, d))
			if err != nil {
				t.Fatalf("Select(%q): %v", h, err)
			}

			// The value comes back as it went in, typed or not, and the
			// statement the server ran is the rewritten text: the value
			// was never part of it.
			var typed, untyped, ran string
			rewritten, err := query(t, conn, d, s, "SELECT :v::text, :v, current_query()", mode, &typed, &untyped, &ran)
			if err != nil {
				t.Fatalf("%v, v = %q: %v", mode, h, err)
			}
			if typed != h || untyped != h {
				t.Errorf("%v: v = %q came back as %q and %q", mode, h, typed, untyped)
			}
			if ran != rewritten {
				t.Errorf("%v, v = %q: the server ran %q, want %q", mode, h, ran, rewritten)
			}

			var n int
			if _, err := query(t, conn, d, s, "SELECT count(*) FROM t "+idiomAny, mode, &n); err != nil {
				t.Fatalf("%v, region = %q: %v", mode, h, err)
			}
			if want := regions["eu"] + regions[h]; n != want {
				t.Errorf("%v, region = [%q eu]: got %d rows, want %d", mode, h, n, want)
			}
		}
	}
	// Nothing the values said was executed.
	var rows, customers int
	if err := conn.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM t), (SELECT count(*) FROM customers)").Scan(&rows, &customers); err != nil {
		t.Fatalf("after the hostile values: %v", err)
	}
	if rows != 4 || customers != 4 {
		t.Errorf("after the hostile values: t has %d rows, customers %d; want 4 and 4", rows, customers)
	}

	// The check above would see a spliced value: pgx's simple protocol
	// puts the (escaped) value into the text, and current_query() shows it.
	s, err := Select(d, url.Values{"var-v": {hostileRegion}}, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var typed, untyped, ran string
	rewritten, err := query(t, conn, d, s, "SELECT :v::text, :v, current_query()", pgx.QueryExecModeSimpleProtocol, &typed, &untyped, &ran)
	if err != nil {
		t.Fatal(err)
	}
	if ran == rewritten || !strings.Contains(ran, "DROP TABLE") {
		t.Errorf("simple protocol: the server ran %q; the check cannot tell spliced from bound", ran)
	}
}

// TestBindChained: a query variable's options come from its SQL run with
// the values chosen before it.
func TestBindChained(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	for _, tc := range []struct {
		query    string
		customer []string
	}{
		{"", []string{"acme"}},
		{"var-region=us", []string{"corp"}},
		{"var-region=us&var-customer=dyn", []string{"dyn"}},
		{"var-region=" + url.QueryEscape(hostileRegion), []string{}},
	} {
		q, _ := url.ParseQuery(tc.query)
		s, err := Select(d, q, nil, dbOptions(t, conn, d))
		if err != nil {
			t.Fatalf("Select(%q): %v", tc.query, err)
		}
		if got := s.Values["customer"]; !slices.Equal(got, tc.customer) {
			t.Errorf("Select(%q): customer = %q, want %q", tc.query, got, tc.customer)
		}
	}
	q, _ := url.ParseQuery("var-region=us&var-customer=acme")
	_, err := Select(d, q, nil, dbOptions(t, conn, d))
	wantInputError(t, err, "customer", `"acme" is not one of its options`)

	// A search box: the value is text inside a pattern, and its quote is
	// just a character.
	for _, tc := range []struct {
		v    string
		want int
	}{{"CM", 1}, {"", 4}, {"' OR ''='", 0}, {"%", 4}} {
		s, err := Select(d, url.Values{"var-search": {tc.v}}, nil, dbOptions(t, conn, d))
		if err != nil {
			t.Fatal(err)
		}
		var n int
		if _, err := query(t, conn, d, s, "SELECT count(*) FROM customers WHERE "+idiomSearch, pgx.QueryExecModeDescribeExec, &n); err != nil || n != tc.want {
			t.Errorf("search %q: got %d rows, %v; want %d", tc.v, n, err, tc.want)
		}
	}

	// No customer (no options): NULL, which matches nothing.
	q, _ = url.ParseQuery("var-region=nowhere")
	s, err := Select(d, q, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := query(t, conn, d, s, "SELECT count(*) FROM customers WHERE name = :customer", pgx.QueryExecModeDescribeExec, &n); err != nil || n != 0 {
		t.Errorf("no customer: got %d rows, %v; want 0", n, err)
	}
	var isNull bool
	if _, err := query(t, conn, d, s, "SELECT :customer::text IS NULL", pgx.QueryExecModeDescribeExec, &isNull); err != nil || !isNull {
		t.Errorf("no customer: IS NULL = %v, %v; want true", isNull, err)
	}
}

// TestBindMultiValues: a multi-valued variable is one text[]; = ANY() is
// right, and IN () is wrong.
func TestBindMultiValues(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	for _, tc := range []struct {
		query string
		rows  int
	}{
		{"", 2},
		{"var-region=eu&var-region=us", 3},
		{"var-region=", 0}, // nothing chosen matches nothing
		{"var-region=asia", 0},
	} {
		q, _ := url.ParseQuery(tc.query)
		s, err := Select(d, q, nil, dbOptions(t, conn, d))
		if err != nil {
			t.Fatalf("Select(%q): %v", tc.query, err)
		}
		for _, mode := range extendedModes {
			var n int
			if _, err := query(t, conn, d, s, "SELECT count(*) FROM t "+idiomAny, mode, &n); err != nil || n != tc.rows {
				t.Errorf("%v, Select(%q): got %d rows, %v; want %d", mode, tc.query, n, err, tc.rows)
			}
		}
	}
	// The idioms docs/variables.md gives: everything when nothing is
	// chosen, and numbers from a text array.
	for _, tc := range []struct {
		query, sql string
		rows       int
	}{
		{"var-region=", "SELECT count(*) FROM t " + idiomAllIfNone, 4},
		{"var-region=us", "SELECT count(*) FROM t " + idiomAllIfNone, 1},
		{"var-ids=1&var-ids=3&var-ids=9", "SELECT count(*) FROM t " + idiomIntArray, 2},
		{"var-ids=", "SELECT count(*) FROM t " + idiomIntArray, 0},
	} {
		q, _ := url.ParseQuery(tc.query)
		s, err := Select(d, q, nil, dbOptions(t, conn, d))
		if err != nil {
			t.Fatalf("Select(%q): %v", tc.query, err)
		}
		for _, mode := range extendedModes {
			var n int
			if _, err := query(t, conn, d, s, tc.sql, mode, &n); err != nil || n != tc.rows {
				t.Errorf("%v, %s with %q: got %d rows, %v; want %d", mode, tc.sql, tc.query, n, err, tc.rows)
			}
		}
	}
	s, err := Select(d, url.Values{"var-ids": {"1", "x"}}, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_, err = query(t, conn, d, s, "SELECT count(*) FROM t "+idiomIntArray, pgx.QueryExecModeDescribeExec, &n)
	if err == nil {
		t.Errorf("ids [1 x] as int[]: got %d rows and no error, want an error", n)
	}

	// IN (:region) compares region with one array: in the refresh
	// engine's mode pgx refuses to send a []string as text.
	s, err = Select(d, url.Values{"var-region": {"eu"}}, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := query(t, conn, d, s, "SELECT count(*) FROM t WHERE region IN (:region)", pgx.QueryExecModeDescribeExec, &n); err == nil {
		t.Errorf("IN (:region): got %d rows and no error, want an error", n)
	}
}

// TestBindTextToOtherTypes: a text variable's string is sent in text
// format, so Postgres reads it as whatever type the comparison wants; what
// is not of that type is an error, never a different query.
func TestBindTextToOtherTypes(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	for _, mode := range extendedModes {
		for _, tc := range []struct {
			n, sql string
			want   int
		}{
			{"2", "SELECT count(*) FROM t " + idiomIntColumn, 1},
			{"2", "SELECT count(*) FROM t WHERE id::bigint = :n", 1},
			{"2.0", "SELECT count(*) FROM t WHERE id::numeric = :n", 1},
			{"2026-12-03", "SELECT count(*) FROM t WHERE at::date = :n", 3},
			{"true", "SELECT count(*) FROM t WHERE (id = 2) = :n", 1},
			{"2", "SELECT count(*) FROM t WHERE id = :n::int", 1},
		} {
			s, err := Select(d, url.Values{"var-n": {tc.n}}, nil, dbOptions(t, conn, d))
			if err != nil {
				t.Fatal(err)
			}
			var n int
			if _, err := query(t, conn, d, s, tc.sql, mode, &n); err != nil || n != tc.want {
				t.Errorf("%v, %s with n = %q: got %d rows, %v; want %d", mode, tc.sql, tc.n, n, err, tc.want)
			}
		}
		for _, bad := range []string{"2 OR 1=1", "2; DROP TABLE t", "", "two"} {
			s, err := Select(d, url.Values{"var-n": {bad}}, nil, dbOptions(t, conn, d))
			if err != nil {
				t.Fatal(err)
			}
			var n int
			_, err = query(t, conn, d, s, "SELECT count(*) FROM t "+idiomIntColumn, mode, &n)
			var pgErr *pgconn.PgError
			if !errors.As(err, &pgErr) || pgErr.Code != "22P02" {
				t.Errorf("%v, id = %q: got %d rows, %v; want invalid_text_representation (22P02)", mode, bad, n, err)
			}
		}
	}
}

// TestBindTimeRange: :from and :to are instants; relative ends are
// resolved at now rounded to the refresh interval (down for from, up for
// to).
func TestBindTimeRange(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	for _, tc := range []struct {
		query string
		rows  int
	}{
		// testNow is 10:37:12Z, so now-6h is 04:37Z and now 10:38Z: rows
		// 1, 2 and 4.
		{"", 3},
		{"from=now-1h", 2},
		{"from=now-2d", 4},
		{"from=2026-12-03T09:00:00Z&to=2026-12-03T10:00:00Z", 1}, // from inclusive, to exclusive
		{"from=2026-12-03T10:00:00%2B01:00&to=1796292000000", 1}, // 09:00Z to 10:00Z, as an offset and epoch milliseconds
		{"from=1796284800000&to=2026-12-03T11:30:00%2B01:00", 2}, // 08:00Z to 10:30Z: rows 1 and 2, not 4 at 10:30
	} {
		q, _ := url.ParseQuery(tc.query)
		s, err := Select(d, q, nil, dbOptions(t, conn, d))
		if err != nil {
			t.Fatalf("Select(%q): %v", tc.query, err)
		}
		for _, mode := range extendedModes {
			var n int
			if _, err := query(t, conn, d, s, "SELECT count(*) FROM t WHERE at >= :from AND at < :to", mode, &n); err != nil || n != tc.rows {
				t.Errorf("%v, Select(%q): got %d rows, %v; want %d", mode, tc.query, n, err, tc.rows)
			}
		}
	}

	// The rounding: with a refresh of an hour, from's now is 10:00Z
	// (rounded down) and to's 11:00Z (rounded up), so now-1h to now-30m is
	// 09:00Z to 10:30Z: rows 1 and 2. Unrounded (09:37Z to 10:07Z) it
	// would be row 2 alone.
	d.Refresh = time.Hour
	s, err := Select(d, url.Values{"from": {"now-1h"}, "to": {"now-30m"}}, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	if _, err := query(t, conn, d, s, "SELECT count(*) FROM t WHERE at >= :from AND at < :to", pgx.QueryExecModeDescribeExec, &n); err != nil || n != 2 {
		t.Errorf("now-1h to now-30m rounded to the hour: got %d rows, %v; want 2 (09:00 and 10:00)", n, err)
	}

	// A timestamp without time zone is compared with the wall clock of the
	// dashboard's zone (at_local holds Berlin's wall clock of at).
	s, err = Select(d, url.Values{"from": {"2026-12-03T09:30:00Z"}, "to": {"2026-12-03T10:45:00Z"}}, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var ids []int32
	if _, err := query(t, conn, d, s, "SELECT array_agg(id ORDER BY id) FROM t WHERE at_local >= :from AND at_local < :to", pgx.QueryExecModeDescribeExec, &ids); err != nil || !slices.Equal(ids, []int32{2, 4}) {
		t.Errorf("timestamp column in Berlin: got ids %v, %v; want [2 4]", ids, err)
	}
	// A column of UTC wall-clock times, as docs/variables.md says to
	// compare it: at::timestamp in a UTC session is that.
	if _, err := conn.Exec(t.Context(), "SET TIME ZONE 'UTC'; ALTER TABLE t ADD COLUMN created_at timestamp; UPDATE t SET created_at = at::timestamp"); err != nil {
		t.Fatal(err)
	}
	ids = nil
	for _, mode := range extendedModes {
		if _, err := query(t, conn, d, s, "SELECT array_agg(id ORDER BY id) FROM t WHERE "+idiomUTCColumn+" AND created_at < (:to::timestamptz AT TIME ZONE 'UTC')", mode, &ids); err != nil || !slices.Equal(ids, []int32{2, 4}) {
			t.Errorf("%v: UTC timestamp column: got ids %v, %v; want [2 4]", mode, ids, err)
		}
	}
}

// TestBindMisspelt: a :name that no variable has stays in the text, where
// Postgres refuses it.
func TestBindMisspelt(t *testing.T) {
	conn := bindDB(t)
	d := bindDashboard()
	s, err := Select(d, nil, nil, dbOptions(t, conn, d))
	if err != nil {
		t.Fatal(err)
	}
	var n int
	_, err = query(t, conn, d, s, "SELECT count(*) FROM t WHERE region = ANY(:regoin)", pgx.QueryExecModeDescribeExec, &n)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "42601" || !strings.Contains(pgErr.Message, `at or near ":"`) {
		t.Errorf("a misspelt variable: got %d rows, %v; want a syntax error at \":\"", n, err)
	}
}
