package provision

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.yaml.in/yaml/v3"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
	"github.com/livedash/dashboard/internal/variables"
)

// A playlist file lives in the same folder as the dashboard files. Its key
// `playlist:` (the playlist's slug, where a dashboard file has `slug:`) is
// what tells it apart: a file with a top-level playlist key is read as a
// playlist, any other as a dashboard.

// PlaylistFile is one playlist file as written, with the same tag rules
// as File (see there).
type PlaylistFile struct {
	Playlist   string          `yaml:"playlist" desc:"The playlist's address, /p/<slug>: lower-case letters, digits and dashes, starting with a letter or digit. This key makes the file a playlist." pattern:"^[a-z0-9][a-z0-9-]{0,62}$"`
	Title      string          `yaml:"title" desc:"Title of the page shown while the playlist has nothing to show." minLength:"1" maxLength:"200"`
	Interval   string          `yaml:"interval,omitempty" desc:"How long each dashboard is shown, from 10s to 1h, e.g. 30s or 2m. A server raises a shorter one to its DASHBOARD_PLAYLIST_MIN_INTERVAL." pattern:"^([0-9]+h)?([0-9]+m)?([0-9]+s)?$" minLength:"2" default:"1m"`
	Dashboards []PlaylistEntry `yaml:"dashboards" desc:"The dashboards in rotation order. One may come several times, with other variables." maxItems:"1000"`
}

// PlaylistEntry is one dashboard of a playlist file.
type PlaylistEntry struct {
	Dashboard string              `yaml:"dashboard" desc:"The dashboard's slug: a dashboard of this folder, or one in the database." pattern:"^[a-z0-9][a-z0-9-]{0,62}$"`
	Vars      map[string][]string `yaml:"vars,omitempty" desc:"Variables this item shows the dashboard with, name: [value, ...], as ?var-name=value in its address would." style:"flow"`
}

// PlaylistSchemaFile is the name of the JSON Schema of playlist files,
// written by Export beside the playlists and pointed to by their first line.
const PlaylistSchemaFile = "playlist.schema.json"

// PlaylistSchema returns the JSON Schema of a playlist file, made as Schema
// makes the dashboard's: docs/playlist.schema.json holds it.
func PlaylistSchema() ([]byte, error) {
	return schemaOf(reflect.TypeOf(PlaylistFile{}), PlaylistSchemaFile, "Playlist",
		"One playlist of github.com/livedash/dashboard: dashboards a kiosk shows in turn (docs/playlists.md).")
}

// PlaylistDoc is one playlist file, parsed and checked.
type PlaylistDoc struct {
	// File is the file's path relative to its directory, with forward
	// slashes: what apply records as source_file.
	File string
	// Playlist is what the file stands for, with Source set to File and
	// the PlaylistHash of its content.
	Playlist *catalog.Playlist
	pos      *positions
}

// Line returns the line of the value at path ("dashboards[1].vars"), or of
// the nearest enclosing one.
func (d *PlaylistDoc) Line(path string) int { return d.pos.line(path) }

// IsPlaylist reports whether data is a playlist file: a YAML mapping with
// the key playlist. A file that does not parse is not one; it is then read
// as a dashboard file, whose reading reports why.
func IsPlaylist(data []byte) bool {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil {
		return false
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) == 1 {
		root = root.Content[0]
	}
	if root.Kind != yaml.MappingNode {
		return false
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		if k := root.Content[i]; k.Kind == yaml.ScalarNode && k.Value == "playlist" {
			return true
		}
	}
	return false
}

// ParsePlaylist reads one playlist file; name is its path relative to the
// directory. Its error is Problems.
func ParsePlaylist(name string, data []byte) (*PlaylistDoc, error) {
	f := &PlaylistFile{}
	pos, probs := parseInto(name, data, f, "playlist", "playlist, title, dashboards")
	if pos != nil {
		probs = append(probs, checkPlaylist(name, f, pos)...)
	}
	if len(probs) > 0 {
		ps := Problems(probs)
		ps.sort()
		return nil, ps
	}
	p := f.playlist()
	hash, err := PlaylistHash(p)
	if err != nil {
		return nil, Problems{{File: name, Msg: err.Error()}}
	}
	p.Source = &panel.Source{File: name, Hash: hash}
	return &PlaylistDoc{File: name, Playlist: p, pos: pos}, nil
}

// checkPlaylist applies the rules that need more than a tag: what the
// schema of 0010 would refuse, and an interval outside 10s to 1h.
func checkPlaylist(name string, f *PlaylistFile, pos *positions) []Problem {
	var probs []Problem
	at := func(path, format string, args ...any) {
		probs = append(probs, Problem{File: name, Line: pos.line(path), Msg: path + ": " + fmt.Sprintf(format, args...)})
	}
	if len([]rune(name)) > maxSourceChars {
		probs = append(probs, Problem{File: name, Msg: fmt.Sprintf("the file's path has more than %d characters", maxSourceChars)})
	}
	if f.Title != "" && strings.TrimSpace(f.Title) == "" {
		at("title", "must not be blank")
	}
	if f.Interval != "" && pattern(refreshPattern).MatchString(f.Interval) {
		d, err := time.ParseDuration(f.Interval)
		if err != nil || d < catalog.MinPlaylistInterval || d > catalog.MaxPlaylistInterval {
			at("interval", "must be between %s and %s, got %s", formatDuration(catalog.MinPlaylistInterval),
				formatDuration(catalog.MaxPlaylistInterval), f.Interval)
		}
	}
	for i, e := range f.Dashboards {
		path := fmt.Sprintf("dashboards[%d].vars", i)
		for _, name := range slices.Sorted(mapsKeys(e.Vars)) {
			values := e.Vars[name]
			switch {
			case len(values) == 0:
				at(path+"."+name, "give at least one value, as a list: [value]")
			case len(values) > variables.MaxValues:
				at(path+"."+name, "%d values, at most %d allowed", len(values), variables.MaxValues)
			}
			for _, v := range values {
				if len(v) > variables.MaxValueBytes {
					at(path+"."+name, "a value of %d bytes, at most %d allowed", len(v), variables.MaxValueBytes)
				}
			}
		}
		if b, _ := json.Marshal(e.Vars); len(b) > maxJSONBytes {
			at(path, "take %d bytes as JSON, at most %d allowed", len(b), maxJSONBytes)
		}
	}
	return probs
}

func mapsKeys(m map[string][]string) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// playlist turns f, already checked, into the rows it stands for.
func (f *PlaylistFile) playlist() *catalog.Playlist {
	p := &catalog.Playlist{Slug: f.Playlist, Title: f.Title, Interval: catalog.DefaultPlaylistInterval}
	if f.Interval != "" {
		p.Interval, _ = time.ParseDuration(f.Interval)
	}
	for _, e := range f.Dashboards {
		it := catalog.PlaylistItem{Dashboard: e.Dashboard}
		if len(e.Vars) > 0 {
			it.Variables = e.Vars
		}
		p.Items = append(p.Items, it)
	}
	return p
}

// playlistFileOf is the canonical file of p: what Export writes. The
// default interval (1m) is left out.
func playlistFileOf(p *catalog.Playlist) *PlaylistFile {
	f := &PlaylistFile{Playlist: p.Slug, Title: p.Title, Dashboards: []PlaylistEntry{}}
	if p.Interval != catalog.DefaultPlaylistInterval && p.Interval > 0 {
		f.Interval = formatDuration(p.Interval)
	}
	for _, it := range p.Items {
		f.Dashboards = append(f.Dashboards, PlaylistEntry{Dashboard: it.Dashboard, Vars: it.Variables})
	}
	return f
}

// MarshalPlaylist writes p in its canonical form, as Marshal does a
// dashboard: equal playlists give equal bytes, so it is also what
// PlaylistHash digests.
func MarshalPlaylist(p *catalog.Playlist) ([]byte, error) {
	f := playlistFileOf(p)
	root := encodeValue(reflect.ValueOf(f).Elem(), "")
	if len(f.Dashboards) == 0 {
		// omitempty does not apply to a required key: an empty playlist
		// says so, as [] (encodeValue writes a block list, which has no
		// empty form).
		for i := 0; i+1 < len(root.Content); i += 2 {
			if root.Content[i].Value == "dashboards" {
				root.Content[i+1].Style = yaml.FlowStyle
			}
		}
	}
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, fmt.Errorf("writing playlist %s: %w", p.Slug, err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing playlist %s: %w", p.Slug, err)
	}
	return b.Bytes(), nil
}

// ExportPlaylistBytes is the file Export writes for p: a line for editors,
// then MarshalPlaylist's bytes.
func ExportPlaylistBytes(p *catalog.Playlist) ([]byte, error) {
	b, err := MarshalPlaylist(p)
	if err != nil {
		return nil, err
	}
	return append([]byte("# yaml-language-server: $schema="+PlaylistSchemaFile+"\n"), b...), nil
}

// PlaylistHash is the hex SHA-256 of MarshalPlaylist(p): the source_hash
// apply records, and what diff computes again from the rows (drift).
func PlaylistHash(p *catalog.Playlist) (string, error) {
	b, err := MarshalPlaylist(p)
	if err != nil {
		return "", err
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:]), nil
}

// PlaylistFileName is the name Export gives the file of the playlist
// slug: apart from <slug>.yaml, so that a dashboard and a playlist may
// share a slug (their addresses, /d/ and /p/, do not collide).
func PlaylistFileName(slug string) string { return slug + ".playlist.yaml" }

// Playlist returns the document of the playlist slug, or nil.
func (s *Set) Playlist(slug string) *PlaylistDoc {
	for _, d := range s.Playlists {
		if d.Playlist.Slug == slug {
			return d
		}
	}
	return nil
}

// checkPlaylistsAgainstFolder is LoadDir's check of what playlists say
// about the folder's dashboards: two files of one playlist, and variables
// that a dashboard of the folder does not declare. Whether a dashboard
// named exists at all needs the database too: Diff checks it.
func checkPlaylistsAgainstFolder(set *Set) []Problem {
	var probs []Problem
	first := make(map[string]*PlaylistDoc)
	for _, d := range set.Playlists {
		slug := d.Playlist.Slug
		if o, dup := first[slug]; dup {
			probs = append(probs, Problem{File: d.File, Line: d.Line("playlist"),
				Msg: fmt.Sprintf("playlist: playlist %s is also defined in %s:%d", slug, o.File, o.Line("playlist"))})
			continue
		}
		first[slug] = d
		for i, it := range d.Playlist.Items {
			doc := set.Doc(it.Dashboard)
			if doc == nil {
				continue
			}
			for _, name := range slices.Sorted(mapsKeys(it.Variables)) {
				if doc.Dashboard.Variable(name) == nil {
					path := fmt.Sprintf("dashboards[%d].vars.%s", i, name)
					probs = append(probs, Problem{File: d.File, Line: d.Line(path),
						Msg: fmt.Sprintf("%s: dashboard %s (%s) declares no variable %s%s", path, it.Dashboard, doc.File, name, declaredList(doc.Dashboard))})
				}
			}
		}
	}
	return probs
}

// declaredList is ", it has: a, b" for d's variables, or "" without any.
func declaredList(d *panel.Dashboard) string {
	var names []string
	for _, v := range d.Variables {
		names = append(names, v.Name)
	}
	if len(names) == 0 {
		return " (it has none)"
	}
	return " (it has: " + strings.Join(names, ", ") + ")"
}

// PlaylistChange is what apply does to one playlist.
type PlaylistChange struct {
	Op   Op
	Slug string
	// File is the file the playlist comes from; "" for one in the
	// database only.
	File string
	// Drift is set when the rows were edited in SQL since they were
	// applied from a file.
	Drift  bool
	Fields []Field           // settings that differ (Change)
	Want   *PlaylistDoc      // nil for Remove and database-only playlists
	Have   *catalog.Playlist // nil for Add
}

// DiffPlaylists compares the directory's playlists with the rows (have),
// matched by slug, given the dashboards the database holds now
// (dashboards). A playlist in the database only is removed when prune is
// set. An item naming a dashboard that will not exist once the plan is
// applied (in neither the folder nor, unless pruned, the database) is a
// problem at its line: the error is then Problems.
func DiffPlaylists(want *Set, have []*catalog.Playlist, dashboards []*panel.Dashboard, prune bool) ([]PlaylistChange, error) {
	exists := make(map[string]bool)
	for _, d := range want.Docs {
		exists[d.Dashboard.Slug] = true
	}
	if !prune {
		for _, d := range dashboards {
			exists[d.Slug] = true
		}
	}
	var probs Problems
	haveBySlug := make(map[string]*catalog.Playlist)
	for _, h := range have {
		haveBySlug[h.Slug] = h
	}
	var out []PlaylistChange
	seen := make(map[string]bool)
	for _, doc := range want.Playlists {
		w := doc.Playlist
		seen[w.Slug] = true
		for i, it := range w.Items {
			if !exists[it.Dashboard] {
				where := "the folder or the database"
				if prune {
					where = "the folder (--prune removes those only in the database)"
				}
				path := fmt.Sprintf("dashboards[%d].dashboard", i)
				probs = append(probs, Problem{File: doc.File, Line: doc.Line(path),
					Msg: fmt.Sprintf("%s: no dashboard %s in %s", path, it.Dashboard, where)})
			}
		}
		c := PlaylistChange{Slug: w.Slug, File: doc.File, Want: doc, Have: haveBySlug[w.Slug]}
		if c.Have == nil {
			c.Op = Add
			out = append(out, c)
			continue
		}
		drift, err := playlistDrifted(c.Have)
		if err != nil {
			return nil, err
		}
		c.Drift = drift
		c.Fields = playlistFields(w, c.Have)
		hs := c.Have.Source
		switch {
		case hs == nil:
			c.Fields = append(c.Fields, Field{Name: "source_file", Old: "(made in SQL)", New: doc.File})
		case hs.File != doc.File:
			c.Fields = append(c.Fields, Field{Name: "source_file", Old: hs.File, New: doc.File})
		case hs.Hash != w.Source.Hash && len(c.Fields) == 0:
			c.Fields = append(c.Fields, Field{Name: "source_hash", Old: short(hs.Hash), New: short(w.Source.Hash)})
		}
		if len(c.Fields) > 0 {
			c.Op = Change
		}
		out = append(out, c)
	}
	if len(probs) > 0 {
		probs.sort()
		return nil, probs
	}
	for _, h := range have {
		if seen[h.Slug] {
			continue
		}
		c := PlaylistChange{Slug: h.Slug, Have: h}
		if h.Source != nil {
			c.File = h.Source.File
		}
		drift, err := playlistDrifted(h)
		if err != nil {
			return nil, err
		}
		c.Drift = drift
		if prune {
			c.Op = Remove
		}
		out = append(out, c)
	}
	slices.SortStableFunc(out, func(a, b PlaylistChange) int { return strings.Compare(a.Slug, b.Slug) })
	return out, nil
}

// playlistDrifted reports whether h came from a file and its content no
// longer has the hash recorded when it was applied.
func playlistDrifted(h *catalog.Playlist) (bool, error) {
	return driftedFrom(h.Source, func() (string, error) { return PlaylistHash(h) })
}

func playlistFields(w, h *catalog.Playlist) []Field {
	var fs fields
	fs.add("title", h.Title, w.Title)
	fs.add("interval", formatDuration(h.Interval), formatDuration(w.Interval))
	fs.add("dashboards", itemsText(h.Items), itemsText(w.Items))
	return fs
}

// itemsText is a playlist's items as their file would show them, one a
// line, so that a change reads as a line diff.
func itemsText(items []catalog.PlaylistItem) string {
	if len(items) == 0 {
		return "(none)"
	}
	b, err := MarshalPlaylist(&catalog.Playlist{Items: items, Interval: catalog.DefaultPlaylistInterval})
	if err != nil {
		return fmt.Sprint(items)
	}
	s := string(b)
	if i := strings.Index(s, "dashboards:\n"); i >= 0 {
		s = s[i+len("dashboards:\n"):]
	}
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = strings.TrimPrefix(l, "  ")
	}
	return strings.Join(lines, "\n")
}

// writePlaylists prints the playlist lines of a plan, as Plan.Write does
// the dashboards'.
func writePlaylists(ew *errWriter, changes []PlaylistChange) {
	for _, c := range changes {
		from := ""
		if c.Drift {
			from = c.Have.Source.File
		}
		writeHead(ew, "playlist", c.Slug, c.File, c.Op, c.Want == nil, c.Drift, from)
		writeFields(ew, "    ", c.Fields)
	}
}

// writePlaylistRows carries out the playlist part of plan in tx: removals,
// then changes, then additions. It runs after the dashboards' part, though
// playlists name dashboards by slug and would not mind the order.
func writePlaylistRows(ctx context.Context, tx pgx.Tx, plan *Plan) error {
	for _, op := range []Op{Remove, Change, Add} {
		for _, c := range plan.Playlists {
			if c.Op != op {
				continue
			}
			var err error
			switch op {
			case Remove:
				err = catalog.DeletePlaylist(ctx, tx, c.Have.ID)
			case Change:
				err = catalog.UpdatePlaylist(ctx, tx, c.Have.ID, c.Want.Playlist)
			case Add:
				_, err = catalog.InsertPlaylist(ctx, tx, c.Want.Playlist)
			}
			if err != nil {
				if c.Want != nil {
					return Problems{{File: c.Want.File, Line: c.Want.Line(""), Msg: err.Error()}}
				}
				return err
			}
		}
	}
	return nil
}
