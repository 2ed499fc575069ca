package catalog_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

func readPlaylists(t *testing.T, db *testDB) []*catalog.Playlist {
	t.Helper()
	ps, err := catalog.ReadPlaylists(t.Context(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

// TestPlaylistWriteRoundTrip: what the writers write reads back the same
// (items in order, variables, source), an update replaces the items, a
// delete takes the items with it, and the loader's snapshot holds the
// playlists by slug.
func TestPlaylistWriteRoundTrip(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	wall := &catalog.Playlist{Slug: "wall", Title: "Wall", Interval: 45 * time.Second,
		Items: []catalog.PlaylistItem{
			{Dashboard: "ops"},
			{Dashboard: "sales", Variables: map[string][]string{"region": {"eu", "us"}}},
			{Dashboard: "ops", Variables: map[string][]string{"env": {"prod"}}},
		},
		Source: &panel.Source{File: "wall.yaml", Hash: strings.Repeat("cd", 32)}}
	bare := &catalog.Playlist{Slug: "bare", Title: "Bare"}
	var wallID int64
	inTx(t, db, func(tx pgx.Tx) error {
		var err error
		if wallID, err = catalog.InsertPlaylist(t.Context(), tx, wall); err != nil {
			return err
		}
		_, err = catalog.InsertPlaylist(t.Context(), tx, bare)
		return err
	})
	got := readPlaylists(t, db)
	if len(got) != 2 || got[0].Slug != "bare" || got[1].Slug != "wall" {
		t.Fatalf("got playlists %+v, want bare and wall, by slug", got)
	}
	wall.ID = wallID
	if !reflect.DeepEqual(got[1], wall) {
		t.Errorf("wall read back as\n%+v\nwant\n%+v", got[1], wall)
	}
	if b := got[0]; b.Interval != catalog.DefaultPlaylistInterval || b.Source != nil || len(b.Items) != 0 {
		t.Errorf("bare read back as %+v, want the default interval, no source, no items", b)
	}

	wall.Title, wall.Interval, wall.Source = "Lobby", 10*time.Second, nil
	wall.Items = []catalog.PlaylistItem{{Dashboard: "sales"}}
	inTx(t, db, func(tx pgx.Tx) error { return catalog.UpdatePlaylist(t.Context(), tx, wallID, wall) })
	if got := readPlaylists(t, db)[1]; !reflect.DeepEqual(got, wall) {
		t.Errorf("after update: read back as %+v, want %+v", got, wall)
	}
	err := pgx.BeginFunc(t.Context(), db.pool, func(tx pgx.Tx) error { return catalog.UpdatePlaylist(t.Context(), tx, 9999, wall) })
	if err == nil || !strings.Contains(err.Error(), "no playlist with id 9999") {
		t.Errorf("update of a missing playlist: got %v", err)
	}

	snap := load(t, loader(db.pool))
	if p := snap.Playlist("wall"); p == nil || p.Title != "Lobby" || snap.Playlist("nosuch") != nil {
		t.Errorf("snapshot: got wall %+v, want Lobby and no playlist nosuch", p)
	}

	inTx(t, db, func(tx pgx.Tx) error { return catalog.DeletePlaylist(t.Context(), tx, wallID) })
	var items int
	if err := db.pool.QueryRow(t.Context(), "SELECT count(*) FROM dashboard.playlist_items").Scan(&items); err != nil || items != 0 {
		t.Errorf("after delete: %d items left (%v), want 0", items, err)
	}
}

// TestPlaylistRowRules: the schema refuses what no writer should write.
func TestPlaylistRowRules(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	for _, tt := range []struct {
		name, sql, constraint string
	}{
		{"a bad slug", "INSERT INTO dashboard.playlists (slug, title) VALUES ('Wall', 'W')", "playlists_slug_format"},
		{"an empty title", "INSERT INTO dashboard.playlists (slug, title) VALUES ('w', '')", "playlists_title_length"},
		{"an interval over 1h", "INSERT INTO dashboard.playlists (slug, title, interval_seconds) VALUES ('w', 'W', 3601)", "playlists_interval_range"},
		{"an interval of 0", "INSERT INTO dashboard.playlists (slug, title, interval_seconds) VALUES ('w', 'W', 0)", "playlists_interval_range"},
		{"variables not an object", `WITH p AS (INSERT INTO dashboard.playlists (slug, title) VALUES ('w', 'W') RETURNING id)
			INSERT INTO dashboard.playlist_items (playlist_id, position, dashboard, variables) SELECT id, 0, 'ops', '[]' FROM p`, "playlist_items_variables_object"},
		{"a token of a dashboard and a playlist", `WITH d AS (INSERT INTO dashboard.dashboards (slug, title) VALUES ('d', 'D') RETURNING id),
			p AS (INSERT INTO dashboard.playlists (slug, title) VALUES ('p', 'P') RETURNING id)
			INSERT INTO dashboard.access_tokens (token_hash, label, dashboard_id, playlist_id) SELECT sha256('x'), 'x', d.id, p.id FROM d, p`, "access_tokens_one_scope"},
	} {
		_, err := db.pool.Exec(t.Context(), tt.sql)
		if err == nil || !strings.Contains(err.Error(), tt.constraint) {
			t.Errorf("%s: got %v, want a violation of %s", tt.name, err, tt.constraint)
		}
	}
}

// TestReloads: the tables whose changes reload the catalog.
func TestReloads(t *testing.T) {
	t.Parallel()
	for table, want := range map[string]bool{
		"dashboard.dashboards": true, "dashboard.panels": true, "dashboard.playlists": true,
		"dashboard.playlist_items": true, "dashboard.access_tokens": false, "public.orders": false,
	} {
		if got := catalog.Reloads(table); got != want {
			t.Errorf("Reloads(%s): got %v, want %v", table, got, want)
		}
	}
}
