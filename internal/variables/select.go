package variables

import (
	"errors"
	"fmt"
	"maps"
	"net/url"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/livedash/dashboard/internal/panel"
)

// The limits on what a viewer may send for one variable.
const (
	// MaxValueBytes is the longest value, in bytes.
	MaxValueBytes = 1024
	// MaxValues is the most values one variable may be given.
	MaxValues = 100
)

// Selection is one viewer's choice on a dashboard: a value list for every
// declared variable and, when the dashboard has a time range, its two ends.
// With the dashboard it makes a view: viewers with equal Keys share the
// queries and renders.
type Selection struct {
	// Values holds, after Select, an entry for every declared variable: one
	// value for a single-valued variable (none when it has no options to
	// take a default from), the chosen values sorted and without
	// duplicates for a multi-valued one (possibly none). Never nil slices.
	Values map[string][]string
	// From and To are the chosen range; they mean something only when
	// HasTime is set.
	From, To Time
	// HasTime says the dashboard has a time range.
	HasTime bool
}

// OptionsFunc returns the options of a query-backed variable: the first
// column of its SQL run with the values chosen for the variables declared
// before it (upstream holds only those, and the time range). The caller
// runs the query, with Rewrite and Args; this package does no I/O.
type OptionsFunc func(v *panel.Variable, upstream Selection) ([]string, error)

// Select applies a viewer's address to dashboard d and returns the choice.
// The address names variables as var-<name> and the time range as from and
// to (Grafana's convention). Variables are settled in declaration order, so
// a query-backed variable's options may depend on the ones before it.
//
//   - A name the dashboard does not declare is ignored, and so are from and
//     to on a dashboard without a time range: a renamed variable must not
//     break a kiosk's bookmark.
//   - A variable the address does not name takes its Default. Default
//     values that are not among the current options are dropped; an empty
//     (or wholly dropped) default means the first option of a list or
//     query variable, and "" for a text variable. With no options a
//     single-valued variable has no value and a multi-valued one an empty
//     list.
//   - An empty value (var-region=) is "no choice" for a single-valued list
//     or query variable without an empty option: the default applies. A
//     multi-valued variable never holds "": the empty values are dropped, so
//     var-region= alone chooses nothing (what a form of check boxes sends
//     with a hidden empty field when none is checked).
//   - locked (from an access token) fixes variables: their values replace
//     whatever the address says, silently, and they are what later query
//     variables see. A locked name the dashboard does not declare is an
//     error, so a renamed variable never frees what a token fixed.
//
// A refused choice is an *InputError: a value over MaxValueBytes, more than
// MaxValues values, invalid UTF-8 or a control character, several values
// for a single-valued variable, a value outside a list or query variable's
// options, a malformed time, or from not before to (both resolved at the
// current time rounded to the dashboard's refresh interval, in its zone).
// An error from opts is returned as it is.
func Select(d *panel.Dashboard, q url.Values, locked map[string][]string, opts OptionsFunc) (Selection, error) {
	return selectAt(d, q, locked, opts, time.Now())
}

func selectAt(d *panel.Dashboard, q url.Values, locked map[string][]string, opts OptionsFunc, now time.Time) (Selection, error) {
	s := Selection{Values: make(map[string][]string, len(d.Variables))}
	for _, name := range slices.Sorted(maps.Keys(locked)) {
		if d.Variable(name) == nil {
			return Selection{}, inputError(name, "fixed by the access token, but the dashboard declares no such variable")
		}
	}
	if d.Time != nil {
		if err := selectTime(d, q, now, &s); err != nil {
			return Selection{}, err
		}
	}
	for i := range d.Variables {
		v := &d.Variables[i]
		var options []string
		switch v.Kind {
		case panel.ListVariable:
			options = v.Options
		case panel.QueryVariable:
			if opts == nil {
				return Selection{}, fmt.Errorf("variable %s: no way to run its query", v.Name)
			}
			upstream := s
			upstream.Values = maps.Clone(s.Values)
			var err error
			if options, err = opts(v, upstream); err != nil {
				return Selection{}, err
			}
		case panel.TextVariable:
		default:
			return Selection{}, fmt.Errorf("variable %s: unknown kind %q", v.Name, v.Kind)
		}
		given, isLocked := locked[v.Name]
		present := isLocked
		if !isLocked {
			given, present = q["var-"+v.Name]
		}
		vals, err := choose(v, options, given, present, isLocked)
		if err != nil {
			return Selection{}, err
		}
		s.Values[v.Name] = vals
	}
	return s, nil
}

// selectTime sets s's time range from the address or d's default.
func selectTime(d *panel.Dashboard, q url.Values, now time.Time, s *Selection) error {
	from, fromURL, err := pickTime("from", q, d.Time.From)
	if err != nil {
		return err
	}
	to, toURL, err := pickTime("to", q, d.Time.To)
	if err != nil {
		return err
	}
	now, loc := RoundNow(now, d.RefreshInterval()), Location(d.TimeZone)
	if !from.Resolve(now, loc).Before(to.Resolve(now, loc)) {
		reason := fmt.Sprintf("%s is not before to %s", quote(from.String()), quote(to.String()))
		if !fromURL && !toURL {
			return fmt.Errorf("dashboard time range: from %s", reason)
		}
		return &InputError{Name: "from", Reason: reason}
	}
	s.HasTime, s.From, s.To = true, from, to
	return nil
}

// pickTime returns the address's value for name (from or to), or def when
// the address has none or an empty one, and whether it came from the
// address.
func pickTime(name string, q url.Values, def string) (Time, bool, error) {
	vals := q[name]
	if len(vals) > 1 {
		return Time{}, false, inputError(name, "takes one value, got %d", len(vals))
	}
	if len(vals) == 1 && vals[0] != "" {
		if reason := badValue(vals[0]); reason != "" {
			return Time{}, false, &InputError{Name: name, Reason: reason}
		}
		t, err := ParseTime(vals[0])
		if err != nil {
			return Time{}, false, &InputError{Name: name, Reason: err.Error()}
		}
		return t, true, nil
	}
	t, err := ParseTime(def)
	if err != nil {
		return Time{}, false, fmt.Errorf("dashboard time range: %s: %w", name, err)
	}
	return t, false, nil
}

// choose returns v's values given its current options and what the address
// or the token gave (present says whether either named v at all).
func choose(v *panel.Variable, options, given []string, present, locked bool) ([]string, error) {
	if !present {
		return defaults(v, options), nil
	}
	if len(given) > MaxValues {
		return nil, inputError(v.Name, "more than %d values (%d)", MaxValues, len(given))
	}
	for _, g := range given {
		if reason := badValue(g); reason != "" {
			return nil, &InputError{Name: v.Name, Reason: reason}
		}
	}
	// A query may offer many options and a viewer send 100 values: look
	// them up in a set rather than scanning the options for each value.
	var set map[string]bool
	offered := func(val string) bool {
		switch {
		case v.Kind == panel.TextVariable:
			return true
		case len(options) <= 16:
			return slices.Contains(options, val)
		case set == nil:
			set = make(map[string]bool, len(options))
			for _, o := range options {
				set[o] = true
			}
		}
		return set[val]
	}
	if v.Multi {
		vals := sortedSet(given)
		for _, val := range vals {
			if !offered(val) {
				return nil, notOffered(v.Name, val, locked)
			}
		}
		return vals, nil
	}
	switch {
	case len(given) == 0:
		return nil, inputError(v.Name, "fixed by the access token to no value, but it takes one")
	case len(given) > 1:
		return nil, inputError(v.Name, "takes one value, got %d", len(given))
	case offered(given[0]):
		return []string{given[0]}, nil
	case given[0] == "" && !locked:
		return defaults(v, options), nil
	default:
		return nil, notOffered(v.Name, given[0], locked)
	}
}

func notOffered(name, val string, locked bool) error {
	if locked {
		return inputError(name, "the access token fixes it to %s, which is not one of its options", quote(val))
	}
	return inputError(name, "%s is not one of its options", quote(val))
}

// defaults returns v's values when nothing chose them.
func defaults(v *panel.Variable, options []string) []string {
	if v.Kind == panel.TextVariable {
		switch {
		case v.Multi:
			return sortedSet(v.Default)
		case len(v.Default) > 0:
			return []string{v.Default[0]}
		default:
			return []string{""}
		}
	}
	if v.Multi {
		// A multi-valued variable never holds "".
		options = slices.DeleteFunc(slices.Clone(options), func(o string) bool { return o == "" })
	}
	var chosen []string
	for _, d := range v.Default {
		if slices.Contains(options, d) {
			chosen = append(chosen, d)
		}
	}
	switch {
	case len(chosen) > 0 && v.Multi:
		return sortedSet(chosen)
	case len(chosen) > 0:
		return chosen[:1]
	case len(options) > 0:
		return []string{options[0]}
	default:
		return []string{}
	}
}

// sortedSet returns the non-empty values of vals, sorted, each once; never
// nil.
func sortedSet(vals []string) []string {
	out := make([]string, 0, len(vals))
	for _, v := range vals {
		if v != "" {
			out = append(out, v)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// badValue says what is wrong with a value whatever its variable, or "".
// Control characters are refused because no picker or text field makes
// them and a NUL cannot be bound as Postgres text at all.
func badValue(s string) string {
	if len(s) > MaxValueBytes {
		return fmt.Sprintf("value longer than %d bytes (%d)", MaxValueBytes, len(s))
	}
	if !utf8.ValidString(s) {
		return fmt.Sprintf("value %s is not valid UTF-8", quote(s))
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return fmt.Sprintf("value %s contains a control character (%U)", quote(s), r)
		}
	}
	return ""
}

// Key returns the canonical encoding of s: the same choice gives the same
// bytes, and ParseKey reads it back. It has the form of a query string,
// from and to first (canonical Time forms), then var-<name> for each
// variable in name order, a value per pair (url-escaped; several values
// sorted, each once, as Select leaves them). A variable without values is its
// bare name (var-region), so "no value" differs from the empty value
// (var-q=). The key of a dashboard without variables or time range is "".
func (s Selection) Key() string {
	var b strings.Builder
	pair := func(name string, value *string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(url.QueryEscape(name))
		if value != nil {
			b.WriteByte('=')
			b.WriteString(url.QueryEscape(*value))
		}
	}
	if s.HasTime {
		from, to := s.From.String(), s.To.String()
		pair("from", &from)
		pair("to", &to)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Values)) {
		vals := s.Values[name]
		if len(vals) > 1 && !slices.IsSorted(vals) || hasDup(vals) {
			vals = slices.Compact(slices.Sorted(slices.Values(vals)))
		}
		if len(vals) == 0 {
			pair("var-"+name, nil)
		}
		for i := range vals {
			pair("var-"+name, &vals[i])
		}
	}
	return b.String()
}

// hasDup reports whether sorted vals repeat a value.
func hasDup(vals []string) bool {
	for i := 1; i < len(vals); i++ {
		if vals[i] == vals[i-1] {
			return true
		}
	}
	return false
}

// ParseKey returns the Selection whose Key is key. It accepts only
// canonical keys, so that one choice never has two keys.
func ParseKey(key string) (Selection, error) {
	s := Selection{Values: map[string][]string{}}
	if key == "" {
		return s, nil
	}
	var from, to *Time
	for part := range strings.SplitSeq(key, "&") {
		rawName, rawValue, hasValue := strings.Cut(part, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return Selection{}, fmt.Errorf("view key: %w", err)
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return Selection{}, fmt.Errorf("view key: %w", err)
		}
		switch {
		case name == "from" || name == "to":
			if !hasValue {
				return Selection{}, fmt.Errorf("view key: %s without a value", name)
			}
			t, err := ParseTime(value)
			if err != nil {
				return Selection{}, fmt.Errorf("view key: %s: %w", name, err)
			}
			if name == "from" {
				from = &t
			} else {
				to = &t
			}
		case strings.HasPrefix(name, "var-") && len(name) > len("var-"):
			name = name[len("var-"):]
			vals, ok := s.Values[name]
			if !ok {
				vals = []string{}
			}
			if hasValue {
				vals = append(vals, value)
			}
			s.Values[name] = vals
		default:
			return Selection{}, fmt.Errorf("view key: unknown name %s", quote(name))
		}
	}
	if (from == nil) != (to == nil) {
		return Selection{}, errors.New("view key: from and to go together")
	}
	if from != nil {
		s.HasTime, s.From, s.To = true, *from, *to
	}
	if s.Key() != key {
		return Selection{}, errors.New("view key: not in canonical form")
	}
	return s, nil
}

// Query returns s as address parameters, for links and pickers; Select
// reads them back as s while the options stay the same. A variable without
// values is written as one empty value (var-region=), which Select takes as
// "nothing chosen" for a multi-valued variable and as "no choice" for a
// single-valued one.
func (s Selection) Query() url.Values {
	q := make(url.Values, len(s.Values)+2)
	if s.HasTime {
		q.Set("from", s.From.String())
		q.Set("to", s.To.String())
	}
	for name, vals := range s.Values {
		if len(vals) == 0 {
			q["var-"+name] = []string{""}
		} else {
			q["var-"+name] = slices.Clone(vals)
		}
	}
	return q
}

// Clock reports whether the choice reads the clock (an end of the time
// range is relative to now): panels that use :from or :to must then run
// again every refresh interval, since their arguments move.
func (s Selection) Clock() bool {
	return s.HasTime && (s.From.Relative() || s.To.Relative())
}

// Declared returns the names panel and variable SQL of d may use as :name
// placeholders, in the form Rewrite takes: its variables, and from and to
// when it has a time range. (A variable's SQL may use only the variables
// before it; Check says so.)
func Declared(d *panel.Dashboard) func(name string) bool {
	return func(name string) bool {
		if name == "from" || name == "to" {
			return d.Time != nil
		}
		return d.Variable(name) != nil
	}
}

// Args returns the bind arguments for a query whose placeholders Rewrite
// named params, in params' order: a single-valued variable as a string (nil
// when it has no value, which binds NULL), a multi-valued one as a
// []string (one text[] parameter; empty, never nil, when nothing is
// chosen), and from and to as time.Time, resolved in d's time zone at now
// rounded to d's refresh interval: down for from, up for to (as Grafana
// rounds now/d), so that every server binds the same instants and a range
// that ends at now holds the rows written since the last boundary. A name that is neither a
// variable of d nor, when d has a time range, from or to, is an error, and
// so is a variable without an entry in s.
func Args(d *panel.Dashboard, s Selection, params []string, now time.Time) ([]any, error) {
	args := make([]any, len(params))
	rounded, loc := RoundNow(now, d.RefreshInterval()), Location(d.TimeZone)
	for i, p := range params {
		if p == "from" || p == "to" {
			if d.Time == nil || !s.HasTime {
				return nil, fmt.Errorf("parameter :%s: the dashboard has no time range", p)
			}
			t, at := s.From, rounded
			if p == "to" {
				t, at = s.To, rounded.Add(d.RefreshInterval())
			}
			args[i] = t.Resolve(at, loc)
			continue
		}
		v := d.Variable(p)
		if v == nil {
			return nil, fmt.Errorf("parameter :%s: no such variable", p)
		}
		vals, ok := s.Values[p]
		switch {
		case !ok:
			return nil, fmt.Errorf("parameter :%s: no value chosen", p)
		case v.Multi:
			args[i] = append([]string{}, vals...)
		case len(vals) == 0:
			args[i] = nil
		default:
			args[i] = vals[0]
		}
	}
	return args, nil
}
