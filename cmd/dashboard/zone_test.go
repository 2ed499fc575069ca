package main

import (
	"strings"
	"testing"
)

// TestDashboardTimeZone: a dashboard's time_zone decides how its panels
// write instants, not wall clock times or dates, and a new zone redraws
// them.
func TestDashboardTimeZone(t *testing.T) {
	t.Parallel()
	s := startServer(t, testConfig(t), false)
	createDashboard(t, s.pool, "tokyo", true, [3]string{"at", "table", "SELECT timestamptz '2026-01-01 00:00:00+00' AS at, timestamp '2026-01-01 12:00:00' AS wall, date '2026-01-02' AS day"})
	s.exec(t, `UPDATE dashboard.dashboards SET time_zone = 'Asia/Tokyo' WHERE slug = 'tokyo'`)
	shows := func(zone, want string) {
		t.Helper()
		eventually(t, "dashboard in "+zone, func() bool {
			snap := s.engine.Snapshot()
			return snap != nil && snap.Dashboard("tokyo") != nil && snap.Dashboard("tokyo").TimeZone == zone
		})
		var body string
		eventually(t, "the time in "+zone, func() bool {
			_, body = s.get(t, "/d/tokyo")
			return strings.Contains(body, want)
		})
		for _, part := range []string{`datetime="2026-01-01T00:00:00Z"`, `class="panel-tz"`, ">" + zone + "</span>",
			// A timestamp without time zone and a date are shown as they are.
			">2026-01-01 12:00:00</time>", ">2026-01-02</time>"} {
			if !strings.Contains(body, part) {
				t.Errorf("page in %s lacks %q: %s", zone, part, trim(body))
			}
		}
	}
	shows("Asia/Tokyo", ">2026-01-01 09:00:00</time>")
	s.exec(t, `UPDATE dashboard.dashboards SET time_zone = 'America/New_York' WHERE slug = 'tokyo'`)
	shows("America/New_York", ">2025-12-31 19:00:00</time>")
}
