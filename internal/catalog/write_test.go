package catalog_test

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/catalog"
	"github.com/livedash/dashboard/internal/panel"
)

// inTx runs f in a transaction on db that commits when f succeeds.
func inTx(t *testing.T, db *testDB, f func(tx pgx.Tx) error) {
	t.Helper()
	if err := pgx.BeginFunc(t.Context(), db.pool, f); err != nil {
		t.Fatal(err)
	}
}

func readAll(t *testing.T, db *testDB) []*panel.Dashboard {
	t.Helper()
	ds, err := catalog.ReadDashboards(t.Context(), db.pool)
	if err != nil {
		t.Fatal(err)
	}
	return ds
}

// TestWriteRoundTrip: every field written by the writers reads back the
// same through ReadDashboards, and unset optional fields are NULL.
func TestWriteRoundTrip(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	two := 2
	full := &panel.Dashboard{
		Slug: "sales", Title: "Sales", Description: "Orders by region", Public: false, MaxRefreshHz: 2.5,
		Position: 3, TimeZone: "Europe/Paris", Refresh: 90 * time.Second,
		Variables: []panel.Variable{
			{Name: "region", Label: "Region", Kind: panel.QueryVariable, SQL: "SELECT 'eu'", Multi: true},
			{Name: "status", Kind: panel.ListVariable, Options: []string{"open", "closed"}, Default: []string{"open"}},
		},
		Time:   &panel.TimeRange{From: "now-6h", To: "now"},
		Source: &panel.Source{File: "sales.yaml", Hash: strings.Repeat("ab", 32)},
	}
	bare := &panel.Dashboard{Slug: "bare", Title: "Bare", Public: true}
	panels := []*panel.Def{
		{Slug: "revenue", Title: "Revenue", Kind: panel.Stat, SQL: "SELECT 1\n", Position: 0, Width: 2, Height: 1,
			Options: panel.Options{Prefix: "$", Decimals: &two}, DependsOn: []string{"public.orders"}},
		{Slug: "feed", Title: "Feed", Kind: panel.Feed, SQL: "SELECT now()", Position: 1, Width: 4, Height: 3,
			Options: panel.Options{Limit: 5}, DependsOn: []string{}},
	}
	var fullID int64
	inTx(t, db, func(tx pgx.Tx) error {
		var err error
		if fullID, err = catalog.InsertDashboard(t.Context(), tx, full); err != nil {
			return err
		}
		if _, err := catalog.InsertDashboard(t.Context(), tx, bare); err != nil {
			return err
		}
		for _, p := range panels {
			if p.ID, err = catalog.InsertPanel(t.Context(), tx, fullID, p); err != nil {
				return err
			}
		}
		return nil
	})
	var hz, refresh, from, file *string
	var tz string
	if err := db.pool.QueryRow(t.Context(), `SELECT max_refresh_hz::text, refresh_seconds::text, time_from, source_file, time_zone
		FROM dashboard.dashboards WHERE slug = 'bare'`).Scan(&hz, &refresh, &from, &file, &tz); err != nil {
		t.Fatal(err)
	}
	if hz != nil || refresh != nil || from != nil || file != nil || tz != "UTC" {
		t.Errorf("bare dashboard: got max_refresh_hz %v, refresh_seconds %v, time_from %v, source_file %v, time_zone %q; want NULLs and UTC",
			hz, refresh, from, file, tz)
	}
	ds := readAll(t, db)
	if len(ds) != 2 || ds[0].Slug != "bare" || ds[1].Slug != "sales" {
		t.Fatalf("got dashboards %q, want bare, sales", slugs(ds))
	}
	got := ds[1]
	for _, p := range got.Panels {
		p.DashboardID = 0
	}
	want := *full
	want.ID = fullID
	want.Panels = panels
	if !reflect.DeepEqual(got, &want) {
		t.Errorf("read back:\n got %+v\nwant %+v", got, &want)
	}

	// Updates overwrite every column; deletes remove.
	changed := *full
	changed.Slug, changed.Title, changed.Public, changed.MaxRefreshHz, changed.Refresh, changed.Time, changed.Source, changed.Variables =
		"sales2", "Sales 2", true, 0, 0, nil, nil, nil
	p := *panels[0]
	p.Title, p.SQL, p.Options, p.DependsOn = "Revenue 2", "SELECT 2", panel.Options{}, nil
	inTx(t, db, func(tx pgx.Tx) error {
		if err := catalog.UpdateDashboard(t.Context(), tx, fullID, &changed); err != nil {
			return err
		}
		if err := catalog.UpdatePanel(t.Context(), tx, p.ID, &p); err != nil {
			return err
		}
		return catalog.DeletePanel(t.Context(), tx, panels[1].ID)
	})
	ds = readAll(t, db)
	got = ds[1]
	if got.Slug != "sales2" || got.Title != "Sales 2" || !got.Public || got.MaxRefreshHz != 0 || got.Refresh != 0 ||
		got.Time != nil || got.Source != nil || len(got.Variables) != 0 {
		t.Errorf("after update: got %+v", got)
	}
	if len(got.Panels) != 1 || got.Panels[0].Title != "Revenue 2" || got.Panels[0].SQL != "SELECT 2" ||
		got.Panels[0].Options.Decimals != nil || len(got.Panels[0].DependsOn) != 0 {
		t.Errorf("after update: got panels %+v", got.Panels)
	}
	if err := pgx.BeginFunc(t.Context(), db.pool, func(tx pgx.Tx) error {
		return catalog.UpdatePanel(t.Context(), tx, 999999, &p)
	}); err == nil || !strings.Contains(err.Error(), "no panel with id 999999") {
		t.Errorf("UpdatePanel of a missing id: got %v, want an error", err)
	}
	inTx(t, db, func(tx pgx.Tx) error { return catalog.DeleteDashboard(t.Context(), tx, fullID) })
	var n int
	if err := db.pool.QueryRow(t.Context(), "SELECT (SELECT count(*) FROM dashboard.dashboards) + (SELECT count(*) FROM dashboard.panels)").Scan(&n); err != nil || n != 1 {
		t.Errorf("after DeleteDashboard: got %d rows (%v), want 1 (the bare dashboard)", n, err)
	}
}

// TestWriteRefusedByConstraint: the database's limits still hold; the
// error names the dashboard.
func TestWriteRefusedByConstraint(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	err := pgx.BeginFunc(t.Context(), db.pool, func(tx pgx.Tx) error {
		_, err := catalog.InsertDashboard(t.Context(), tx, &panel.Dashboard{Slug: "x", Title: strings.Repeat("t", 201)})
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "inserting dashboard x") || !strings.Contains(err.Error(), "dashboards_title_length") {
		t.Errorf("a 201-character title: got %v, want the constraint named", err)
	}
}

func TestApplyLockSerialises(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	ctx := t.Context()
	first, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(context.Background())
	if err := catalog.LockForApply(ctx, first); err != nil {
		t.Fatal(err)
	}
	second, err := db.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer second.Rollback(context.Background())
	if _, err := second.Exec(ctx, "SET LOCAL lock_timeout = '100ms'"); err != nil {
		t.Fatal(err)
	}
	if err := catalog.LockForApply(ctx, second); err == nil || !strings.Contains(err.Error(), "lock timeout") {
		t.Errorf("a second LockForApply while the first is held: got %v, want a lock timeout", err)
	}
}

// locker holds a lock on table in its own transaction until released.
type locker struct {
	tx  pgx.Tx
	pid int
}

func lockTable(t *testing.T, db *testDB, table, mode string) *locker {
	t.Helper()
	tx, err := db.pool.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tx.Rollback(context.Background()) })
	l := &locker{tx: tx}
	if err := tx.QueryRow(t.Context(), "SELECT pg_backend_pid()").Scan(&l.pid); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(t.Context(), fmt.Sprintf("LOCK TABLE %s IN %s MODE", table, mode)); err != nil {
		t.Fatal(err)
	}
	return l
}

func TestWatch(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	db.exec(t, "CREATE TABLE items (id int); CREATE TABLE other (id int); CREATE VIEW items_view AS SELECT * FROM items")
	ctx := t.Context()
	fast := catalog.WatchOptions{LockTimeout: 100 * time.Millisecond, Attempts: 3, Backoff: 10 * time.Millisecond}

	t.Run("locked past the retries", func(t *testing.T) {
		l := lockTable(t, db, "items", "ROW EXCLUSIVE")
		var retries []int
		opts := fast
		opts.OnRetry = func(attempt int, holders []string) { retries = append(retries, attempt) }
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		err = catalog.Watch(ctx, tx, "items", opts)
		var locked *catalog.LockedError
		if !errors.As(err, &locked) {
			t.Fatalf("Watch of a locked table: got %v, want a *LockedError", err)
		}
		if locked.Table != "items" || locked.Attempts != 3 || len(retries) != 2 {
			t.Errorf("got %+v after retries %v, want items, 3 attempts, 2 retries", locked, retries)
		}
		if len(locked.Holders) != 1 || !strings.HasPrefix(locked.Holders[0], fmt.Sprintf("pid %d (RowExclusiveLock", l.pid)) ||
			!strings.Contains(locked.Holders[0], "LOCK TABLE items") {
			t.Errorf("holders: got %q, want pid %d with its lock mode and query", locked.Holders, l.pid)
		}
		if !strings.Contains(err.Error(), "watching items: its lock was not granted within 100ms in 3 attempts (held by pid") {
			t.Errorf("message: got %q", err)
		}
		// The transaction is still usable and has its own lock_timeout.
		var timeout string
		if err := tx.QueryRow(ctx, "SELECT current_setting('lock_timeout')").Scan(&timeout); err != nil || timeout != "0" {
			t.Errorf("after Watch failed: lock_timeout %q (%v), want 0 in a usable transaction", timeout, err)
		}
	})

	t.Run("released during the retries", func(t *testing.T) {
		l := lockTable(t, db, "items", "SHARE")
		opts := fast
		opts.OnRetry = func(attempt int, holders []string) {
			if attempt == 1 {
				if err := l.tx.Commit(context.Background()); err != nil {
					t.Errorf("releasing the lock: %v", err)
				}
			}
		}
		inTx(t, db, func(tx pgx.Tx) error {
			if err := catalog.Watch(ctx, tx, "items", opts); err != nil {
				return err
			}
			var timeout string
			if err := tx.QueryRow(ctx, "SELECT current_setting('lock_timeout')").Scan(&timeout); err != nil || timeout != "0" {
				t.Errorf("after Watch: lock_timeout %q (%v), want 0 again", timeout, err)
			}
			return nil
		})
		if !db.isWatched(t, "items") {
			t.Errorf("items is not watched after Watch succeeded")
		}
	})

	t.Run("already watched", func(t *testing.T) {
		// A held lock does not matter: nothing is asked of the table.
		lockTable(t, db, "items", "ROW EXCLUSIVE")
		inTx(t, db, func(tx pgx.Tx) error { return catalog.Watch(ctx, tx, "items", fast) })
	})

	t.Run("not a table", func(t *testing.T) {
		tx, err := db.pool.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback(context.Background())
		err = catalog.Watch(ctx, tx, "items_view", fast)
		var locked *catalog.LockedError
		if err == nil || errors.As(err, &locked) || !strings.Contains(err.Error(), "only tables and partitioned tables can be watched") {
			t.Errorf("Watch of a view: got %v, want the database's refusal", err)
		}
		if err := catalog.Watch(ctx, tx, "other", fast); err != nil {
			t.Errorf("Watch in the same transaction after a refusal: %v", err)
		}
	})
}
