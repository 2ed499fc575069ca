// Package pgserver owns the private PostgreSQL that `dashboard serve` and `dashboard demo` run when
// DATABASE_URL is unset: it finds the machine's server binaries, initializes a data folder on first
// use, starts the server on a unix socket inside that folder (no TCP), attaches to a server already
// running on the folder, survives a stale postmaster.pid left by a crash, and stops only what it
// started. When the process runs as root, every PostgreSQL program runs as the `postgres` user,
// which owns the data folder.
//
// It does not apply migrations or know the product's schema; it hands out connection strings.
package pgserver

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

const (
	// DefaultPort is the port number used when Options.Port is zero. Only the socket file name
	// carries it (.s.PGSQL.<port>); the server opens no TCP port, so servers in different folders
	// do not collide on it.
	DefaultPort = 5432

	// maxSocketPath is the longest unix socket path Linux accepts: sizeof(sun_path) is 108 bytes,
	// one of which is the terminating zero.
	maxSocketPath = 107

	// startTimeout bounds pg_ctl's wait for the server to accept connections (-t), which includes
	// crash recovery after a kill.
	startTimeout = 60 * time.Second

	// logFileName is the server's log inside the data folder; start failures quote its end.
	logFileName = "postgresql.log"

	// Superuser is the role initdb creates; connections use it with trust authentication, which is
	// safe only because the socket lives in a folder no other user may enter.
	Superuser = "postgres"
)

// Options configures Start.
type Options struct {
	// Dir is the data folder; it is created (mode 0700) if missing and initialized if empty. Its
	// socket lives in it too, so the path must leave room for "/.s.PGSQL.5432" within 107 bytes.
	Dir string
	// BinDir holds initdb, pg_ctl and postgres; empty means Find.
	BinDir string
	// Logger receives lifecycle events; nil discards them.
	Logger *slog.Logger
	// Fsync keeps fsync and full_page_writes on. Tests turn it off for speed; a crash of the
	// machine (not of the server) may then lose or corrupt the data.
	Fsync bool
	// Port is the number in the socket file name; zero means DefaultPort.
	Port int
	// ExtraConf adds or overrides server settings (name -> value), passed as -c name=value.
	ExtraConf map[string]string
}

// Server is a PostgreSQL server on a data folder, either started by Start (owned) or found running
// there (not owned). Its methods are safe for concurrent use.
type Server struct {
	dir     string
	sockDir string
	port    int
	owned   bool
	binDir  string
	cred    *syscall.Credential // non-nil when programs run as the postgres user
	opts    Options
	logger  *slog.Logger

	mu      sync.Mutex
	stopped bool
}

// Start returns a server running on opts.Dir. If a live postmaster already serves the folder, Start
// connects to it and returns a Server that Stop leaves running (Owned reports false). Otherwise it
// runs initdb on first use (UTF8, trust authentication, superuser postgres) and starts the server
// with pg_ctl, waiting until it accepts connections. A postmaster.pid left by a crashed server does
// not prevent the start.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if opts.Dir == "" {
		return nil, errors.New("starting postgresql: no data folder given")
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("starting postgresql: %w", err)
	}
	s := &Server{dir: dir, sockDir: dir, port: opts.Port, opts: opts, logger: opts.Logger}
	if s.port == 0 {
		s.port = DefaultPort
	}
	if s.logger == nil {
		s.logger = slog.New(slog.DiscardHandler)
	}

	attached, err := s.attachRunning(ctx)
	if err != nil {
		return nil, err
	}
	if attached {
		return s, nil
	}

	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	if err := s.start(ctx); err != nil {
		return nil, err
	}
	s.owned = true
	return s, nil
}

// attachRunning connects s to a live server on s.dir, if there is one, and clears a
// postmaster.pid that PostgreSQL would wrongly take for a live server.
func (s *Server) attachRunning(ctx context.Context) (bool, error) {
	pf, err := readPidFile(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("starting postgresql in %s: %w", s.dir, err)
	}
	switch stateOf(pf.pid) {
	case procGone:
		if syscall.Kill(pf.pid, 0) == nil {
			// A zombie: dead, but kill(pid, 0) succeeds, so postgres would refuse to start.
			s.logger.Warn("removing lock files of a dead (zombie) server", "dir", s.dir, "pid", pf.pid)
			return false, s.removeLockFiles(pf)
		}
		// PostgreSQL itself replaces a postmaster.pid whose process is gone.
		s.logger.Info("postgresql left a stale postmaster.pid; starting anew", "dir", s.dir, "pid", pf.pid)
		return false, nil
	case procOther:
		s.logger.Warn("removing stale lock files whose pid now belongs to another program", "dir", s.dir, "pid", pf.pid)
		return false, s.removeLockFiles(pf)
	}

	if pf.sockDir == "" || pf.port == 0 {
		return false, fmt.Errorf("attaching to postgresql (pid %d) in %s: it has no unix socket", pf.pid, s.dir)
	}
	s.sockDir, s.port = pf.sockDir, pf.port
	// The server may still be starting up or recovering: wait as long as pg_ctl would.
	ctx, cancel := context.WithTimeout(ctx, startTimeout)
	defer cancel()
	for {
		err := s.ping(ctx)
		if err == nil {
			s.logger.Info("using postgresql already running", "dir", s.dir, "pid", pf.pid, "socket_dir", s.sockDir)
			return true, nil
		}
		if stateOf(pf.pid) != procPostgres {
			s.logger.Info("running postgresql exited while connecting; starting anew", "dir", s.dir, "pid", pf.pid)
			s.sockDir, s.port = s.dir, s.opts.Port
			if s.port == 0 {
				s.port = DefaultPort
			}
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, fmt.Errorf("connecting to postgresql (pid %d) running in %s: %w", pf.pid, s.dir, err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// removeLockFiles removes the postmaster.pid and socket lock file of a dead server whose pid
// PostgreSQL would take for a live one: a zombie (a parent that never reaps, as PID 1 of many
// containers) or a pid reused by another program. Both files name the pid, and postgres refuses
// to start while kill(pid, 0) succeeds.
func (s *Server) removeLockFiles(pf pidFile) error {
	files := []string{filepath.Join(s.dir, "postmaster.pid")}
	if pf.sockDir != "" && pf.port != 0 {
		lock := filepath.Join(pf.sockDir, ".s.PGSQL."+strconv.Itoa(pf.port)+".lock")
		if b, err := os.ReadFile(lock); err == nil {
			first, _, _ := strings.Cut(string(b), "\n")
			if pid, err := strconv.Atoi(strings.TrimSpace(first)); err == nil && (pid == pf.pid || stateOf(pid) != procPostgres) {
				files = append(files, lock)
			}
		}
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing stale lock file: %w", err)
		}
	}
	return nil
}

// prepare finds the binaries, settles which user runs them, checks the socket path and folder
// permissions, and runs initdb when the folder holds no cluster yet.
func (s *Server) prepare(ctx context.Context) error {
	s.binDir = s.opts.BinDir
	if s.binDir == "" {
		dir, err := Find()
		if err != nil {
			return err
		}
		s.binDir = dir
	} else if err := checkBinDir(s.binDir); err != nil {
		return err
	}

	sock := filepath.Join(s.sockDir, ".s.PGSQL."+strconv.Itoa(s.port))
	if len(sock) > maxSocketPath {
		return fmt.Errorf("starting postgresql in %s: socket path %s is %d bytes, over the unix limit of %d: "+
			"choose a shorter data folder", s.dir, sock, len(sock), maxSocketPath)
	}

	// The parents are created traversable (0755): as root the server runs
	// as another user, who must be able to reach the data folder.
	if err := os.MkdirAll(filepath.Dir(s.dir), 0o755); err != nil {
		return fmt.Errorf("creating folder for postgresql data: %w", err)
	}

	var uid, gid uint32
	if os.Geteuid() == 0 {
		// initdb, pg_ctl and postgres refuse to run as root.
		u, err := user.Lookup(Superuser)
		if err != nil {
			return fmt.Errorf("running postgresql as root needs the operating system user %q: %w", Superuser, err)
		}
		uid64, _ := strconv.ParseUint(u.Uid, 10, 32)
		gid64, _ := strconv.ParseUint(u.Gid, 10, 32)
		uid, gid = uint32(uid64), uint32(gid64)
		groups := []uint32{}
		if ids, err := u.GroupIds(); err == nil {
			for _, id := range ids {
				if g, err := strconv.ParseUint(id, 10, 32); err == nil {
					groups = append(groups, uint32(g))
				}
			}
		}
		s.cred = &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}
		if err := checkSearchable(s.dir, uid, append([]uint32{gid}, groups...)); err != nil {
			return err
		}
	}

	if _, err := os.Stat(filepath.Join(s.dir, "PG_VERSION")); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("starting postgresql in %s: %w", s.dir, err)
	}

	if err := os.MkdirAll(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating postgresql data folder: %w", err)
	}
	if err := os.Chmod(s.dir, 0o700); err != nil {
		return fmt.Errorf("creating postgresql data folder: %w", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.dir, int(uid), int(gid)); err != nil {
			return fmt.Errorf("giving postgresql data folder %s to user %s: %w", s.dir, Superuser, err)
		}
	}
	return s.initdb(ctx)
}

// initdb initializes the cluster. The C.UTF-8 locale gives Unicode-aware upper/lower with a
// collation that is the same on every machine; plain C is the fallback where it is missing.
func (s *Server) initdb(ctx context.Context) error {
	s.logger.Info("initializing postgresql data folder", "dir", s.dir, "bin_dir", s.binDir)
	var out []byte
	var err error
	for _, locale := range []string{"--locale=C.UTF-8", "--no-locale"} {
		args := []string{"-D", s.dir, "--username=" + Superuser, "--auth=trust", "--encoding=UTF8", locale}
		if !s.opts.Fsync {
			args = append(args, "--no-sync")
		}
		out, err = s.command(ctx, "initdb", args...).CombinedOutput()
		if err == nil {
			return nil
		}
		// initdb always names the locale it uses; only "invalid locale name"
		// (or "invalid locale settings") means C.UTF-8 is missing here.
		if !bytes.Contains(out, []byte("invalid locale")) {
			break
		}
	}
	return fmt.Errorf("initializing postgresql data folder %s: %w\n%s", s.dir, err, bytes.TrimSpace(out))
}

// start runs pg_ctl start and waits until the server accepts connections. A server killed a moment
// ago may leave backends attached to its shared memory for a little while; postgres then refuses
// to start, so start retries for a few seconds.
func (s *Server) start(ctx context.Context) error {
	logFile := filepath.Join(s.dir, logFileName)
	args := []string{"-D", s.dir, "-l", logFile, "-w", "-t", strconv.Itoa(int(startTimeout / time.Second)),
		"-o", s.serverOptions(), "start"}
	s.logger.Info("starting postgresql", "dir", s.dir, "socket_dir", s.sockDir, "port", s.port)
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := s.command(ctx, "pg_ctl", args...).CombinedOutput()
		if err == nil {
			s.logger.Info("postgresql ready", "dir", s.dir)
			return nil
		}
		tail := logTail(logFile, 20)
		if strings.Contains(tail, "is still in use") && time.Now().Before(deadline) && ctx.Err() == nil {
			s.logger.Info("old server processes still hold shared memory; retrying start", "dir", s.dir)
			time.Sleep(200 * time.Millisecond)
			continue
		}
		// pg_ctl may have been stopped by ctx after postgres was spawned: do not leave it behind.
		if pf, perr := readPidFile(s.dir); perr == nil && stateOf(pf.pid) == procPostgres {
			stopCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), startTimeout)
			_ = s.stop(stopCtx, "immediate")
			cancel()
		}
		return fmt.Errorf("starting postgresql in %s: %w\n%s\nlast lines of %s:\n%s",
			s.dir, err, bytes.TrimSpace(out), logFile, tail)
	}
}

// serverOptions is the -o argument of pg_ctl: one -c per setting, shell-quoted because pg_ctl runs
// postgres through /bin/sh.
func (s *Server) serverOptions() string {
	sockDirs := s.sockDir
	if strings.ContainsAny(sockDirs, ", \"") {
		sockDirs = `"` + strings.ReplaceAll(sockDirs, `"`, `""`) + `"`
	}
	conf := map[string]string{
		"listen_addresses":        "",
		"unix_socket_directories": sockDirs,
		"port":                    strconv.Itoa(s.port),
		"max_connections":         "200",
		"shared_buffers":          "64MB",
		// Logical decoding, so that DASHBOARD_FEED=logical works on the private server too and
		// both change feed modes are tested on it. It adds a little WAL (old key values, which
		// tables without a replica identity never write) and nothing else when no slot exists.
		"wal_level": "logical",
	}
	if !s.opts.Fsync {
		// synchronous_commit stays on: with fsync off a commit costs one write(2), and a commit
		// that was reported survives a killed server, which keeps crash tests deterministic.
		conf["fsync"] = "off"
		conf["full_page_writes"] = "off"
	}
	for k, v := range s.opts.ExtraConf {
		conf[k] = v
	}
	keys := make([]string, 0, len(conf))
	for k := range conf {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString("-c ")
		b.WriteString(shellQuote(k + "=" + conf[k]))
	}
	return b.String()
}

// command prepares a PostgreSQL program run as the user that owns the data folder.
func (s *Server) command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, filepath.Join(s.binDir, name), args...)
	cmd.Dir = s.dir // the caller's working folder may be closed to the postgres user
	cmd.Env = append(os.Environ(), "LC_MESSAGES=C")
	if s.cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: s.cred}
	}
	// postgres inherits no pipe of ours (pg_ctl redirects it to the log), but never hang on one.
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

// ConnString returns a libpq keyword/value connection string for database dbname over the unix
// socket, as the superuser.
func (s *Server) ConnString(dbname string) string {
	return fmt.Sprintf("host=%s port=%d user=%s dbname=%s sslmode=disable",
		connValue(s.sockDir), s.port, Superuser, connValue(dbname))
}

// Dir returns the data folder.
func (s *Server) Dir() string { return s.dir }

// Owned reports whether this Server started the server and so will stop it.
func (s *Server) Owned() bool { return s.owned }

// CreateDatabase creates database name unless it exists; concurrent calls are safe.
func (s *Server) CreateDatabase(ctx context.Context, name string) error {
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)", name).Scan(&exists); err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	if exists {
		return nil
	}
	_, err = conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize())
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42P04" { // duplicate_database: created meanwhile
		return nil
	}
	if err != nil {
		return fmt.Errorf("creating database %s: %w", name, err)
	}
	s.logger.Info("created database", "dir", s.dir, "database", name)
	return nil
}

// Stop stops the server with pg_ctl stop -m fast if this Server started it; a server it only
// attached to keeps running. Calling Stop again, or after Kill, does nothing.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.owned || s.stopped {
		return nil
	}
	if err := s.stop(ctx, "fast"); err != nil {
		return err
	}
	s.stopped = true
	return nil
}

// Restart stops the server with the given pg_ctl shutdown mode ("fast", or "immediate" to force
// crash recovery) and starts it again on the same socket. After Kill it starts the server anew.
// Fault tests use it; it needs an owned server.
func (s *Server) Restart(ctx context.Context, mode string) error {
	if mode != "fast" && mode != "immediate" {
		return fmt.Errorf("restarting postgresql: mode %q, want fast or immediate", mode)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.owned {
		return fmt.Errorf("restarting postgresql in %s: not started by this process", s.dir)
	}
	if err := s.stop(ctx, mode); err != nil {
		return err
	}
	s.stopped = true
	if _, err := s.attachRunning(ctx); err != nil { // only clears a stale postmaster.pid here
		return err
	}
	if err := s.start(ctx); err != nil {
		return err
	}
	s.stopped = false
	return nil
}

// Kill sends SIGKILL to the postmaster, as a crash would, and returns once it and its children
// are gone, so that a following Restart or Start meets a stale postmaster.pid and nothing else.
// It needs an owned server.
func (s *Server) Kill() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.owned {
		return fmt.Errorf("killing postgresql in %s: not started by this process", s.dir)
	}
	pf, err := readPidFile(s.dir)
	if err != nil {
		return fmt.Errorf("killing postgresql in %s: %w", s.dir, err)
	}
	if stateOf(pf.pid) != procPostgres {
		return fmt.Errorf("killing postgresql in %s: no server running (pid %d)", s.dir, pf.pid)
	}
	kids := childrenOf(pf.pid)
	s.logger.Info("killing postgresql", "dir", s.dir, "pid", pf.pid)
	if err := syscall.Kill(pf.pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("killing postgresql (pid %d): %w", pf.pid, err)
	}
	// Children notice the postmaster's death and exit on their own within moments.
	waitExit(append([]int{pf.pid}, kids...), 10*time.Second)
	return nil
}

// waitExit waits until none of pids is a running postgres process. Past
// grace, the ones left are killed.
func waitExit(pids []int, grace time.Duration) {
	deadline := time.Now().Add(grace)
	for _, pid := range pids {
		for stateOf(pid) == procPostgres {
			if time.Now().After(deadline) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// stop runs pg_ctl stop when a live postmaster serves the folder; with none there is nothing to do.
func (s *Server) stop(ctx context.Context, mode string) error {
	pf, err := readPidFile(s.dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("stopping postgresql in %s: %w", s.dir, err)
	}
	if stateOf(pf.pid) != procPostgres {
		return nil
	}
	s.logger.Info("stopping postgresql", "dir", s.dir, "mode", mode)
	out, err := s.command(ctx, "pg_ctl", "-D", s.dir, "-m", mode, "-w",
		"-t", strconv.Itoa(int(startTimeout/time.Second)), "stop").CombinedOutput()
	if err != nil && stateOf(pf.pid) == procPostgres {
		return fmt.Errorf("stopping postgresql in %s: %w\n%s", s.dir, err, bytes.TrimSpace(out))
	}
	// pg_ctl returns once postmaster.pid is gone, which the postmaster
	// removes just before it exits: wait for the exit itself, so that a
	// stopped server has no process left.
	waitExit([]int{pf.pid}, 10*time.Second)
	return nil
}

// ping opens and closes one connection.
func (s *Server) ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, s.ConnString("postgres"))
	if err != nil {
		return err
	}
	return conn.Close(ctx)
}

// logTail returns the last n lines of the file at path, or a note saying why it cannot.
func logTail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(reading server log: %v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// connValue quotes a value for a keyword/value connection string where needed.
func connValue(v string) string {
	if v != "" && !strings.ContainsAny(v, " '\\\t\n") {
		return v
	}
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(v) + "'"
}
