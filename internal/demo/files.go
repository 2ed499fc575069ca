package demo

import (
	"embed"
	"fmt"
	"io/fs"

	"github.com/livedash/dashboard/internal/provision"
)

// files are the demo's dashboards and its wall playlist, one YAML file each, in the format of
// docs/files.md: the demo is applied like any team's folder of dashboards,
// and `dashboard export` of a demo database gives these files back.
//
//go:embed dashboards/*.yaml
var files embed.FS

// Dashboards returns the demo's dashboard and playlist files, parsed and
// checked.
func Dashboards() (*provision.Set, error) {
	names, err := fs.Glob(files, "dashboards/*.yaml")
	if err != nil {
		return nil, err
	}
	set := &provision.Set{Dir: "internal/demo/dashboards"}
	for _, name := range names {
		data, err := files.ReadFile(name)
		if err != nil {
			return nil, err
		}
		if provision.IsPlaylist(data) {
			doc, err := provision.ParsePlaylist(name[len("dashboards/"):], data)
			if err != nil {
				return nil, fmt.Errorf("demo playlist %s: %w", name, err)
			}
			set.Playlists = append(set.Playlists, doc)
			continue
		}
		doc, err := provision.Parse(name[len("dashboards/"):], data)
		if err != nil {
			return nil, fmt.Errorf("demo dashboard %s: %w", name, err)
		}
		set.Docs = append(set.Docs, doc)
	}
	return set, nil
}
