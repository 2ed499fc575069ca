package views

// PlaylistStep is what a dashboard page shown as an item of a playlist
// needs to move on: static/playlist.js, loaded only on such a page, goes
// to Next after Seconds. Next is the playlist's address for the following
// item (/p/<slug>?item=N); the server resolves it when the time comes, so
// a dashboard deleted meanwhile is skipped and an edited playlist takes
// effect at the next step.
type PlaylistStep struct {
	Script  string // URL of static/playlist.js
	Next    string
	Seconds int
}

// PlaylistEmptyPage is the page of a playlist with nothing to show: no
// item names a dashboard that exists. It looks again every Seconds, so a
// kiosk recovers by itself when the playlist is filled.
type PlaylistEmptyPage struct {
	Title   string
	Seconds int
	Assets  Assets
}
