package provision

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// shopSchema is what the test dashboards read.
const shopSchema = `
CREATE TABLE orders (id int, amount numeric, region text, status text, created_at timestamptz);
CREATE TABLE customers (id int, name text, region text);
CREATE TABLE audit (id int);
INSERT INTO orders VALUES (1, 10, 'eu', 'open', now());
`

// newDB returns a pool on a fresh, migrated database holding shopSchema.
func newDB(t *testing.T) *pgxpool.Pool {
	t.Helper()
	cs := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, shopSchema); err != nil {
		t.Fatal(err)
	}
	cfg, err := pgxpool.ParseConfig(cs)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 6
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func exec(t *testing.T, pool *pgxpool.Pool, sql string, args ...any) {
	t.Helper()
	if _, err := pool.Exec(t.Context(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// rows is every row of the dashboard tables with its xmin, id order: equal
// snapshots mean nothing was written, not even an UPDATE to the same values.
func rows(t *testing.T, pool *pgxpool.Pool) string {
	t.Helper()
	var s string
	err := pool.QueryRow(t.Context(), `
		SELECT coalesce((SELECT string_agg(d.xmin::text || ' ' || d::text, E'\n' ORDER BY id) FROM dashboard.dashboards d), '') || E'\n--\n' ||
		       coalesce((SELECT string_agg(p.xmin::text || ' ' || p::text, E'\n' ORDER BY id) FROM dashboard.panels p), '')`).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// dir writes files into a new folder and returns it.
func dir(t *testing.T, files map[string]string) string {
	t.Helper()
	d := t.TempDir()
	writeFiles(t, d, files)
	return d
}

func load(t *testing.T, dir string) *Set {
	t.Helper()
	set, err := LoadDir(dir)
	if err != nil {
		t.Fatalf("LoadDir: %v", err)
	}
	return set
}

// testOptions are Apply's options in tests: short lock waits.
func testOptions() ApplyOptions {
	return ApplyOptions{QueryTimeout: 5 * time.Second,
		Watch: catalog.WatchOptions{LockTimeout: 100 * time.Millisecond, Attempts: 3, Backoff: 10 * time.Millisecond}}
}

func apply(t *testing.T, pool *pgxpool.Pool, dir string, prune bool) *Result {
	t.Helper()
	opts := testOptions()
	opts.Prune = prune
	res, err := Apply(t.Context(), pool, load(t, dir), opts)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	return res
}

func readText(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// readDir returns every file of dir by name.
func readDir(t *testing.T, dir string) map[string]string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := make(map[string]string)
	for _, e := range entries {
		out[e.Name()] = readText(t, filepath.Join(dir, e.Name()))
	}
	return out
}

func slogText(w io.Writer) *slog.Logger {
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func contains(t *testing.T, what, s string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(s, w) {
			t.Errorf("%s lacks %q:\n%s", what, w, s)
		}
	}
}
