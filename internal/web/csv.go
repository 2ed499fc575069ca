package web

import (
	"bytes"
	"encoding/csv"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// panelCSV is GET /d/{slug}/panels/{panel}.csv: the data a panel shows in
// the view the address names, as CSV. It is the page's data, not a new
// query: access, view and wait are the page's (404 alike for missing and
// forbidden, 400 for a refused choice, the token's fixed variables), and
// the rows are the board's result in memory. A panel with no result yet,
// or with only an error, answers 503; a failing panel's last good data is
// served with X-Dashboard-Query-Failing-Since, and a result cut at
// DASHBOARD_MAX_ROWS says so in X-Dashboard-Truncated (the rows kept).
func (s *Server) panelCSV(w http.ResponseWriter, r *http.Request) {
	d, grant, ok := s.dashboard(w, r)
	if !ok {
		return
	}
	slug, ok := strings.CutSuffix(r.PathValue("file"), ".csv")
	if !ok || panelBySlug(d, slug) == nil {
		s.error(w, r, http.StatusNotFound, "No such panel", "This dashboard has no panel at this address.")
		return
	}
	_, vw, ok := s.show(w, r, d, grant)
	if !ok {
		return
	}
	defer vw.release()
	dash, results, _ := vw.board.Page()
	if dash == nil {
		dash = d
	}
	p := panelBySlug(dash, slug)
	if p == nil { // removed while we waited
		s.error(w, r, http.StatusNotFound, "No such panel", "This dashboard has no panel at this address.")
		return
	}
	res := results[p.ID]
	switch {
	case res == nil:
		s.error(w, r, http.StatusServiceUnavailable, "Waiting for data", "The panel has no data yet; try again shortly.")
		return
	case len(res.Columns) == 0 && res.Err != "":
		// Err is what the page shows: the engine keeps the database's
		// words off public dashboards.
		s.error(w, r, http.StatusServiceUnavailable, "Query failing", "The panel's query is failing: "+res.Err)
		return
	}

	var buf bytes.Buffer
	writeCSV(&buf, res)
	h := w.Header()
	h.Set("Content-Type", "text/csv; charset=utf-8")
	h.Set("Content-Disposition", `attachment; filename="`+dash.Slug+"-"+p.Slug+`.csv"`) // slugs are [a-z0-9-]
	h.Set("Content-Length", strconv.Itoa(buf.Len()))
	if !dash.Public || grant.ID != 0 {
		// Private data, or a token's own view of a public dashboard.
		h.Set("Cache-Control", "no-store")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if res.Truncated {
		h.Set("X-Dashboard-Truncated", strconv.Itoa(len(res.Rows)))
	}
	if res.Err != "" && !res.FailingSince.IsZero() {
		h.Set("X-Dashboard-Query-Failing-Since", res.FailingSince.UTC().Format(time.RFC3339))
	}
	if r.Method == http.MethodGet {
		s.metrics.csvServed.Inc()
	}
	w.WriteHeader(http.StatusOK)
	w.Write(buf.Bytes())
}

// panelBySlug returns d's panel called slug, or nil.
func panelBySlug(d *panel.Dashboard, slug string) *panel.Def {
	for _, p := range d.Panels {
		if p.Slug == slug {
			return p
		}
	}
	return nil
}

// writeCSV writes a result as RFC 4180 CSV: a header row of the column
// names, then one record per row of each value's display text (NULL is
// empty, times RFC 3339 in UTC). Lines end in CRLF, and so does a line
// break inside a cell (encoding/csv drops a lone CR there). Nothing is
// appended for a truncated result: the header says so, and a marker row
// would be read as data.
func writeCSV(buf *bytes.Buffer, res *panel.Result) {
	cw := csv.NewWriter(buf)
	cw.UseCRLF = true
	if len(res.Columns) > 0 {
		head := make([]string, len(res.Columns))
		for i, c := range res.Columns {
			head[i] = neutralise(c)
		}
		cw.Write(head)
	}
	rec := make([]string, len(res.Columns))
	for _, row := range res.Rows {
		rec = rec[:0]
		for _, v := range row {
			if v.Kind == panel.Number {
				rec = append(rec, v.Text)
			} else {
				rec = append(rec, neutralise(v.Text))
			}
		}
		cw.Write(rec)
	}
	cw.Flush() // a bytes.Buffer does not fail
}

// neutralise defuses formula injection (OWASP "CSV Injection"): a cell that
// starts with =, +, -, @, tab or carriage return may be run as a formula by
// a spreadsheet, so it gets a leading apostrophe, which spreadsheets read
// as "text" and show without it. Numbers are never passed here: -5 stays
// -5, so a numeric column stays numeric; their text is made by the server
// (digits, sign, point, exponent, NaN, Infinity), never by data.
func neutralise(s string) string {
	if s != "" && strings.IndexByte("=+-@\t\r", s[0]) >= 0 {
		return "'" + s
	}
	return s
}
