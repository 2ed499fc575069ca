// Package pgtest owns the PostgreSQL that a package's tests run against: one server per test
// package, started from the machine's own binaries by Main through pgserver (or the server named
// by TEST_DATABASE_URL), and a fresh database per test from NewDB. It is imported only by _test.go
// files; the program itself uses pgserver.
//
// Usage:
//
//	func TestMain(m *testing.M) { pgtest.Main(m) }
//
//	func TestX(t *testing.T) {
//		db, err := pgx.Connect(t.Context(), pgtest.NewDB(t))
//		...
//	}
//
// Tests of the logical change feed call RequireLogical, which skips them on a TEST_DATABASE_URL
// server without wal_level=logical.
//
// Fault tests that Restart or Kill the server (through Server) affect every test of the package
// running at that moment, so they must not call t.Parallel.
//
// NewStandby makes a real streaming hot standby of a server (pg_basebackup -R), for tests of reads
// from standbys: replay paused, the standby stopped, started and promoted.
//
// SmallDisk and Fill run a disk out of space for real (a tmpfs; mounting needs root), for tests of
// what a full disk does to PostgreSQL and to the program.
package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgserver"
)

// ownerFile, in a server's folder, holds the pid of the test binary that started it, so that a
// later run can stop servers whose test binary died (a -timeout panic, Ctrl-C) before Main's
// clean-up ran.
const ownerFile = "pgtest.owner"

// dirPrefix names the folders Main creates in the temporary folder; dataDir is the server's data
// folder inside one.
const (
	dirPrefix = "pgtest"
	dataDir   = "d"
)

var (
	mainCalled atomic.Bool
	external   string // TEST_DATABASE_URL, read by Main

	startOnce sync.Once
	server    *pgserver.Server
	serverDir string
	startErr  error

	seq atomic.Int64
)

// Main runs the package's tests with m and then stops the package's server and removes its folder.
// The server is started when a test first asks for a database, so test runs that need none start
// nothing. With TEST_DATABASE_URL set no server is started and NewDB creates its databases on that
// server instead; the URL's user must be allowed to create databases. Call it from TestMain; the
// exit code is m.Run's.
func Main(m *testing.M) {
	mainCalled.Store(true)
	external = os.Getenv("TEST_DATABASE_URL")
	if external == "" {
		sweepOrphans()
	}
	defer shutdown()
	m.Run() // since Go 1.15 the test binary exits with m.Run's code when TestMain returns
}

// ensureServer starts the package's server once.
func ensureServer() (*pgserver.Server, error) {
	startOnce.Do(func() {
		base := os.TempDir()
		if len(base) > 60 { // keep <dir>/.s.PGSQL.5432 under the 107-byte unix socket limit
			base = "/tmp"
		}
		dir, err := os.MkdirTemp(base, dirPrefix)
		if err != nil {
			startErr = fmt.Errorf("creating test server folder: %w", err)
			return
		}
		serverDir = dir
		// The data folder is a child because initdb wants an empty folder, and the parent must be
		// enterable by the postgres user when tests run as root (MkdirTemp makes it 0700).
		if err := os.Chmod(dir, 0o711); err != nil {
			startErr = fmt.Errorf("creating test server folder: %w", err)
			return
		}
		if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
			startErr = fmt.Errorf("creating test server folder: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		server, startErr = pgserver.Start(ctx, pgserver.Options{Dir: filepath.Join(dir, dataDir), ExtraConf: map[string]string{
			// Each test of the logical change feed holds a walsender and a temporary slot; the
			// defaults (10 of each) are too few for a package's tests running in parallel.
			// Replication connections over the socket are allowed by initdb's pg_hba.conf
			// ("local replication all trust").
			"max_wal_senders":       "40",
			"max_replication_slots": "40",
		}})
		if startErr != nil {
			startErr = fmt.Errorf("starting test server (or set TEST_DATABASE_URL): %w", startErr)
		}
	})
	return server, startErr
}

// shutdown stops the server, if one was started, and removes its folder.
func shutdown() {
	if server != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := server.Stop(ctx); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: %v\n", err)
			return // keep the folder: the server may still use it
		}
	}
	if serverDir != "" {
		if err := os.RemoveAll(serverDir); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: removing test server folder: %v\n", err)
		}
	}
}

// target returns the connection string to create and drop databases with and a function that
// names one database on the same server.
func target(t testing.TB) (admin string, db func(name string) string) {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main(m) from the package's TestMain")
	}
	if external != "" {
		return external, func(name string) string { return withDB(external, name) }
	}
	s, err := ensureServer()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s.ConnString("postgres"), s.ConnString
}

// NewDB creates an empty database for the calling test, drops it (WITH (FORCE), closing any
// connection left open) when the test ends, and returns its connection string. Names carry the
// process id, so packages sharing one TEST_DATABASE_URL server do not collide.
func NewDB(t testing.TB) string {
	t.Helper()
	admin, db := target(t)
	name := dbName(os.Getpid(), seq.Add(1), t.Name())
	ident := pgx.Identifier{name}.Sanitize()
	if err := adminExec(admin, "CREATE DATABASE "+ident); err != nil {
		t.Fatalf("pgtest: creating database %s: %v", name, err)
	}
	t.Cleanup(func() {
		// A temporary replication slot goes with its session, but only once
		// the backend has exited, a moment after its connection closed:
		// until then the drop fails with 55006, so it is tried again.
		deadline := time.Now().Add(30 * time.Second)
		for {
			err := adminExec(admin, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)")
			var pgErr *pgconn.PgError
			if err != nil && errors.As(err, &pgErr) && pgErr.Code == "55006" && time.Now().Before(deadline) {
				time.Sleep(20 * time.Millisecond)
				continue
			}
			if err != nil {
				t.Errorf("pgtest: dropping database %s: %v", name, err)
			}
			return
		}
	})
	return db(name)
}

// Server returns the package's server so that fault tests can Restart or Kill it. It skips the
// test when TEST_DATABASE_URL is set, because a shared server must not be restarted.
func Server(t testing.TB) *pgserver.Server {
	t.Helper()
	if !mainCalled.Load() {
		t.Fatal("pgtest: call pgtest.Main(m) from the package's TestMain")
	}
	if external != "" {
		t.Skip("pgtest: TEST_DATABASE_URL is set; this test needs the package's own server")
	}
	s, err := ensureServer()
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return s
}

// RequireLogical skips the test when TEST_DATABASE_URL names a server whose wal_level is not
// logical: tests of the logical change feed need it. The package's own server always has it, so
// there the check only costs a query.
func RequireLogical(t testing.TB) {
	t.Helper()
	admin, _ := target(t)
	if external == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	defer conn.Close(ctx)
	var level string
	if err := conn.QueryRow(ctx, "SHOW wal_level").Scan(&level); err != nil {
		t.Fatalf("pgtest: reading wal_level: %v", err)
	}
	if level != "logical" {
		t.Skipf("pgtest: the TEST_DATABASE_URL server has wal_level=%s; the logical change feed needs logical", level)
	}
}

// adminExec runs one statement on a short-lived connection. It uses its own context: t.Context
// is already cancelled when clean-ups run.
func adminExec(connString, sql string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return err
	}
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, sql)
	return err
}

// dbName builds a database name from the process, a sequence number and the test's name, cut to
// PostgreSQL's 63-byte limit; the prefix alone keeps it unique.
func dbName(pid int, n int64, testName string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "t%d_%d_", pid, n)
	for _, r := range strings.ToLower(testName) {
		if b.Len() >= 63 {
			break
		}
		if (r >= 'a' && r <= 'z') || (r >= '0' && r <= '9') {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// withDB returns connString with its database replaced by name. It accepts both URLs and
// keyword/value strings; in the latter the last dbname wins.
func withDB(connString, name string) string {
	if strings.HasPrefix(connString, "postgres://") || strings.HasPrefix(connString, "postgresql://") {
		if u, err := url.Parse(connString); err == nil {
			u.Path = "/" + name
			u.RawPath = ""
			return u.String()
		}
	}
	return connString + " dbname=" + name // names from dbName need no quoting
}

// sweepOrphans stops servers in pgtest folders whose test binary is gone, and removes the folders.
// Only folders holding an owner file are touched, and only postmasters running on them.
func sweepOrphans() {
	base := os.TempDir()
	if len(base) > 60 {
		base = "/tmp"
	}
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), dirPrefix) {
			continue
		}
		dir := filepath.Join(base, e.Name())
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || alive(owner) {
			continue
		}
		if pid, ok := postmasterOf(filepath.Join(dir, dataDir)); ok {
			_ = syscall.Kill(pid, syscall.SIGQUIT) // immediate shutdown
			for deadline := time.Now().Add(10 * time.Second); alive(pid) && time.Now().Before(deadline); {
				time.Sleep(20 * time.Millisecond)
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// postmasterOf returns the pid of a live postmaster serving dir.
func postmasterOf(dir string) (int, bool) {
	b, err := os.ReadFile(filepath.Join(dir, "postmaster.pid"))
	if err != nil {
		return 0, false
	}
	first, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil || !alive(pid) {
		return 0, false
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !strings.Contains(string(cmdline), dir) {
		return 0, false
	}
	return pid, true
}

// alive reports whether pid is a live process; zombies are not.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil && err != syscall.EPERM {
		return false
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(stat), ')')
	return i < 0 || i+2 >= len(stat) || (stat[i+2] != 'Z' && stat[i+2] != 'X')
}
