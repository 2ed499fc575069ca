package provision

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/livedash/dashboard/internal/panel"
)

// maxFileBytes bounds one dashboard file; anything larger is a mistake
// (the database would refuse most of it anyway).
const maxFileBytes = 4 << 20

// Doc is one dashboard file, parsed and checked.
type Doc struct {
	// File is the file's path relative to its directory, with forward
	// slashes: what apply records as source_file.
	File string
	// Dashboard is what the file stands for, with Source set to File and
	// the Hash of its content. Panel positions are their order.
	Dashboard *panel.Dashboard
	pos       *positions
}

// Line returns the line of the value at path ("panels[2].sql"), or of the
// nearest enclosing one.
func (d *Doc) Line(path string) int { return d.pos.line(path) }

// sqlLine returns the line of the file that holds line n (0-based) of the
// SQL at path, when the SQL is a literal block; else the line of its key.
func (d *Doc) sqlLine(path string, n int) int {
	if start, ok := d.pos.blocks[path]; ok {
		return start + n
	}
	return d.pos.line(path)
}

// Parse reads one dashboard file; name is its path relative to the
// directory. Its error is Problems.
func Parse(name string, data []byte) (*Doc, error) {
	f, pos, probs := parse(name, data)
	if f != nil {
		probs = append(probs, check(name, f, pos)...)
		probs = append(probs, checkVariables(name, f, pos, probs)...)
	}
	if len(probs) > 0 {
		ps := Problems(probs)
		ps.sort()
		return nil, ps
	}
	d := f.Dashboard()
	hash, err := Hash(d)
	if err != nil {
		return nil, Problems{{File: name, Msg: err.Error()}}
	}
	d.Source = &panel.Source{File: name, Hash: hash}
	return &Doc{File: name, Dashboard: d, pos: pos}, nil
}

// Set is every dashboard file of a directory.
type Set struct {
	Dir  string
	Docs []*Doc // by File
	// Playlists are the playlist files (playlist.go), by File.
	Playlists []*PlaylistDoc
	// Hash is a digest of every file's name and bytes: the Watcher compares
	// it to know whether anything changed.
	Hash string
}

// Doc returns the document of the dashboard slug, or nil.
func (s *Set) Doc(slug string) *Doc {
	for _, d := range s.Docs {
		if d.Dashboard.Slug == slug {
			return d
		}
	}
	return nil
}

// LoadDir reads every *.yaml and *.yml file under dir (subfolders too;
// names starting with a dot are skipped, symbolic links to files are
// followed, as Kubernetes mounts a ConfigMap). A file with a top-level
// playlist key is a playlist (IsPlaylist), any other a dashboard. The
// error is Problems when files are at fault: every problem of every file,
// dashboards or playlists whose slug is used by two files, and playlist
// items fixing variables their dashboard in the folder does not declare.
func LoadDir(dir string) (*Set, error) {
	files, err := dashboardFiles(dir)
	if err != nil {
		return nil, err
	}
	set := &Set{Dir: dir}
	h := sha256.New()
	var probs Problems
	for _, name := range files {
		data, err := readFile(filepath.Join(dir, filepath.FromSlash(name)))
		if err != nil {
			probs = append(probs, Problem{File: name, Msg: err.Error()})
			continue
		}
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(len(name)))
		h.Write(n[:])
		h.Write([]byte(name))
		binary.LittleEndian.PutUint64(n[:], uint64(len(data)))
		h.Write(n[:])
		h.Write(data)
		if IsPlaylist(data) {
			doc, err := ParsePlaylist(name, data)
			if err != nil {
				probs = append(probs, err.(Problems)...)
				continue
			}
			set.Playlists = append(set.Playlists, doc)
			continue
		}
		doc, err := Parse(name, data)
		if err != nil {
			probs = append(probs, err.(Problems)...)
			continue
		}
		set.Docs = append(set.Docs, doc)
	}
	set.Hash = hex.EncodeToString(h.Sum(nil))
	first := make(map[string]*Doc)
	for _, d := range set.Docs {
		slug := d.Dashboard.Slug
		if o, dup := first[slug]; dup {
			probs = append(probs, Problem{File: d.File, Line: d.Line("slug"),
				Msg: fmt.Sprintf("slug: dashboard %s is also defined in %s:%d", slug, o.File, o.Line("slug"))})
			continue
		}
		first[slug] = d
	}
	probs = append(probs, checkPlaylistsAgainstFolder(set)...)
	if len(probs) > 0 {
		probs.sort()
		return set, probs
	}
	return set, nil
}

// dashboardFiles lists the dashboard files under dir, relative to it, with
// forward slashes, sorted.
func dashboardFiles(dir string) ([]string, error) {
	info, err := os.Stat(dir)
	if err != nil {
		return nil, err
	}
	if !info.IsDir() {
		return nil, fmt.Errorf("%s is not a folder", dir)
	}
	var files []string
	err = filepath.WalkDir(dir, func(path string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if path != dir && strings.HasPrefix(e.Name(), ".") {
			if e.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		ext := strings.ToLower(filepath.Ext(e.Name()))
		if e.IsDir() || (ext != ".yaml" && ext != ".yml") {
			return nil
		}
		if e.Type()&fs.ModeSymlink != 0 {
			if st, err := os.Stat(path); err != nil || !st.Mode().IsRegular() {
				return nil // a dangling link or a link to a folder
			}
		} else if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(dir, path)
		if err != nil {
			return err
		}
		files = append(files, filepath.ToSlash(rel))
		return nil
	})
	sort.Strings(files)
	return files, err
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return nil, err
	}
	if len(data) > maxFileBytes {
		return nil, fmt.Errorf("larger than %d bytes", maxFileBytes)
	}
	return data, nil
}
