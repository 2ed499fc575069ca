package views

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

func zone(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatalf("loading %s: %v", name, err)
	}
	return loc
}

// TestTimeZones renders the same panels in three zones: the visible times
// follow the zone, the datetime attributes and dates do not, and the same
// result and zone give the same bytes.
func TestTimeZones(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 3, 13, 5, 0, 0, time.UTC)
	day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	r := &panel.Result{
		Columns: []string{"at", "day", "what"},
		Rows: [][]panel.Value{{
			{Kind: panel.Time, Time: at, Text: at.Format(time.RFC3339Nano)},
			{Kind: panel.Time, Time: day, Text: "2026-12-03"},
			{Kind: panel.Text, Text: "deploy"},
		}},
	}
	series := &panel.Result{
		Columns: []string{"t", "v"},
		Rows: [][]panel.Value{
			{{Kind: panel.Time, Time: at.Add(-6 * time.Hour)}, {Kind: panel.Number, Num: 1}},
			{{Kind: panel.Time, Time: at}, {Kind: panel.Number, Num: 2}},
		},
	}
	tests := []struct {
		zone, cell, feed, zoneLabel string
		ticks                       []string
	}{
		{"UTC", "2026-12-03 13:05:00", "Dec 03 13:05:00", "UTC", []string{"08:00", "09:00", "10:00", "11:00", "12:00", "13:00"}},
		{"Europe/Berlin", "2026-12-03 14:05:00", "Dec 03 14:05:00", "Europe/Berlin", []string{"09:00", "10:00", "11:00", "12:00", "13:00", "14:00"}},
		{"America/New_York", "2026-12-03 08:05:00", "Dec 03 08:05:00", "America/New_York", []string{"03:00", "04:00", "05:00", "06:00", "07:00", "08:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.zone, func(t *testing.T) {
			t.Parallel()
			place := Place{Dashboard: "ops", Zone: zone(t, tt.zone)}
			draw := func(d *panel.Def, r *panel.Result) string {
				t.Helper()
				a, err := PanelPartial(context.Background(), place, d, r)
				if err != nil {
					t.Fatal(err)
				}
				b, err := PanelPartial(context.Background(), place, d, r)
				if err != nil {
					t.Fatal(err)
				}
				if string(a) != string(b) {
					t.Fatalf("two renders differ:\n%s\n%s", a, b)
				}
				return string(a)
			}

			table := draw(&panel.Def{ID: 1, Slug: "t", Kind: panel.Table, Width: 1, Height: 1}, r)
			var texts, stamps []string
			for _, n := range find(parseFragment(t, table), "time", "") {
				texts = append(texts, text(n))
				dt, _ := attr(n, "datetime")
				stamps = append(stamps, dt)
			}
			if want := []string{tt.cell, "2026-12-03"}; strings.Join(texts, "|") != strings.Join(want, "|") {
				t.Errorf("table times: got %q, want %q", texts, want)
			}
			if want := []string{"2026-12-03T13:05:00Z", "2026-12-03T00:00:00Z"}; strings.Join(stamps, "|") != strings.Join(want, "|") {
				t.Errorf("table datetimes: got %q, want %q", stamps, want)
			}
			tz := find(parseFragment(t, table), "span", "panel-tz")
			if len(tz) != 1 || text(tz[0]) != tt.zoneLabel {
				t.Errorf("zone label: got %d labels in %s, want one %q", len(tz), table, tt.zoneLabel)
			}

			feed := draw(&panel.Def{ID: 2, Slug: "f", Kind: panel.Feed, Width: 1, Height: 1}, r)
			if ts := find(parseFragment(t, feed), "time", ""); len(ts) != 1 || text(ts[0]) != tt.feed {
				t.Errorf("feed time: got %s, want %q", feed, tt.feed)
			}

			chart := draw(&panel.Def{ID: 3, Slug: "c", Kind: panel.Timeseries, Width: 2, Height: 1}, series)
			var ticks []string
			for _, g := range find(parseFragment(t, chart), "div", "xl") {
				for c := g.FirstChild; c != nil; c = c.NextSibling {
					ticks = append(ticks, text(c))
				}
			}
			if strings.Join(ticks, " ") != strings.Join(tt.ticks, " ") {
				t.Errorf("x ticks: got %q, want %q", ticks, tt.ticks)
			}
		})
	}
}

// TestDatesHaveNoZone keeps a column of dates on UTC days, labelled by date
// and without a zone label, whatever the dashboard's zone.
func TestDatesHaveNoZone(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 12, 3, 0, 0, 0, 0, time.UTC)
	r := &panel.Result{Columns: []string{"day"}, Rows: [][]panel.Value{{{Kind: panel.Time, Time: day, Text: "2026-12-03"}}}}
	out, err := PanelPartial(context.Background(), Place{Zone: zone(t, "America/New_York")}, &panel.Def{ID: 1, Slug: "t", Kind: panel.Table}, r)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), ">2026-12-03</time>") || strings.Contains(string(out), "panel-tz") {
		t.Errorf("got %s, want the date 2026-12-03 without a zone label", out)
	}
}

// TestTimeTicksZone checks that ticks are round in the zone, also across a
// daylight saving change.
func TestTimeTicksZone(t *testing.T) {
	t.Parallel()
	berlin := zone(t, "Europe/Berlin")
	tests := []struct {
		lo, hi string
		max    int
		loc    *time.Location
		want   string
	}{
		// Midnight in Berlin is 23:00 UTC the day before: the day tick is there.
		{"2026-12-02T20:00:00Z", "2026-12-03T04:00:00Z", 5, berlin, "22:00 Dec 03 02:00 04:00"},
		// Berlin skips 02:00-03:00 on 2026-03-29: no tick there, and the
		// others stay on even hours.
		{"2026-03-28T22:00:00Z", "2026-03-29T06:00:00Z", 5, berlin, "Mar 29 04:00 06:00 08:00"},
		// India is UTC+05:30: hours are round there, not in UTC.
		{"2026-12-03T00:00:00Z", "2026-12-03T03:00:00Z", 4, zone(t, "Asia/Kolkata"), "06:00 07:00 08:00"},
		{"2026-01-15T00:00:00Z", "2026-07-15T00:00:00Z", 6, berlin, "Feb 2026 Mar 2026 Apr 2026 May 2026 Jun 2026 Jul 2026"},
	}
	for _, tt := range tests {
		lo, _ := time.Parse(time.RFC3339, tt.lo)
		hi, _ := time.Parse(time.RFC3339, tt.hi)
		var got []string
		for _, tk := range timeTicks(lo, hi, tt.max, tt.loc) {
			got = append(got, tk.Label)
			if !tk.T.In(tt.loc).Equal(tk.T) || tk.T.Before(lo) || tk.T.After(hi) {
				t.Errorf("tick %v outside [%v, %v]", tk.T, lo, hi)
			}
		}
		if s := strings.Join(got, " "); s != tt.want {
			t.Errorf("timeTicks(%s, %s, %d, %s): got %q, want %q", tt.lo, tt.hi, tt.max, tt.loc, s, tt.want)
		}
	}
}

// TestWallTimesHaveNoZone: a timestamp without time zone (text without Z)
// is a wall clock reading and is shown as it is.
func TestWallTimesHaveNoZone(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 3, 13, 5, 0, 0, time.UTC)
	r := &panel.Result{Columns: []string{"at"}, Rows: [][]panel.Value{{{Kind: panel.Time, Time: at, Text: "2026-12-03T13:05:00"}}}}
	for _, kind := range []panel.Kind{panel.Table, panel.Feed} {
		out, err := PanelPartial(context.Background(), Place{Zone: zone(t, "Asia/Tokyo")}, &panel.Def{ID: 1, Slug: "t", Kind: kind}, r)
		if err != nil {
			t.Fatal(err)
		}
		if s := string(out); !strings.Contains(s, "13:05:00</time>") || strings.Contains(s, "panel-tz") {
			t.Errorf("%s: got %s, want 13:05:00 without a zone label", kind, s)
		}
	}
}

// TestPlaceOfZone: the zone of a place is the dashboard's, UTC when that is
// not a zone, and never the server's own.
func TestPlaceOfZone(t *testing.T) {
	t.Parallel()
	for name, want := range map[string]string{"": "UTC", "UTC": "UTC", "Local": "UTC", "Mars/Olympus": "UTC", "Asia/Tokyo": "Asia/Tokyo"} {
		at := PlaceOf(&panel.Dashboard{Slug: "ops", TimeZone: name}, "v=1")
		if got := at.zoneName(); got != want || at.Dashboard != "ops" || at.View != "v=1" {
			t.Errorf("PlaceOf(%q): got %+v in %s, want ops, v=1 in %s", name, at, got, want)
		}
	}
}
