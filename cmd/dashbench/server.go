package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgserver"
	"github.com/livedash/dashboard/migrations"
)

// The bench dashboard: one stat panel whose value is the sequence number as
// text, so that it is rendered verbatim (numbers are abbreviated, 12.3k).
// With -views K above 1 the dashboard has a list variable v ("0".."K-1")
// and the panel reads it, so that each value is a view of its own with its
// own query; the stat shows the first column, so frames look alike.
const (
	benchSlug       = "bench"
	seqPrefix       = "seqno-"
	panelQuery      = `SELECT 'seqno-' || n AS n FROM bench.seq WHERE id = 1`
	viewsPanelQuery = `SELECT 'seqno-' || n AS n, :v AS view FROM bench.seq WHERE id = 1`
)

// benchDashboard is the bench dashboard's variables (a JSON array) and
// panel SQL for the given number of views. One view is the dashboard the
// earlier figures were measured on: no variables.
func benchDashboard(views int) (variables, sql string) {
	if views <= 1 {
		return "[]", panelQuery
	}
	opts := make([]string, views)
	for i := range opts {
		opts[i] = strconv.Itoa(i)
	}
	b, _ := json.Marshal([]map[string]any{{"name": "v", "kind": "list", "options": opts}})
	return string(b), viewsPanelQuery
}

// database is the PostgreSQL the bench writes to: a given one, or a private
// server that it stops on close.
type database struct {
	connString string
	srv        *pgserver.Server
	tmp        string
}

// openDatabase opens url, or starts a private server. With statements
// the private server loads pg_stat_statements, which the latency runs read
// to count panel queries at the database; -pgbench and -bulk leave it out,
// since it costs every statement a little.
func openDatabase(ctx context.Context, url, dataDir string, fsync, statements bool) (*database, error) {
	if url != "" {
		return &database{connString: url}, nil
	}
	db := &database{}
	if dataDir == "" {
		// Short and enterable by the postgres user (initdb runs as it
		// when we are root); the socket path must stay under 107 bytes.
		dir, err := os.MkdirTemp("/tmp", "dashbench")
		if err != nil {
			return nil, fmt.Errorf("creating database folder: %w", err)
		}
		if err := os.Chmod(dir, 0o711); err != nil {
			return nil, fmt.Errorf("creating database folder: %w", err)
		}
		db.tmp = dir
		dataDir = filepath.Join(dir, "d")
	}
	conf := map[string]string{"max_connections": "200"}
	if statements {
		conf["shared_preload_libraries"] = "pg_stat_statements"
	}
	srv, err := pgserver.Start(ctx, pgserver.Options{Dir: dataDir, Fsync: fsync, ExtraConf: conf})
	if err != nil {
		db.close()
		return nil, err
	}
	db.srv = srv
	if err := srv.CreateDatabase(ctx, "dashbench"); err != nil {
		db.close()
		return nil, err
	}
	db.connString = srv.ConnString("dashbench")
	return db, nil
}

func (db *database) close() {
	if db.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		db.srv.Stop(ctx)
		cancel()
	}
	if db.tmp != "" {
		os.RemoveAll(db.tmp)
	}
}

// setupBench creates the bench table, watches it and creates the bench
// dashboard for the given number of views, or changes it to that (its
// variables and panel SQL together, so a server never loads one without
// the other). It returns the current sequence number.
func setupBench(ctx context.Context, conn *pgx.Conn, views int) (int64, error) {
	if _, err := migrations.Up(ctx, conn); err != nil {
		return 0, fmt.Errorf("migrating: %w", err)
	}
	stmts := []string{
		`CREATE SCHEMA IF NOT EXISTS bench`,
		`CREATE TABLE IF NOT EXISTS bench.seq (id int PRIMARY KEY, n bigint NOT NULL)`,
		`INSERT INTO bench.seq VALUES (1, 0) ON CONFLICT (id) DO NOTHING`,
		`SELECT dashboard.watch('bench.seq')`,
	}
	for _, s := range stmts {
		if _, err := conn.Exec(ctx, s); err != nil {
			return 0, fmt.Errorf("setting up bench dashboard: %s: %w", s, err)
		}
	}
	vars, sql := benchDashboard(views)
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO dashboard.dashboards (slug, title, variables) VALUES ('bench', 'Bench', $1::jsonb)
			ON CONFLICT (slug) DO UPDATE SET variables = EXCLUDED.variables
			WHERE dashboards.variables IS DISTINCT FROM EXCLUDED.variables`, vars)
		if err != nil {
			return err
		}
		_, err = tx.Exec(ctx, `INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql)
			SELECT id, 'counter', 'Sequence', 'stat', $1 FROM dashboard.dashboards WHERE slug = 'bench'
			ON CONFLICT (dashboard_id, slug) DO UPDATE SET kind = EXCLUDED.kind, sql = EXCLUDED.sql
			WHERE panels.sql IS DISTINCT FROM EXCLUDED.sql OR panels.kind IS DISTINCT FROM EXCLUDED.kind`, sql)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("setting up bench dashboard: %w", err)
	}
	var n int64
	if err := conn.QueryRow(ctx, `SELECT n FROM bench.seq WHERE id = 1`).Scan(&n); err != nil {
		return 0, fmt.Errorf("reading sequence: %w", err)
	}
	return n, nil
}

// serverProc is a dashboard server started by the bench as its own process,
// so that its memory, CPU and open files are its own.
type serverProc struct {
	*process
	url string
}

// buildServer compiles cmd/dashboard into dir; the bench must run inside
// the module (go run ./cmd/dashbench does).
func buildServer(ctx context.Context, dir string, stderr io.Writer) (string, error) {
	bin := filepath.Join(dir, "dashboard")
	cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/livedash/dashboard/cmd/dashboard")
	cmd.Stdout, cmd.Stderr = stderr, stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("building the server (or pass -server-bin): %w", err)
	}
	return bin, nil
}

// startServer starts bin serve on a free port; env is added to the
// defaults (and wins over them).
func startServer(ctx context.Context, bin, dbURL string, env []string, stderr io.Writer) (*serverProc, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	cmd := exec.Command(bin, "serve")
	cmd.Env = append(os.Environ(),
		"DATABASE_URL="+dbURL,
		"DASHBOARD_ADDR="+addr,
		"DASHBOARD_MAX_STREAMS=20000",
		"DASHBOARD_MAX_STREAMS_PER_IP=20000",
		"DASHBOARD_MAX_LONGPOLL=20000",
		"DASHBOARD_LOG_LEVEL=warn",
	)
	cmd.Env = append(cmd.Env, env...)
	cmd.Stdout, cmd.Stderr = stderr, stderr
	proc, err := startProcess(cmd)
	if err != nil {
		return nil, fmt.Errorf("starting server: %w", err)
	}
	p := &serverProc{process: proc, url: "http://" + addr}
	if err := p.awaitOK(ctx, p.url+"/readyz", 60*time.Second); err != nil {
		if _, exited := err.(errExited); !exited {
			p.stop()
		}
		return nil, fmt.Errorf("server: %w", err)
	}
	return p, nil
}

// stop ends the server it started (SIGTERM, then SIGKILL after 20 s).
func (p *serverProc) stop() { p.process.stop(20 * time.Second) }

// metrics is what the bench reads from the server's /metrics, or the sum
// over several servers.
type metrics struct {
	queries float64 // dashboard_refresh_queries_total, all labels
	frames  float64 // dashboard_frames_sent_total
	slow    float64 // dashboard_slow_clients_dropped_total
	rss     float64 // process_resident_memory_bytes
	cpu     float64 // process_cpu_seconds_total
	clients float64 // dashboard_sse_clients
}

// add adds o to m: the figures of several servers.
func (m *metrics) add(o metrics) {
	m.queries += o.queries
	m.frames += o.frames
	m.slow += o.slow
	m.rss += o.rss
	m.cpu += o.cpu
	m.clients += o.clients
}

func scrape(ctx context.Context, base string) (metrics, error) {
	var m metrics
	req, _ := http.NewRequestWithContext(ctx, "GET", base+"/metrics", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return m, fmt.Errorf("reading metrics: %w", err)
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err != nil {
			continue
		}
		switch name {
		case "dashboard_refresh_queries_total":
			m.queries += v
		case "dashboard_frames_sent_total":
			m.frames += v
		case "dashboard_slow_clients_dropped_total":
			m.slow += v
		case "process_resident_memory_bytes":
			m.rss = v
		case "process_cpu_seconds_total":
			m.cpu = v
		case "dashboard_sse_clients":
			m.clients = v
		}
	}
	return m, sc.Err()
}
