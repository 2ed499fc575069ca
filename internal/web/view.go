package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/refresh"
	"github.com/livedash/dashboard/internal/variables"
	"github.com/livedash/dashboard/internal/views"
)

// maxViewKey bounds a view key, in bytes: each value is bounded
// (variables.MaxValueBytes, MaxValues), this bounds them together, since
// every view's key is held by the engine and the hub.
const maxViewKey = 16 << 10

// choice is the view a request asks for, with what the page's pickers need.
type choice struct {
	view refresh.View
	sel  variables.Selection
	// options holds the options each query variable offered while the
	// choice was checked.
	options map[string][]string
}

// view resolves the view a request for d asks for: the dashboard and the
// canonical choice of its variables and time range from the address, with
// the variables the token fixes. Only var-*, from and to make the view:
// the screen options (kiosk, theme; see screen.go) and the transport are
// the viewer's, so that a TV and a desk showing the same choice share one
// view, its queries and its bytes. A choice the dashboard refuses is
// answered 400 here, before any stream opens; a variable whose options
// cannot be read answers 500 (its SQL is broken: the log says why) or 503
// (the database is down).
func (s *Server) view(w http.ResponseWriter, r *http.Request, d *panel.Dashboard, grant access.Grant) (*choice, bool) {
	c := &choice{view: refresh.View{Key: panel.ViewKey{Dashboard: d.ID}, Default: true},
		options: make(map[string][]string)}
	if len(d.Variables) == 0 && d.Time == nil && len(grant.Variables) == 0 {
		return c, true
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.PageWait)
	defer cancel()
	recording := true // the pickers show the options of the choice, not of the default
	opts := func(v *panel.Variable, upstream variables.Selection) ([]string, error) {
		args, err := variables.Args(d, upstream, v.Params, time.Now())
		if err != nil {
			return nil, err
		}
		o, err := s.engine.Options(ctx, d.ID, v, args)
		if recording {
			c.options[v.Name] = o
		}
		return o, err
	}
	sel, err := variables.Select(d, r.URL.Query(), grant.Variables, opts)
	if err == nil {
		// Is this the choice the plain link shows? Decided by value, not
		// by the address: the page's own stream names every variable. The
		// options it needs were just read (and are shared for a while).
		recording = false
		var def variables.Selection
		if def, err = variables.Select(d, nil, grant.Variables, opts); err == nil {
			c.view.Default = def.Key() == sel.Key()
		}
	}
	var inputErr *variables.InputError
	var varErr *refresh.VariableError
	switch {
	case errors.As(err, &inputErr):
		s.metrics.badChoice.Inc()
		s.error(w, r, http.StatusBadRequest, "Bad request", inputErr.Error())
		return nil, false
	case errors.As(err, &varErr):
		s.error(w, r, http.StatusInternalServerError, "Dashboard error",
			"The options of variable "+varErr.Variable+" cannot be read; the dashboard's owner must fix its query. The error was logged.")
		return nil, false
	case r.Context().Err() != nil:
		return nil, false // the client left while the options were read
	case errors.Is(err, refresh.ErrDatabase) || errors.Is(err, context.DeadlineExceeded):
		s.logger.Warn("choosing a view", "dashboard", d.Slug, "err", err)
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "The database cannot be asked right now; try again shortly.")
		return nil, false
	case err != nil:
		// The dashboard's own declaration is wrong (a default range that
		// is empty, say): lint and apply refuse it, SQL edits may not.
		s.logger.Error("choosing a view", "dashboard", d.Slug, "err", err)
		s.error(w, r, http.StatusInternalServerError, "Dashboard error",
			"This dashboard's variables are declared wrongly; its owner must fix them. The error was logged.")
		return nil, false
	}
	if len(sel.Key()) > maxViewKey {
		s.metrics.badChoice.Inc()
		s.error(w, r, http.StatusBadRequest, "Bad request", "The choice of variables is too large (over 16 KB in all).")
		return nil, false
	}
	c.sel = sel
	c.view.Key.Vars = sel.Key()
	id := d.ID
	c.view.Args = func(params []string, now time.Time) ([]any, error) {
		// The dashboard as it is now: a catalog reload may have changed it
		// since the view opened.
		cur := d
		if snap := s.engine.Snapshot(); snap != nil && snap.DashboardByID(id) != nil {
			cur = snap.DashboardByID(id)
		}
		return variables.Args(cur, sel, params, now)
	}
	c.view.Clock = sel.Clock()
	return c, true
}

// pickers is the page's model of the choice: a control per variable and
// the time range.
func (c *choice) pickers(d *panel.Dashboard, grant access.Grant) ([]views.Picker, *views.TimePicker) {
	var out []views.Picker
	for _, v := range d.Variables {
		p := views.Picker{Name: v.Name, Label: v.Label, Text: v.Kind == panel.TextVariable, Multi: v.Multi,
			Chosen: c.sel.Values[v.Name]}
		switch v.Kind {
		case panel.ListVariable:
			p.Options = v.Options
		case panel.QueryVariable:
			p.Options = c.options[v.Name]
			p.Depends = len(v.Params) > 0
		}
		_, p.Locked = grant.Variables[v.Name]
		out = append(out, p)
	}
	var tp *views.TimePicker
	if d.Time != nil && c.sel.HasTime {
		tp = &views.TimePicker{From: c.sel.From.String(), To: c.sel.To.String()}
	}
	return out, tp
}

// viewer is a request that holds a view: its board, the channel closed
// once the view's panels have run, and the release it must call.
type viewer struct {
	key     panel.ViewKey
	board   *hub.Board
	ready   <-chan struct{}
	release func()
}

// open makes the request a viewer of the chosen view. A dashboard with as
// many views as allowed, all watched, answers 429; a dashboard gone
// meanwhile 404.
func (s *Server) open(w http.ResponseWriter, r *http.Request, c *choice) (*viewer, bool) {
	ready, release, err := s.engine.Acquire(c.view)
	if errors.Is(err, refresh.ErrTooManyViews) {
		s.error(w, r, http.StatusTooManyRequests, "Too many views",
			"This dashboard is shown with too many different choices at once; try a choice others use, or later.")
		return nil, false
	}
	if err != nil {
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Try again shortly.")
		return nil, false
	}
	b := s.hub.Board(c.view.Key)
	if b == nil {
		release()
		s.notFound(w, r)
		return nil, false
	}
	return &viewer{key: c.view.Key, board: b, ready: ready, release: release}, true
}

// show resolves the view a request for d asks for, makes the request its
// viewer, and waits (at most PageWait) for its panels' first queries: what
// the page and a panel's CSV both need before they read the board. It has
// answered the request when ok is false; else the caller must release vw.
func (s *Server) show(w http.ResponseWriter, r *http.Request, d *panel.Dashboard, grant access.Grant) (c *choice, vw *viewer, ok bool) {
	if c, ok = s.view(w, r, d, grant); !ok {
		return nil, nil, false
	}
	if vw, ok = s.open(w, r, c); !ok {
		return nil, nil, false
	}
	if !s.await(r.Context(), vw.ready, s.cfg.PageWait) {
		vw.release()
		return nil, nil, false
	}
	return c, vw, true
}
