package variables

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/livedash/dashboard/internal/panel"
)

// The limits on what a dashboard may declare.
const (
	// MaxVariables is the most variables a dashboard may declare.
	MaxVariables = 20
	// MaxOptions is the most options a list variable may have.
	MaxOptions = 1000
	// MaxLabel is the longest label, in characters.
	MaxLabel = 200
)

// Check returns every way d's variables and time range break the rules, for
// lint and apply; nil when there is none. Each error names the variable (or
// the time range, the time zone or the panel) and says what is wrong; the
// caller adds where it was written. It checks:
//
//   - at most MaxVariables variables; names match ^[a-z_][a-z0-9_]{0,62}$,
//     are unique, and are not from or to (the time range's names);
//   - the kind: a query variable has SQL and no options; a list variable
//     1 to MaxOptions distinct options and no SQL; a text variable neither;
//     every option and default is a value a viewer could send (at most
//     MaxValueBytes, UTF-8, no control characters), and a multi-valued
//     variable has no empty option or default (it never holds "");
//   - at most MaxValues defaults, at most one for a single-valued variable,
//     and a list variable's defaults among its options;
//   - labels of at most MaxLabel characters;
//   - a variable's SQL refers only to variables declared before it, and to
//     :from and :to only when the dashboard has a time range; a panel's SQL
//     to :from and :to likewise (Rewrite's rules: a :name of no variable is
//     left alone and so not caught here);
//   - the time zone is an IANA zone name;
//   - the time range's ends parse and from is before to (see checkRange).
func Check(d *panel.Dashboard) []error {
	return check(d, time.Now())
}

func check(d *panel.Dashboard, now time.Time) []error {
	var errs []error
	add := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if n := len(d.Variables); n > MaxVariables {
		add("%d variables: at most %d", n, MaxVariables)
	}
	index := make(map[string]int, len(d.Variables))
	for i := range d.Variables {
		v := &d.Variables[i]
		name := ref(v.Name)
		switch {
		case !validName(v.Name):
			add("variable %s: the name must match %s", name, namePattern)
		case v.Name == "from" || v.Name == "to":
			add("variable %s: the names from and to are the time range's", name)
		}
		if _, dup := index[v.Name]; dup {
			add("variable %s is declared twice", name)
		} else {
			index[v.Name] = i
		}
		if n := utf8.RuneCountInString(v.Label); n > MaxLabel {
			add("variable %s: label of %d characters: at most %d", name, n, MaxLabel)
		}
		errs = append(errs, checkKind(v)...)
		errs = append(errs, checkDefaults(v)...)
	}

	known := func(n string) bool {
		_, ok := index[n]
		return ok || n == "from" || n == "to"
	}
	for i := range d.Variables {
		v := &d.Variables[i]
		if v.Kind != panel.QueryVariable || v.SQL == "" {
			continue
		}
		name := ref(v.Name)
		names, err := Names(v.SQL, known)
		if err != nil {
			add("variable %s: sql: %v", name, err)
			continue
		}
		for _, n := range names {
			switch j := index[n]; {
			case n == "from" || n == "to":
				if d.Time == nil {
					add("variable %s: sql uses :%s, but the dashboard has no time range", name, n)
				}
			case j == i:
				add("variable %s: sql uses :%s, its own value", name, n)
			case j > i:
				add("variable %s: sql uses :%s, but variable %s is declared after %s", name, n, n, name)
			}
		}
	}
	for _, p := range d.Panels {
		names, err := Names(p.SQL, known)
		if err != nil {
			add("panel %s: sql: %v", ref(p.Slug), err)
			continue
		}
		for _, n := range names {
			if (n == "from" || n == "to") && d.Time == nil {
				add("panel %s: sql uses :%s, but the dashboard has no time range", ref(p.Slug), n)
			}
		}
	}

	loc, ok := lookupZone(d.TimeZone)
	if !ok {
		add("time zone %s: not an IANA zone name", quote(d.TimeZone))
	}
	if d.Time != nil {
		from, errFrom := ParseTime(d.Time.From)
		if errFrom != nil {
			add("time range: from: %v", errFrom)
		}
		to, errTo := ParseTime(d.Time.To)
		if errTo != nil {
			add("time range: to: %v", errTo)
		}
		if errFrom == nil && errTo == nil && !checkRange(from, to, loc, now) {
			add("time range: from %s is not always before to %s", quote(from.String()), quote(to.String()))
		}
	}
	return errs
}

func checkKind(v *panel.Variable) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("variable %s: "+format, append([]any{ref(v.Name)}, args...)...))
	}
	switch v.Kind {
	case panel.QueryVariable:
		if strings.TrimSpace(v.SQL) == "" {
			add("a query variable needs sql")
		}
		if len(v.Options) > 0 {
			add("a query variable takes its options from sql, not options")
		}
	case panel.ListVariable:
		if v.SQL != "" {
			add("a list variable takes options, not sql")
		}
		switch n := len(v.Options); {
		case n == 0:
			add("a list variable needs options")
		case n > MaxOptions:
			add("%d options: at most %d", n, MaxOptions)
		}
		seen := make(map[string]bool, len(v.Options))
		for i, o := range v.Options {
			switch {
			case badValue(o) != "":
				add("option %d: %s", i+1, badValue(o))
			case o == "" && v.Multi:
				add("option %d is empty: a multi-valued variable never holds the empty value", i+1)
			case seen[o]:
				add("option %s is listed twice", quote(o))
			}
			seen[o] = true
		}
	case panel.TextVariable:
		if v.SQL != "" || len(v.Options) > 0 {
			add("a text variable takes neither sql nor options")
		}
	default:
		add("kind %s: want query, list or text", quote(string(v.Kind)))
	}
	return errs
}

func checkDefaults(v *panel.Variable) []error {
	var errs []error
	add := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("variable %s: "+format, append([]any{ref(v.Name)}, args...)...))
	}
	switch n := len(v.Default); {
	case n > MaxValues:
		add("%d defaults: at most %d", n, MaxValues)
		return errs
	case n > 1 && !v.Multi:
		add("%d defaults, but it takes one value (multi is not set)", n)
	}
	for i, d := range v.Default {
		switch {
		case badValue(d) != "":
			add("default %d: %s", i+1, badValue(d))
		case d == "" && v.Multi:
			add("default %d is empty: a multi-valued variable never holds the empty value", i+1)
		case v.Kind == panel.ListVariable && !slices.Contains(v.Options, d):
			add("default %s is not one of its options", quote(d))
		}
	}
	return errs
}

// checkRange reports whether from is before to wherever and whenever the
// range is resolved. Two absolute times, or two offsets in the same kind of
// unit, compare without a clock. A fixed offset against a calendar one
// (now-30d against now-1M) depends on the month and on daylight saving
// time, so both are resolved at every hour of four years (a leap year, every
// month length, every change of offset) in loc. An absolute time against a
// relative one can only be compared at some instant; it is now, so a range
// that starts at a date and ends at now passes from that date on.
func checkRange(from, to Time, loc *time.Location, now time.Time) bool {
	switch {
	case !from.abs && !to.abs && from.months == 0 && to.months == 0:
		return from.sec < to.sec
	case !from.abs && !to.abs && from.sec == 0 && to.sec == 0:
		return from.months < to.months
	case !from.abs && !to.abs:
		start := time.Date(2024, 1, 1, 0, 0, 0, 0, loc)
		end := start.AddDate(4, 0, 0)
		for at := start; at.Before(end); at = at.Add(time.Hour) {
			if !from.Resolve(at, loc).Before(to.Resolve(at, loc)) {
				return false
			}
		}
		return true
	default:
		return from.Resolve(now, loc).Before(to.Resolve(now, loc))
	}
}
