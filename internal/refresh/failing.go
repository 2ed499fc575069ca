package refresh

import (
	"time"

	"github.com/livedash/dashboard/internal/panel"
)

// failedQuery is what a public dashboard shows instead of the database's
// message; the operator log has the message.
const failedQuery = "The query failed; the server log says why."

// failing records that a panel's query failed in a view, and returns what
// to show: the last good data, if any, marked with when the failure began,
// and the message (on public dashboards only that there is one). The log
// gets one line when the message is new, not one per run.
func (e *Engine) failing(view panel.ViewKey, st *panelState, r *panel.Result) *panel.Result {
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
	out := &panel.Result{Err: r.Err, Notice: r.Notice, FailingSince: st.failingSince}
	if snap := e.snapshot.Load(); snap != nil {
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
