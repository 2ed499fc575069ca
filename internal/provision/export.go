package provision

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// Export writes one <slug>.yaml per dashboard and one
// <slug>.playlist.yaml per playlist into dir (created if needed), every
// one or only those named (a slug names a dashboard, a playlist, or both),
// and the JSON Schemas the files point editors to (SchemaFile, and
// PlaylistSchemaFile when there is a playlist). Applying the files and exporting
// again gives the same bytes. It returns the names of the files written.
func Export(ctx context.Context, q catalog.Querier, slugs []string, dir string) ([]string, error) {
	all, err := catalog.ReadDashboards(ctx, q)
	if err != nil {
		return nil, err
	}
	allPlaylists, err := catalog.ReadPlaylists(ctx, q)
	if err != nil {
		return nil, err
	}
	var chosen []*panel.Dashboard
	var playlists []*catalog.Playlist
	if len(slugs) == 0 {
		chosen, playlists = all, allPlaylists
	} else {
		var missing []string
		for _, s := range slugs {
			i := slices.IndexFunc(all, func(d *panel.Dashboard) bool { return d.Slug == s })
			j := slices.IndexFunc(allPlaylists, func(p *catalog.Playlist) bool { return p.Slug == s })
			if i < 0 && j < 0 {
				missing = append(missing, s)
				continue
			}
			if i >= 0 && !slices.Contains(chosen, all[i]) {
				chosen = append(chosen, all[i])
			}
			if j >= 0 && !slices.Contains(playlists, allPlaylists[j]) {
				playlists = append(playlists, allPlaylists[j])
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("no dashboard or playlist %s", strings.Join(missing, ", "))
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var written []string
	for _, d := range chosen {
		b, err := ExportBytes(d)
		if err != nil {
			return written, err
		}
		name := d.Slug + ".yaml"
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return written, err
		}
		written = append(written, name)
	}
	for _, p := range playlists {
		b, err := ExportPlaylistBytes(p)
		if err != nil {
			return written, err
		}
		name := PlaylistFileName(p.Slug)
		if err := writeAtomic(filepath.Join(dir, name), b); err != nil {
			return written, err
		}
		written = append(written, name)
	}
	schema, err := Schema()
	if err != nil {
		return written, err
	}
	if err := writeAtomic(filepath.Join(dir, SchemaFile), schema); err != nil {
		return written, err
	}
	written = append(written, SchemaFile)
	if len(playlists) > 0 {
		schema, err := PlaylistSchema()
		if err != nil {
			return written, err
		}
		if err := writeAtomic(filepath.Join(dir, PlaylistSchemaFile), schema); err != nil {
			return written, err
		}
		written = append(written, PlaylistSchemaFile)
	}
	return written, nil
}

// writeAtomic replaces path with data, so that a Watcher polling the
// folder never reads half a file.
func writeAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".export-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
