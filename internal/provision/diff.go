package provision

import (
	"fmt"
	"io"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/livedash/dashboard/internal/panel"
)

// Op is what apply does to a dashboard or a panel.
type Op int

// The operations of a Plan.
const (
	Keep   Op = iota // nothing: unchanged, or in the database only and not pruned
	Add              // insert
	Change           // update in place
	Remove           // delete
)

// Field is one setting that differs, rendered for people.
type Field struct {
	Name     string
	Old, New string
}

// PanelChange is what apply does to one panel.
type PanelChange struct {
	Op     Op
	Slug   string
	Fields []Field    // for Change
	Want   *panel.Def // nil for Remove
	Have   *panel.Def // nil for Add
}

// DashboardChange is what apply does to one dashboard.
type DashboardChange struct {
	Op   Op
	Slug string
	// File is the file the dashboard comes from; "" for one in the
	// database only.
	File string
	// Drift is set when the rows were edited (in SQL) since they were
	// applied from a file: their content no longer has the recorded hash.
	Drift bool
	// Row is set when the dashboard's own row is written: a setting
	// differs, or its source (file, content hash) is to be recorded. A
	// change of panels alone changes the hash too.
	Row    bool
	Fields []Field // dashboard settings that differ (Change)
	Panels []PanelChange
	Want   *Doc             // nil for Remove and database-only dashboards
	Have   *panel.Dashboard // nil for Add
}

// Plan is the difference between a directory and the database: what apply
// would do, dashboard by dashboard in slug order.
type Plan struct {
	Dashboards []DashboardChange
	// Playlists is what apply does to the playlists, in slug order
	// (DiffPlaylists).
	Playlists []PlaylistChange
	// Prune says whether dashboards missing from the directory are removed.
	Prune bool
}

// Empty reports whether apply has nothing to write.
func (p *Plan) Empty() bool {
	for _, d := range p.Dashboards {
		if d.Op != Keep {
			return false
		}
	}
	for _, c := range p.Playlists {
		if c.Op != Keep {
			return false
		}
	}
	return true
}

// Drifted returns the dashboards whose rows were edited since they were
// applied from a file.
func (p *Plan) Drifted() []string {
	var out []string
	for _, d := range p.Dashboards {
		if d.Drift {
			out = append(out, d.Slug)
		}
	}
	return out
}

// Diff compares the directory's dashboards (want) with the rows (have).
// Dashboards are matched by slug, panels by slug within their dashboard.
// A dashboard in the database only is removed when prune is set, and kept
// (and listed) otherwise.
func Diff(want *Set, have []*panel.Dashboard, prune bool) (*Plan, error) {
	plan := &Plan{Prune: prune}
	haveBySlug := make(map[string]*panel.Dashboard)
	for _, h := range have {
		haveBySlug[h.Slug] = h
	}
	seen := make(map[string]bool)
	for _, doc := range want.Docs {
		w := doc.Dashboard
		seen[w.Slug] = true
		c := DashboardChange{Slug: w.Slug, File: doc.File, Want: doc, Have: haveBySlug[w.Slug]}
		if c.Have == nil {
			c.Op, c.Row = Add, true
			for _, p := range w.Panels {
				c.Panels = append(c.Panels, PanelChange{Op: Add, Slug: p.Slug, Want: p})
			}
		} else {
			drift, err := drifted(c.Have)
			if err != nil {
				return nil, err
			}
			c.Drift = drift
			c.Fields = dashboardFields(w, c.Have)
			c.Panels = panelChanges(w.Panels, c.Have.Panels)
			panelsChange := slices.ContainsFunc(c.Panels, func(p PanelChange) bool { return p.Op != Keep })
			hs := c.Have.Source
			switch {
			case hs == nil:
				c.Fields = append(c.Fields, Field{Name: "source_file", Old: "(made in SQL)", New: doc.File})
			case hs.File != doc.File:
				c.Fields = append(c.Fields, Field{Name: "source_file", Old: hs.File, New: doc.File})
			case hs.Hash != w.Source.Hash && len(c.Fields) == 0 && !panelsChange:
				// The rows already match the file (edited in SQL to match
				// it): only the hash is recorded again.
				c.Fields = append(c.Fields, Field{Name: "source_hash", Old: short(hs.Hash), New: short(w.Source.Hash)})
			}
			c.Row = len(c.Fields) > 0 || hs.Hash != w.Source.Hash
			if c.Row || panelsChange {
				c.Op = Change
			}
		}
		plan.Dashboards = append(plan.Dashboards, c)
	}
	for _, h := range have {
		if seen[h.Slug] {
			continue
		}
		c := DashboardChange{Slug: h.Slug, Have: h}
		if h.Source != nil {
			c.File = h.Source.File
		}
		drift, err := drifted(h)
		if err != nil {
			return nil, err
		}
		c.Drift = drift
		if prune {
			c.Op = Remove
			for _, p := range h.Panels {
				c.Panels = append(c.Panels, PanelChange{Op: Remove, Slug: p.Slug, Have: p})
			}
		}
		plan.Dashboards = append(plan.Dashboards, c)
	}
	slices.SortStableFunc(plan.Dashboards, func(a, b DashboardChange) int { return strings.Compare(a.Slug, b.Slug) })
	return plan, nil
}

// drifted reports whether h came from a file and its content no longer has
// the hash recorded when it was applied.
func drifted(h *panel.Dashboard) (bool, error) {
	return driftedFrom(h.Source, func() (string, error) { return Hash(h) })
}

// driftedFrom reports whether rows applied from a file (src, nil for rows
// made in SQL) no longer have the hash recorded when they were applied;
// hash computes the one they have now.
func driftedFrom(src *panel.Source, hash func() (string, error)) (bool, error) {
	if src == nil || src.Hash == "" {
		return false, nil
	}
	now, err := hash()
	if err != nil {
		return false, err
	}
	return now != src.Hash, nil
}

// fields collects the fields that differ between what is and what a file
// wants, for diff's report.
type fields []Field

func (fs *fields) add(name, old, new string) {
	if old != new {
		*fs = append(*fs, Field{Name: name, Old: old, New: new})
	}
}

func dashboardFields(w, h *panel.Dashboard) []Field {
	var fs fields
	fs.add("title", h.Title, w.Title)
	fs.add("description", h.Description, w.Description)
	fs.add("visibility", visibility(h), visibility(w))
	fs.add("time_zone", h.TimeZone, w.TimeZone)
	fs.add("refresh", refresh(h), refresh(w))
	fs.add("max_refresh_hz", hz(h.MaxRefreshHz), hz(w.MaxRefreshHz))
	fs.add("position", strconv.Itoa(h.Position), strconv.Itoa(w.Position))
	fs.add("time", timeRange(h.Time), timeRange(w.Time))
	fs.add("variables", variablesText(h.Variables), variablesText(w.Variables))
	return fs
}

func panelChanges(want, have []*panel.Def) []PanelChange {
	var out []PanelChange
	haveBySlug := make(map[string]*panel.Def)
	for _, h := range have {
		haveBySlug[h.Slug] = h
	}
	wanted := make(map[string]bool)
	for _, w := range want {
		wanted[w.Slug] = true
		h := haveBySlug[w.Slug]
		if h == nil {
			out = append(out, PanelChange{Op: Add, Slug: w.Slug, Want: w})
			continue
		}
		c := PanelChange{Slug: w.Slug, Want: w, Have: h, Fields: panelFields(w, h)}
		if len(c.Fields) > 0 {
			c.Op = Change
		}
		out = append(out, c)
	}
	for _, h := range have {
		if !wanted[h.Slug] {
			out = append(out, PanelChange{Op: Remove, Slug: h.Slug, Have: h})
		}
	}
	return out
}

func panelFields(w, h *panel.Def) []Field {
	var fs fields
	fs.add("title", h.Title, w.Title)
	fs.add("kind", string(h.Kind), string(w.Kind))
	fs.add("sql", h.SQL, w.SQL)
	fs.add("position", strconv.Itoa(h.Position), strconv.Itoa(w.Position))
	fs.add("grid", fmt.Sprintf("%dx%d", h.Width, h.Height), fmt.Sprintf("%dx%d", w.Width, w.Height))
	fs.add("options", optionsText(h.Options), optionsText(w.Options))
	fs.add("depends_on", strings.Join(h.DependsOn, ", "), strings.Join(w.DependsOn, ", "))
	return fs
}

func visibility(d *panel.Dashboard) string {
	if d.Public {
		return "public"
	}
	return "private"
}

func refresh(d *panel.Dashboard) string {
	if d.Refresh == 0 {
		return "(default, " + formatDuration(panel.DefaultRefresh) + ")"
	}
	return formatDuration(d.Refresh)
}

func hz(f float64) string {
	if f == 0 {
		return "(server's)"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

func timeRange(t *panel.TimeRange) string {
	if t == nil {
		return "(none)"
	}
	return t.From + " to " + t.To
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return hash
}

// variablesText is the variables as their file would show them.
func variablesText(vs []panel.Variable) string {
	if len(vs) == 0 {
		return "(none)"
	}
	b, err := Marshal(&panel.Dashboard{Variables: vs, Public: true, TimeZone: "UTC"})
	if err != nil {
		return fmt.Sprint(vs)
	}
	s := string(b)
	if i := strings.Index(s, "variables:\n"); i >= 0 {
		s = s[i+len("variables:\n"):]
	}
	return s
}

// optionsText is the options as their file would show them.
func optionsText(o panel.Options) string {
	if reflect.ValueOf(o).IsZero() {
		return "(none)"
	}
	b, err := Marshal(&panel.Dashboard{Public: true, TimeZone: "UTC", Panels: []*panel.Def{{Width: 1, Height: 1, Options: o}}})
	if err != nil {
		return fmt.Sprint(o)
	}
	s := string(b)
	if i := strings.Index(s, "options: "); i >= 0 {
		s = strings.TrimSpace(s[i+len("options: "):])
	}
	return s
}

// Write prints the plan for people: one line per dashboard and panel that
// changes (+ added, ~ changed, - removed), each changed setting with its
// old and new value, a line diff for SQL and other text of several lines,
// and the dashboards with drift.
func (p *Plan) Write(w io.Writer) error {
	ew := &errWriter{w: w}
	for _, d := range p.Dashboards {
		from := ""
		if d.Drift {
			from = d.Have.Source.File
		}
		writeHead(ew, "dashboard", d.Slug, d.File, d.Op, d.Want == nil, d.Drift, from)
		writeFields(ew, "    ", d.Fields)
		for _, pc := range d.Panels {
			switch pc.Op {
			case Add:
				ew.printf("  + panel %s\n", pc.Slug)
			case Remove:
				ew.printf("  - panel %s\n", pc.Slug)
			case Change:
				ew.printf("  ~ panel %s\n", pc.Slug)
				writeFields(ew, "      ", pc.Fields)
			}
		}
	}
	writePlaylists(ew, p.Playlists)
	return ew.err
}

func writeFields(ew *errWriter, indent string, fs []Field) {
	for _, f := range fs {
		if !strings.Contains(f.Old, "\n") && !strings.Contains(f.New, "\n") {
			ew.printf("%s%s: %s -> %s\n", indent, f.Name, quoteIfNeeded(f.Old), quoteIfNeeded(f.New))
			continue
		}
		ew.printf("%s%s:\n", indent, f.Name)
		for _, l := range lineDiff(f.Old, f.New) {
			ew.printf("%s  %s\n", indent, l)
		}
	}
}

// quoteIfNeeded quotes values whose ends are blank, so that a changed
// trailing space can be seen.
func quoteIfNeeded(s string) string {
	if s == "" || strings.TrimSpace(s) != s {
		return strconv.Quote(s)
	}
	return s
}

// lineDiff returns the lines of a and b as a unified listing: "- " for
// lines only in a, "+ " for lines only in b, "  " for both (longest common
// subsequence; texts here are small).
func lineDiff(a, b string) []string {
	x, y := strings.Split(a, "\n"), strings.Split(b, "\n")
	lcs := make([][]int, len(x)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(y)+1)
	}
	for i := len(x) - 1; i >= 0; i-- {
		for j := len(y) - 1; j >= 0; j-- {
			if x[i] == y[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	var out []string
	i, j := 0, 0
	for i < len(x) || j < len(y) {
		switch {
		case i < len(x) && j < len(y) && x[i] == y[j]:
			out = append(out, "  "+x[i])
			i++
			j++
		case i < len(x) && (j == len(y) || lcs[i+1][j] >= lcs[i][j+1]):
			out = append(out, "- "+x[i])
			i++
		default:
			out = append(out, "+ "+y[j])
			j++
		}
	}
	return out
}

type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) printf(format string, args ...any) {
	if e.err == nil {
		_, e.err = fmt.Fprintf(e.w, format, args...)
	}
}

// writeHead prints the line of one dashboard or playlist (what) in a plan:
// its operation, the file it comes from, whether a kept one is absent
// from the folder, and drift from the rows applied from file from.
func writeHead(ew *errWriter, what, slug, file string, op Op, absent, drift bool, from string) {
	where := ""
	if file != "" {
		where = " (" + file + ")"
	}
	switch op {
	case Add:
		ew.printf("+ %s %s%s\n", what, slug, where)
	case Remove:
		ew.printf("- %s %s%s: not in the folder\n", what, slug, where)
	case Change:
		ew.printf("~ %s %s%s\n", what, slug, where)
	case Keep:
		if absent {
			ew.printf("  %s %s%s: not in the folder; kept (--prune would remove it)\n", what, slug, where)
		}
	}
	if drift {
		ew.printf("! %s %s: drift: its rows were edited since they were applied from %s\n", what, slug, from)
	}
}
