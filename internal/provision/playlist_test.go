package provision

import (
	"bytes"
	"errors"
	"maps"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
)

// wallFile is a playlist of the two test dashboards, one with a variable.
const wallFile = `# The lobby TV.
playlist: wall
title: Lobby wall
interval: 30s
dashboards:
  - dashboard: ops
  - dashboard: sales
    vars: {region: [eu, us]}
`

func readPlaylists(t *testing.T, pool *pgxpool.Pool) []*catalog.Playlist {
	t.Helper()
	ps, err := catalog.ReadPlaylists(t.Context(), pool)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// playlistRows is every row of the playlist tables with its xmin: equal
// snapshots mean nothing was written.
func playlistRows(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(t.Context(), `
		SELECT coalesce((SELECT string_agg(p.xmin::text || ' ' || p::text, E'\n' ORDER BY id) FROM dashboard.playlists p), '') || E'\n--\n' ||
		       coalesce((SELECT string_agg(i.xmin::text || ' ' || i::text, E'\n' ORDER BY playlist_id, position) FROM dashboard.playlist_items i), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func compare(t *testing.T, pool *pgxpool.Pool, dir string, prune bool) (*Plan, string) {
	t.Helper()
	plan, err := Compare(t.Context(), pool, load(t, dir), prune)
	if err != nil {
		t.Fatalf("Compare: %v", err)
	}
	var b bytes.Buffer
	if err := plan.Write(&b); err != nil {
		t.Fatal(err)
	}
	return plan, b.String()
}

// TestPlaylistRoundTrip: a playlist file beside its dashboards is applied
// as rows (with its file and hash), diffed, exported to the same bytes
// again on the same and on a fresh database, edited in SQL (drift), and a
// playlist made in SQL is kept, then pruned.
func TestPlaylistRoundTrip(t *testing.T) {
	t.Parallel()
	pool := newDB(t)
	src := dir(t, map[string]string{"sales.yaml": salesFile(t), "ops.yaml": opsFile, "wall.yaml": wallFile})
	if res := apply(t, pool, src, false); !res.Applied {
		t.Fatalf("apply wrote nothing; plan %+v", res.Plan)
	}
	ps := readPlaylists(t, pool)
	if len(ps) != 1 {
		t.Fatalf("after apply: got %d playlists, want 1", len(ps))
	}
	p := ps[0]
	wantItems := []catalog.PlaylistItem{{Dashboard: "ops"}, {Dashboard: "sales", Variables: map[string][]string{"region": {"eu", "us"}}}}
	if p.Slug != "wall" || p.Title != "Lobby wall" || p.Interval != 30*time.Second || !reflect.DeepEqual(p.Items, wantItems) {
		t.Errorf("after apply: got %+v with items %+v, want wall, Lobby wall, 30s, %+v", p, p.Items, wantItems)
	}
	if p.Source == nil || p.Source.File != "wall.yaml" || p.Source.Hash != load(t, src).Playlist("wall").Playlist.Source.Hash {
		t.Errorf("after apply: got source %+v, want wall.yaml and the file's hash", p.Source)
	}
	if plan, out := compare(t, pool, src, false); !plan.Empty() {
		t.Errorf("diff right after apply: want no difference, got\n%s", out)
	}

	// Export: the canonical file, and the same bytes through a fresh
	// database.
	first := t.TempDir()
	written, err := Export(t.Context(), pool, nil, first)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := strings.Join(written, " "), "ops.yaml sales.yaml wall.playlist.yaml dashboard.schema.json playlist.schema.json"; got != want {
		t.Errorf("Export wrote %q, want %q", got, want)
	}
	exported := readDir(t, first)
	wantFile := "# yaml-language-server: $schema=playlist.schema.json\nplaylist: wall\ntitle: Lobby wall\ninterval: 30s\ndashboards:\n" +
		"  - dashboard: ops\n  - dashboard: sales\n    vars: {region: [eu, us]}\n"
	if got := exported["wall.playlist.yaml"]; got != wantFile {
		t.Errorf("exported playlist:\n%s\nwant\n%s", got, wantFile)
	}
	if schema, _ := PlaylistSchema(); exported[PlaylistSchemaFile] != string(schema) {
		t.Errorf("Export did not write the playlist schema beside the files")
	}
	fresh := newDB(t)
	apply(t, fresh, first, false)
	second := t.TempDir()
	if _, err := Export(t.Context(), fresh, []string{"wall"}, second); err != nil {
		t.Fatal(err)
	}
	if got := readDir(t, second); got["wall.playlist.yaml"] != wantFile || len(got) != 3 {
		t.Errorf("export -> apply on a fresh database -> export of wall: got files %v\n%s", slicesOf(maps.Keys(got)), got["wall.playlist.yaml"])
	}
	// The exported folder applied where it came from: only the source
	// file changes, and applying it again writes nothing.
	apply(t, pool, first, false)
	before := playlistRows(t, pool)
	if res := apply(t, pool, first, false); res.Applied {
		t.Errorf("applying the exported folder twice: the second wrote %+v", res.Plan)
	}
	if after := playlistRows(t, pool); after != before {
		t.Errorf("applying the same files again wrote playlist rows:\n%s\nwas\n%s", after, before)
	}

	// Edited in SQL: drift, and the file wins.
	exec(t, pool, "UPDATE dashboard.playlists SET interval_seconds = 45")
	plan, out := compare(t, pool, first, false)
	contains(t, "diff after an edit in SQL", out,
		"~ playlist wall (wall.playlist.yaml)\n",
		"! playlist wall: drift: its rows were edited since they were applied from wall.playlist.yaml\n",
		"    interval: 45s -> 30s\n")
	if plan.Empty() {
		t.Errorf("diff after an edit in SQL: got an empty plan")
	}
	apply(t, pool, first, false)
	if got := readPlaylists(t, pool)[0].Interval; got != 30*time.Second {
		t.Errorf("after applying over the edit: interval %s, want 30s", got)
	}

	// An item removed in the file: a line diff of the items.
	edited := dir(t, map[string]string{"sales.yaml": salesFile(t), "ops.yaml": opsFile,
		"wall.playlist.yaml": strings.Replace(wantFile, "  - dashboard: ops\n", "", 1)})
	_, out = compare(t, pool, edited, false)
	contains(t, "diff of a removed item", out,
		"    dashboards:\n      - - dashboard: ops\n        - dashboard: sales\n          vars: {region: [eu, us]}\n")
	apply(t, pool, edited, false)
	if got := readPlaylists(t, pool)[0].Items; len(got) != 1 || got[0].Dashboard != "sales" {
		t.Errorf("after removing ops from the file: items %+v, want sales only", got)
	}

	// Made in SQL: kept and listed, then pruned.
	exec(t, pool, "INSERT INTO dashboard.playlists (slug, title) VALUES ('old', 'Old')")
	_, out = compare(t, pool, edited, false)
	contains(t, "diff with a playlist made in SQL", out, "  playlist old: not in the folder; kept (--prune would remove it)\n")
	_, out = compare(t, pool, edited, true)
	contains(t, "diff --prune", out, "- playlist old: not in the folder\n")
	apply(t, pool, edited, true)
	if ps := readPlaylists(t, pool); len(ps) != 1 || ps[0].Slug != "wall" {
		t.Errorf("after apply --prune: got %d playlists, want wall only", len(ps))
	}
}

func slicesOf(seq func(func(string) bool)) []string {
	var out []string
	for s := range seq {
		out = append(out, s)
	}
	return out
}

// TestPlaylistProblems: a broken playlist file is reported as file:line:
// message, with its dashboards' problems, and a folder with one applies
// nothing at all.
func TestPlaylistProblems(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"rules of the keys", map[string]string{"ops.yaml": opsFile, "wall.yaml": `playlist: wall
title: Wall
interval: 5s
dashboards:
  - dashboard: ops
  - dashboard: Bad_Slug
  - dashboard: ops
    colour: red
    vars: {region: []}
`}, []string{
			"wall.yaml:3: interval: must be between 10s and 1h, got 5s",
			`wall.yaml:6: dashboards[1].dashboard: "Bad_Slug" is not a slug: 1 to 63 lower-case letters, digits and dashes, starting with a letter or digit`,
			"wall.yaml:8: dashboards[2].colour: unknown key; known keys here: dashboard, vars",
			"wall.yaml:9: dashboards[2].vars.region: give at least one value, as a list: [value]",
		}},
		{"YAML syntax", map[string]string{"wall.yaml": "playlist: wall\ntitle: Wall\ndashboards:\n\t- dashboard: ops\n"},
			[]string{"wall.yaml:4: found character that cannot start any token"}},
		{"missing keys", map[string]string{"wall.yaml": "playlist: wall\n"}, []string{
			"wall.yaml:1: the playlist: missing key title",
			"wall.yaml:1: the playlist: missing key dashboards",
		}},
		{"a variable its dashboard does not declare", map[string]string{"ops.yaml": opsFile, "wall.yaml": `playlist: wall
title: Wall
dashboards:
  - dashboard: ops
    vars:
      region: [eu]
`}, []string{"wall.yaml:6: dashboards[0].vars.region: dashboard ops (ops.yaml) declares no variable region (it has none)"}},
		{"one playlist in two files", map[string]string{
			"a.yaml": "playlist: wall\ntitle: A\ndashboards: []\n",
			"b.yaml": "\nplaylist: wall\ntitle: B\ndashboards: []\n",
		}, []string{"b.yaml:2: playlist: playlist wall is also defined in a.yaml:1"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadDir(dir(t, tt.files))
			var probs Problems
			if !errors.As(err, &probs) {
				t.Fatalf("LoadDir: got %v, want Problems", err)
			}
			var got []string
			for _, p := range probs {
				got = append(got, p.String())
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got problems\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}

	// A dashboard that exists nowhere: found by diff and apply, at its
	// line, and nothing of the folder is applied (ops neither).
	pool := newDB(t)
	src := dir(t, map[string]string{"ops.yaml": opsFile, "wall.yaml": `playlist: wall
title: Wall
dashboards:
  - dashboard: ops
  - dashboard: nosuch
`})
	before, beforePlaylists := rows(t, pool), playlistRows(t, pool)
	err := applyDir(t, pool, src, testOptions())
	var probs Problems
	if !errors.As(err, &probs) || err.Error() != "wall.yaml:5: dashboards[1].dashboard: no dashboard nosuch in the folder or the database" {
		t.Errorf("apply: got %v, want the missing dashboard at wall.yaml:5", err)
	}
	if rows(t, pool) != before || playlistRows(t, pool) != beforePlaylists {
		t.Errorf("apply with a problem wrote rows")
	}
	// With --prune, a dashboard only in the database does not count.
	exec(t, pool, "INSERT INTO dashboard.dashboards (slug, title) VALUES ('nosuch', 'In SQL')")
	if err := applyDir(t, pool, src, testOptions()); err != nil {
		t.Errorf("apply with nosuch in the database: %v", err)
	}
	opts := testOptions()
	opts.Prune = true
	if err := applyDir(t, pool, src, opts); err == nil || !strings.Contains(err.Error(), "no dashboard nosuch in the folder (--prune removes those only in the database)") {
		t.Errorf("apply --prune: got %v, want nosuch refused", err)
	}
}

// TestPlaylistSchemaFileIsCurrent: docs/playlist.schema.json is what
// PlaylistSchema makes from the code. After a change to PlaylistFile:
// go run ./cmd/dashboard schema playlist > docs/playlist.schema.json
func TestPlaylistSchemaFileIsCurrent(t *testing.T) {
	want, err := PlaylistSchema()
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile("../../docs/playlist.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("docs/playlist.schema.json is not what the code makes; run: go run ./cmd/dashboard schema playlist > docs/playlist.schema.json")
	}
}

// TestIsPlaylist: a top-level playlist key, and nothing else, makes a
// file a playlist.
func TestIsPlaylist(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		data string
		want bool
	}{
		{"playlist: wall\ntitle: W\ndashboards: []\n", true},
		{"# comment\ntitle: W\nplaylist: wall\n", true},
		{"slug: ops\ntitle: Ops\n", false},
		{"slug: ops\npanels:\n  - playlist: x\n", false},
		{"- playlist: wall\n", false},
		{"playlist: [unclosed\n", false},
		{"", false},
	} {
		if got := IsPlaylist([]byte(tt.data)); got != tt.want {
			t.Errorf("IsPlaylist(%q): got %v, want %v", tt.data, got, tt.want)
		}
	}
}
