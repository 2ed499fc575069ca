package pgserver

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// binaries are the programs a private server needs; they must live in one folder because pg_ctl
// runs the postgres found next to itself.
var binaries = []string{"initdb", "pg_ctl", "postgres"}

// versionedRoots are folders holding one <major>/bin folder per installed PostgreSQL version, as
// Debian and Ubuntu lay them out. Tests replace it to make the search fail.
var versionedRoots = []string{"/usr/lib/postgresql"}

// ErrNotFound is returned by Find when no folder holds all of initdb, pg_ctl and postgres.
var ErrNotFound = errors.New("postgresql server binaries (initdb, pg_ctl, postgres) not found in PATH or " +
	"/usr/lib/postgresql/<version>/bin: install them (apt-get install postgresql) or set DATABASE_URL " +
	"to use an existing server")

// Find returns the folder holding initdb, pg_ctl and postgres. PATH is searched first, because a
// user who put a version there chose it; then /usr/lib/postgresql/<N>/bin, newest major first,
// because Debian does not put the server programs on PATH. Symbolic links are resolved so that the
// folder returned is the one pg_ctl itself will look for postgres in.
func Find() (binDir string, err error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if real, err := filepath.EvalSymlinks(p); err == nil {
			if dir := filepath.Dir(real); hasBinaries(dir) {
				return dir, nil
			}
		}
		if dir := filepath.Dir(p); hasBinaries(dir) {
			return dir, nil
		}
	}
	for _, root := range versionedRoots {
		entries, err := os.ReadDir(root)
		if err != nil {
			continue
		}
		type candidate struct {
			major float64
			dir   string
		}
		var found []candidate
		for _, e := range entries {
			major, err := strconv.ParseFloat(e.Name(), 64)
			if err != nil {
				continue
			}
			dir := filepath.Join(root, e.Name(), "bin")
			if hasBinaries(dir) {
				found = append(found, candidate{major, dir})
			}
		}
		sort.Slice(found, func(i, j int) bool { return found[i].major > found[j].major })
		if len(found) > 0 {
			return found[0].dir, nil
		}
	}
	return "", ErrNotFound
}

// hasBinaries reports whether dir holds every program in binaries as an executable file.
func hasBinaries(dir string) bool {
	for _, name := range binaries {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			return false
		}
	}
	return true
}

// checkBinDir returns a clear error when a configured folder lacks a program.
func checkBinDir(dir string) error {
	var missing []string
	for _, name := range binaries {
		if fi, err := os.Stat(filepath.Join(dir, name)); err != nil || fi.IsDir() {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("postgresql binaries folder %s lacks %s", dir, strings.Join(missing, ", "))
	}
	return nil
}
