package variables

import (
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// testNow is the clock of these tests: Select's range check and Args
// resolve relative times at it, rounded to the refresh interval.
var testNow = time.Date(2026, 12, 3, 10, 37, 12, 0, time.UTC)

// customers are the options of the test dashboard's query variable, by
// region: what "SELECT name FROM customers WHERE region = ANY(:region)"
// would return.
var customers = map[string][]string{
	"eu":   {"acme", "bolt"},
	"us":   {"corp", "dyn"},
	"apac": {},
}

// salesDashboard declares one variable of each kind, a chained query
// variable and a time range.
func salesDashboard() *panel.Dashboard {
	return &panel.Dashboard{
		Slug:     "sales",
		TimeZone: "Europe/Berlin",
		Refresh:  time.Minute,
		Time:     &panel.TimeRange{From: "now-6h", To: "now"},
		Variables: []panel.Variable{
			{Name: "region", Kind: panel.ListVariable, Options: []string{"eu", "us", "apac"}, Multi: true, Default: []string{"eu"}},
			{Name: "customer", Kind: panel.QueryVariable, SQL: "SELECT name FROM customers WHERE region = ANY(:region) ORDER BY 1"},
			{Name: "q", Kind: panel.TextVariable},
			{Name: "env", Kind: panel.ListVariable, Options: []string{"prod", "staging"}},
		},
	}
}

// optionsRecorder answers OptionsFunc from customers and records what each
// call was given.
type optionsRecorder struct {
	mu    sync.Mutex
	calls []Selection
	err   error
}

func (r *optionsRecorder) options(v *panel.Variable, upstream Selection) ([]string, error) {
	r.mu.Lock()
	r.calls = append(r.calls, upstream)
	r.mu.Unlock()
	if r.err != nil {
		return nil, r.err
	}
	if v.Name != "customer" {
		return nil, fmt.Errorf("no options for %s", v.Name)
	}
	var out []string
	for _, region := range upstream.Values["region"] {
		out = append(out, customers[region]...)
	}
	return out, nil
}

func selectQuery(t *testing.T, d *panel.Dashboard, query string, locked map[string][]string) (Selection, error) {
	t.Helper()
	q, err := url.ParseQuery(query)
	if err != nil {
		t.Fatalf("bad test query %q: %v", query, err)
	}
	r := &optionsRecorder{}
	return selectAt(d, q, locked, r.options, testNow)
}

func mustSelect(t *testing.T, d *panel.Dashboard, query string, locked map[string][]string) Selection {
	t.Helper()
	s, err := selectQuery(t, d, query, locked)
	if err != nil {
		t.Fatalf("Select(%q): %v", query, err)
	}
	return s
}

func TestSelectDefaults(t *testing.T) {
	t.Parallel()
	s := mustSelect(t, salesDashboard(), "", nil)
	want := Selection{
		Values: map[string][]string{
			"region":   {"eu"},
			"customer": {"acme"}, // the first option for region eu
			"q":        {""},
			"env":      {"prod"}, // no default: the first option
		},
		From:    mustTime(t, "now-6h"),
		To:      mustTime(t, "now"),
		HasTime: true,
	}
	if !reflect.DeepEqual(s, want) {
		t.Fatalf("got %+v, want %+v", s, want)
	}
	if got, want := s.Key(), "from=now-6h&to=now&var-customer=acme&var-env=prod&var-q=&var-region=eu"; got != want {
		t.Errorf("Key() = %q, want %q", got, want)
	}
}

// TestSelectSameKey: addresses that mean the same choice give the same key,
// and different choices different keys.
func TestSelectSameKey(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	for _, group := range [][]string{
		{
			"",
			"from=now-360m&to=now",
			"from=now-21600s&to=now-0h",
			"var-region=eu",
			"var-region=eu&var-region=eu",
			"var-customer=acme&var-env=prod&var-q=",
			"var-env=",                       // empty: no choice, the default
			"var-nope=1&foo=bar&var-=x&var-", // unknown names are ignored
		},
		{
			"var-region=us&var-region=eu&var-customer=corp",
			"var-region=eu&var-region=us&var-customer=corp",
			"var-region=us&var-region=eu&var-region=us&var-customer=corp",
			"var-region=&var-region=us&var-region=eu&var-customer=corp",
		},
		{
			"from=2025-12-03T11:00:00%2B01:00&to=1764759600000",
			"from=2025-12-03T10:00:00Z&to=2025-12-03T11:00:00.000Z",
		},
		{"var-region="},
		{"var-q=x%27%29%3B+DROP+TABLE+t%3B+--", "var-q=x%27%29%3b+DROP+TABLE+t%3B%20--"},
	} {
		key := mustSelect(t, d, group[0], nil).Key()
		for _, q := range group[1:] {
			if got := mustSelect(t, d, q, nil).Key(); got != key {
				t.Errorf("Select(%q).Key() = %q, want %q as for %q", q, got, key, group[0])
			}
		}
	}
	seen := map[string]string{}
	for _, q := range []string{
		"", "var-region=us", "var-region=eu&var-region=us", "var-region=", "var-env=staging",
		"var-q=+", "var-q=a", "from=now-1h", "from=now-1M", "from=now-30d", "to=now-1m",
	} {
		key := mustSelect(t, d, q, nil).Key()
		if other, dup := seen[key]; dup {
			t.Errorf("Select(%q) and Select(%q) have the same key %q", q, other, key)
		}
		seen[key] = q
	}
}

func TestSelectChained(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	q, _ := url.ParseQuery("var-region=us&var-customer=dyn&var-q=hello")
	r := &optionsRecorder{}
	s, err := selectAt(d, q, nil, r.options, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Values["customer"]; !slices.Equal(got, []string{"dyn"}) {
		t.Errorf("customer: got %q, want [dyn]", got)
	}
	// The query variable saw the variables before it, and the time range,
	// and nothing after it.
	if len(r.calls) != 1 {
		t.Fatalf("options asked %d times, want once", len(r.calls))
	}
	up := r.calls[0]
	if !reflect.DeepEqual(up.Values, map[string][]string{"region": {"us"}}) || !up.HasTime || up.From != mustTime(t, "now-6h") {
		t.Errorf("upstream: got %+v, want region [us] and the time range", up)
	}

	// The default follows the region: the first customer of us.
	if got := mustSelect(t, d, "var-region=us", nil).Values["customer"]; !slices.Equal(got, []string{"corp"}) {
		t.Errorf("customer for region us: got %q, want [corp]", got)
	}
	// A customer of another region is refused.
	_, err = selectQuery(t, d, "var-region=us&var-customer=acme", nil)
	wantInputError(t, err, "customer", `"acme" is not one of its options`)

	// No options: a single-valued variable has no value, and Args binds NULL.
	s = mustSelect(t, d, "var-region=apac", nil)
	if got, ok := s.Values["customer"]; !ok || got == nil || len(got) != 0 {
		t.Errorf("customer for region apac: got %#v, want an empty entry", got)
	}
}

func TestSelectEmptyValues(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	for _, tc := range []struct {
		query, name string
		want        []string
	}{
		{"var-env=", "env", []string{"prod"}},                   // single: no choice
		{"var-region=", "region", []string{}},                   // multi: nothing chosen
		{"var-region=&var-region=us", "region", []string{"us"}}, // empty values dropped
		{"var-q=", "q", []string{""}},                           // text: the empty text
		{"var-q=+", "q", []string{" "}},
	} {
		s := mustSelect(t, d, tc.query, nil)
		if got := s.Values[tc.name]; got == nil || !slices.Equal(got, tc.want) {
			t.Errorf("Select(%q): %s = %#v, want %#v", tc.query, tc.name, got, tc.want)
		}
	}
	// An empty region list leaves customer with no options.
	if got := mustSelect(t, d, "var-region=", nil).Values["customer"]; len(got) != 0 {
		t.Errorf("customer with no region: got %q, want nothing", got)
	}
}

func TestSelectDefaultsFollowOptions(t *testing.T) {
	t.Parallel()
	d := &panel.Dashboard{Variables: []panel.Variable{
		{Name: "region", Kind: panel.ListVariable, Options: []string{"eu", "us"}},
		// A default that the region's customers no longer include falls
		// back to the first option.
		{Name: "customer", Kind: panel.QueryVariable, SQL: "SELECT 1", Default: []string{"gone"}},
		{Name: "customers", Kind: panel.QueryVariable, SQL: "SELECT 1", Multi: true, Default: []string{"gone", "bolt", "acme", "acme"}},
		{Name: "tags", Kind: panel.TextVariable, Multi: true},
		{Name: "words", Kind: panel.TextVariable, Multi: true, Default: []string{"b", "a", "b"}},
		{Name: "text", Kind: panel.TextVariable, Default: []string{"hello"}},
	}}
	opts := func(v *panel.Variable, up Selection) ([]string, error) {
		return customers[up.Values["region"][0]], nil
	}
	s, err := selectAt(d, nil, nil, opts, testNow)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][]string{
		"region":    {"eu"},
		"customer":  {"acme"},
		"customers": {"acme", "bolt"},
		"tags":      {},
		"words":     {"a", "b"},
		"text":      {"hello"},
	}
	if !reflect.DeepEqual(s.Values, want) {
		t.Errorf("got %#v, want %#v", s.Values, want)
	}
	if s.HasTime || s.Key() != "var-customer=acme&var-customers=acme&var-customers=bolt&var-region=eu&var-tags&var-text=hello&var-words=a&var-words=b" {
		t.Errorf("Key() = %q", s.Key())
	}
	// A multi-valued query variable whose query returns nothing, or only
	// the empty value, chooses nothing.
	for _, options := range [][]string{nil, {}, {""}} {
		s, err := selectAt(d, url.Values{"var-region": {"us"}}, nil, func(*panel.Variable, Selection) ([]string, error) { return options, nil }, testNow)
		if err != nil {
			t.Fatal(err)
		}
		if got := s.Values["customers"]; got == nil || len(got) != 0 {
			t.Errorf("options %q: customers = %#v, want an empty list", options, got)
		}
		if options == nil || len(options) == 0 {
			if got := s.Values["customer"]; got == nil || len(got) != 0 {
				t.Errorf("options %q: customer = %#v, want no value", options, got)
			}
		}
	}
}

func TestSelectNoVariables(t *testing.T) {
	t.Parallel()
	d := &panel.Dashboard{Slug: "plain"}
	// from and to are ignored without a time range, even malformed.
	s, err := selectAt(d, url.Values{"from": {"garbage"}, "to": {"now-99999999y"}, "var-x": {"1"}}, nil, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if s.Key() != "" || s.HasTime || s.Values == nil || len(s.Values) != 0 {
		t.Errorf("got %+v with key %q, want an empty selection with key \"\"", s, s.Key())
	}
	if s.Clock() {
		t.Errorf("Clock() = true without a time range")
	}
}

// wantInputError fails unless err is an *InputError naming name whose
// message contains want.
func wantInputError(t *testing.T, err error, name, want string) {
	t.Helper()
	var ie *InputError
	if !errors.As(err, &ie) {
		t.Errorf("got %v (%T), want an *InputError", err, err)
		return
	}
	if ie.Name != name {
		t.Errorf("got an error about %q (%v), want one about %q", ie.Name, ie, name)
	}
	if !strings.Contains(ie.Error(), want) {
		t.Errorf("got %q, want a message with %q", ie.Error(), want)
	}
}

func TestSelectRefuses(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	tenK := strings.Repeat("x'); DROP TABLE t; --", 500)
	many := func(name string, n int) url.Values {
		q := url.Values{}
		for i := range n {
			q.Add(name, []string{"eu", "us", "apac"}[i%3])
		}
		return q
	}
	for _, tc := range []struct {
		about    string
		q        url.Values
		name     string
		want     string
		hostile  string // a value that must not be repeated at length
		notInMsg string
	}{
		{"10 KB text", url.Values{"var-q": {tenK}}, "q", "longer than 1024 bytes (10500)", tenK, ""},
		{"1025 bytes", url.Values{"var-q": {strings.Repeat("a", 1025)}}, "q", "longer than 1024 bytes", "", ""},
		{"10 KB option", url.Values{"var-env": {tenK}}, "env", "longer than 1024 bytes", tenK, ""},
		{"10 KB time", url.Values{"from": {tenK}}, "from", "longer than 1024 bytes", tenK, ""},
		{"1,000 values", many("var-region", 1000), "region", "more than 100 values (1000)", "", ""},
		{"101 values", many("var-region", 101), "region", "more than 100 values (101)", "", ""},
		{"101 values of a single-valued variable", many("var-env", 101), "env", "more than 100 values", "", ""},
		{"NUL", url.Values{"var-q": {"a\x00b"}}, "q", `"a\x00b" contains a control character (U+0000)`, "", "\x00"},
		{"newline", url.Values{"var-q": {"a\nb"}}, "q", "control character (U+000A)", "", "\n"},
		{"tab", url.Values{"var-q": {"a\tb"}}, "q", "control character (U+0009)", "", "\t"},
		{"escape", url.Values{"var-q": {"\x1b[31mred"}}, "q", "control character (U+001B)", "", "\x1b"},
		{"C1 control", url.Values{"var-q": {"a\u0085b"}}, "q", "control character (U+0085)", "", "\u0085"},
		{"DEL", url.Values{"var-q": {"a\x7fb"}}, "q", "control character (U+007F)", "", "\x7f"},
		{"invalid UTF-8", url.Values{"var-q": {"a\xffb"}}, "q", `"a\xffb" is not valid UTF-8`, "", "\xff"},
		{"NUL in a list value", url.Values{"var-region": {"eu\x00"}}, "region", "control character", "", "\x00"},
		{"NUL in a time", url.Values{"from": {"now-6h\x00"}}, "from", "control character", "", "\x00"},
		{"two values, single-valued", url.Values{"var-env": {"prod", "staging"}}, "env", "takes one value, got 2", "", ""},
		{"the same value twice, single-valued", url.Values{"var-env": {"prod", "prod"}}, "env", "takes one value, got 2", "", ""},
		{"two values for a text", url.Values{"var-q": {"a", "b"}}, "q", "takes one value, got 2", "", ""},
		{"injection as an option", url.Values{"var-env": {"x'); DROP TABLE t; --"}}, "env", `"x'); DROP TABLE t; --" is not one of its options`, "", ""},
		{"semicolon list", url.Values{"var-region": {"eu;us"}}, "region", `"eu;us" is not one of its options`, "", ""},
		{"comma list", url.Values{"var-region": {"eu,us"}}, "region", `"eu,us" is not one of its options`, "", ""},
		{"Grafana's braces", url.Values{"var-region": {"{eu,us}"}}, "region", "is not one of its options", "", ""},
		{"quoted option", url.Values{"var-region": {"'eu'"}}, "region", `"'eu'" is not one of its options`, "", ""},
		{"positional parameter", url.Values{"var-region": {"$1"}}, "region", `"$1" is not one of its options`, "", ""},
		{"another placeholder", url.Values{"var-region": {":other"}}, "region", `":other" is not one of its options`, "", ""},
		{"Grafana's all", url.Values{"var-region": {"$__all"}}, "region", "is not one of its options", "", ""},
		{"one bad among good", url.Values{"var-region": {"eu", "us", "mars"}}, "region", `"mars" is not one of its options`, "", ""},
		{"a customer of no region", url.Values{"var-customer": {"corp"}}, "customer", `"corp" is not one of its options`, "", ""},
		{"long bad option", url.Values{"var-env": {strings.Repeat("\x01", 1000)}}, "env", "control character", strings.Repeat("\x01", 1000), "\x01"},
		{"long bad option", url.Values{"var-env": {strings.Repeat("é", 500)}}, "env", "is not one of its options", strings.Repeat("é", 500), ""},
		{"huge offset", url.Values{"from": {"now-99999999y"}}, "from", "offset too large", "", ""},
		{"huge offset in to", url.Values{"to": {"now+99999999y"}}, "to", "offset too large", "", ""},
		{"malformed from", url.Values{"from": {"yesterday"}}, "from", `time "yesterday": want now`, "", ""},
		{"injection as a time", url.Values{"to": {"now'; DROP TABLE t; --"}}, "to", "want now", "", ""},
		{"Grafana rounding", url.Values{"from": {"now/d"}}, "from", "want now", "", ""},
		{"two froms", url.Values{"from": {"now-6h", "now-1h"}}, "from", "takes one value, got 2", "", ""},
		{"from after to", url.Values{"from": {"now"}, "to": {"now-1h"}}, "from", `"now" is not before to "now-1h"`, "", ""},
		{"from equal to", url.Values{"from": {"now-1h"}, "to": {"now-60m"}}, "from", "is not before to", "", ""},
		{"absolute from after relative to", url.Values{"from": {"2030-01-01T00:00:00Z"}}, "from", `"2030-01-01T00:00:00Z" is not before to "now"`, "", ""},
		{"absolute from after absolute to", url.Values{"from": {"2026-12-03T10:00:00Z"}, "to": {"1764756000000"}}, "from", "is not before to", "", ""},
		{"to before the default from", url.Values{"to": {"now-7h"}}, "from", `"now-6h" is not before to "now-7h"`, "", ""},
	} {
		_, err := selectAt(d, tc.q, nil, (&optionsRecorder{}).options, testNow)
		if err == nil {
			t.Errorf("%s: got no error, want %q", tc.about, tc.want)
			continue
		}
		wantInputError(t, err, tc.name, tc.want)
		checkSafeMessage(t, err.Error(), tc.hostile)
		if tc.notInMsg != "" && strings.Contains(err.Error(), tc.notInMsg) {
			t.Errorf("%s: message %q has the raw %q", tc.about, err.Error(), tc.notInMsg)
		}
	}
}

// TestSelectAccepts: hostile text is a value like any other for a text
// variable; it is bound, never spliced (bind_test.go proves that part).
func TestSelectAccepts(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	for _, v := range []string{
		"x'); DROP TABLE t; --", `"; DROP TABLE t; --`, "$1", "$$", ":other", ":region", "a::int",
		"/* comment", "-- comment", `\`, "E'\\''", strings.Repeat("é", 512), "🙂", " ", "100% sure",
	} {
		s := mustSelect(t, d, "var-q="+url.QueryEscape(v), nil)
		if got := s.Values["q"]; !slices.Equal(got, []string{v}) {
			t.Errorf("q = %q: got %q", v, got)
		}
		back, err := ParseKey(s.Key())
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Errorf("q = %q: ParseKey(Key()) = %+v, %v", v, back, err)
		}
	}
	// Exactly at the limits.
	s := mustSelect(t, d, "var-q="+strings.Repeat("a", 1024), nil)
	if len(s.Values["q"][0]) != 1024 {
		t.Errorf("a value of 1024 bytes was not kept")
	}
	q := url.Values{}
	for range 100 {
		q.Add("var-region", "us")
	}
	if s, err := selectAt(d, q, nil, (&optionsRecorder{}).options, testNow); err != nil || !slices.Equal(s.Values["region"], []string{"us"}) {
		t.Errorf("100 values: got %q, %v; want [us]", s.Values["region"], err)
	}
}

// TestSelectRangeRoundsNow: the range check resolves now as Args will,
// rounded down to the refresh interval, so a from between the rounded and
// the real now is after "now".
func TestSelectRangeRoundsNow(t *testing.T) {
	t.Parallel()
	d := salesDashboard() // refresh 1m; testNow is 10:37:12, rounded 10:37:00
	if _, err := selectQuery(t, d, "from=2026-12-03T10:36:59Z", nil); err != nil {
		t.Errorf("from a second before the rounded now: %v", err)
	}
	_, err := selectQuery(t, d, "from=2026-12-03T10:37:05Z", nil)
	wantInputError(t, err, "from", "is not before to")
	d.Refresh = time.Hour // rounded 10:00:00
	_, err = selectQuery(t, d, "from=2026-12-03T10:30:00Z", nil)
	wantInputError(t, err, "from", "is not before to")
	// Calendar units against fixed ones depend on the month: on 3
	// December, a month back is 30 days back.
	if _, err := selectQuery(t, d, "from=now-31d&to=now-1M", nil); err != nil {
		t.Errorf("now-31d to now-1M on 3 December: %v", err)
	}
	_, err = selectQuery(t, d, "from=now-30d&to=now-1M", nil)
	wantInputError(t, err, "from", `"now-30d" is not before to "now-1M"`)
}

// TestSelectBrokenDefaultRange: a default range that is empty is the
// dashboard's fault, not the viewer's: not an InputError.
func TestSelectBrokenDefaultRange(t *testing.T) {
	t.Parallel()
	for _, tr := range []panel.TimeRange{{From: "now", To: "2020-01-01T00:00:00Z"}, {From: "bad", To: "now"}} {
		d := &panel.Dashboard{Time: &tr}
		_, err := selectAt(d, nil, nil, nil, testNow)
		var ie *InputError
		if err == nil || errors.As(err, &ie) || !strings.Contains(err.Error(), "dashboard time range") {
			t.Errorf("default range %+v: got %v, want a dashboard error that is not an InputError", tr, err)
		}
	}
}

func TestSelectLocked(t *testing.T) {
	t.Parallel()
	d := salesDashboard()

	// The token's customer wins over the address, silently.
	s := mustSelect(t, d, "var-customer=acme", map[string][]string{"customer": {"bolt"}})
	if got := s.Values["customer"]; !slices.Equal(got, []string{"bolt"}) {
		t.Errorf("locked customer: got %q, want [bolt]", got)
	}

	// A locked region is what the customer query sees.
	q, _ := url.ParseQuery("var-region=eu&var-region=apac")
	r := &optionsRecorder{}
	s, err := selectAt(d, q, map[string][]string{"region": {"us"}}, r.options, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Values["region"], []string{"us"}) || !slices.Equal(s.Values["customer"], []string{"corp"}) {
		t.Errorf("locked region: got %v, want region [us] and customer [corp]", s.Values)
	}
	if len(r.calls) != 1 || !slices.Equal(r.calls[0].Values["region"], []string{"us"}) {
		t.Errorf("the customer query saw %+v, want region [us]", r.calls)
	}
	// So a customer of another region is refused even if the address
	// chose that region.
	_, err = selectQuery(t, d, "var-region=eu&var-customer=acme", map[string][]string{"region": {"us"}})
	wantInputError(t, err, "customer", `"acme" is not one of its options`)

	// Multi values are sorted and deduplicated; an empty list chooses
	// nothing.
	s = mustSelect(t, d, "", map[string][]string{"region": {"us", "eu", "us"}})
	if !slices.Equal(s.Values["region"], []string{"eu", "us"}) {
		t.Errorf("locked regions: got %q, want [eu us]", s.Values["region"])
	}
	s = mustSelect(t, d, "var-region=eu", map[string][]string{"region": {}})
	if got := s.Values["region"]; got == nil || len(got) != 0 {
		t.Errorf("locked to no region: got %#v, want an empty list", got)
	}

	for _, tc := range []struct {
		about  string
		locked map[string][]string
		name   string
		want   string
	}{
		{"not an option", map[string][]string{"customer": {"zzz"}}, "customer", `the access token fixes it to "zzz", which is not one of its options`},
		{"not an option once the region is chosen", map[string][]string{"customer": {"corp"}}, "customer", "not one of its options"},
		{"empty, single-valued", map[string][]string{"env": {""}}, "env", `fixes it to "", which is not one of its options`},
		{"no value, single-valued", map[string][]string{"env": {}}, "env", "to no value"},
		{"two values, single-valued", map[string][]string{"env": {"prod", "staging"}}, "env", "takes one value, got 2"},
		{"a control character", map[string][]string{"q": {"\x00"}}, "q", "control character"},
		{"too long", map[string][]string{"q": {strings.Repeat("a", 2000)}}, "q", "longer than 1024 bytes"},
		{"undeclared", map[string][]string{"tenant": {"acme"}}, "tenant", "the dashboard declares no such variable"},
		{"undeclared, hostile name", map[string][]string{"x'); --\x00": {"acme"}}, "x'); --\x00", "declares no such variable"},
	} {
		_, err := selectQuery(t, d, "", tc.locked)
		if err == nil {
			t.Errorf("%s: got no error", tc.about)
			continue
		}
		wantInputError(t, err, tc.name, tc.want)
		checkSafeMessage(t, err.Error(), "")
	}
}

func TestSelectOptionsError(t *testing.T) {
	t.Parallel()
	boom := errors.New("canceling statement due to statement timeout")
	r := &optionsRecorder{err: boom}
	_, err := selectAt(salesDashboard(), nil, nil, r.options, testNow)
	if !errors.Is(err, boom) {
		t.Errorf("got %v, want the options function's error", err)
	}
	var ie *InputError
	if errors.As(err, &ie) {
		t.Errorf("an options error came back as an InputError: %v", err)
	}
	// Without an options function a query variable cannot be settled.
	if _, err := selectAt(salesDashboard(), nil, nil, nil, testNow); err == nil || errors.As(err, &ie) {
		t.Errorf("no options function: got %v, want a plain error", err)
	}
	// An unknown kind is the dashboard's fault.
	d := &panel.Dashboard{Variables: []panel.Variable{{Name: "x", Kind: "select"}}}
	if _, err := selectAt(d, nil, nil, nil, testNow); err == nil || errors.As(err, &ie) {
		t.Errorf("unknown kind: got %v, want a plain error", err)
	}
}

// TestKeyRoundTrip: ParseKey reads every Key back, and Select reads every
// Query back, for the selections the other tests make.
func TestKeyRoundTrip(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	for _, query := range []string{
		"", "var-region=us&var-region=eu", "var-region=", "var-region=apac", "var-q=", "var-q=a%26b%3Dc",
		"var-q=var-q%3Dx%26from%3Dnow", "var-q=%2B+%25", "from=now-1M&to=now%2B1h", "from=1764756000001&to=2026-12-03T10:00:00.5Z",
		"var-env=staging&var-customer=bolt",
	} {
		s := mustSelect(t, d, query, nil)
		back, err := ParseKey(s.Key())
		if err != nil {
			t.Errorf("ParseKey(%q): %v", s.Key(), err)
		} else if !reflect.DeepEqual(back, s) {
			t.Errorf("ParseKey(%q) = %+v, want %+v", s.Key(), back, s)
		}
		again, err := selectAt(d, s.Query(), nil, (&optionsRecorder{}).options, testNow)
		if err != nil {
			t.Errorf("Select(%v.Query()): %v", query, err)
		} else if !reflect.DeepEqual(again, s) {
			t.Errorf("Select(Query()) of %q = %+v, want %+v", query, again, s)
		}
	}
	plain := &panel.Dashboard{}
	s, err := selectAt(plain, nil, nil, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParseKey(s.Key())
	if err != nil || !reflect.DeepEqual(back, s) {
		t.Errorf("ParseKey(%q) = %+v, %v; want %+v", s.Key(), back, err, s)
	}
}

func TestQuery(t *testing.T) {
	t.Parallel()
	s := mustSelect(t, salesDashboard(), "var-region=us&var-region=eu&var-region=&var-q=a+b&from=now-360m", nil)
	want := url.Values{
		"from":         {"now-6h"},
		"to":           {"now"},
		"var-region":   {"eu", "us"},
		"var-customer": {"acme"},
		"var-q":        {"a b"},
		"var-env":      {"prod"},
	}
	if got := s.Query(); !reflect.DeepEqual(got, want) {
		t.Errorf("Query() = %v, want %v", got, want)
	}
	if got := mustSelect(t, salesDashboard(), "var-region=", nil).Query()["var-region"]; !slices.Equal(got, []string{""}) {
		t.Errorf("Query() of no region: got %q, want one empty value", got)
	}
	// The URL form is Grafana's.
	if got := s.Query().Encode(); got != "from=now-6h&to=now&var-customer=acme&var-env=prod&var-q=a+b&var-region=eu&var-region=us" {
		t.Errorf("Query().Encode() = %q", got)
	}
}

func TestParseKeyRefuses(t *testing.T) {
	t.Parallel()
	for _, key := range []string{
		"to=now&from=now-6h",
		"from=now-360m&to=now",
		"from=now-6h",
		"to=now",
		"from&to=now",
		"from=garbage&to=now",
		"from=now-6h&to=now&from=now-1h",
		"var-b=1&var-a=1",
		"var-a=2&var-a=1",
		"var-a=1&var-a=1",
		"var-a&var-a",
		"var-a&var-a=1",
		"var-a=1&var-a",
		"var-=1",
		"var-",
		"x=1",
		"region=eu",
		"var-a=%zz",
		"var-a=a b",
		"var-a=a%20b",
		"&var-a=1",
		"var-a=1&",
		"var-a=1&&var-b=1",
		"var-a=1&from=now-6h&to=now",
	} {
		if s, err := ParseKey(key); err == nil {
			t.Errorf("ParseKey(%q) = %+v, want an error", key, s)
		}
	}
}

func TestKeySortsValues(t *testing.T) {
	t.Parallel()
	// Select sorts; a Selection made by hand gets the same key anyway.
	a := Selection{Values: map[string][]string{"r": {"us", "eu", "us"}}}
	b := Selection{Values: map[string][]string{"r": {"eu", "us"}}}
	if a.Key() != b.Key() || b.Key() != "var-r=eu&var-r=us" {
		t.Errorf("Key() = %q and %q, want both var-r=eu&var-r=us", a.Key(), b.Key())
	}
}

func TestClock(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	for _, tc := range []struct {
		query string
		clock bool
	}{
		{"", true},
		{"from=2026-12-03T00:00:00Z", true},
		{"from=2026-12-01T00:00:00Z&to=2026-12-02T00:00:00Z", false},
		{"from=1764720000000&to=1764806400000", false},
	} {
		if got := mustSelect(t, d, tc.query, nil).Clock(); got != tc.clock {
			t.Errorf("Select(%q).Clock() = %v, want %v", tc.query, got, tc.clock)
		}
	}
}

func TestArgs(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	d.Refresh = 5 * time.Minute
	s := mustSelect(t, d, "var-region=us&var-region=eu&var-customer=corp&var-q="+url.QueryEscape("x'); DROP TABLE t; --"), nil)
	args, err := Args(d, s, []string{"region", "customer", "from", "to", "q", "env", "region"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	berlin := Location("Europe/Berlin")
	want := []any{
		[]string{"eu", "us"},
		"corp",
		time.Date(2026, 12, 3, 5, 35, 0, 0, berlin),  // from now-6h: now rounded down to 5 minutes, in Berlin
		time.Date(2026, 12, 3, 11, 40, 0, 0, berlin), // to now: rounded up, so the newest rows are in the range
		"x'); DROP TABLE t; --",
		"prod",
		[]string{"eu", "us"},
	}
	if !reflect.DeepEqual(args, want) {
		t.Errorf("Args = %#v, want %#v", args, want)
	}
	// The argument is a copy: the caller's driver may keep it.
	args[0].([]string)[0] = "changed"
	if s.Values["region"][0] != "eu" {
		t.Errorf("changing an argument changed the selection")
	}

	// No value: NULL for a single-valued variable, an empty array (never
	// nil, which would bind NULL) for a multi-valued one.
	s = mustSelect(t, d, "var-region=", nil)
	args, err = Args(d, s, []string{"customer", "region"}, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if args[0] != nil {
		t.Errorf("customer without options: got %#v, want nil", args[0])
	}
	if r, ok := args[1].([]string); !ok || r == nil || len(r) != 0 {
		t.Errorf("no region: got %#v, want []string{}", args[1])
	}

	// Absolute times are the same instants whatever the clock.
	s = mustSelect(t, d, "from=2026-12-01T00:00:00Z&to=1796169600000", nil)
	args, err = Args(d, s, []string{"from", "to"}, testNow.Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if !args[0].(time.Time).Equal(time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)) || !args[1].(time.Time).Equal(time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("absolute range: got %v, want 2026-12-01 to 2026-12-02", args)
	}
}

func TestArgsRefuses(t *testing.T) {
	t.Parallel()
	d := salesDashboard()
	s := mustSelect(t, d, "", nil)
	for _, tc := range []struct {
		about  string
		d      *panel.Dashboard
		s      Selection
		params []string
		want   string
	}{
		{"unknown name", d, s, []string{"region", "nope"}, "parameter :nope: no such variable"},
		{"no time range", &panel.Dashboard{}, Selection{}, []string{"from"}, "parameter :from: the dashboard has no time range"},
		{"selection without the range", d, Selection{Values: s.Values}, []string{"to"}, "no time range"},
		{"upstream selection", d, Selection{Values: map[string][]string{"region": {"eu"}}, HasTime: true}, []string{"region", "customer"}, "parameter :customer: no value chosen"},
	} {
		if _, err := Args(tc.d, tc.s, tc.params, testNow); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error with %q", tc.about, err, tc.want)
		}
	}
	// No params, no arguments.
	if args, err := Args(d, s, nil, testNow); err != nil || len(args) != 0 {
		t.Errorf("no params: got %v, %v", args, err)
	}
}

// FuzzSelect feeds arbitrary addresses to Select: it must never panic,
// refuse only with an InputError that is safe to show, and otherwise return
// a canonical selection that every round trip preserves.
func FuzzSelect(f *testing.F) {
	for _, q := range []string{
		"",
		"var-region=us&var-region=eu&var-customer=dyn&var-q=hi&from=now-360m&to=now",
		"var-q=x%27%29%3B+DROP+TABLE+t%3B+--&var-env=%241",
		"var-region=%3Aother&var-q=%00",
		"from=now-99999999y",
		"from=now&to=now-1h",
		"var-env=prod&var-env=staging",
		"var-region=&var-env=",
		"var-q=%FF%FE",
		"from=1764756000000&to=2030-01-01T00:00:00%2B14:00",
		"var-unknown=1&var-=&foo",
	} {
		f.Add(q, "")
	}
	f.Add("var-region=eu", "us")
	f.Add("", "x'); DROP TABLE t; --")
	f.Fuzz(func(t *testing.T, query, locked string) {
		q, err := url.ParseQuery(query)
		if err != nil {
			return
		}
		var lock map[string][]string
		if locked != "" {
			lock = map[string][]string{"region": strings.Split(locked, ",")}
		}
		d := salesDashboard()
		r := &optionsRecorder{}
		s, err := selectAt(d, q, lock, r.options, testNow)
		if err != nil {
			var ie *InputError
			if !errors.As(err, &ie) {
				t.Fatalf("Select(%q): %v is not an InputError", query, err)
			}
			checkSafeMessage(t, err.Error(), "")
			return
		}
		if len(s.Values) != len(d.Variables) {
			t.Fatalf("Select(%q): %d entries for %d variables", query, len(s.Values), len(d.Variables))
		}
		for _, v := range d.Variables {
			vals := s.Values[v.Name]
			if vals == nil || (!v.Multi && len(vals) > 1) || (v.Multi && !slices.IsSorted(vals)) {
				t.Fatalf("Select(%q): %s = %#v", query, v.Name, vals)
			}
		}
		key := s.Key()
		back, err := ParseKey(key)
		if err != nil || !reflect.DeepEqual(back, s) {
			t.Fatalf("Select(%q): ParseKey(%q) = %+v, %v; want %+v", query, key, back, err, s)
		}
		if lock == nil {
			again, err := selectAt(d, s.Query(), nil, r.options, testNow)
			if err != nil || again.Key() != key {
				t.Fatalf("Select(%q): Select(Query()) = %q, %v; want %q", query, again.Key(), err, key)
			}
		}
		if _, err := Args(d, s, []string{"region", "customer", "q", "env", "from", "to"}, testNow); err != nil {
			t.Fatalf("Select(%q): Args: %v", query, err)
		}
	})
}

// TestSelectManyOptions: with many options the values are looked up in a
// set; the answers must be the same as with few.
func TestSelectManyOptions(t *testing.T) {
	t.Parallel()
	options := make([]string, 1000)
	for i := range options {
		options[i] = fmt.Sprintf("o%03d", i)
	}
	d := &panel.Dashboard{Variables: []panel.Variable{
		{Name: "one", Kind: panel.ListVariable, Options: options},
		{Name: "many", Kind: panel.ListVariable, Options: options, Multi: true},
	}}
	q := url.Values{"var-one": {"o999"}}
	for i := 999; i > 899; i-- {
		q.Add("var-many", options[i])
	}
	s, err := selectAt(d, q, nil, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Values["one"], []string{"o999"}) || !slices.Equal(s.Values["many"], options[900:]) {
		t.Errorf("got %v", s.Values)
	}
	for _, bad := range []url.Values{
		{"var-one": {"o1000"}},
		{"var-many": {"o001", "o1000"}},
	} {
		_, err := selectAt(d, bad, nil, nil, testNow)
		var ie *InputError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), `"o1000" is not one of its options`) {
			t.Errorf("Select(%v): got %v, want o1000 refused", bad, err)
		}
	}
}
