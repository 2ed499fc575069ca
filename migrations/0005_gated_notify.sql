-- 0005_gated_notify.sql: triggers that notify only when a server wants news
-- (docs/architecture.md, "The change feed's cost").
--
-- NOTIFY takes a lock global to the whole cluster at commit and holds it
-- through the commit's flush, so every watched commit queued behind every
-- other, even when no screen showed the table. And the transition tables the
-- old triggers used to skip empty statements kept every changed row: a bulk
-- UPDATE spilled to disk to learn that it changed something.
--
-- Now a watched user table carries one plain statement trigger,
-- dashboard_notify (AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE), whose
-- function asks, per server slot, whether that server wants news of the
-- table:
--
--   A server that wants news of table T holds the session advisory lock
--   dashboard.feed_key(slot, T) exclusively ("armed"). The trigger tries the
--   same key shared, as a transaction lock. If that fails for any slot, some
--   server wants news: NOTIFY. If it succeeds for every slot, nobody does:
--   no NOTIFY, and the writer holds the shared locks until it ends.
--
--   A server that got a notification for T releases its lock ("disarms"),
--   so the rest of that refresh cycle costs writers nothing, and takes it
--   again ("re-arms") before its next query of T. Taking it waits for every
--   writer that skipped its notification (each holds the shared lock until
--   it commits or aborts), so the query's snapshot, taken after, contains
--   every such writer that committed. Writers that come after the re-arm
--   find the lock taken and notify. While the server waits for the lock,
--   new writers find its request queued and notify too.
--
-- Advisory locks are not MVCC: the answer is the same at every isolation
-- level and in any snapshot, aborts release the shared lock like commits,
-- and nothing is written, so no writer can get a serialization failure or a
-- stale answer from it. Keys live in no table, so crash recovery and
-- promotion cannot lose them; a server's locks end with its connection, and
-- it re-arms and re-queries everything when it reconnects.
--
-- Several servers: each claims one of dashboard.feed_slots() slots with a
-- session lock on dashboard.slot_key(slot) and arms only its own keys, so
-- each server's guarantee holds on its own. A writer takes at most that many
-- shared locks per watched table it changes.
--
-- The dashboard schema's own tables keep the four old triggers, which always
-- notify: catalog edits and token revocations must reach every server at
-- once. Tables watched with the old triggers stay correct (they always
-- notify); the migration upgrades every one it can lock within a moment and
-- may alter, and dashboard.watch upgrades the rest.
--
-- The trigger functions need no privilege beyond the write that fires them:
-- advisory locks and pg_notify need none, and nothing in dashboard.* is read
-- or written, so writers need no grant on schema dashboard.

-- feed_slots is how many servers can watch one database at once.
CREATE FUNCTION dashboard.feed_slots() RETURNS int
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $$ SELECT 4 $$;

COMMENT ON FUNCTION dashboard.feed_slots() IS
    'How many servers can watch one database at once: each claims a slot, and triggers ask every slot.';

-- slot_key is the session lock a server holds while it owns a slot.
CREATE FUNCTION dashboard.slot_key(slot int) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT (1685286004::bigint << 32) | slot::bigint $$;

COMMENT ON FUNCTION dashboard.slot_key(int) IS
    'Advisory lock key a server holds (session, exclusive) while it owns feed slot SLOT.';

-- feed_key is the lock a server in slot SLOT holds while it wants news of
-- table REL. The trigger spells the same arithmetic out (keep them in step).
CREATE FUNCTION dashboard.feed_key(slot int, rel oid) RETURNS bigint
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
AS $$ SELECT ((1685258240 + slot)::bigint << 32) | rel::bigint $$;

COMMENT ON FUNCTION dashboard.feed_key(int, oid) IS
    'Advisory lock key a server in slot SLOT holds (session, exclusive) while it wants news of table REL.';

CREATE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- One try per slot, unrolled: this runs for every statement on every
    -- watched table. A failed try means that slot's server wants news.
    IF NOT (pg_try_advisory_xact_lock_shared((1685258240::bigint << 32) | TG_RELID::bigint)
        AND pg_try_advisory_xact_lock_shared((1685258241::bigint << 32) | TG_RELID::bigint)
        AND pg_try_advisory_xact_lock_shared((1685258242::bigint << 32) | TG_RELID::bigint)
        AND pg_try_advisory_xact_lock_shared((1685258243::bigint << 32) | TG_RELID::bigint)) THEN
        PERFORM pg_notify('dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION dashboard.notify_if_wanted() IS
    'Statement trigger function of watched user tables: notifies channel dashboard only when some server holds the table''s feed key of its slot.';

-- trigger_mode says how a table is watched: 'gated' (one dashboard_notify
-- trigger, notifies when wanted), 'always' (the four old triggers, notify on
-- every change), or NULL when it is not watched.
CREATE FUNCTION dashboard.trigger_mode(target regclass) RETURNS text
LANGUAGE sql
STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT CASE
        WHEN EXISTS (
            SELECT FROM pg_trigger tg
            WHERE tg.tgrelid = target
              AND tg.tgname = 'dashboard_notify'
              AND tg.tgtype = 60 -- statement, AFTER, INSERT|DELETE|UPDATE|TRUNCATE
              AND tg.tgfoid = 'dashboard.notify_if_wanted()'::regprocedure
              AND tg.tgenabled IN ('O', 'A')
              AND tg.tgqual IS NULL
              AND tg.tgnargs = 0
              AND cardinality(tg.tgattr::int2[]) = 0
              AND tg.tgoldtable IS NULL
              AND tg.tgnewtable IS NULL)
        THEN 'gated'
        WHEN (SELECT count(*) FROM dashboard.notify_triggers(target)) = 4 THEN 'always'
    END
$$;

COMMENT ON FUNCTION dashboard.trigger_mode(regclass) IS
    'How the table is watched: gated (notifies when a server wants news), always (the old triggers), or NULL (not watched).';

CREATE OR REPLACE FUNCTION dashboard.is_watched(target regclass) RETURNS boolean
LANGUAGE sql
STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT dashboard.trigger_mode(target) IS NOT NULL
$$;

COMMENT ON FUNCTION dashboard.is_watched(regclass) IS
    'True when every change to the table reaches the servers that want it: gated or always triggers in place.';

-- watch installs the gated trigger on a user table and the four always-
-- notifying triggers on the dashboard schema's own tables. It replaces the
-- old triggers of a user table, and is otherwise idempotent and takes no
-- lock when the table is already watched as it should be.
CREATE OR REPLACE FUNCTION dashboard.watch(target regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    spec record;
    qualified text;
    changed boolean := false;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'dashboard.watch: table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    SELECT n.nspname, c.relname, c.relkind INTO rel
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.oid = target;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'dashboard.watch: relation with OID % does not exist', target::oid
            USING ERRCODE = 'undefined_table';
    END IF;
    qualified := format('%I.%I', rel.nspname, rel.relname);

    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'dashboard.watch: % is %; only tables and partitioned tables can be watched',
                qualified,
                CASE rel.relkind
                    WHEN 'v' THEN 'a view'
                    WHEN 'm' THEN 'a materialized view'
                    WHEN 'f' THEN 'a foreign table'
                    WHEN 'S' THEN 'a sequence'
                    WHEN 'i' THEN 'an index'
                    WHEN 'I' THEN 'a partitioned index'
                    WHEN 'c' THEN 'a composite type'
                    WHEN 't' THEN 'a TOAST table'
                    ELSE format('a relation of kind %L', rel.relkind)
                END
            USING ERRCODE = 'wrong_object_type',
                  HINT = 'Watch the tables it reads from instead; the periodic full refresh covers the rest.';
    END IF;

    IF rel.nspname = 'dashboard' THEN
        -- The product's own tables always notify.
        IF dashboard.trigger_mode(target) = 'always' THEN
            RETURN;
        END IF;
        FOR spec IN
            SELECT s.name, s.ddl
            FROM (VALUES
                ('dashboard_notify_insert',
                 'AFTER INSERT ON %s REFERENCING NEW TABLE AS dashboard_new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_new_rows()'),
                ('dashboard_notify_update',
                 'AFTER UPDATE ON %s REFERENCING NEW TABLE AS dashboard_new_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_new_rows()'),
                ('dashboard_notify_delete',
                 'AFTER DELETE ON %s REFERENCING OLD TABLE AS dashboard_old_rows FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_old_rows()'),
                ('dashboard_notify_truncate',
                 'AFTER TRUNCATE ON %s FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_statement()')
            ) AS s (name, ddl)
        LOOP
            CONTINUE WHEN spec.name IN (SELECT dashboard.notify_triggers(target));
            IF EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = target AND tg.tgname = spec.name) THEN
                EXECUTE format('DROP TRIGGER %I ON %s', spec.name, qualified);
            END IF;
            BEGIN
                EXECUTE format('CREATE TRIGGER %I ', spec.name) || format(spec.ddl, qualified);
                changed := true;
            EXCEPTION WHEN duplicate_object THEN
                NULL; -- a concurrent watch created it first
            END;
        END LOOP;
    ELSE
        IF dashboard.trigger_mode(target) = 'gated' THEN
            RETURN;
        END IF;
        -- Replace the old triggers and anything else under our names.
        FOR spec IN
            SELECT tg.tgname FROM pg_trigger tg
            WHERE tg.tgrelid = target
              AND tg.tgname IN ('dashboard_notify', 'dashboard_notify_insert', 'dashboard_notify_update',
                                'dashboard_notify_delete', 'dashboard_notify_truncate')
        LOOP
            EXECUTE format('DROP TRIGGER %I ON %s', spec.tgname, qualified);
        END LOOP;
        BEGIN
            EXECUTE format('CREATE TRIGGER dashboard_notify AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON %s '
                           'FOR EACH STATEMENT EXECUTE FUNCTION dashboard.notify_if_wanted()', qualified);
        EXCEPTION WHEN duplicate_object THEN
            NULL; -- a concurrent watch created it first
        END;
        changed := true;
    END IF;

    IF changed THEN
        -- Servers reload their catalogs, so panel notices follow at once.
        PERFORM pg_notify('dashboard', 'dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.watch(regclass) IS
    'Installs the change triggers: on a user table the gated dashboard_notify trigger (notifies when a server wants news), on the dashboard schema''s tables the four always-notifying ones. Idempotent. When it installs any, it also notifies dashboard.panels so servers reload their catalogs.';

CREATE OR REPLACE FUNCTION dashboard.unwatch(target regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg record;
    changed boolean := false;
BEGIN
    IF target IS NULL THEN
        RAISE EXCEPTION 'dashboard.unwatch: table must not be null'
            USING ERRCODE = 'null_value_not_allowed';
    END IF;

    FOR trg IN
        SELECT tg.tgname, n.nspname, c.relname
        FROM pg_trigger tg
        JOIN pg_class c ON c.oid = tg.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE tg.tgrelid = target
          AND tg.tgname IN ('dashboard_notify', 'dashboard_notify_insert', 'dashboard_notify_update',
                            'dashboard_notify_delete', 'dashboard_notify_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', trg.tgname, trg.nspname, trg.relname);
        changed := true;
    END LOOP;

    IF changed THEN
        PERFORM pg_notify('dashboard', 'dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.unwatch(regclass) IS
    'Removes the dashboard change triggers from the table. Harmless when it is not watched. When it removes any, it notifies dashboard.panels so servers reload their catalogs.';

-- Upgrade the user tables watched with the old triggers, each only if its
-- lock comes within a moment and the migrating role may replace its
-- triggers (that needs the table's ownership; the README has each table's
-- owner run watch and migrations run as the schema's owner): a busy or
-- foreign table keeps its old triggers, which are correct, only dearer,
-- until its owner's next dashboard.watch of it. The tables upgraded stay
-- locked until the migration commits, so a writer holding the next table
-- and writing to one of them deadlocks with it: when the migration detects
-- that, it gives up the table it waits for, like a busy one.
DO $$
DECLARE
    t regclass;
BEGIN
    FOR t IN
        SELECT DISTINCT tg.tgrelid::regclass
        FROM pg_trigger tg
        JOIN pg_class c ON c.oid = tg.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE tg.tgname = 'dashboard_notify_insert' AND n.nspname <> 'dashboard'
    LOOP
        BEGIN
            SET LOCAL lock_timeout = '2s';
            PERFORM dashboard.watch(t);
        EXCEPTION WHEN lock_not_available OR deadlock_detected OR insufficient_privilege THEN
            -- RAISE knows only %: quote the name for the statement with format.
            RAISE NOTICE '%', format('dashboard: %s keeps its old triggers for now (%s); run SELECT dashboard.watch(%L) later as its owner',
                                     t, SQLERRM, t::text);
        END;
    END LOOP;
END
$$;
