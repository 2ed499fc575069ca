-- The trigger of watched user tables runs for every statement on them, so
-- its cost is the application's cost. Measured per UPDATE-and-COMMIT in one
-- backend (docs/bench.md, "Trigger cost"), the 0006 form cost about 7 us over
-- an unwatched table, and more than half of that was the function's
-- SECURITY DEFINER and SET search_path (a user switch and a GUC save and
-- restore per call) plus the call to dashboard.feed_mode().
--
-- Neither is needed. The trigger reads and writes nothing in schema
-- dashboard: advisory locks, pg_notify and pg_logical_emit_message are
-- executable by PUBLIC, so it runs as the writer, and writers still need no
-- grant (a trigger's function is not checked for EXECUTE or schema USAGE
-- when it fires). Every name in the body is qualified with pg_catalog,
-- operators included, so the writer's search_path cannot change what it
-- calls (and, running as the writer, could only harm the writer).
--
-- The mode is no longer read per call: dashboard.install_feed_trigger
-- writes the function's body for the mode, and dashboard.set_feed_mode calls
-- it in the same transaction as it replaces feed_mode(). Replacing a
-- function reaches every session at its next call (PL/pgSQL checks the
-- function's row version), so the switch stays atomic.

-- install_feed_trigger replaces notify_if_wanted with the body of mode.
CREATE FUNCTION dashboard.install_feed_trigger(mode text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF mode = 'logical' THEN
        -- No cluster-wide lock: every statement sends, no gating.
        CREATE OR REPLACE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
        LANGUAGE plpgsql
        AS $body$
BEGIN
    PERFORM pg_catalog.pg_logical_emit_message(true, 'dashboard', pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    RETURN NULL;
END
$body$;
    ELSIF mode = 'notify' THEN
        -- One try per slot, unrolled, the keys spelled out: feed_key(s, oid)
        -- is ((1685258240 + s) << 32) | oid. A failed try means that slot's
        -- server wants news.
        CREATE OR REPLACE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
        LANGUAGE plpgsql
        AS $body$
BEGIN
    IF NOT (pg_catalog.pg_try_advisory_xact_lock_shared(7238129026114519040 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129030409486336 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129034704453632 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129038999420928 OPERATOR(pg_catalog.|) TG_RELID::bigint)) THEN
        PERFORM pg_catalog.pg_notify('dashboard', pg_catalog.format('%I.%I', TG_TABLE_SCHEMA, TG_TABLE_NAME));
    END IF;
    RETURN NULL;
END
$body$;
    ELSE
        RAISE EXCEPTION 'dashboard.install_feed_trigger: mode %, want notify or logical', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    COMMENT ON FUNCTION dashboard.notify_if_wanted() IS
        'Statement trigger function of watched user tables, written for the feed mode by dashboard.install_feed_trigger. Notify mode: notifies channel dashboard only when some server holds the table''s feed key of its slot. Logical mode: emits a transactional logical decoding message (prefix dashboard) for every statement. Runs as the writer; needs no privilege.';
END
$fn$;

COMMENT ON FUNCTION dashboard.install_feed_trigger(text) IS
    'Writes dashboard.notify_if_wanted() for a feed mode (notify or logical). Called by dashboard.set_feed_mode.';

-- The keys above must be feed_key's: checked once here, so that a change to
-- one without the other cannot migrate.
DO $$
BEGIN
    IF dashboard.feed_key(0, 0::oid) <> 7238129026114519040
       OR dashboard.feed_key(3, 0::oid) <> 7238129038999420928
       OR dashboard.feed_slots() <> 4 THEN
        RAISE EXCEPTION 'dashboard.install_feed_trigger spells out feed keys that differ from dashboard.feed_key';
    END IF;
END
$$;

CREATE OR REPLACE FUNCTION dashboard.set_feed_mode(mode text) RETURNS void
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
    PERFORM dashboard.install_feed_trigger(mode);
END
$fn$;

COMMENT ON FUNCTION dashboard.set_feed_mode(text) IS
    'Switches the change feed mode (notify or logical): replaces dashboard.feed_mode() and the trigger function dashboard.notify_if_wanted(); takes effect for every session at its next statement. Needs the ownership of both.';

SELECT dashboard.install_feed_trigger(dashboard.feed_mode());
