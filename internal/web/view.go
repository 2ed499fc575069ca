package web

import (
	"errors"
	"net/http"

	"github.com/livedash/dashboard/internal/access"
	"github.com/livedash/dashboard/internal/hub"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/refresh"
)

// view resolves the view a request for d asks for: the dashboard and the
// canonical choice of its variables. Input that cannot be a choice is
// answered 400 here, before any stream opens.
func (s *Server) view(w http.ResponseWriter, r *http.Request, d *panel.Dashboard, grant access.Grant) (refresh.View, bool) {
	return refresh.View{Key: panel.ViewKey{Dashboard: d.ID}}, true
}

// viewer is a request that holds a view: its board, the channel closed
// once the view's panels have run, and the release it must call.
type viewer struct {
	key     panel.ViewKey
	board   *hub.Board
	ready   <-chan struct{}
	release func()
}

// open makes the request a viewer of v. A dashboard with as many views as
// allowed, all watched, answers 429; a dashboard gone meanwhile 404.
func (s *Server) open(w http.ResponseWriter, r *http.Request, v refresh.View) (*viewer, bool) {
	ready, release, err := s.engine.Acquire(v)
	if errors.Is(err, refresh.ErrTooManyViews) {
		s.error(w, r, http.StatusTooManyRequests, "Too many views",
			"This dashboard is shown with too many different choices at once; try a choice others use, or later.")
		return nil, false
	}
	if err != nil {
		s.error(w, r, http.StatusServiceUnavailable, "Busy", "Try again shortly.")
		return nil, false
	}
	b := s.hub.Board(v.Key)
	if b == nil {
		release()
		s.notFound(w, r)
		return nil, false
	}
	return &viewer{key: v.Key, board: b, ready: ready, release: release}, true
}
