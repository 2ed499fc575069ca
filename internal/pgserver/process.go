package pgserver

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// pidFile is what postmaster.pid says about a server: see "postmaster.pid" in the PostgreSQL
// documentation (storage-file-layout). Lines: pid, data directory, start time, port, first socket
// directory, listen address, shared memory key, status.
type pidFile struct {
	pid     int
	port    int
	sockDir string
	status  string
}

// readPidFile parses dir/postmaster.pid; it returns fs.ErrNotExist (wrapped) when there is none.
func readPidFile(dir string) (pidFile, error) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return pidFile{}, err
	}
	lines := strings.Split(string(b), "\n")
	var pf pidFile
	if len(lines) < 1 {
		return pf, fmt.Errorf("postmaster.pid in %s is empty", dir)
	}
	pf.pid, err = strconv.Atoi(strings.TrimSpace(lines[0]))
	if err != nil || pf.pid <= 0 {
		return pf, fmt.Errorf("postmaster.pid in %s: bad pid %q", dir, lines[0])
	}
	if len(lines) > 3 {
		pf.port, _ = strconv.Atoi(strings.TrimSpace(lines[3]))
	}
	if len(lines) > 4 {
		pf.sockDir = strings.TrimSpace(lines[4])
	}
	if len(lines) > 7 {
		pf.status = strings.TrimSpace(lines[7])
	}
	return pf, nil
}

// procState describes a process id as far as starting a server cares.
type procState int

const (
	procGone     procState = iota // no such process, or a zombie: it holds no lock and no memory
	procPostgres                  // a live postgres process
	procOther                     // a live process that is not postgres: the pid was reused
)

// stateOf looks pid up with kill(pid, 0) and, where /proc exists, its state and name. A zombie
// counts as gone: a killed postmaster whose parent does not reap it stays one forever in
// containers, and PostgreSQL itself would take it for a running server.
func stateOf(pid int) procState {
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return procGone
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if _, err := os.Stat("/proc/self"); err == nil {
				return procGone // exited between the two looks
			}
		}
		return procPostgres // no /proc to ask: trust kill
	}
	// Format: pid (comm) state ...; comm may hold spaces and parentheses, so split at the last ')'.
	i := bytes.LastIndexByte(stat, ')')
	j := bytes.IndexByte(stat, '(')
	if i < 0 || j < 0 || i+2 >= len(stat) {
		return procPostgres
	}
	if stat[i+2] == 'Z' || stat[i+2] == 'X' {
		return procGone
	}
	switch string(stat[j+1 : i]) {
	case "postgres", "postmaster":
		return procPostgres
	}
	return procOther
}

// childrenOf lists the live processes whose parent is pid (empty where /proc is missing).
func childrenOf(pid int) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var kids []int
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		fields := strings.Fields(string(stat[i+1:]))
		if len(fields) > 1 && fields[1] == strconv.Itoa(pid) {
			kids = append(kids, child)
		}
	}
	return kids
}

// checkSearchable returns an error naming the first parent folder of dir that the user uid (with
// groups gids) may not enter. A data folder under /root, for example, cannot be used by the
// postgres user even though root can create it. ACLs are not consulted.
func checkSearchable(dir string, uid uint32, gids []uint32) error {
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		fi, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("checking folder %s: %w", p, err)
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			mode := fi.Mode().Perm()
			var ok bool
			switch {
			case st.Uid == uid:
				ok = mode&0o100 != 0
			case containsGid(gids, st.Gid):
				ok = mode&0o010 != 0
			default:
				ok = mode&0o001 != 0
			}
			if !ok {
				return fmt.Errorf("data folder %s: the postgres user cannot enter its parent %s (mode %v, owner uid %d): "+
					"choose a data folder elsewhere (for example under /var/lib or /tmp) or run chmod o+x %s",
					dir, p, mode, st.Uid, p)
			}
		}
		if p == filepath.Dir(p) {
			return nil
		}
	}
}

func containsGid(gids []uint32, g uint32) bool {
	for _, x := range gids {
		if x == g {
			return true
		}
	}
	return false
}
