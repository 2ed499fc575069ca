package views

import (
	"github.com/livedash/dashboard/internal/panel"
)

// This file holds what the page modes of docs/screens.md need beyond the
// stylesheet: kiosk mode and a forced theme are only a class and an
// attribute of <html> (see Dashboard); a full-screen panel is the whole
// page with one style rule.

// soloStyle is the style element of a page that shows only the panel
// called slug: every other panel of the grid is hidden. The rule names
// the panel by its id, so it holds for a grid the stream sends whole. A
// slug outside the catalog's format ([a-z0-9-]) gets no rule rather
// than one that would need escaping.
func soloStyle(slug string) string {
	if !validSlug(slug) {
		return ""
	}
	return `<style>#` + GridID + ` > .panel:not(#panel-` + slug + `) { display: none; }</style>`
}

// validSlug reports whether s has the catalog's slug format, so that it is
// safe in an id selector and in a URL path as it is.
func validSlug(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' && i > 0) {
			return false
		}
	}
	return true
}

// pageTitle is the document title of the page of d, or of its panel called
// slug when slug is not empty: that panel's title first, as a browser tab
// or a TV's input list shows what fits.
func pageTitle(d *panel.Dashboard, slug string) string {
	if slug == "" {
		return d.Title
	}
	for _, p := range d.Panels {
		if p.Slug == slug {
			return p.Title + " — " + d.Title
		}
	}
	return d.Title
}
