package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/pgtest"
	"github.com/livedash/dashboard/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// safetyRefresh is the Loader's SafetyRefresh in every test; notices name it.
const safetyRefresh = time.Minute

// testDB is a fresh, migrated database for one test, with a pool connected
// as the user pgtest gives (the owner of everything the test creates).
type testDB struct {
	connString string
	pool       *pgxpool.Pool
}

func newDB(t *testing.T) *testDB {
	t.Helper()
	cs := pgtest.NewDB(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, cs)
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(ctx)
	if _, err := migrations.Up(ctx, conn); err != nil {
		t.Fatalf("migrations.Up: %v", err)
	}
	return &testDB{connString: cs, pool: newPool(t, cs, nil)}
}

// newPool opens a pool on connString that the test closes when it ends;
// adjust, if not nil, changes its configuration first.
func newPool(t *testing.T, connString string, adjust func(*pgxpool.Config)) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(connString)
	if err != nil {
		t.Fatalf("parsing %q: %v", connString, err)
	}
	cfg.MaxConns = 4
	if adjust != nil {
		adjust(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func (db *testDB) exec(t *testing.T, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.pool.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

// dash is a row of dashboard.dashboards; zero fields take the column
// defaults where there is one.
type dash struct {
	slug, title, description string
	private                  bool
	maxRefreshHz             float64 // 0: NULL
	position                 int
}

func (db *testDB) dashboard(t *testing.T, d dash) int64 {
	t.Helper()
	visibility := "public"
	if d.private {
		visibility = "private"
	}
	var hz *float64
	if d.maxRefreshHz > 0 {
		hz = &d.maxRefreshHz
	}
	if d.title == "" {
		d.title = d.slug
	}
	var id int64
	err := db.pool.QueryRow(context.Background(), `
		INSERT INTO dashboard.dashboards (slug, title, description, visibility, max_refresh_hz, position)
		VALUES ($1, $2, $3, $4, $5, $6) RETURNING id`,
		d.slug, d.title, d.description, visibility, hz, d.position).Scan(&id)
	if err != nil {
		t.Fatalf("inserting dashboard %s: %v", d.slug, err)
	}
	return id
}

// pnl is a row of dashboard.panels; zero fields take usable defaults.
type pnl struct {
	slug, sql, kind string
	position        int
	width, height   int
	options         string // jsonb text; "" is '{}'
	dependsOn       []string
}

func (db *testDB) panel(t *testing.T, dashboardID int64, p pnl) int64 {
	t.Helper()
	if p.kind == "" {
		p.kind = "stat"
	}
	if p.sql == "" {
		p.sql = "SELECT 1"
	}
	if p.width == 0 {
		p.width = 1
	}
	if p.height == 0 {
		p.height = 1
	}
	if p.options == "" {
		p.options = "{}"
	}
	if p.dependsOn == nil {
		p.dependsOn = []string{}
	}
	var id int64
	err := db.pool.QueryRow(context.Background(), `
		INSERT INTO dashboard.panels (dashboard_id, slug, title, kind, sql, position, width, height, options, depends_on)
		VALUES ($1, $2, $2, $3, $4, $5, $6, $7, $8::jsonb, $9) RETURNING id`,
		dashboardID, p.slug, p.kind, p.sql, p.position, p.width, p.height, p.options, p.dependsOn).Scan(&id)
	if err != nil {
		t.Fatalf("inserting panel %s: %v", p.slug, err)
	}
	return id
}

// loader returns a Loader on pool with the settings every test uses.
func loader(pool *pgxpool.Pool) *catalog.Loader {
	return &catalog.Loader{Pool: pool, QueryTimeout: 5 * time.Second, SafetyRefresh: safetyRefresh}
}

// load runs l.Load and fails the test on an error.
func load(t *testing.T, l *catalog.Loader) *catalog.Snapshot {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := l.Load(ctx)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return s
}

// isWatched asks the database whether table carries the notify triggers.
func (db *testDB) isWatched(t *testing.T, table string) bool {
	t.Helper()
	var ok bool
	if err := db.pool.QueryRow(context.Background(), "SELECT dashboard.is_watched($1::regclass)", table).Scan(&ok); err != nil {
		t.Fatalf("is_watched(%s): %v", table, err)
	}
	return ok
}

var roleSeq atomic.Int64

// role creates a login role that is not a superuser and may read the
// dashboard schema, and returns a pool connected as it. Roles belong to
// the whole server, so the name is unique and the role is dropped (with
// its privileges in this database) when the test ends.
func (db *testDB) role(t *testing.T) (name string, pool *pgxpool.Pool) {
	t.Helper()
	name = fmt.Sprintf("catalog_reader_%d_%d", os.Getpid(), roleSeq.Add(1))
	password := fmt.Sprintf("pw-%d", time.Now().UnixNano())
	ctx := context.Background()
	_, err := db.pool.Exec(ctx, "CREATE ROLE "+name+" LOGIN NOSUPERUSER PASSWORD '"+password+"'")
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "42501" {
		t.Skipf("this test needs a user that may create roles: %v", err)
	}
	if err != nil {
		t.Fatalf("creating role %s: %v", name, err)
	}
	// Registered before the role's pool, so it runs after that pool is closed.
	t.Cleanup(func() {
		for _, sql := range []string{"DROP OWNED BY " + name, "DROP ROLE " + name} {
			if _, err := db.pool.Exec(context.Background(), sql); err != nil {
				t.Errorf("%s: %v", sql, err)
			}
		}
	})
	db.exec(t, "GRANT USAGE ON SCHEMA dashboard TO "+name)
	// Dashboards and panels only, as for a role granted before the
	// playlists existed: Load must still serve the dashboards.
	db.exec(t, "GRANT SELECT ON dashboard.dashboards, dashboard.panels TO "+name)
	pool = newPool(t, db.connString, func(cfg *pgxpool.Config) {
		cfg.ConnConfig.User = name
		cfg.ConnConfig.Password = password
	})
	return name, pool
}
