package provision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// The limits of the schema (migrations 0003 and 0009) that the tags of File
// cannot say.
const (
	maxJSONBytes   = 65536 // variables and a panel's options, as jsonb text
	minRefresh     = time.Second
	maxRefresh     = 24 * time.Hour
	maxSourceChars = 1024 // source_file
)

// check applies the rules that need more than one value, or more than a
// tag, to a decoded file: every problem the database would refuse, and
// those that would only show on the page.
func check(name string, f *File, pos *positions) []Problem {
	var probs []Problem
	at := func(path, format string, args ...any) {
		probs = append(probs, Problem{File: name, Line: pos.line(path), Msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if len([]rune(name)) > maxSourceChars {
		probs = append(probs, Problem{File: name, Msg: fmt.Sprintf("the file's path has more than %d characters", maxSourceChars)})
	}
	if f.Title != "" && strings.TrimSpace(f.Title) == "" {
		at("title", "must not be blank")
	}
	if f.TimeZone != "" {
		if f.TimeZone == "Local" {
			at("time_zone", "Local depends on the server; name a zone such as Europe/Paris or UTC")
		} else if _, err := time.LoadLocation(f.TimeZone); err != nil {
			at("time_zone", "%q is not a time zone known here (IANA names such as Europe/Paris)", f.TimeZone)
		}
	}
	if f.Refresh != "" && pattern(refreshPattern).MatchString(f.Refresh) {
		d, err := time.ParseDuration(f.Refresh)
		if err != nil || d < minRefresh || d > maxRefresh {
			at("refresh", "must be between 1s and 24h, got %s", f.Refresh)
		}
	}
	if n := jsonbSize(f.Dashboard().Variables); n > maxJSONBytes {
		at("variables", "take %d bytes as JSON, at most %d allowed", n, maxJSONBytes)
	}
	for i, v := range f.Variables {
		p := fmt.Sprintf("variables[%d]", i)
		switch panel.VariableKind(v.Kind) {
		case panel.QueryVariable:
			if strings.TrimSpace(v.SQL) == "" {
				at(p, "a query variable needs sql")
			}
			if len(v.Options) > 0 {
				at(p+".options", "a query variable takes its options from sql")
			}
		case panel.ListVariable:
			if len(v.Options) == 0 {
				at(p, "a list variable needs options")
			}
			if v.SQL != "" {
				at(p+".sql", "only a query variable has sql")
			}
		case panel.TextVariable:
			if v.SQL != "" || len(v.Options) > 0 {
				at(p, "a text variable has neither sql nor options")
			}
		}
	}
	first := make(map[string]int) // panel slug -> line
	for i, p := range f.Panels {
		path := fmt.Sprintf("panels[%d]", i)
		if p.Slug != "" {
			line := pos.line(path + ".slug")
			if l, dup := first[p.Slug]; dup {
				probs = append(probs, Problem{File: name, Line: line,
					Msg: fmt.Sprintf("%s.slug: panel %s is defined twice, at lines %d and %d", path, p.Slug, l, line)})
			} else {
				first[p.Slug] = line
			}
		}
		if p.Title != "" && strings.TrimSpace(p.Title) == "" {
			at(path+".title", "must not be blank")
		}
		if p.SQL != "" && strings.TrimSpace(p.SQL) == "" {
			at(path+".sql", "must not be blank")
		}
		for j, t := range p.DependsOn {
			if strings.TrimSpace(t) == "" {
				at(fmt.Sprintf("%s.depends_on[%d]", path, j), "must name a table")
			}
		}
		if n := jsonbSize(p.Options); n > maxJSONBytes {
			at(path+".options", "take %d bytes as JSON, at most %d allowed", n, maxJSONBytes)
		}
	}
	probs = append(probs, checkPlaceholders(name, f, pos)...)
	return probs
}

// refreshPattern is File.Refresh's pattern.
const refreshPattern = `^([0-9]+h)?([0-9]+m)?([0-9]+s)?$`

// checkPlaceholders rewrites every query's :name placeholders as the server
// will, so that unclosed quotes, positional parameters and the time range
// used without one are found without a database.
func checkPlaceholders(name string, f *File, pos *positions) []Problem {
	var probs []Problem
	d := f.Dashboard()
	for _, q := range queriesOf(d) {
		if _, _, err := variables.Rewrite(q.sql, q.declared); err != nil {
			probs = append(probs, Problem{File: name, Line: pos.line(q.path), Msg: fmt.Sprintf("%s: %v", q.path, err)})
			continue
		}
		if d.Time != nil {
			continue
		}
		timeParams, _ := variables.Names(q.sql, func(n string) bool {
			return (n == panel.FromParam || n == panel.ToParam) && !q.declared(n)
		})
		if len(timeParams) > 0 {
			probs = append(probs, Problem{File: name, Line: pos.line(q.path),
				Msg: fmt.Sprintf("%s: uses :%s, but the dashboard has no time range (time: {from: now-6h, to: now})", q.path, timeParams[0])})
		}
	}
	return probs
}

// query is one SQL text of a dashboard: a query variable's or a panel's.
type query struct {
	path     string // in the file: "variables[0].sql", "panels[2].sql"
	what     string // for people: "variable region", "panel revenue"
	sql      string
	declared func(string) bool // the :names it may use
	panel    *panel.Def        // nil for a variable
}

// queriesOf lists d's queries in file order: variables, then panels.
func queriesOf(d *panel.Dashboard) []query {
	var qs []query
	for i, v := range d.Variables {
		if v.Kind == panel.QueryVariable && v.SQL != "" {
			qs = append(qs, query{path: fmt.Sprintf("variables[%d].sql", i), what: "variable " + v.Name,
				sql: v.SQL, declared: declaredBefore(d, i)})
		}
	}
	for i, p := range d.Panels {
		if p.SQL != "" {
			qs = append(qs, query{path: fmt.Sprintf("panels[%d].sql", i), what: "panel " + p.Slug,
				sql: p.SQL, declared: declaredBefore(d, len(d.Variables)), panel: p})
		}
	}
	return qs
}

// declaredBefore says which names a query may use as :name: the variables
// declared before variable n (all of them for n = len(d.Variables), the
// panels), and :from and :to when the dashboard has a time range.
func declaredBefore(d *panel.Dashboard, n int) func(string) bool {
	return func(name string) bool {
		if d.Time != nil && (name == panel.FromParam || name == panel.ToParam) {
			return true
		}
		for _, v := range d.Variables[:n] {
			if v.Name == name {
				return true
			}
		}
		return false
	}
}

// jsonbSize is the length of v's jsonb text, which puts a space after each
// ':' and ',' that json.Marshal leaves out.
func jsonbSize(v any) int {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) != nil {
		return 0
	}
	data := bytes.TrimSpace(b.Bytes())
	n := len(data)
	inString, escaped := false, false
	for _, c := range data {
		switch {
		case escaped:
			escaped = false
		case inString && c == '\\':
			escaped = true
		case c == '"':
			inString = !inString
		case !inString && (c == ':' || c == ','):
			n++
		}
	}
	return n
}
