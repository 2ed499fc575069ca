-- 0004_watch_notifies.sql: watch and unwatch tell the servers (docs/architecture.md, "Schema").
--
-- A server computes each panel's "watch this table" notice when it loads its
-- catalog, and it reloads the catalog when dashboard.dashboards or
-- dashboard.panels notifies. Installing or removing triggers changed neither
-- table, so a notice stayed until the next full refresh (minutes) after an
-- owner ran the statement it asked for. Now watch and unwatch, when they
-- change a table's triggers, send pg_notify('dashboard', 'dashboard.panels'):
-- every server reloads its catalog and re-checks which tables are watched.
-- The payload is the one a panel edit sends, so servers need nothing new.
--
-- Calls that change nothing send nothing, so the reload that follows a
-- server's own watch finds every table watched and ends there. As with any
-- NOTIFY, the message is sent at commit and not at all on rollback.
--
-- The bodies are those of 0002 plus the notification; keep them in step.

CREATE OR REPLACE FUNCTION dashboard.watch(target regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    spec record;
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

    IF rel.relkind NOT IN ('r', 'p') THEN
        RAISE EXCEPTION 'dashboard.watch: % is %; only tables and partitioned tables can be watched',
                format('%I.%I', rel.nspname, rel.relname),
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

    IF dashboard.is_watched(target) THEN
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
        -- Leave a trigger that is already right alone; replace one that is not.
        CONTINUE WHEN spec.name IN (SELECT dashboard.notify_triggers(target));
        IF EXISTS (SELECT FROM pg_trigger tg WHERE tg.tgrelid = target AND tg.tgname = spec.name) THEN
            EXECUTE format('DROP TRIGGER %I ON %I.%I', spec.name, rel.nspname, rel.relname);
        END IF;
        BEGIN
            EXECUTE format('CREATE TRIGGER %I ', spec.name)
                 || format(spec.ddl, format('%I.%I', rel.nspname, rel.relname));
            changed := true;
        EXCEPTION WHEN duplicate_object THEN
            -- A concurrent watch of the same table created it first (and
            -- notifies for it).
            NULL;
        END;
    END LOOP;

    IF changed THEN
        -- Servers reload their catalogs, so panel notices follow at once.
        PERFORM pg_notify('dashboard', 'dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.watch(regclass) IS
    'Installs the dashboard_notify_* statement triggers so every committed change to the table notifies channel dashboard. Idempotent. When it installs any, it also notifies dashboard.panels so servers reload their catalogs.';

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
          AND tg.tgname IN ('dashboard_notify_insert', 'dashboard_notify_update',
                            'dashboard_notify_delete', 'dashboard_notify_truncate')
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS %I ON %I.%I', trg.tgname, trg.nspname, trg.relname);
        changed := true;
    END LOOP;

    IF changed THEN
        -- Servers reload their catalogs, so panel notices follow at once.
        PERFORM pg_notify('dashboard', 'dashboard.panels');
    END IF;
END
$$;

COMMENT ON FUNCTION dashboard.unwatch(regclass) IS
    'Removes the dashboard_notify_* triggers from the table. Harmless when it is not watched. When it removes any, it notifies dashboard.panels so servers reload their catalogs.';
