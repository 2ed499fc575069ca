package views

import (
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func num(f float64) panel.Value { return panel.Value{Kind: panel.Number, Num: f, Text: ftoa(f)} }
func txt(s string) panel.Value  { return panel.Value{Kind: panel.Text, Text: s} }
func null() panel.Value         { return panel.Value{} }
func tm(t time.Time) panel.Value {
	return panel.Value{Kind: panel.Time, Time: t.UTC(), Text: t.UTC().Format(time.RFC3339)}
}

func ftoa(f float64) string { return formatBare(f, nil, false) }

var t0 = time.Date(2026, 3, 14, 12, 0, 0, 0, time.UTC)

func def(kind panel.Kind, o panel.Options) *panel.Def {
	return &panel.Def{ID: 7, DashboardID: 1, Slug: "p-" + string(kind), Title: "Panel " + string(kind), Kind: kind, Width: 2, Height: 1, Options: o}
}

// samples is one realistic result per kind.
func samples() map[panel.Kind]*panel.Result {
	ts := &panel.Result{Columns: []string{"t", "p50", "p99"}}
	for i := range 12 {
		ts.Rows = append(ts.Rows, []panel.Value{tm(t0.Add(time.Duration(i) * 5 * time.Minute)), num(float64(10 + i)), num(float64(40 + i*i))})
	}
	feed := &panel.Result{Columns: []string{"at", "user", "action"}}
	for i := range 30 {
		feed.Rows = append(feed.Rows, []panel.Value{tm(t0.Add(-time.Duration(i) * time.Minute)), txt("user" + ftoa(float64(i))), txt("signed in")})
	}
	return map[panel.Kind]*panel.Result{
		panel.Stat: {Columns: []string{"orders"}, Rows: [][]panel.Value{{num(1200)}, {num(1350)}, {num(12345.678)}}},
		panel.Table: {Columns: []string{"name", "count", "seen", "ok"}, Rows: [][]panel.Value{
			{txt("alpha"), num(1234567), tm(t0), {Kind: panel.Bool, Num: 1, Text: "true"}},
			{txt("beta"), null(), tm(t0.Add(time.Hour)), {Kind: panel.Bool, Text: "false"}},
		}},
		panel.Timeseries: ts,
		panel.Bar: {Columns: []string{"region", "sales", "returns"}, Rows: [][]panel.Value{
			{txt("north"), num(120), num(-15)}, {txt("south"), num(80), num(-5)}, {txt("east"), num(200), num(-40)},
		}},
		panel.Feed: feed,
	}
}
