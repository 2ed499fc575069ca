package provision

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
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
	if f.Refresh != "" && pattern(refreshPattern).MatchString(f.Refresh) {
		d, err := time.ParseDuration(f.Refresh)
		if err != nil || d < minRefresh || d > maxRefresh {
			at("refresh", "must be between 1s and 24h, got %s", f.Refresh)
		}
	}
	if n := jsonbSize(f.Dashboard().Variables); n > maxJSONBytes {
		at("variables", "take %d bytes as JSON, at most %d allowed", n, maxJSONBytes)
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
		checkThresholds(at, path+".options.thresholds", p.Options.Thresholds)
		if err := panel.CheckGap(p.Options.Gap); err != nil {
			at(path+".options.gap", "%v", err)
		}
		seen := map[string]bool{}
		for j, c := range p.Options.Columns {
			cp := fmt.Sprintf("%s.options.columns[%d]", path, j)
			if seen[c.Name] {
				at(cp+".name", "column %q is formatted twice", c.Name)
			}
			seen[c.Name] = true
			checkThresholds(at, cp+".thresholds", c.Thresholds)
		}
		if n := jsonbSize(p.Options); n > maxJSONBytes {
			at(path+".options", "take %d bytes as JSON, at most %d allowed", n, maxJSONBytes)
		}
	}
	return probs
}

// checkVariables applies the rules of variables and the time range, which
// are variables.Check's, as the server applies them. Its messages name what
// they are about, and that gives the line. A line where earlier has a
// problem already (a missing key, a kind that is not one) gets no second
// message about the same thing.
func checkVariables(name string, f *File, pos *positions, earlier []Problem) []Problem {
	var probs []Problem
	for _, err := range variables.Check(f.Dashboard()) {
		msg := err.Error()
		line := pos.line(checkPath(msg, f))
		if !slices.ContainsFunc(earlier, func(p Problem) bool { return p.Line == line }) {
			probs = append(probs, Problem{File: name, Line: line, Msg: msg})
		}
	}
	return probs
}

// refreshPattern is File.Refresh's pattern.
const refreshPattern = `^([0-9]+h)?([0-9]+m)?([0-9]+s)?$`

// checkPath finds the value a message of variables.Check is about:
// "variable region: sql uses ...", "panel revenue: sql ...", "time zone
// ...", "time range: from: ...".
func checkPath(msg string, f *File) string {
	switch {
	case strings.HasPrefix(msg, "variable "):
		about := strings.TrimPrefix(msg, "variable ")
		i, rest := -1, ""
		for j, v := range f.Variables {
			for _, ref := range []string{v.Name, strconv.Quote(v.Name)} {
				if strings.HasPrefix(about, ref+":") || strings.HasPrefix(about, ref+" ") {
					r := strings.TrimLeft(about[len(ref):], ": ")
					if i < 0 || strings.HasPrefix(r, "is declared twice") {
						i, rest = j, r // a repeated name is at its second declaration
					}
				}
			}
		}
		if i < 0 {
			return "variables"
		}
		path := fmt.Sprintf("variables[%d]", i)
		for _, k := range []struct{ prefix, key string }{
			{"sql", "sql"}, {"label", "label"}, {"default", "default"}, {"option", "options"}, {"kind", "kind"}, {"the name", "name"},
		} {
			if strings.HasPrefix(rest, k.prefix) {
				return path + "." + k.key
			}
		}
		return path
	case strings.HasPrefix(msg, "panel "):
		for i, p := range f.Panels {
			if strings.HasPrefix(msg, "panel "+p.Slug+":") {
				return fmt.Sprintf("panels[%d].sql", i)
			}
		}
		return "panels"
	case strings.HasPrefix(msg, "time zone"):
		return "time_zone"
	case strings.HasPrefix(msg, "time range: from:"):
		return "time.from"
	case strings.HasPrefix(msg, "time range: to:"):
		return "time.to"
	case strings.HasPrefix(msg, "time range"):
		return "time"
	case strings.Contains(msg, "variables"):
		return "variables"
	}
	return ""
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

// checkThresholds requires steps in strictly ascending order of value, as
// a reader of the file expects them (a value takes the colour of the
// highest step it reaches).
func checkThresholds(at func(path, format string, args ...any), path string, t *panel.Thresholds) {
	if t == nil {
		return
	}
	for i := 1; i < len(t.Steps); i++ {
		if !(t.Steps[i].Value > t.Steps[i-1].Value) {
			at(fmt.Sprintf("%s.steps[%d].value", path, i), "%g must be above the step before it (%g): steps go in ascending order",
				t.Steps[i].Value, t.Steps[i-1].Value)
		}
	}
}
