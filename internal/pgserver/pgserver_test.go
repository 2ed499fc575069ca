package pgserver

import (
	"context"
	"errors"
	"log/slog"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
)

// dataDir returns a fresh, short folder under os.TempDir for one server. t.TempDir is not used:
// its parents are mode 0700, closed to the postgres user, and its names are long.
func dataDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "pgs")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// start starts a server on dir and stops it when the test ends, whatever happens.
func start(t *testing.T, dir string) *Server {
	t.Helper()
	s, err := Start(t.Context(), Options{Dir: dir, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s
}

func connect(t *testing.T, s *Server, db string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.ConnString(db))
	if err != nil {
		t.Fatalf("connecting to %s: %v", db, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

func mustExec(t *testing.T, conn *pgx.Conn, sql string) {
	t.Helper()
	if _, err := conn.Exec(t.Context(), sql); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func count(t *testing.T, s *Server) int {
	t.Helper()
	conn, err := pgx.Connect(t.Context(), s.ConnString("dashboard"))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())
	var n int
	if err := conn.QueryRow(t.Context(), "SELECT count(*) FROM t").Scan(&n); err != nil {
		t.Fatalf("counting rows: %v", err)
	}
	return n
}

// seed creates database dashboard with table t holding one row.
func seed(t *testing.T, s *Server) {
	t.Helper()
	for range 2 { // idempotent
		if err := s.CreateDatabase(t.Context(), "dashboard"); err != nil {
			t.Fatalf("CreateDatabase: %v", err)
		}
	}
	conn := connect(t, s, "dashboard")
	mustExec(t, conn, "CREATE TABLE t (x int)")
	mustExec(t, conn, "INSERT INTO t VALUES (1)")
}

func TestStartStopStartKeepsData(t *testing.T) {
	t.Parallel()
	dir := dataDir(t)
	s := start(t, dir)
	if !s.Owned() {
		t.Fatal("got Owned() false for a server Start started, want true")
	}
	if _, err := os.Stat(filepath.Join(dir, ".s.PGSQL.5432")); err != nil {
		t.Fatalf("socket in data folder: %v", err)
	}
	seed(t, s)

	conn := connect(t, s, "postgres")
	var listen string
	if err := conn.QueryRow(t.Context(), "SHOW listen_addresses").Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Errorf("got listen_addresses %q, want empty (no TCP)", listen)
	}
	// DASHBOARD_FEED=logical must work on the private server.
	var walLevel string
	if err := conn.QueryRow(t.Context(), "SHOW wal_level").Scan(&walLevel); err != nil {
		t.Fatal(err)
	}
	if walLevel != "logical" {
		t.Errorf("got wal_level %q, want logical", walLevel)
	}
	conn.Close(t.Context())

	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "postmaster.pid")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("postmaster.pid after Stop: got %v, want not exist", err)
	}

	s2 := start(t, dir)
	if got := count(t, s2); got != 1 {
		t.Errorf("rows after restart: got %d, want 1", got)
	}
}

func TestStartOnRunningServerIsNotOwned(t *testing.T) {
	t.Parallel()
	dir := dataDir(t)
	s := start(t, dir)
	seed(t, s)

	s2 := start(t, dir)
	if s2.Owned() {
		t.Fatal("got Owned() true for a server found running, want false")
	}
	if got, want := s2.ConnString("x"), s.ConnString("x"); got != want {
		t.Errorf("ConnString: got %q, want %q", got, want)
	}
	if err := s2.Stop(t.Context()); err != nil {
		t.Fatalf("Stop of attached server: %v", err)
	}
	if got := count(t, s); got != 1 {
		t.Errorf("rows after Stop of attached server: got %d, want 1", got)
	}
	if err := s2.Kill(); err == nil {
		t.Error("Kill of attached server: got nil error, want one")
	}
	if err := s2.Restart(t.Context(), "fast"); err == nil {
		t.Error("Restart of attached server: got nil error, want one")
	}
}

func TestStartAfterKill(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		// corrupt changes the stale postmaster.pid a killed server left behind.
		corrupt func(t *testing.T, path string)
	}{
		// Where PID 1 does not reap orphans (this container), the killed postmaster stays a zombie.
		{"stale pid as left", func(*testing.T, string) {}},
		{"dead pid", func(t *testing.T, path string) {
			// A reaped process: PostgreSQL replaces both lock files itself.
			cmd := osexec.Command("true")
			if err := cmd.Run(); err != nil {
				t.Fatal(err)
			}
			setPid(t, path, cmd.Process.Pid)
			setPid(t, filepath.Join(filepath.Dir(path), ".s.PGSQL.5432.lock"), cmd.Process.Pid)
		}},
		{"pid reused by another program", func(t *testing.T, path string) {
			// The test binary is alive and is not postgres, like a pid reused after a reboot.
			setPid(t, path, os.Getpid())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := dataDir(t)
			s := start(t, dir)
			seed(t, s)
			if err := s.Kill(); err != nil {
				t.Fatalf("Kill: %v", err)
			}
			pidPath := filepath.Join(dir, "postmaster.pid")
			if _, err := os.Stat(pidPath); err != nil {
				t.Fatalf("stale postmaster.pid after Kill: %v", err)
			}
			tt.corrupt(t, pidPath)

			s2 := start(t, dir)
			if !s2.Owned() {
				t.Fatal("got Owned() false after a crash, want true")
			}
			if got := count(t, s2); got != 1 {
				t.Errorf("rows after crash: got %d, want 1", got)
			}
		})
	}
}

func TestRestart(t *testing.T) {
	t.Parallel()
	s := start(t, dataDir(t))
	seed(t, s)
	for _, mode := range []string{"fast", "immediate"} {
		if err := s.Restart(t.Context(), mode); err != nil {
			t.Fatalf("Restart(%s): %v", mode, err)
		}
		if got := count(t, s); got != 1 {
			t.Errorf("rows after Restart(%s): got %d, want 1", mode, got)
		}
	}
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := s.Restart(t.Context(), "fast"); err != nil {
		t.Fatalf("Restart after Kill: %v", err)
	}
	if got := count(t, s); got != 1 {
		t.Errorf("rows after Kill and Restart: got %d, want 1", got)
	}
	if err := s.Restart(t.Context(), "smart"); err == nil {
		t.Error("Restart(smart): got nil error, want one")
	}
}

func TestStopAfterKill(t *testing.T) {
	t.Parallel()
	s := start(t, dataDir(t))
	if err := s.Kill(); err != nil {
		t.Fatalf("Kill: %v", err)
	}
	if err := s.Stop(t.Context()); err != nil {
		t.Fatalf("Stop after Kill: got %v, want nil", err)
	}
}

func TestStartErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts func(t *testing.T) Options
		want string
	}{
		{"no folder", func(*testing.T) Options { return Options{} }, "no data folder"},
		{"socket path too long", func(*testing.T) Options {
			return Options{Dir: "/tmp/" + strings.Repeat("d", 100)}
		}, "over the unix limit"},
		{"bin folder without binaries", func(t *testing.T) Options {
			return Options{Dir: filepath.Join(os.TempDir(), "unused"), BinDir: t.TempDir()}
		}, "lacks initdb, pg_ctl, postgres"},
		{"parent closed to postgres user", func(t *testing.T) Options {
			if os.Geteuid() != 0 {
				t.Skip("only root switches to the postgres user")
			}
			// t.TempDir's parent is mode 0700, owned by root.
			return Options{Dir: filepath.Join(t.TempDir(), "d")}
		}, "cannot enter its parent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s, err := Start(t.Context(), tt.opts(t))
			if err == nil {
				s.Stop(context.Background())
				t.Fatal("got nil error, want one")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestFind(t *testing.T) {
	// Not parallel: it changes PATH and versionedRoots.
	fake := t.TempDir()
	for _, d := range []struct {
		version  string
		programs []string
	}{
		{"9.6", binaries},
		{"15", binaries},
		{"16", []string{"initdb", "pg_ctl"}}, // incomplete: skipped
		{"notaversion", binaries},
	} {
		bin := filepath.Join(fake, d.version, "bin")
		if err := os.MkdirAll(bin, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, p := range d.programs {
			if err := os.WriteFile(filepath.Join(bin, p), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
	}
	old := versionedRoots
	t.Cleanup(func() { versionedRoots = old })

	t.Setenv("PATH", t.TempDir())
	versionedRoots = []string{t.TempDir(), fake}
	got, err := Find()
	if err != nil {
		t.Fatalf("Find with versioned folders: %v", err)
	}
	if want := filepath.Join(fake, "15", "bin"); got != want {
		t.Errorf("Find: got %s, want %s (newest complete version)", got, want)
	}

	t.Setenv("PATH", filepath.Join(fake, "9.6", "bin"))
	if got, err := Find(); err != nil || got != filepath.Join(fake, "9.6", "bin") {
		t.Errorf("Find with PATH: got %s, %v, want PATH's folder first", got, err)
	}

	t.Setenv("PATH", t.TempDir())
	versionedRoots = []string{t.TempDir()}
	_, err = Find()
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("Find without binaries: got %v, want ErrNotFound", err)
	}
	for _, want := range []string{"apt-get install postgresql", "DATABASE_URL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Find error %q does not say %q", err, want)
		}
	}
}

func TestConnValue(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ in, want string }{
		{"/tmp/pgs1", "/tmp/pgs1"},
		{"", "''"},
		{"/tmp/a b", "'/tmp/a b'"},
		{`it's`, `'it\'s'`},
	} {
		if got := connValue(tt.in); got != tt.want {
			t.Errorf("connValue(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}

// setPid replaces the pid on the first line of a lock file.
func setPid(t *testing.T, path string, pid int) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	_, rest, _ := strings.Cut(string(b), "\n")
	if err := os.WriteFile(path, []byte(strconv.Itoa(pid)+"\n"+rest), 0o600); err != nil {
		t.Fatal(err)
	}
}
