package catalog_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/livedash/dashboard/internal/catalog"
)

// TestExplain: the tables a query with $n parameters reads, the nodes that
// write, and the statements that are not queries, all found without
// running anything, inside a transaction that stays usable.
func TestExplain(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, depsSchema)
	db.exec(t, `
		CREATE TABLE parted (k int NOT NULL) PARTITION BY RANGE (k);
		CREATE TABLE parted_1 PARTITION OF parted FOR VALUES FROM (0) TO (10);
		CREATE TABLE parted_2 PARTITION OF parted FOR VALUES FROM (10) TO (20)`)
	tests := []struct {
		name       string
		sql        string
		dependsOn  []string
		wantTables []string
		wantWrites []string
		wantParams int
		wantErr    string // a substring; "" for none
		notQuery   bool
	}{
		{name: "parameters", sql: "SELECT count(*) FROM orders WHERE total > $1 AND customer = ANY($2)",
			wantTables: []string{"public.orders"}, wantParams: 2},
		{name: "no parameters", sql: "SELECT c.name FROM customers c JOIN sales.orders o ON o.id = c.id",
			wantTables: []string{"public.customers", "sales.orders"}},
		// A generic plan cannot prune by a parameter: every partition shows.
		{name: "partitions by parameter", sql: "SELECT count(*) FROM parted WHERE k = $1",
			wantTables: []string{"public.parted", "public.parted_1", "public.parted_2"}, wantParams: 1},
		{name: "depends_on", sql: "SELECT order_count()", dependsOn: []string{"orders"},
			wantTables: []string{"public.orders"}},
		{name: "VALUES", sql: "VALUES (1), (2)", wantTables: []string{}},
		{name: "TABLE", sql: "TABLE customers", wantTables: []string{"public.customers"}},
		{name: "data-modifying CTE", sql: "WITH d AS (DELETE FROM orders RETURNING *) SELECT count(*) FROM d",
			wantTables: []string{"public.orders"}, wantWrites: []string{"ModifyTable (Delete on public.orders)"}},
		{name: "UPDATE RETURNING", sql: "UPDATE customers SET name = 'x' RETURNING id",
			wantTables: []string{"public.customers"}, wantWrites: []string{"ModifyTable (Update on public.customers)"}},
		{name: "DELETE", sql: "DELETE FROM sales.orders WHERE id = $1", wantParams: 1,
			wantTables: []string{"sales.orders"}, wantWrites: []string{"ModifyTable (Delete on sales.orders)"}},
		{name: "FOR UPDATE", sql: "SELECT * FROM orders FOR UPDATE",
			wantTables: []string{"public.orders"}, wantWrites: []string{"LockRows"}},
		{name: "SHOW", sql: "SHOW work_mem", wantErr: "utility statement", notQuery: true},
		{name: "DDL", sql: "CREATE TABLE x (a int)", wantErr: "utility statement", notQuery: true},
		{name: "EXPLAIN", sql: "EXPLAIN SELECT 1", wantErr: "utility statement", notQuery: true},
		{name: "SELECT INTO", sql: "SELECT * INTO copy FROM orders", wantErr: "returns no columns", notQuery: true},
		{name: "two statements", sql: "SELECT 1; SELECT 2", wantErr: "cannot insert multiple commands into a prepared statement"},
		{name: "broken", sql: "SELECT count(*) FROM ordres", wantErr: `relation "ordres" does not exist`},
		{name: "invalid depends_on", sql: "SELECT 1", dependsOn: []string{"not a name"}, wantErr: "invalid name syntax"},
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	tx, err := db.pool.BeginTx(ctx, pgx.TxOptions{AccessMode: pgx.ReadOnly})
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	for _, tt := range tests {
		plan, err := catalog.Explain(ctx, tx, tt.sql, tt.dependsOn)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: Explain(%q): got %v, want an error containing %q", tt.name, tt.sql, err, tt.wantErr)
			}
			if got := errors.Is(err, catalog.ErrNotQuery); got != tt.notQuery {
				t.Errorf("%s: errors.Is(err, ErrNotQuery): got %v, want %v", tt.name, got, tt.notQuery)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: Explain(%q): %v", tt.name, tt.sql, err)
			continue
		}
		if got := sorted(plan.Tables); !slices.Equal(got, tt.wantTables) {
			t.Errorf("%s: Tables: got %q, want %q", tt.name, got, tt.wantTables)
		}
		if !slices.Equal(plan.Writes, tt.wantWrites) {
			t.Errorf("%s: Writes: got %q, want %q", tt.name, plan.Writes, tt.wantWrites)
		}
		if plan.Params != tt.wantParams {
			t.Errorf("%s: Params: got %d, want %d", tt.name, plan.Params, tt.wantParams)
		}
	}
	// The transaction is usable, plan_cache_mode is back, and no prepared
	// statement is left on the connection.
	var mode string
	var left int
	if err := tx.QueryRow(ctx, "SELECT current_setting('plan_cache_mode'), (SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'dashboard_explain%')").Scan(&mode, &left); err != nil {
		t.Fatalf("after Explain: %v", err)
	}
	if mode != "auto" || left != 0 {
		t.Errorf("after Explain: plan_cache_mode %q and %d prepared statements, want auto and 0", mode, left)
	}
	var pgErr *pgconn.PgError
	if _, err := catalog.Explain(ctx, tx, "SELECT nosuch FROM orders", nil); !errors.As(err, &pgErr) || pgErr.Code != "42703" {
		t.Errorf("a missing column: got %v, want SQLSTATE 42703", err)
	}
}

func TestMissingTables(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, depsSchema)
	ctx := t.Context()
	tx, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background())
	got, err := catalog.MissingTables(ctx, tx, []string{"orders", "public.nosuch", `"Weird Name"`, "sales.nope"})
	if err != nil || !slices.Equal(got, []string{"public.nosuch", "sales.nope"}) {
		t.Errorf("MissingTables: got %q, %v, want [public.nosuch sales.nope]", got, err)
	}
	if _, err := catalog.MissingTables(ctx, tx, []string{"not a name"}); err == nil {
		t.Errorf("MissingTables of an invalid name: got no error, want one")
	}
	if _, err := tx.Exec(ctx, "SELECT 1"); err != nil {
		t.Errorf("after MissingTables failed: the transaction is not usable: %v", err)
	}
}
