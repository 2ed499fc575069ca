-- 0006_logical_feed.sql: the opt-in logical change feed (docs/architecture.md,
-- "Logical mode").
--
-- In logical mode (DASHBOARD_FEED=logical) servers learn which tables changed
-- from logical decoding over a temporary replication slot instead of
-- LISTEN/NOTIFY. The triggers then send each change notice with
-- pg_logical_emit_message(true, 'dashboard', table): a transactional message
-- is written to the WAL, decoded at its transaction's commit and never when
-- it aborts, like a NOTIFY, but it takes no lock global to the cluster, so
-- it needs no gating: every watched statement sends one.
--
-- How a trigger knows the mode: dashboard.feed_mode() returns 'notify' or
-- 'logical', and dashboard.set_feed_mode (run by `dashboard feed`) switches
-- by replacing that function. Replacing a function is transactional and
-- reaches every session at its next statement (cached plans that inlined it
-- are invalidated), so there is no moment in which old sessions still send
-- the old kind of notice after the switch committed, and it needs only the
-- ownership of the dashboard schema's functions, which the role that runs
-- the migrations has. (A setting made with ALTER DATABASE ... SET
-- dashboard.feed would reach new sessions only, so pooled connections of the
-- applications would keep the old mode, and PostgreSQL lets only superusers
-- set a parameter it does not know.)
--
-- The trigger functions read dashboard.feed_mode() and so run as their
-- owner (SECURITY DEFINER, search_path pinned): writers still need no
-- privilege on schema dashboard. They do nothing but take advisory locks and
-- send the notice.
--
-- The dashboard schema's own tables (catalog edits, token revocations) send
-- through dashboard.feed_send, which follows the mode too, as do watch and
-- unwatch: a logical server needs no LISTEN connection.
--
-- pgoutput, the decoding plugin, requires publication names. dashboard_feed
-- publishes no table: servers want the messages only. A publication of the
-- users' tables would stream every changed row to every server, and
-- PostgreSQL refuses UPDATE and DELETE on a published table without a
-- replica identity (no primary key): the dashboard would break the
-- application's writes.

-- feed_mode says which notices the triggers send: 'notify' (pg_notify,
-- gated, for LISTEN) or 'logical' (pg_logical_emit_message). Only
-- set_feed_mode replaces it.
CREATE FUNCTION dashboard.feed_mode() RETURNS text
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT 'notify'::text $$;

COMMENT ON FUNCTION dashboard.feed_mode() IS
    'The change feed mode of this database: notify (LISTEN/NOTIFY) or logical (logical decoding messages). Switch with dashboard.set_feed_mode or `dashboard feed`.';

-- set_feed_mode switches the mode. It needs the ownership of feed_mode, and
-- for logical mode wal_level = logical and the publication dashboard_feed.
CREATE FUNCTION dashboard.set_feed_mode(mode text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF mode IS NULL OR mode NOT IN ('notify', 'logical') THEN
        RAISE EXCEPTION 'dashboard.set_feed_mode: mode %, want notify or logical', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF mode = 'logical' THEN
        IF current_setting('wal_level') <> 'logical' THEN
            RAISE EXCEPTION 'dashboard.set_feed_mode: logical mode needs wal_level = logical, but it is %', current_setting('wal_level')
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'As a superuser: ALTER SYSTEM SET wal_level = logical; then restart PostgreSQL.';
        END IF;
        IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'dashboard_feed') THEN
            RAISE EXCEPTION 'dashboard.set_feed_mode: logical mode needs the publication dashboard_feed, which does not exist'
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'As the database owner: CREATE PUBLICATION dashboard_feed; (it publishes no table).';
        END IF;
    END IF;
    IF dashboard.feed_mode() = mode THEN
        RETURN;
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION dashboard.feed_mode() RETURNS text '
                   'LANGUAGE sql STABLE PARALLEL SAFE AS %L', format('SELECT %L::text', mode));
END
$fn$;

COMMENT ON FUNCTION dashboard.set_feed_mode(text) IS
    'Switches the change feed mode (notify or logical) by replacing dashboard.feed_mode(); takes effect for every session at its next statement. Needs the ownership of dashboard.feed_mode().';

-- feed_send sends one change notice the way the mode says. Its callers are
-- the dashboard schema's own triggers and watch/unwatch; the gated trigger
-- of user tables spells it out, since it runs for every watched statement.
CREATE FUNCTION dashboard.feed_send(payload text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF dashboard.feed_mode() = 'logical' THEN
        PERFORM pg_logical_emit_message(true, 'dashboard', payload);
    ELSE
        PERFORM pg_notify('dashboard', payload);
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.feed_send(text) IS
    'Sends a change notice: pg_notify on channel dashboard in notify mode, a transactional logical decoding message with prefix dashboard in logical mode.';

CREATE OR REPLACE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    IF dashboard.feed_mode() = 'logical' THEN
        -- No cluster-wide lock: every statement sends, no gating.
        PERFORM pg_logical_emit_message(true, 'dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
        RETURN NULL;
    END IF;
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
    'Statement trigger function of watched user tables. Notify mode: notifies channel dashboard only when some server holds the table''s feed key of its slot. Logical mode: emits a transactional logical decoding message (prefix dashboard) for every statement.';

-- The dashboard schema's own triggers (0002) always send, in either mode.
CREATE OR REPLACE FUNCTION dashboard.notify_new_rows() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- dashboard_new_rows is the transition table named by the trigger.
    IF EXISTS (SELECT FROM dashboard_new_rows) THEN
        PERFORM dashboard.feed_send(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dashboard.notify_old_rows() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- dashboard_old_rows is the transition table named by the trigger.
    IF EXISTS (SELECT FROM dashboard_old_rows) THEN
        PERFORM dashboard.feed_send(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION dashboard.notify_statement() RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM dashboard.feed_send(format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    RETURN NULL;
END
$$;

-- The empty publication pgoutput needs. CREATE PUBLICATION needs the CREATE
-- privilege on the database; a migrating role without it leaves a notice,
-- and logical mode says what to run. Its warning that wal_level is too low
-- for publishing is noise in notify mode, so it is not shown.
DO $$
DECLARE
    shown text := current_setting('client_min_messages');
BEGIN
    IF NOT EXISTS (SELECT FROM pg_publication WHERE pubname = 'dashboard_feed') THEN
        PERFORM set_config('client_min_messages', 'error', true);
        CREATE PUBLICATION dashboard_feed;
        PERFORM set_config('client_min_messages', shown, true);
        COMMENT ON PUBLICATION dashboard_feed IS
            'Publishes no table: dashboard servers in logical mode read only its transactional messages (prefix dashboard) through pgoutput, which requires a publication.';
    END IF;
EXCEPTION WHEN insufficient_privilege THEN
    RAISE NOTICE '%', format('dashboard: cannot create publication dashboard_feed (%s); logical mode needs it: have the database owner run CREATE PUBLICATION dashboard_feed', SQLERRM);
END
$$;

-- watch and unwatch (0005) send their catalog reload through feed_send.
-- The bodies are those of 0005 otherwise; keep them in step.
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
        PERFORM dashboard.feed_send('dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.watch(regclass) IS
    'Installs the change triggers: on a user table the gated dashboard_notify trigger (notifies when a server wants news), on the dashboard schema''s tables the four always-notifying ones. Idempotent. When it installs any, it also sends dashboard.panels (dashboard.feed_send) so servers reload their catalogs.';

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
        PERFORM dashboard.feed_send('dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.unwatch(regclass) IS
    'Removes the dashboard change triggers from the table. Harmless when it is not watched. When it removes any, it sends dashboard.panels (dashboard.feed_send) so servers reload their catalogs.';
