package web

import (
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/livedash/dashboard/internal/views"
)

// screen is how a page is shown, as its address asks (docs/screens.md):
// kiosk mode (?kiosk) and a forced theme (?theme=dark or light). It is the
// viewer's, not the view's: the view key, the stream, the long-poll and the
// panels' bytes are the same with or without it, so a TV in kiosk mode
// shares its view with the desks that show the same choice.
type screen struct {
	kiosk bool
	theme string // "" follows the device
}

// parseScreen reads the screen options of a page's address. ?kiosk with no
// value, or a value strconv.ParseBool takes as true, turns kiosk mode on; a
// false one leaves it off. ?theme is dark or light; empty follows the
// device. Anything else is an error that says what is accepted: a typo in
// a TV's link should show on the TV, not be silently ignored.
func parseScreen(q url.Values) (screen, error) {
	var sc screen
	if vals, ok := q["kiosk"]; ok {
		if len(vals) > 1 {
			return screen{}, fmt.Errorf("kiosk is given %d times; give it once", len(vals))
		}
		if vals[0] != "" {
			on, err := strconv.ParseBool(vals[0])
			if err != nil {
				return screen{}, fmt.Errorf("kiosk takes no value, or true or false; got %q", vals[0])
			}
			sc.kiosk = on
		} else {
			sc.kiosk = true
		}
	}
	if vals, ok := q["theme"]; ok {
		if len(vals) > 1 {
			return screen{}, fmt.Errorf("theme is given %d times; give it once", len(vals))
		}
		if vals[0] != "" && !slices.Contains(views.Themes, vals[0]) {
			return screen{}, fmt.Errorf("theme must be %s (or left out to follow the device); got %q",
				strings.Join(views.Themes, " or "), vals[0])
		}
		sc.theme = vals[0]
	}
	return sc, nil
}

// CheckScreen reports whether q's screen options (kiosk, theme) are ones a
// page accepts, with the page's 400 message when they are not; the token
// command checks the links it prints with it.
func CheckScreen(q url.Values) error {
	_, err := parseScreen(q)
	return err
}

// panelFile is GET /d/{slug}/panels/{file}: a panel's data as CSV when the
// file ends in .csv, else the panel shown full screen.
func (s *Server) panelFile(w http.ResponseWriter, r *http.Request) {
	if strings.HasSuffix(r.PathValue("file"), ".csv") {
		s.panelCSV(w, r)
		return
	}
	s.dashboardPage(w, r, r.PathValue("file"))
}
