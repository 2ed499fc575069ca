package catalog

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/panel"
)

// Tables of playlists. A change to either reloads the catalog (and the
// token set, whose playlist tokens open the dashboards the items name).
const (
	PlaylistsTable     = "dashboard.playlists"
	PlaylistItemsTable = "dashboard.playlist_items"
)

// Reloads reports whether a change to table means the catalog must be
// read again: the tables of dashboards, panels and playlists.
func Reloads(table string) bool {
	switch table {
	case DashboardsTable, PanelsTable, PlaylistsTable, PlaylistItemsTable:
		return true
	}
	return false
}

// Playlist bounds: the schema's playlists_interval_range allows 1 s to 1 h;
// files allow MinPlaylistInterval and up, and a server raises a shorter
// interval to its DASHBOARD_PLAYLIST_MIN_INTERVAL.
const (
	MinPlaylistInterval = 10 * time.Second
	MaxPlaylistInterval = time.Hour
	// DefaultPlaylistInterval is the column's default.
	DefaultPlaylistInterval = time.Minute
	// MaxPlaylistItems is how many dashboards one playlist may hold
	// (playlist_items_position_range).
	MaxPlaylistItems = 1000
)

// Playlist is one row of dashboard.playlists with its items: a named list
// of dashboards that a kiosk shows in turn, each for Interval.
type Playlist struct {
	ID       int64
	Slug     string
	Title    string
	Interval time.Duration
	Items    []PlaylistItem // in rotation order
	// Source is the file `dashboard apply` read the playlist from; nil for
	// one made in SQL.
	Source *panel.Source
}

// PlaylistItem is one dashboard of a playlist. It names the dashboard by
// slug, so that an item survives its dashboard being deleted and made
// again; while no dashboard has the slug, rotation skips the item.
type PlaylistItem struct {
	Dashboard string
	// Variables fixes the dashboard's variables for this item, as
	// ?var-name=value in its address would; nil when it fixes none.
	Variables map[string][]string
}

// ReadPlaylists reads every playlist with its items, by slug. Like
// ReadDashboards it is the one reader of its tables: the server's catalog
// and `dashboard export`, `diff` and `apply` see rows through it.
func ReadPlaylists(ctx context.Context, q Querier) ([]*Playlist, error) {
	rows, err := q.Query(ctx, `
		SELECT id, slug, title, interval_seconds, source_file, source_hash
		FROM dashboard.playlists ORDER BY slug`)
	if err != nil {
		return nil, fmt.Errorf("reading playlists: %w", err)
	}
	var out []*Playlist
	byID := make(map[int64]*Playlist)
	for rows.Next() {
		p := &Playlist{}
		var seconds int
		var file, hash *string
		if err := rows.Scan(&p.ID, &p.Slug, &p.Title, &seconds, &file, &hash); err != nil {
			rows.Close()
			return nil, fmt.Errorf("reading playlists: %w", err)
		}
		p.Interval = time.Duration(seconds) * time.Second
		if file != nil {
			p.Source = &panel.Source{File: *file}
			if hash != nil {
				p.Source.Hash = *hash
			}
		}
		out = append(out, p)
		byID[p.ID] = p
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading playlists: %w", err)
	}
	rows, err = q.Query(ctx, `
		SELECT playlist_id, dashboard, variables::text
		FROM dashboard.playlist_items ORDER BY playlist_id, position`)
	if err != nil {
		return nil, fmt.Errorf("reading playlist items: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var id int64
		var it PlaylistItem
		var vars string
		if err := rows.Scan(&id, &it.Dashboard, &vars); err != nil {
			return nil, fmt.Errorf("reading playlist items: %w", err)
		}
		// Values of the wrong shape (written by hand in SQL) leave the
		// item with the dashboard's defaults rather than the playlist down.
		_ = json.Unmarshal([]byte(vars), &it.Variables)
		if len(it.Variables) == 0 {
			it.Variables = nil
		}
		if p := byID[id]; p != nil {
			p.Items = append(p.Items, it)
		}
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading playlist items: %w", err)
	}
	return out, nil
}

// InsertPlaylist writes p as a new row with its items and returns its id.
func InsertPlaylist(ctx context.Context, tx pgx.Tx, p *Playlist) (int64, error) {
	file, hash := sourceArgs(p.Source)
	var id int64
	err := tx.QueryRow(ctx, `INSERT INTO dashboard.playlists (slug, title, interval_seconds, source_file, source_hash)
		VALUES ($1, $2, $3, $4, $5) RETURNING id`, p.Slug, p.Title, intervalSeconds(p.Interval), file, hash).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("inserting playlist %s: %w", p.Slug, err)
	}
	if err := writeItems(ctx, tx, id, p); err != nil {
		return 0, err
	}
	return id, nil
}

// UpdatePlaylist overwrites the playlist row id with p, its slug included,
// and replaces its items. Callers skip it when nothing changed, so that an
// unchanged row keeps its updated_at.
func UpdatePlaylist(ctx context.Context, tx pgx.Tx, id int64, p *Playlist) error {
	file, hash := sourceArgs(p.Source)
	tag, err := tx.Exec(ctx, `UPDATE dashboard.playlists SET (slug, title, interval_seconds, source_file, source_hash)
		= ($1, $2, $3, $4, $5) WHERE id = $6`, p.Slug, p.Title, intervalSeconds(p.Interval), file, hash, id)
	if err != nil {
		return fmt.Errorf("updating playlist %s: %w", p.Slug, err)
	}
	if tag.RowsAffected() != 1 {
		return fmt.Errorf("updating playlist %s: no playlist with id %d", p.Slug, id)
	}
	if _, err := tx.Exec(ctx, "DELETE FROM dashboard.playlist_items WHERE playlist_id = $1", id); err != nil {
		return fmt.Errorf("updating playlist %s: %w", p.Slug, err)
	}
	return writeItems(ctx, tx, id, p)
}

// DeletePlaylist deletes the playlist row id; its items and tokens go with
// it (ON DELETE CASCADE).
func DeletePlaylist(ctx context.Context, tx pgx.Tx, id int64) error {
	if _, err := tx.Exec(ctx, "DELETE FROM dashboard.playlists WHERE id = $1", id); err != nil {
		return fmt.Errorf("deleting playlist %d: %w", id, err)
	}
	return nil
}

// writeItems inserts p's items under playlist id, positions in order.
func writeItems(ctx context.Context, tx pgx.Tx, id int64, p *Playlist) error {
	for i, it := range p.Items {
		vars := it.Variables
		if vars == nil {
			vars = map[string][]string{}
		}
		b, err := json.Marshal(vars)
		if err != nil {
			return fmt.Errorf("playlist %s: encoding the variables of item %d: %w", p.Slug, i, err)
		}
		if _, err := tx.Exec(ctx, `INSERT INTO dashboard.playlist_items (playlist_id, position, dashboard, variables)
			VALUES ($1, $2, $3, $4::jsonb)`, id, i, it.Dashboard, string(b)); err != nil {
			return fmt.Errorf("playlist %s: inserting item %d (%s): %w", p.Slug, i, it.Dashboard, err)
		}
	}
	return nil
}

func sourceArgs(s *panel.Source) (file, hash *string) {
	if s == nil {
		return nil, nil
	}
	return &s.File, &s.Hash
}

// intervalSeconds is the column value of d: whole seconds, the default
// for zero.
func intervalSeconds(d time.Duration) int {
	if d <= 0 {
		return int(DefaultPlaylistInterval / time.Second)
	}
	return int(d / time.Second)
}

// Playlist returns the playlist with slug, or nil.
func (s *Snapshot) Playlist(slug string) *Playlist {
	for _, p := range s.Playlists {
		if p.Slug == slug {
			return p
		}
	}
	return nil
}
