package web

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/views"
	"github.com/livedash/dashboard/static"
)

// A playlist rotates by navigation, not by frames: /p/{slug}?item=N
// redirects to the kiosk page of the first item at or after N whose
// dashboard exists and the caller may see (wrapping round), as
// /d/{dashboard}?kiosk&var-…&playlist={slug}&item={k}. That page, rendered
// with its current data like any other, loads static/playlist.js, which
// after the playlist's interval goes to /p/{slug}?item={k+1}. Navigating
// closes the page's stream, so a kiosk holds one stream, two while the next
// page opens its own. Two frames (the current dashboard and the next one
// preloading) would hold two streams all the time, need
// DASHBOARD_FRAME_ANCESTORS to allow 'self' (the default is 'none'), and
// gain nothing: the page arrives with its data, and Chromium keeps the old
// page painted until the new one can paint.

// playlistParams are the parameters the rotation itself sets; the others
// of a playlist's address (theme=dark, say) are passed on to every page.
var playlistParams = []string{"token", "item", "playlist", "kiosk"}

// playlist is GET /p/{slug}: the redirect to the kiosk page of the item
// that ?item= names or, when that dashboard is gone or closed to the
// caller, the next one that is not. A playlist with nothing to show answers
// a page that says so and looks again; one whose dashboards all exist but
// are closed to the caller answers 404, as a private dashboard does.
func (s *Server) playlist(w http.ResponseWriter, r *http.Request) {
	snap := s.engine.Snapshot()
	var p *catalog.Playlist
	if snap != nil {
		p = snap.Playlist(r.PathValue("slug"))
	}
	if p == nil {
		s.playlistNotFound(w, r)
		return
	}
	if s.exchangePlaylistToken(w, r, p) {
		return
	}
	// A position past the end wraps round: a kiosk that skips a refused
	// item asks for the one after it, and must not land on the first
	// item again and again.
	start, _ := strconv.Atoi(r.URL.Query().Get("item"))
	if start < 0 {
		start = 0
	}
	if len(p.Items) > 0 {
		start %= len(p.Items)
	}
	hidden := false
	for i := range p.Items {
		k := (start + i) % len(p.Items)
		it := p.Items[k]
		d := snap.Dashboard(it.Dashboard)
		if d == nil {
			continue // deleted from under the playlist: skipped until it is back
		}
		if _, ok := s.allowed(r, d); !ok {
			hidden = true
			continue
		}
		w.Header().Set("Cache-Control", "no-store")
		http.Redirect(w, r, itemURL(p, k, it, r.URL.RawQuery), http.StatusSeeOther)
		return
	}
	if hidden {
		s.playlistNotFound(w, r)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	s.render(w, r, http.StatusOK, views.PlaylistEmpty(views.PlaylistEmptyPage{
		Title: p.Title, Seconds: int(s.playlistInterval(p) / time.Second), Assets: s.assets(),
	}))
}

// playlistNotFound answers a missing playlist and one closed to the caller
// alike.
func (s *Server) playlistNotFound(w http.ResponseWriter, r *http.Request) {
	s.error(w, r, http.StatusNotFound, "No such playlist", "There is no playlist at this address, or its dashboards are private.")
}

// itemURL is the kiosk page of item k of p: the dashboard with the item's
// variables, the playlist and the position, and the parameters of the
// playlist's own address (rawQuery) that are not the rotation's or a
// choice of variables or time range (those are the item's to make).
func itemURL(p *catalog.Playlist, k int, it catalog.PlaylistItem, rawQuery string) string {
	parts := append([]string{"kiosk"}, passOn(rawQuery)...)
	vars := url.Values{}
	for name, values := range it.Variables {
		vars["var-"+name] = values
	}
	if len(vars) > 0 {
		parts = append(parts, vars.Encode())
	}
	parts = append(parts, "playlist="+url.QueryEscape(p.Slug), "item="+strconv.Itoa(k))
	return "/d/" + it.Dashboard + "?" + strings.Join(parts, "&")
}

// passOn returns the parameters of rawQuery, as written and in their
// order, that a playlist passes from page to page: not the rotation's own,
// not a variable (var-…) and not the time range (from, to).
func passOn(rawQuery string) []string {
	var kept []string
	for _, part := range strings.Split(rawQuery, "&") {
		key, _, _ := strings.Cut(part, "=")
		k, err := url.QueryUnescape(key)
		if part == "" || err != nil || slices.Contains(playlistParams, k) ||
			strings.HasPrefix(k, "var-") || k == "from" || k == "to" {
			continue
		}
		kept = append(kept, part)
	}
	return kept
}

// playlistInterval is how long each dashboard of p is shown: its own
// interval, at least the server's minimum.
func (s *Server) playlistInterval(p *catalog.Playlist) time.Duration {
	least := s.cfg.PlaylistMinInterval
	if least <= 0 {
		least = catalog.MinPlaylistInterval
	}
	return max(p.Interval, least)
}

// playlistStep is the next step of a dashboard page shown as item ?item=
// of the playlist ?playlist=, or nil for a page shown on its own. The step
// goes on from the position, whatever the item names now: an edited
// playlist takes effect at the next step, and a kiosk is never left
// behind. A playlist deleted meanwhile has no step: the kiosk stays on the
// dashboard it shows.
func (s *Server) playlistStep(r *http.Request, d *panel.Dashboard) *views.PlaylistStep {
	q := r.URL.Query()
	slug := q.Get("playlist")
	item, err := strconv.Atoi(q.Get("item"))
	if slug == "" || err != nil || item < 0 {
		return nil
	}
	snap := s.engine.Snapshot()
	if snap == nil {
		return nil
	}
	p := snap.Playlist(slug)
	if p == nil {
		return nil
	}
	next := "/p/" + p.Slug + "?" + strings.Join(append([]string{"item=" + strconv.Itoa(item+1)}, passOn(r.URL.RawQuery)...), "&")
	return &views.PlaylistStep{Script: static.Path("playlist.js"), Next: next, Seconds: int(s.playlistInterval(p) / time.Second)}
}

// exchangePlaylistToken turns ?token= on a playlist's address into the
// token cookie, for the whole site: the token opens the playlist's
// dashboards, each at its own /d/ address. Like exchangeToken it redirects
// to the address without the token; a token that does not open the
// playlist answers 404. It reports whether it answered the request.
func (s *Server) exchangePlaylistToken(w http.ResponseWriter, r *http.Request, p *catalog.Playlist) bool {
	secret := r.URL.Query().Get("token")
	if secret == "" {
		return false
	}
	g, ok := s.tokens.Set().CheckPlaylist(secret, p.ID, time.Now())
	if !ok {
		s.playlistNotFound(w, r)
		return true
	}
	s.setTokenCookie(w, r, secret, g, "/")
	clean := "/p/" + p.Slug
	if kept := withoutToken(r.URL.RawQuery); len(kept) > 0 {
		clean += "?" + strings.Join(kept, "&")
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, clean, http.StatusSeeOther)
	return true
}
