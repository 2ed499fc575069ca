package migrations

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/livedash/dashboard/internal/pgtest"
)

// BenchmarkTriggerCost measures what the trigger of a watched table costs
// one writer: each op is an UPDATE of one row and its COMMIT, run in a
// server-side loop (a procedure), so no round trip hides it. Compare the
// variants' ns/op; run with -benchtime=20000x and -count to see the spread.
//
//	unwatched        no trigger
//	empty-trigger    a PL/pgSQL statement trigger that does nothing: the
//	                 floor of any trigger of this kind
//	notify/nobody    notify mode, no server wants the table: four lock tries
//	notify-nobody-16 the same with 16 feed slots (dashboard.set_feed_slots):
//	notify-nobody-64 16 or 64 lock tries, held until the commit
//	notify/wanted    notify mode, a server holds the key: one try, a NOTIFY
//	logical          logical mode: one WAL message (no slot reads it here)
//	0006-form        the trigger as 0006 wrote it (SECURITY DEFINER, SET
//	                 search_path, a feed_mode() call), nobody wanting it
func BenchmarkTriggerCost(b *testing.B) {
	ctx := context.Background()
	connString := pgtest.NewDB(b)
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := Up(ctx, conn); err != nil {
		b.Fatal(err)
	}
	run := func(b *testing.B, sql string) {
		b.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			b.Fatalf("%s: %v", sql, err)
		}
	}
	run(b, `CREATE TABLE bench (id int PRIMARY KEY, v int); INSERT INTO bench VALUES (1, 0);
		CREATE PROCEDURE bench_loop(n int) LANGUAGE plpgsql AS $$
		BEGIN
			FOR i IN 1..n LOOP
				UPDATE bench SET v = v + 1 WHERE id = 1;
				COMMIT;
			END LOOP;
		END $$;
		CREATE FUNCTION bench_empty() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$;
		CREATE FUNCTION bench_0006_form() RETURNS trigger LANGUAGE plpgsql
		SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
		BEGIN
			IF dashboard.feed_mode() = 'logical' THEN
				PERFORM pg_logical_emit_message(true, 'dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
				RETURN NULL;
			END IF;
			IF NOT (pg_try_advisory_xact_lock_shared((1685258240::bigint << 32) | TG_RELID::bigint)
				AND pg_try_advisory_xact_lock_shared((1685258241::bigint << 32) | TG_RELID::bigint)
				AND pg_try_advisory_xact_lock_shared((1685258242::bigint << 32) | TG_RELID::bigint)
				AND pg_try_advisory_xact_lock_shared((1685258243::bigint << 32) | TG_RELID::bigint)) THEN
				PERFORM pg_notify('dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
			END IF;
			RETURN NULL;
		END $$`)
	holder, err := pgx.Connect(ctx, connString)
	if err != nil {
		b.Fatal(err)
	}
	defer holder.Close(ctx)

	for _, v := range []struct {
		name, setup, teardown string
		wanted                bool
	}{
		{name: "unwatched"},
		{name: "empty-trigger",
			setup:    "CREATE TRIGGER dashboard_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bench FOR EACH STATEMENT EXECUTE FUNCTION bench_empty()",
			teardown: "DROP TRIGGER dashboard_notify ON bench"},
		{name: "notify-nobody", setup: "SELECT dashboard.watch('bench')", teardown: "SELECT dashboard.unwatch('bench')"},
		{name: "notify-nobody-16", setup: "SELECT dashboard.set_feed_slots(16); SELECT dashboard.watch('bench')",
			teardown: "SELECT dashboard.unwatch('bench'); SELECT dashboard.set_feed_slots(4)"},
		{name: "notify-nobody-64", setup: "SELECT dashboard.set_feed_slots(64); SELECT dashboard.watch('bench')",
			teardown: "SELECT dashboard.unwatch('bench'); SELECT dashboard.set_feed_slots(4)"},
		{name: "notify-wanted", setup: "SELECT dashboard.watch('bench')", teardown: "SELECT dashboard.unwatch('bench')", wanted: true},
		{name: "logical", setup: "SELECT dashboard.set_feed_mode('logical'); SELECT dashboard.watch('bench')",
			teardown: "SELECT dashboard.unwatch('bench'); SELECT dashboard.set_feed_mode('notify')"},
		{name: "0006-form",
			setup:    "CREATE TRIGGER dashboard_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON bench FOR EACH STATEMENT EXECUTE FUNCTION bench_0006_form()",
			teardown: "DROP TRIGGER dashboard_notify ON bench"},
	} {
		b.Run(v.name, func(b *testing.B) {
			if v.setup != "" {
				run(b, v.setup)
				defer run(b, v.teardown)
			}
			if v.wanted {
				if _, err := holder.Exec(ctx, "SELECT pg_advisory_lock(dashboard.feed_key(0, 'bench'::regclass))"); err != nil {
					b.Fatal(err)
				}
				defer holder.Exec(ctx, "SELECT pg_advisory_unlock_all()")
			}
			run(b, "VACUUM bench")
			b.ResetTimer()
			if _, err := conn.Exec(ctx, "CALL bench_loop($1)", b.N); err != nil {
				b.Fatal(err)
			}
		})
	}
}
