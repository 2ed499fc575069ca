package refresh

import (
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// failedQuery is what a public dashboard shows instead of the database's
// message; the operator log has the message.
const failedQuery = "The query failed; the server log says why."

// failing records that a panel's query failed in a view, and returns what
// to show: the last good data, if any, marked with when the failure began,
// and the message (on public dashboards only that there is one). The log
// gets one line when the message is new, not one per run. A view nobody
// watches (its query finished after the last viewer left) shows the same
// but is not counted or logged: its failure is nobody's concern.
func (e *Engine) failing(view panel.ViewKey, st *panelState, r *panel.Result, watched bool) *panel.Result {
	if !watched {
		return e.shown(e.snapshot.Load(), st, r.Err, r.Notice)
	}
	if st.failingSince.IsZero() {
		st.failingSince = time.Now().UTC().Truncate(time.Second)
	}
	if r.Err != st.lastErr {
		st.lastErr = r.Err
		e.cfg.Logger.Warn("panel query failing", "dashboard", e.slug(st.def.DashboardID), "panel", st.def.Slug,
			"view", view.Vars, "since", st.failingSince, "err", r.Err)
	}
	if e.failingPanels[st.def.ID] == nil {
		e.failingPanels[st.def.ID] = make(map[panel.ViewKey]bool)
	}
	e.failingPanels[st.def.ID][view] = true
	e.cfg.Metrics.failing.Set(float64(len(e.failingPanels)))
	return e.shown(e.snapshot.Load(), st, r.Err, r.Notice)
}

// shown is what a failing panel shows under snap: its last good data, the
// mark, and the message err, or on a public dashboard only that there is
// one.
func (e *Engine) shown(snap *catalog.Snapshot, st *panelState, err, notice string) *panel.Result {
	since := st.failingSince
	if since.IsZero() {
		since = time.Now().UTC().Truncate(time.Second)
	}
	out := &panel.Result{Err: err, Notice: notice, FailingSince: since}
	if snap != nil {
		if d := snap.DashboardByID(st.def.DashboardID); d == nil || d.Public {
			out.Err = failedQuery
		}
	}
	if st.good != nil {
		out.Columns, out.Rows, out.Truncated = st.good.Columns, st.good.Rows, st.good.Truncated
	}
	return out
}

// working records that a panel's query works (again) in a view.
func (e *Engine) working(view panel.ViewKey, st *panelState) {
	if !st.failingSince.IsZero() {
		e.cfg.Logger.Info("panel query works again", "dashboard", e.slug(st.def.DashboardID), "panel", st.def.Slug,
			"view", view.Vars, "failed_since", st.failingSince)
	}
	st.failingSince, st.lastErr = time.Time{}, ""
	e.notFailing(st.def.ID, view)
}

// notFailing forgets a failure of panel id in view.
func (e *Engine) notFailing(id int64, view panel.ViewKey) {
	if views := e.failingPanels[id]; views != nil {
		delete(views, view)
		if len(views) == 0 {
			delete(e.failingPanels, id)
		}
		e.cfg.Metrics.failing.Set(float64(len(e.failingPanels)))
	}
}

func (e *Engine) slug(dashboard int64) string {
	if snap := e.snapshot.Load(); snap != nil {
		if d := snap.DashboardByID(dashboard); d != nil {
			return d.Slug
		}
	}
	return ""
}
