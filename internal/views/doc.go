// Package views owns the HTML the product sends: the index, dashboard and
// error pages, and one templ component per panel kind, including the
// server-rendered SVG charts. It does no I/O and keeps no state: equal inputs
// give byte-for-byte equal output, because the hub hashes rendered panels to
// derive versions and sends the same bytes to every viewer. It does not know
// how results are queried, how frames are encoded, or how they travel.
//
// Every value that comes from the database reaches the page through templ's
// escaping (text nodes and attributes); nothing is written raw.
package views
