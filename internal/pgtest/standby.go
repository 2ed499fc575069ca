package pgtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
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

// standbyWait bounds each wait of a Standby: the copy, the start, streaming, a pause, a promotion.
const standbyWait = 2 * time.Minute

// hotStandbySettings are the settings a hot standby must have at least as high as its primary
// (PostgreSQL: "Hot Standby", administration); the standby copies the primary's values.
var hotStandbySettings = []string{
	"max_connections", "max_prepared_transactions", "max_locks_per_transaction",
	"max_wal_senders", "max_worker_processes",
}

// Standby is a streaming hot standby of a test server, made by NewStandby. Its methods are safe
// for concurrent use.
type Standby struct {
	primary *pgserver.Server
	dir     string // the data folder
	slot    string // the physical replication slot on the primary that keeps its WAL
	opts    pgserver.Options

	mu     sync.Mutex
	server *pgserver.Server // nil while stopped
}

// standbySeq numbers the standbys of a test binary, for their slot names.
var standbySeq atomic.Int64

// NewStandby makes a streaming hot standby of primary with pg_basebackup -R (as the postgres user,
// its own data folder and port/socket), starts it, waits until it streams, and stops it at cleanup.
//
// The copy uses a physical replication slot on the primary (dropped at cleanup), so a standby
// stopped for a while, or one whose replay is paused, never finds the WAL it needs recycled.
func NewStandby(t testing.TB, primary *pgserver.Server) *Standby {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), standbyWait)
	defer cancel()

	conf, err := primarySettings(ctx, primary)
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}

	base := os.TempDir()
	if len(base) > 60 { // keep <dir>/d/.s.PGSQL.5432 under the unix socket limit
		base = "/tmp"
	}
	folder, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(folder); err != nil {
			t.Errorf("pgtest: removing standby folder: %v", err)
		}
	})
	// Same layout as the package's server, so that sweepOrphans stops a standby whose test binary
	// died.
	if err := os.Chmod(folder, 0o711); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	if err := os.WriteFile(filepath.Join(folder, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	dir := filepath.Join(folder, dataDir)
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	cred, err := postgresCredential()
	if err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatalf("pgtest: standby: %v", err)
		}
	}

	s := &Standby{
		primary: primary,
		dir:     dir,
		slot:    fmt.Sprintf("pgtest_standby_%d_%d", os.Getpid(), standbySeq.Add(1)),
		opts:    pgserver.Options{Dir: dir, ExtraConf: conf},
	}
	t.Cleanup(func() { s.dropSlot(t) })
	if err := runProgram(ctx, cred, "pg_basebackup", "--pgdata="+dir, "--write-recovery-conf",
		"--checkpoint=fast", "--wal-method=stream", "--create-slot", "--slot="+s.slot,
		"--dbname="+primary.ConnString("postgres")); err != nil {
		t.Fatalf("pgtest: standby: %v", err)
	}
	// The copy holds the primary's socket lock file (the socket lives in the data folder), naming
	// the primary's live postmaster; the standby's own socket goes in its own folder.
	if matches, _ := filepath.Glob(filepath.Join(dir, ".s.PGSQL.*")); len(matches) > 0 {
		for _, m := range matches {
			if err := os.Remove(m); err != nil {
				t.Fatalf("pgtest: standby: %v", err)
			}
		}
	}
	s.Start(t)
	t.Cleanup(func() { s.Stop(t) })
	return s
}

// ConnString returns a connection string for database dbname on the standby, as the superuser.
// It stays valid across Stop and Start.
func (s *Standby) ConnString(dbname string) string {
	// The socket folder and port of a folder's server never change: pgserver puts the socket in
	// the data folder, with the default port.
	quote := func(v string) string {
		if v != "" && !strings.ContainsAny(v, " '\\\t\n") {
			return v
		}
		return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
	}
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		quote(s.dir), pgserver.DefaultPort, pgserver.Superuser, quote(dbname))
}

// PauseReplay pauses WAL replay (pg_wal_replay_pause) and returns once it has paused: from then on
// the standby receives WAL but applies none of it, so its data stay as they are.
func (s *Standby) PauseReplay(t testing.TB) {
	t.Helper()
	s.exec(t, "SELECT pg_wal_replay_pause()")
	s.await(t, "SELECT pg_get_wal_replay_pause_state()", "paused")
}

// ResumeReplay resumes WAL replay (pg_wal_replay_resume).
func (s *Standby) ResumeReplay(t testing.TB) {
	t.Helper()
	s.exec(t, "SELECT pg_wal_replay_resume()")
	s.await(t, "SELECT pg_get_wal_replay_pause_state()", "not paused")
}

// Stop stops the standby with pg_ctl stop -m fast; stopping a stopped standby does nothing.
func (s *Standby) Stop(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.server == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), standbyWait)
	defer cancel()
	if err := s.server.Stop(ctx); err != nil {
		t.Fatalf("pgtest: stopping standby: %v", err)
	}
	s.server = nil
}

// Start starts the standby (again) and waits until it streams from the primary. A promoted
// standby starts as the primary it became and is not waited for.
func (s *Standby) Start(t testing.TB) {
	t.Helper()
	s.mu.Lock()
	if s.server == nil {
		ctx, cancel := context.WithTimeout(context.Background(), standbyWait)
		srv, err := pgserver.Start(ctx, s.opts)
		cancel()
		if err != nil {
			s.mu.Unlock()
			t.Fatalf("pgtest: starting standby: %v", err)
		}
		s.server = srv
	}
	s.mu.Unlock()
	if s.query(t, "SELECT pg_is_in_recovery()::text") == "true" {
		s.await(t, "SELECT coalesce((SELECT status FROM pg_stat_wal_receiver), 'none')", "streaming")
	}
}

// Promote promotes the standby (pg_promote(wait => true)); from then on it is a primary of its
// own, on a new timeline, and no longer follows the test server.
func (s *Standby) Promote(t testing.TB) {
	t.Helper()
	if got := s.query(t, "SELECT pg_promote(wait => true, wait_seconds => 60)::text"); got != "true" {
		t.Fatalf("pgtest: pg_promote: got %s, want true", got)
	}
}

// exec runs one statement on the standby.
func (s *Standby) exec(t testing.TB, sql string) {
	t.Helper()
	if err := adminExec(s.ConnString("postgres"), sql); err != nil {
		t.Fatalf("pgtest: standby: %s: %v", sql, err)
	}
}

// query returns the one text value sql gives on the standby.
func (s *Standby) query(t testing.TB, sql string) string {
	t.Helper()
	v, err := queryText(s.ConnString("postgres"), sql)
	if err != nil {
		t.Fatalf("pgtest: standby: %s: %v", sql, err)
	}
	return v
}

// await waits until sql gives want on the standby.
func (s *Standby) await(t testing.TB, sql, want string) {
	t.Helper()
	deadline := time.Now().Add(standbyWait)
	for {
		got := s.query(t, sql)
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("pgtest: standby: %s: got %s after %v, want %s", sql, got, standbyWait, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// dropSlot drops the standby's slot on the primary once the standby's walsender has let go of it.
// A primary that is gone (a test stopped it) took the slot with it.
func (s *Standby) dropSlot(t testing.TB) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		err := adminExec(s.primary.ConnString("postgres"),
			"SELECT pg_drop_replication_slot(slot_name) FROM pg_replication_slots WHERE slot_name = '"+s.slot+"'")
		var pgErr *pgconn.PgError
		switch {
		case err == nil:
			return
		case errors.As(err, &pgErr) && pgErr.Code == "55006" && time.Now().Before(deadline): // still active
			time.Sleep(20 * time.Millisecond)
		case !errors.As(err, &pgErr):
			t.Logf("pgtest: not dropping standby slot %s: primary unreachable: %v", s.slot, err)
			return
		default:
			t.Errorf("pgtest: dropping standby slot %s: %v", s.slot, err)
			return
		}
	}
}

// primarySettings reads the primary's values of hotStandbySettings, and the settings that pgtest's
// own server starts with, as -c settings for the standby.
func primarySettings(ctx context.Context, primary *pgserver.Server) (map[string]string, error) {
	conn, err := pgx.Connect(ctx, primary.ConnString("postgres"))
	if err != nil {
		return nil, fmt.Errorf("reading the primary's settings: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	conf := map[string]string{"hot_standby": "on", "max_replication_slots": "40"}
	for _, name := range hotStandbySettings {
		var v string
		if err := conn.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
			return nil, fmt.Errorf("reading the primary's %s: %w", name, err)
		}
		conf[name] = v
	}
	return conf, nil
}

// queryText returns the one text value sql gives, on a short-lived connection.
func queryText(connString, sql string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		return "", err
	}
	defer conn.Close(ctx)
	var v string
	err = conn.QueryRow(ctx, sql).Scan(&v)
	return v, err
}

// postgresCredential is the credential PostgreSQL's programs run with when the tests run as root
// (the server refuses root), and nil otherwise.
func postgresCredential() (*syscall.Credential, error) {
	if os.Geteuid() != 0 {
		return nil, nil
	}
	u, err := user.Lookup(pgserver.Superuser)
	if err != nil {
		return nil, fmt.Errorf("running PostgreSQL as root needs the user %s: %w", pgserver.Superuser, err)
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	return &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}, nil
}

// runProgram runs a PostgreSQL client program found next to the server's binaries (as cred, when
// not nil) and returns its output in the error when it fails.
func runProgram(ctx context.Context, cred *syscall.Credential, name string, args ...string) error {
	bin, err := pgserver.Find()
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(bin, name), args...)
	cmd.Dir = os.TempDir() // the caller's working folder may be closed to the postgres user
	cmd.Env = append(os.Environ(), "LC_MESSAGES=C")
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	cmd.WaitDelay = 5 * time.Second
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return nil
}
