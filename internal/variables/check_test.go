package variables

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func TestCheckValid(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	d.Variables[1].SQL = "SELECT name FROM customers WHERE region = ANY(:region) AND since < :to"
	d.Panels = []*panel.Def{{Slug: "orders", SQL: "SELECT count(*) FROM orders WHERE region = ANY(:region) AND at >= :from AND at < :to AND note = ':nope'"}}
	if errs := check(d, testNow); errs != nil {
		t.Errorf("got %v, want no errors", errs)
	}
	if errs := check(&panel.Dashboard{}, testNow); errs != nil {
		t.Errorf("empty dashboard: got %v, want no errors", errs)
	}
	// A name may be up to 63 bytes.
	d = &panel.Dashboard{Variables: []panel.Variable{{Name: "_" + strings.Repeat("a9", 31), Kind: panel.TextVariable}}}
	if errs := check(d, testNow); errs != nil {
		t.Errorf("63-byte name: got %v, want no errors", errs)
	}
}

func TestCheck(t *testing.T) {
	t.Parallel()
	list := func(name string, options ...string) panel.Variable {
		return panel.Variable{Name: name, Kind: panel.ListVariable, Options: options}
	}
	text := func(name string) panel.Variable { return panel.Variable{Name: name, Kind: panel.TextVariable} }
	query := func(name, sql string) panel.Variable {
		return panel.Variable{Name: name, Kind: panel.QueryVariable, SQL: sql}
	}
	vars := func(vs ...panel.Variable) *panel.Dashboard { return &panel.Dashboard{Variables: vs} }
	with := func(v panel.Variable, f func(*panel.Variable)) panel.Variable { f(&v); return v }
	timed := func(from, to, zone string) *panel.Dashboard {
		return &panel.Dashboard{Time: &panel.TimeRange{From: from, To: to}, TimeZone: zone}
	}
	manyOptions := make([]string, 1001)
	for i := range manyOptions {
		manyOptions[i] = fmt.Sprint(i)
	}
	manyVars := make([]panel.Variable, 21)
	for i := range manyVars {
		manyVars[i] = text(fmt.Sprintf("v%d", i))
	}
	manyDefaults := make([]string, 101)
	for i := range manyDefaults {
		manyDefaults[i] = fmt.Sprint(i)
	}

	for _, tc := range []struct {
		about string
		d     *panel.Dashboard
		want  []string // one error each, in order
	}{
		{"21 variables", vars(manyVars...), []string{"21 variables: at most 20"}},
		{"upper case", vars(text("Region")), []string{`variable "Region": the name must match ^[a-z_][a-z0-9_]{0,62}$`}},
		{"digit first", vars(text("1x")), []string{`variable "1x": the name must match`}},
		{"empty name", vars(text("")), []string{`variable "": the name must match`}},
		{"64 bytes", vars(text(strings.Repeat("a", 64))), []string{"the name must match"}},
		{"hyphen", vars(text("a-b")), []string{`variable "a-b": the name must match`}},
		{"hostile name", vars(text("x'); DROP TABLE t; --\x00" + strings.Repeat("z", 100))), []string{`variable "x'); DROP TABLE t; --\x00zzzz`}},
		{"from", vars(text("from")), []string{"variable from: the names from and to are the time range's"}},
		{"to", vars(list("to", "a")), []string{"variable to: the names from and to are the time range's"}},
		{"twice", vars(text("a"), list("b", "x"), list("a", "y")), []string{"variable a is declared twice"}},
		{"bad kind", vars(panel.Variable{Name: "a", Kind: "select"}), []string{`variable a: kind "select": want query, list or text`}},
		{"no kind", vars(panel.Variable{Name: "a"}), []string{`variable a: kind "": want query, list or text`}},
		{"query without sql", vars(query("a", " \n")), []string{"variable a: a query variable needs sql"}},
		{"query with options", vars(with(query("a", "SELECT 1"), func(v *panel.Variable) { v.Options = []string{"x"} })), []string{"variable a: a query variable takes its options from sql, not options"}},
		{"list with sql", vars(with(list("a", "x"), func(v *panel.Variable) { v.SQL = "SELECT 1" })), []string{"variable a: a list variable takes options, not sql"}},
		{"list without options", vars(list("a")), []string{"variable a: a list variable needs options"}},
		{"1001 options", vars(list("a", manyOptions...)), []string{"variable a: 1001 options: at most 1000"}},
		{"option twice", vars(list("a", "x", "y", "x")), []string{`variable a: option "x" is listed twice`}},
		{"long option", vars(list("a", "x", strings.Repeat("y", 1025))), []string{"variable a: option 2: value longer than 1024 bytes (1025)"}},
		{"NUL option", vars(list("a", "x\x00")), []string{`variable a: option 1: value "x\x00" contains a control character (U+0000)`}},
		{"empty multi option", vars(with(list("a", "x", ""), func(v *panel.Variable) { v.Multi = true })), []string{"variable a: option 2 is empty: a multi-valued variable never holds the empty value"}},
		{"text with options", vars(with(text("a"), func(v *panel.Variable) { v.Options = []string{"x"} })), []string{"variable a: a text variable takes neither sql nor options"}},
		{"text with sql", vars(with(text("a"), func(v *panel.Variable) { v.SQL = "SELECT 1" })), []string{"variable a: a text variable takes neither sql nor options"}},
		{"101 defaults", vars(with(text("a"), func(v *panel.Variable) { v.Multi, v.Default = true, manyDefaults })), []string{"variable a: 101 defaults: at most 100"}},
		{"two defaults, single", vars(with(list("a", "x", "y"), func(v *panel.Variable) { v.Default = []string{"x", "y"} })), []string{"variable a: 2 defaults, but it takes one value"}},
		{"default not an option", vars(with(list("a", "x", "y"), func(v *panel.Variable) { v.Default = []string{"z"} })), []string{`variable a: default "z" is not one of its options`}},
		{"bad default", vars(with(text("a"), func(v *panel.Variable) { v.Default = []string{"\xff"} })), []string{`variable a: default 1: value "\xff" is not valid UTF-8`}},
		{"empty multi default", vars(with(text("a"), func(v *panel.Variable) { v.Multi, v.Default = true, []string{"b", ""} })), []string{"variable a: default 2 is empty"}},
		{"long label", vars(with(text("a"), func(v *panel.Variable) { v.Label = strings.Repeat("é", 201) })), []string{"variable a: label of 201 characters: at most 200"}},
		{"refers to a later variable", vars(query("customer", "SELECT name FROM c WHERE region = :region"), list("region", "eu")),
			[]string{"variable customer: sql uses :region, but variable region is declared after customer"}},
		{"refers to itself", vars(query("a", "SELECT x FROM t WHERE x > :a")), []string{"variable a: sql uses :a, its own value"}},
		{"from without a time range", vars(query("a", "SELECT x FROM t WHERE at > :from")), []string{"variable a: sql uses :from, but the dashboard has no time range"}},
		{"bad variable sql", vars(query("a", "SELECT 'open")), []string{"variable a: sql: unterminated string constant at byte 7"}},
		{"positional parameter", vars(query("a", "SELECT $1")), []string{"variable a: sql: positional parameter $1"}},
		{"panel uses to without a time range", &panel.Dashboard{Panels: []*panel.Def{{Slug: "p", SQL: "SELECT 1 WHERE now() < :to"}}},
			[]string{"panel p: sql uses :to, but the dashboard has no time range"}},
		{"bad panel sql", &panel.Dashboard{Panels: []*panel.Def{{Slug: "p", SQL: "SELECT $$"}}}, []string{"panel p: sql: unterminated dollar-quoted string"}},
		{"unknown zone", &panel.Dashboard{TimeZone: "Mars/Olympus"}, []string{`time zone "Mars/Olympus": not an IANA zone name`}},
		{"Local", &panel.Dashboard{TimeZone: "Local"}, []string{`time zone "Local": not an IANA zone name`}},
		{"bad from", timed("yesterday", "now", ""), []string{`time range: from: time "yesterday": want now`}},
		{"huge to", timed("now-6h", "now-99999999y", ""), []string{`time range: to: time "now-99999999y": offset too large`}},
		{"from after to", timed("now", "now-6h", ""), []string{`time range: from "now" is not always before to "now-6h"`}},
		{"from equal to", timed("now-60m", "now-1h", ""), []string{"is not always before"}},
		{"months", timed("now-1M", "now-2M", ""), []string{"is not always before"}},
		// A month back is 30 days back in 30-day months.
		{"a month against 30 days", timed("now-30d", "now-1M", ""), []string{`from "now-30d" is not always before to "now-1M"`}},
		// In UTC a month is at least 28 days = 672 hours; where daylight
		// saving time starts in March, February to March is an hour shorter.
		{"daylight saving time", timed("now-1M", "now-671h", "America/New_York"), []string{"is not always before"}},
		{"absolute", timed("2026-12-03T10:00:00Z", "2026-12-03T09:00:00Z", ""), []string{"is not always before"}},
		{"absolute after now", timed("2030-01-01T00:00:00Z", "now", ""), []string{"is not always before"}},
		{"several", vars(text("From"), text("a"), text("a")), []string{`variable "From": the name must match`, "variable a is declared twice"}},
	} {
		errs := check(tc.d, testNow)
		if len(errs) != len(tc.want) {
			t.Errorf("%s: got %d errors %q, want %d", tc.about, len(errs), errs, len(tc.want))
			continue
		}
		for i, err := range errs {
			if !strings.Contains(err.Error(), tc.want[i]) {
				t.Errorf("%s: got %q, want an error with %q", tc.about, err, tc.want[i])
			}
			checkSafeMessage(t, err.Error(), "")
		}
	}
}

func TestCheckRangeAccepts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ from, to, zone string }{
		{"now-6h", "now", ""},
		{"now-1y", "now", "Europe/Berlin"},
		{"now-2M", "now-1M", "Europe/Berlin"},
		{"now-32d", "now-1M", "America/New_York"},
		{"now-1M", "now-27d", "America/New_York"},
		{"now-1M", "now-671h", "UTC"},
		{"now-1M", "now-1d", "Australia/Lord_Howe"},
		{"now-1y", "now-52w", ""},
		{"2026-12-03T09:00:00Z", "2026-12-03T10:00:00Z", ""},
		{"2020-01-01T00:00:00Z", "now", ""},
		{"now-1h", "now+1h", ""},
	} {
		d := &panel.Dashboard{Time: &panel.TimeRange{From: tc.from, To: tc.to}, TimeZone: tc.zone}
		if errs := check(d, testNow); errs != nil {
			t.Errorf("%s to %s in %q: got %v, want no errors", tc.from, tc.to, tc.zone, errs)
		}
	}
}

func BenchmarkCheckRangeMixed(b *testing.B) {
	from, to := mustTime(b, "now-1M"), mustTime(b, "now-671h")
	loc := Location("America/New_York")
	for b.Loop() {
		checkRange(from, to, loc, testNow)
	}
}

// TestCheckRangeAtNow: an absolute end against a relative one is compared
// at the time of the check.
func TestCheckRangeAtNow(t *testing.T) {
	t.Parallel()
	d := &panel.Dashboard{Time: &panel.TimeRange{From: "now-1d", To: "2027-01-01T00:00:00Z"}}
	if errs := check(d, testNow); errs != nil {
		t.Errorf("in 2026: got %v, want no errors", errs)
	}
	if errs := check(d, time.Date(2027, 6, 1, 0, 0, 0, 0, time.UTC)); len(errs) != 1 {
		t.Errorf("in 2027: got %v, want one error", errs)
	}
}
