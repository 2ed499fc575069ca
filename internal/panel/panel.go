// Package panel owns the product's vocabulary: what a dashboard and a panel
// are, and what one run of a panel's query produced. It has no I/O; the
// catalog loads these types, the refresh engine fills Results, and the views
// render them.
package panel

import (
	"cmp"
	"encoding/binary"
	"hash/fnv"
	"math"
	"reflect"
	"slices"
	"time"
)

// Kind says how a panel draws its query result.
type Kind string

// The panel kinds. The column conventions each kind reads are
// documented in docs/panels.md.
const (
	Stat       Kind = "stat"
	Table      Kind = "table"
	Timeseries Kind = "timeseries"
	Bar        Kind = "bar"
	Feed       Kind = "feed"
)

// Kinds lists every valid Kind, in documentation order.
var Kinds = []Kind{Stat, Table, Timeseries, Bar, Feed}

// Valid reports whether k is one of Kinds.
func (k Kind) Valid() bool {
	for _, v := range Kinds {
		if k == v {
			return true
		}
	}
	return false
}

// Dashboard is one row of dashboard.dashboards with its panels in display
// order.
type Dashboard struct {
	ID          int64
	Slug        string
	Title       string
	Description string
	Public      bool
	// MaxRefreshHz, when above zero, lowers the server-wide per-panel refresh
	// cap for this dashboard's panels.
	MaxRefreshHz float64
	Position     int
	// TimeZone is the IANA name times are drawn in ("UTC" by default).
	TimeZone string
	// Refresh is the interval on which panels that read the clock run again
	// and to which "now" is rounded down; zero means DefaultRefresh.
	Refresh time.Duration
	// Variables are the choices a viewer makes in the page's pickers, in
	// display order.
	Variables []Variable
	// Time is the default time range; nil when the dashboard has none (and
	// its SQL may not use :from and :to).
	Time *TimeRange
	// Source names the file the dashboard was applied from; nil when it
	// was made in SQL.
	Source *Source
	Panels []*Def
}

// DefaultRefresh is the clock refresh of a dashboard that sets none.
const DefaultRefresh = time.Minute

// RefreshInterval returns d.Refresh or DefaultRefresh.
func (d *Dashboard) RefreshInterval() time.Duration {
	if d.Refresh > 0 {
		return d.Refresh
	}
	return DefaultRefresh
}

// Variable returns the variable called name, or nil.
func (d *Dashboard) Variable(name string) *Variable {
	for i := range d.Variables {
		if d.Variables[i].Name == name {
			return &d.Variables[i]
		}
	}
	return nil
}

// VariableKind says where a variable's choices come from.
type VariableKind string

// The variable kinds.
const (
	// QueryVariable takes its options from a query's first column; the
	// query may use the variables declared before it.
	QueryVariable VariableKind = "query"
	// ListVariable takes its options from a fixed list.
	ListVariable VariableKind = "list"
	// TextVariable takes any text (within the input limits).
	TextVariable VariableKind = "text"
)

// Variable is one declared variable of a dashboard. Panel and variable SQL
// refer to it as :name; the value is bound as a parameter, never spliced.
// A multi-value variable is bound as one text array.
type Variable struct {
	Name    string       `json:"name"`
	Label   string       `json:"label,omitempty"`
	Kind    VariableKind `json:"kind"`
	SQL     string       `json:"sql,omitempty"`
	Options []string     `json:"options,omitempty"`
	Multi   bool         `json:"multi,omitempty"`
	// Default is the value when the address names none; empty means the
	// first option (query and list) or "" (text).
	Default []string `json:"default,omitempty"`
	// Query and Params are SQL rewritten as for panels (Def.Query); the
	// catalog sets them.
	Query  string   `json:"-"`
	Params []string `json:"-"`
}

// TimeRange is a pair of time expressions such as "now-6h" and "now".
type TimeRange struct {
	From string `json:"from"`
	To   string `json:"to"`
}

// Source is where a dashboard applied from a file came from.
type Source struct {
	File string // as given to apply, relative to its directory
	Hash string // sha256 of the file's bytes, hex
}

// Def is one row of dashboard.panels: a titled SQL query and how to draw it.
type Def struct {
	ID          int64
	DashboardID int64
	Slug        string
	Title       string
	Kind        Kind
	SQL         string
	Position    int
	Width       int // grid columns, 1-4
	Height      int // grid rows, 1-4
	Options     Options
	// DependsOn is the operator's explicit list of tables the query reads,
	// added to the ones found with EXPLAIN.
	DependsOn []string
	// Query is SQL with its :name placeholders rewritten to $1, $2, ...,
	// and Params the names they stand for, in order. The catalog sets both.
	Query  string
	Params []string
}

// ViewKey names a view: a dashboard and one canonical choice of its
// variables and time range (variables.Selection.Key; "" when it has none).
// Viewers of the same view share one query and one render per change.
type ViewKey struct {
	Dashboard int64
	Vars      string
}

// Time range parameters: panel SQL that uses :from or :to reads the clock
// when the range is relative to now.
const (
	FromParam = "from"
	ToParam   = "to"
)

// ReadsTime reports whether the panel's query uses the time range.
func (d *Def) ReadsTime() bool {
	for _, p := range d.Params {
		if p == FromParam || p == ToParam {
			return true
		}
	}
	return false
}

// DOMID is the element id of the panel on its dashboard page. It is unique
// within a page because panel slugs are unique within a dashboard.
func (d *Def) DOMID() string { return "panel-" + d.Slug }

// Options are the per-panel display settings stored as jsonb. Unknown keys
// are ignored so that operators can keep notes in the same object.
//
// The desc tags are the descriptions of the JSON Schema of dashboard files
// (internal/provision).
type Options struct {
	Unit      string `json:"unit,omitempty" desc:"Appended to numbers, e.g. ms or %."`
	Prefix    string `json:"prefix,omitempty" desc:"Prepended to numbers, e.g. $."`
	Decimals  *int   `json:"decimals,omitempty" desc:"Fixed number of decimals for numbers; absent means automatic."`
	Sparkline bool   `json:"sparkline,omitempty" desc:"stat: draw the value's history from all rows."`
	Delta     bool   `json:"delta,omitempty" desc:"stat: show the change from the previous row."`
	Limit     int    `json:"limit,omitempty" desc:"feed: rows shown (default 20)."`
	Stacked   bool   `json:"stacked,omitempty" desc:"bar: stack series instead of grouping them."`
	// Thresholds colour a value by the range it falls in.
	Thresholds *Thresholds `json:"thresholds,omitempty" desc:"stat, bar: colours for ranges of the value; table: use columns[].thresholds."`
	// Min and Max fix the ends of a chart's value axis.
	Min *float64 `json:"min,omitempty" desc:"timeseries, bar: lower end of the value axis; absent means automatic."`
	Max *float64 `json:"max,omitempty" desc:"timeseries, bar: upper end of the value axis; absent means automatic."`
	// Gap is the step between two points beyond which a line breaks.
	Gap string `json:"gap,omitempty" desc:"timeseries: a step between points longer than this breaks the line: a duration such as 10m on a time axis, a number on a numeric one, or none; absent means twice the median step."`
	// Columns format a table's columns one by one.
	Columns []Column `json:"columns,omitempty" desc:"table: formats of columns by name."`
}

// Column is how a table formats one of its columns.
type Column struct {
	Name       string      `json:"name" desc:"The column's name, as the query returns it."`
	Unit       string      `json:"unit,omitempty" desc:"Appended to numbers, e.g. ms or %."`
	Prefix     string      `json:"prefix,omitempty" desc:"Prepended to numbers, e.g. $."`
	Decimals   *int        `json:"decimals,omitempty" minimum:"0" maximum:"10" desc:"Fixed number of decimals; absent means automatic (integers never get decimals)."`
	Thresholds *Thresholds `json:"thresholds,omitempty" desc:"Colours for ranges of the column's values."`
	Align      string      `json:"align,omitempty" enum:"left,center,right" desc:"Alignment of the column; absent means numbers right, the rest left."`
}

// Thresholds colour a value by the range it falls in, as Grafana's
// absolute thresholds do: a value takes the colour of the highest step it
// reaches (at or above the step's value), and Base below every step.
type Thresholds struct {
	Base  string `json:"base,omitempty" enum:"green,blue,yellow,orange,red,purple,grey" desc:"Colour below every step; absent means green."`
	Steps []Step `json:"steps" desc:"Steps in ascending order of value."`
}

// Step is one threshold: from Value up, a value is drawn in Color.
type Step struct {
	Value float64 `json:"value" desc:"The value from which this step applies (inclusive)."`
	Color string  `json:"color" enum:"green,blue,yellow,orange,red,purple,grey" desc:"A colour of the theme."`
	Label string  `json:"label,omitempty" maxLength:"40" desc:"What the range means, shown beside the value (e.g. high); absent means the step's value."`
}

// Normalize puts options written in SQL, which no file check has seen, in
// the form the views rely on: threshold steps in ascending order of value,
// and no colour outside Colors (a step with another colour is dropped, an
// unknown base colour is the default one).
func (o *Options) Normalize() {
	o.Thresholds = o.Thresholds.normalized()
	for i := range o.Columns {
		o.Columns[i].Thresholds = o.Columns[i].Thresholds.normalized()
	}
}

func (t *Thresholds) normalized() *Thresholds {
	if t == nil {
		return nil
	}
	n := &Thresholds{Steps: slices.DeleteFunc(slices.Clone(t.Steps), func(s Step) bool {
		return !slices.Contains(Colors, s.Color) || math.IsNaN(s.Value)
	})}
	if slices.Contains(Colors, t.Base) {
		n.Base = t.Base
	}
	slices.SortStableFunc(n.Steps, func(a, b Step) int { return cmp.Compare(a.Value, b.Value) })
	return n
}

// Colors are the theme's colour names that thresholds may use.
var Colors = []string{"green", "blue", "yellow", "orange", "red", "purple", "grey"}

// DefaultBase is the colour of a value below every step when Base is unset.
const DefaultBase = "green"

// Level is the step v reaches: its index in t.Steps, or -1 below every
// step (or with no thresholds), with the colour v is drawn in. A NaN
// reaches no step.
func (t *Thresholds) Level(v float64) (step int, color string) {
	if t == nil {
		return -1, ""
	}
	step, color = -1, t.Base
	if color == "" {
		color = DefaultBase
	}
	for i, s := range t.Steps {
		if v >= s.Value {
			step, color = i, s.Color
		}
	}
	return step, color
}

// Equal reports whether o and p hold the same settings. Several fields
// are pointers or slices, so == cannot compare them.
func (o Options) Equal(p Options) bool { return reflect.DeepEqual(o, p) }

// ValueKind tells which field of a Value holds the data.
type ValueKind uint8

// The value kinds a query cell is normalised to.
const (
	Null ValueKind = iota
	Text
	Number
	Time
	Bool
)

// Value is one cell of a query result, normalised so that views never see
// driver types. Text is always set to the display form (empty for Null).
type Value struct {
	Kind ValueKind
	Text string
	Num  float64   // Number; also 1/0 for Bool
	Time time.Time // Time, in UTC
}

// Result is what one run of a panel's query produced, or why it failed.
type Result struct {
	Columns   []string
	Rows      [][]Value
	Truncated bool // more rows than the server's row limit; Rows holds the limit
	// Err is the message to show in place of the data; empty on success. It
	// never holds connection details, only what an operator needs to fix the
	// panel's SQL.
	Err string
	// Notice is shown beside the data, for example the statement an owner
	// must run so that the panel updates live.
	Notice string
	// FailingSince, when set, says the query has failed since then (Err
	// says how, or that the log does); Columns and Rows then hold the last
	// good data, if there was any.
	FailingSince time.Time
}

// Hash is a digest of everything in r that the page shows, so that equal
// data gives equal hashes.
func (r *Result) Hash() uint64 {
	h := fnv.New64a()
	var buf [8]byte
	str := func(s string) {
		binary.LittleEndian.PutUint64(buf[:], uint64(len(s)))
		h.Write(buf[:])
		h.Write([]byte(s))
	}
	num := func(u uint64) {
		binary.LittleEndian.PutUint64(buf[:], u)
		h.Write(buf[:])
	}
	num(uint64(len(r.Columns)))
	for _, c := range r.Columns {
		str(c)
	}
	num(uint64(len(r.Rows)))
	for _, row := range r.Rows {
		num(uint64(len(row)))
		for _, v := range row {
			num(uint64(v.Kind))
			str(v.Text)
			num(math.Float64bits(v.Num))
			num(uint64(v.Time.UnixNano()))
		}
	}
	if r.Truncated {
		num(1)
	} else {
		num(0)
	}
	str(r.Err)
	str(r.Notice)
	num(uint64(r.FailingSince.UnixNano()))
	return h.Sum64()
}
