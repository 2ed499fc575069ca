package pgtest_test

import (
	"context"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// seen collects each test's database name, to check that no two tests share one.
var seen sync.Map

// useDB connects to a fresh database, checks that it is empty and leaves a table behind.
func useDB(t *testing.T) {
	t.Parallel()
	conn, err := pgx.Connect(t.Context(), pgtest.NewDB(t))
	if err != nil {
		t.Fatalf("connecting: %v", err)
	}
	defer conn.Close(context.Background())

	var name string
	var tables int
	err = conn.QueryRow(t.Context(), `SELECT current_database(),
		(SELECT count(*) FROM pg_tables WHERE schemaname NOT IN ('pg_catalog', 'information_schema'))`).Scan(&name, &tables)
	if err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Errorf("got %d tables in a new database, want 0", tables)
	}
	if other, dup := seen.LoadOrStore(name, t.Name()); dup {
		t.Errorf("database %s already used by %s", name, other)
	}
	if _, err := conn.Exec(t.Context(), "CREATE TABLE leftover (x int)"); err != nil {
		t.Fatal(err)
	}
}

func TestNewDBOne(t *testing.T) { useDB(t) }
func TestNewDBTwo(t *testing.T) { useDB(t) }

func TestNewDBDroppedAfterTest(t *testing.T) {
	var connString string
	t.Run("inner", func(t *testing.T) {
		connString = pgtest.NewDB(t)
		conn, err := pgx.Connect(t.Context(), connString)
		if err != nil {
			t.Fatal(err)
		}
		// Left open on purpose: the drop must force it closed.
		t.Cleanup(func() { conn.Close(context.Background()) })
	})
	_, err := pgx.Connect(t.Context(), connString)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("connecting to a finished test's database: got %v, want \"does not exist\"", err)
	}
}

func TestServerRestart(t *testing.T) {
	// Not parallel: it restarts the server every test of the package shares.
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Skip("needs the package's own server")
	}
	connString := pgtest.NewDB(t)
	s := pgtest.Server(t)
	if !s.Owned() {
		t.Fatal("got a server the package does not own")
	}
	if err := s.Restart(t.Context(), "immediate"); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	conn, err := pgx.Connect(t.Context(), connString)
	if err != nil {
		t.Fatalf("connecting after restart: %v", err)
	}
	conn.Close(t.Context())
}

// TestLogicalReplicationAllowed checks what the logical change feed's tests need of the package's
// server: wal_level=logical, room for a walsender and slot per parallel test, and replication
// connections allowed.
func TestLogicalReplicationAllowed(t *testing.T) {
	t.Parallel()
	connString := pgtest.NewDB(t)
	cfg, err := pgconn.ParseConfig(connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.RuntimeParams["replication"] = "database"
	conn, err := pgconn.ConnectConfig(t.Context(), cfg)
	if err != nil {
		t.Fatalf("opening a replication connection: %v", err)
	}
	defer conn.Close(context.Background())
	// A walsender takes one replication command per query.
	var got []string
	for _, name := range []string{"wal_level", "max_wal_senders", "max_replication_slots"} {
		results, err := conn.Exec(t.Context(), "SHOW "+name).ReadAll()
		if err != nil {
			t.Fatalf("SHOW %s on a replication connection: %v", name, err)
		}
		got = append(got, string(results[0].Rows[0][0]))
	}
	if os.Getenv("TEST_DATABASE_URL") != "" {
		t.Logf("TEST_DATABASE_URL server: wal_level, max_wal_senders, max_replication_slots = %q", got)
		return
	}
	if want := []string{"logical", "40", "40"}; !slices.Equal(got, want) {
		t.Errorf("wal_level, max_wal_senders, max_replication_slots: got %q, want %q", got, want)
	}
}
