-- 0002_notify.sql: the change feed (docs/architecture.md, "Triggers").
--
-- A watched table carries four statement-level triggers. Each sends
-- pg_notify('dashboard', format('%I.%I', schema, table)) once per statement
-- that changed at least one row (TRUNCATE: once per statement). The payload
-- never carries row data, so identical notifications collapse within a
-- transaction and a payload can never approach the 8000-byte limit.
--
-- Supported relations: ordinary tables (including inheritance children and
-- partitions) and partitioned tables. Statement triggers fire only on the
-- table a statement names: watching a partitioned table covers statements on
-- the parent (with the parent's name as payload) but not statements that
-- name a partition directly; watch such partitions too (payload: the
-- partition's name). TRUNCATE of a parent also fires the watched partitions'
-- TRUNCATE triggers. Views, materialized views, foreign tables and other
-- relation kinds are rejected with SQLSTATE 42809 (wrong_object_type).
--
-- Every function pins search_path to pg_catalog and schema-qualifies the
-- rest. The trigger functions need no privilege beyond the write that fires
-- them: writers do not need USAGE on schema dashboard. watch and unwatch run
-- with the caller's rights; creating triggers needs the TRIGGER privilege on
-- the table, removing them needs ownership.

CREATE FUNCTION dashboard.notify_new_rows() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- dashboard_new_rows is the transition table named by the trigger.
    IF EXISTS (SELECT FROM dashboard_new_rows) THEN
        PERFORM pg_notify('dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION dashboard.notify_new_rows() IS
    'Statement trigger function for INSERT and UPDATE: notifies channel dashboard when the statement changed rows.';

CREATE FUNCTION dashboard.notify_old_rows() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    -- dashboard_old_rows is the transition table named by the trigger.
    IF EXISTS (SELECT FROM dashboard_old_rows) THEN
        PERFORM pg_notify('dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION dashboard.notify_old_rows() IS
    'Statement trigger function for DELETE: notifies channel dashboard when the statement deleted rows.';

CREATE FUNCTION dashboard.notify_statement() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    PERFORM pg_notify('dashboard', format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    RETURN NULL;
END
$$;

COMMENT ON FUNCTION dashboard.notify_statement() IS
    'Statement trigger function for TRUNCATE: notifies channel dashboard.';

-- notify_triggers lists the dashboard_notify_* triggers on target that are
-- enabled and defined exactly as watch creates them (keep the two in step).
CREATE FUNCTION dashboard.notify_triggers(target regclass) RETURNS SETOF name
LANGUAGE sql
STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT tg.tgname
    FROM (VALUES
        ('dashboard_notify_insert',    4, 'dashboard.notify_new_rows()'::regprocedure,  NULL,                 'dashboard_new_rows'),
        ('dashboard_notify_update',   16, 'dashboard.notify_new_rows()'::regprocedure,  NULL,                 'dashboard_new_rows'),
        ('dashboard_notify_delete',    8, 'dashboard.notify_old_rows()'::regprocedure,  'dashboard_old_rows', NULL),
        ('dashboard_notify_truncate', 32, 'dashboard.notify_statement()'::regprocedure, NULL,                 NULL)
    ) AS spec (name, tgtype, fn, oldtable, newtable)
    JOIN pg_trigger tg
      ON tg.tgrelid = target
     AND tg.tgname = spec.name
     AND tg.tgtype = spec.tgtype
     AND tg.tgfoid = spec.fn
     AND tg.tgenabled IN ('O', 'A')
     AND tg.tgqual IS NULL
     AND tg.tgnargs = 0
     AND cardinality(tg.tgattr::int2[]) = 0
     AND tg.tgoldtable IS NOT DISTINCT FROM spec.oldtable
     AND tg.tgnewtable IS NOT DISTINCT FROM spec.newtable
$$;

COMMENT ON FUNCTION dashboard.notify_triggers(regclass) IS
    'Names of the dashboard_notify_* triggers on the table that are enabled and defined as dashboard.watch creates them.';

-- is_watched is true when all four triggers are in place.
CREATE FUNCTION dashboard.is_watched(target regclass) RETURNS boolean
LANGUAGE sql
STABLE STRICT
SET search_path = pg_catalog, pg_temp
AS $$
    SELECT count(*) = 4 FROM dashboard.notify_triggers(target)
$$;

COMMENT ON FUNCTION dashboard.is_watched(regclass) IS
    'True when the table carries all four dashboard_notify_* triggers as dashboard.watch creates them.';

-- watch installs the four triggers. It is idempotent and cheap when the table
-- is already watched (no lock is taken); a trigger with one of the four names
-- but another definition (or disabled) is replaced. Two sessions watching the
-- same table at once both succeed.
CREATE FUNCTION dashboard.watch(target regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    rel record;
    spec record;
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
        EXCEPTION WHEN duplicate_object THEN
            -- A concurrent watch of the same table created it first.
            NULL;
        END;
    END LOOP;
END
$$;

COMMENT ON FUNCTION dashboard.watch(regclass) IS
    'Installs the dashboard_notify_* statement triggers so every committed change to the table notifies channel dashboard. Idempotent.';

-- unwatch removes the four triggers; it is harmless on a table that is not
-- watched (and then takes no lock).
CREATE FUNCTION dashboard.unwatch(target regclass) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
    trg record;
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
    END LOOP;
END
$$;

COMMENT ON FUNCTION dashboard.unwatch(regclass) IS
    'Removes the dashboard_notify_* triggers from the table. Harmless when it is not watched.';

-- Editing a dashboard, a panel or a token updates every open screen.
SELECT dashboard.watch('dashboard.dashboards');
SELECT dashboard.watch('dashboard.panels');
SELECT dashboard.watch('dashboard.access_tokens');
