package refresh_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// TestEngineWatchClearsNotice: a panel whose table the server may not watch
// says which statement an owner must run. Once an owner has run it, the
// notice goes without waiting for a full refresh (the harness runs none),
// because dashboard.watch notifies a catalog reload; unwatch brings it back
// the same way.
func TestEngineWatchClearsNotice(t *testing.T) {
	t.Parallel()
	db := newTestDB(t)
	var super bool
	if err := db.pool.QueryRow(t.Context(), "SELECT current_setting('is_superuser')::bool").Scan(&super); err != nil {
		t.Fatal(err)
	}
	if !super {
		t.Skip("needs a superuser to create roles")
	}
	// The server's role may read everything but owns nothing, so it cannot
	// install triggers on t.
	role := fmt.Sprintf("refresh_reader_%d", time.Now().UnixNano())
	db.exec(t, "CREATE ROLE "+role)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		if _, err := db.pool.Exec(ctx, "DROP OWNED BY "+role+"; DROP ROLE "+role); err != nil {
			t.Errorf("dropping role %s: %v", role, err)
		}
	})
	dash, p := countPanel(t, db, "")
	db.exec(t, "GRANT USAGE ON SCHEMA dashboard TO "+role+
		"; GRANT SELECT ON ALL TABLES IN SCHEMA dashboard TO "+role+
		"; GRANT SELECT ON t TO "+role)

	cfg, err := pgxpool.ParseConfig(db.connString)
	if err != nil {
		t.Fatal(err)
	}
	cfg.MaxConns = 4
	cfg.AfterConnect = func(ctx context.Context, conn *pgx.Conn) error {
		_, err := conn.Exec(ctx, "SET ROLE "+role)
		return err
	}
	reader, err := pgxpool.NewWithConfig(context.Background(), cfg)
	if err != nil {
		t.Fatalf("creating pool: %v", err)
	}
	t.Cleanup(reader.Close)

	h := start(t, &testDB{connString: db.connString, pool: reader}, options{})
	defer h.acquire(t, dash)()
	const statement = "SELECT dashboard.watch('public.t');"
	notice := func(what string, cond func(string) bool) {
		t.Helper()
		h.pub.waitFor(t, what, func() bool {
			rs := h.pub.ofLocked(p)
			return len(rs) > 0 && cond(rs[len(rs)-1].Notice)
		})
	}
	hasStatement := func(n string) bool { return strings.Contains(n, statement) }

	notice("a notice naming "+statement, hasStatement)
	watched := time.Now()
	db.exec(t, statement) // as the owner
	notice("no notice after the owner ran the statement", func(n string) bool { return n == "" })
	t.Logf("notice gone %v after watch", time.Since(watched).Round(time.Millisecond))
	db.exec(t, "INSERT INTO t DEFAULT VALUES")
	h.pub.waitValue(t, p, 1)

	db.exec(t, "SELECT dashboard.unwatch('public.t')")
	notice("the notice back after unwatch", hasStatement)
}
