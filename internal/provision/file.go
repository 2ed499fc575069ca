// Package provision owns dashboards as files: one YAML file per dashboard,
// parsed with the line of every value so that each problem reads
// file:line: message, checked without a database (what the schema would
// refuse) and with one (every query prepared and explained, none may
// write), compared with the rows (Diff, drift), written back out (Export),
// applied in one transaction (Apply), and a directory kept applied while
// the server runs (Watcher). It does not write rows itself: that is
// internal/catalog's, which it calls.
package provision

import (
	"strconv"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// File is one dashboard file as written. The yaml tags are its keys; a key
// without omitempty is required. The other tags are its rules, read both
// by the checks (check.go) and by the JSON Schema (Schema), so that editors
// and lint agree: desc (the description), pattern, enum, minLength,
// maxLength (characters), maxBytes (UTF-8 bytes, not in the schema),
// minimum, maximum, exclusiveMinimum, maxItems and default (the schema's
// word for what an absent key means). style chooses how Export writes the
// value: literal (a | block) or flow ({...} or [...]).
type File struct {
	Slug         string     `yaml:"slug" desc:"The dashboard's address, /d/<slug>: lower-case letters, digits and dashes, starting with a letter or digit." pattern:"^[a-z0-9][a-z0-9-]{0,62}$"`
	Title        string     `yaml:"title" desc:"Heading of the page and its tab." minLength:"1" maxLength:"200"`
	Description  string     `yaml:"description,omitempty" desc:"Shown under the title." maxLength:"2000"`
	Visibility   string     `yaml:"visibility,omitempty" desc:"public: anyone may see it; private: only with a token (dashboard token create) or through the trusted auth proxy." enum:"public,private" default:"public"`
	TimeZone     string     `yaml:"time_zone,omitempty" desc:"IANA time zone that times are drawn in, e.g. Europe/Paris." minLength:"1" maxLength:"64" default:"UTC"`
	Refresh      string     `yaml:"refresh,omitempty" desc:"Clock refresh: panels that use the time range run again on this interval, and now is rounded down to it. A duration in whole seconds from 1s to 24h, e.g. 30s, 1m, 1h30m." pattern:"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" minLength:"2" default:"1m"`
	MaxRefreshHz float64    `yaml:"max_refresh_hz,omitempty" desc:"Most refreshes per second of one panel of this dashboard, below the server's DASHBOARD_MAX_REFRESH_HZ." exclusiveMinimum:"0"`
	Position     int        `yaml:"position,omitempty" desc:"Order on the index page (lowest first, then by slug)." minimum:"-2147483648" maximum:"2147483647" default:"0"`
	Time         *TimeRange `yaml:"time,omitempty" desc:"Default time range. Panel and variable SQL may use :from and :to only when it is set." style:"flow"`
	Variables    []Variable `yaml:"variables,omitempty" desc:"Choices a viewer makes in the page's pickers, in display order. SQL refers to a variable as :name and gets its value as a bind parameter (a text array when multi)."`
	Panels       []Panel    `yaml:"panels,omitempty" desc:"The panels, in display order."`
}

// TimeRange is a default time range.
type TimeRange struct {
	From string `yaml:"from" desc:"Start, e.g. now-6h." minLength:"1" maxLength:"64"`
	To   string `yaml:"to" desc:"End, e.g. now." minLength:"1" maxLength:"64"`
}

// Variable is one declared variable.
type Variable struct {
	Name    string   `yaml:"name" desc:"Name used in SQL as :name and in addresses as ?var-name=."`
	Label   string   `yaml:"label,omitempty" desc:"Shown beside the picker; default the name."`
	Kind    string   `yaml:"kind" desc:"query: options from the first column of sql; list: the options given; text: any text." enum:"query,list,text"`
	SQL     string   `yaml:"sql,omitempty" desc:"query: the query whose first column gives the options; it may use the variables declared before it." style:"literal"`
	Options []string `yaml:"options,omitempty" desc:"list: the options." style:"flow"`
	Multi   bool     `yaml:"multi,omitempty" desc:"Several values may be chosen; SQL gets a text array (use = ANY(:name))."`
	Default []string `yaml:"default,omitempty" desc:"Value(s) when the address names none; default the first option (query, list) or empty (text)." style:"flow"`
}

// Panel is one panel.
type Panel struct {
	Slug      string        `yaml:"slug" desc:"Unique within the dashboard: lower-case letters, digits and dashes." pattern:"^[a-z0-9][a-z0-9-]{0,62}$"`
	Title     string        `yaml:"title" desc:"Heading of the panel." minLength:"1" maxLength:"200"`
	Kind      string        `yaml:"kind" desc:"How the result is drawn (docs/panels.md)." enum:"stat,table,timeseries,bar,feed"`
	SQL       string        `yaml:"sql" desc:"One read-only query; :name refers to a variable, :from and :to to the time range." minLength:"1" maxBytes:"65536" style:"literal"`
	Grid      *Grid         `yaml:"grid,omitempty" desc:"Size on the page's grid." style:"flow"`
	Options   panel.Options `yaml:"options,omitempty" desc:"Display settings." style:"flow"`
	DependsOn []string      `yaml:"depends_on,omitempty" desc:"Tables the query reads that EXPLAIN cannot see (inside a function), as schema.table." maxItems:"64" style:"flow"`
}

// Grid is a panel's size.
type Grid struct {
	Width  int `yaml:"width,omitempty" desc:"Columns, 1 to 4." minimum:"1" maximum:"4" default:"1"`
	Height int `yaml:"height,omitempty" desc:"Rows, 1 to 4." minimum:"1" maximum:"4" default:"1"`
}

// Dashboard turns f, already checked, into the rows it stands for: panel
// positions are their order in the file, absent settings their defaults.
func (f *File) Dashboard() *panel.Dashboard {
	d := &panel.Dashboard{
		Slug:         f.Slug,
		Title:        f.Title,
		Description:  f.Description,
		Public:       f.Visibility != "private",
		MaxRefreshHz: f.MaxRefreshHz,
		Position:     f.Position,
		TimeZone:     f.TimeZone,
	}
	if d.TimeZone == "" {
		d.TimeZone = "UTC"
	}
	if f.Refresh != "" {
		d.Refresh, _ = time.ParseDuration(f.Refresh)
	}
	if f.Time != nil {
		d.Time = &panel.TimeRange{From: f.Time.From, To: f.Time.To}
	}
	for _, v := range f.Variables {
		d.Variables = append(d.Variables, panel.Variable{
			Name: v.Name, Label: v.Label, Kind: panel.VariableKind(v.Kind), SQL: v.SQL,
			Options: v.Options, Multi: v.Multi, Default: v.Default,
		})
	}
	for i, p := range f.Panels {
		def := &panel.Def{
			Slug: p.Slug, Title: p.Title, Kind: panel.Kind(p.Kind), SQL: p.SQL, Position: i,
			Width: 1, Height: 1, Options: p.Options, DependsOn: p.DependsOn,
		}
		if p.Grid != nil {
			if p.Grid.Width > 0 {
				def.Width = p.Grid.Width
			}
			if p.Grid.Height > 0 {
				def.Height = p.Grid.Height
			}
		}
		d.Panels = append(d.Panels, def)
	}
	return d
}

// fileOf is the canonical file of d: what Export writes. Defaults are left
// out (a 1x1 grid, UTC, no refresh), visibility is always written.
func fileOf(d *panel.Dashboard) *File {
	f := &File{
		Slug:         d.Slug,
		Title:        d.Title,
		Description:  d.Description,
		Visibility:   "public",
		MaxRefreshHz: d.MaxRefreshHz,
		Position:     d.Position,
	}
	if !d.Public {
		f.Visibility = "private"
	}
	if d.TimeZone != "UTC" {
		f.TimeZone = d.TimeZone
	}
	if d.Refresh > 0 {
		f.Refresh = formatDuration(d.Refresh)
	}
	if d.Time != nil {
		f.Time = &TimeRange{From: d.Time.From, To: d.Time.To}
	}
	for _, v := range d.Variables {
		f.Variables = append(f.Variables, Variable{
			Name: v.Name, Label: v.Label, Kind: string(v.Kind), SQL: v.SQL,
			Options: v.Options, Multi: v.Multi, Default: v.Default,
		})
	}
	for _, p := range d.Panels {
		fp := Panel{Slug: p.Slug, Title: p.Title, Kind: string(p.Kind), SQL: p.SQL, Options: p.Options, DependsOn: p.DependsOn}
		if p.Width != 1 || p.Height != 1 {
			fp.Grid = &Grid{Width: p.Width, Height: p.Height}
		}
		f.Panels = append(f.Panels, fp)
	}
	return f
}

// formatDuration writes d, a whole number of seconds, the short way: 1m
// rather than 1m0s, 1h30m rather than 1h30m0s.
func formatDuration(d time.Duration) string {
	h, m, sec := int(d/time.Hour), int(d%time.Hour/time.Minute), int(d%time.Minute/time.Second)
	var b strings.Builder
	if h > 0 {
		b.WriteString(strconv.Itoa(h) + "h")
	}
	if m > 0 {
		b.WriteString(strconv.Itoa(m) + "m")
	}
	if sec > 0 || b.Len() == 0 {
		b.WriteString(strconv.Itoa(sec) + "s")
	}
	return b.String()
}
