-- Logical mode gates its messages as notify mode gates its notifications.
-- A WAL message takes no cluster-wide lock, so 0006 sent one for every
-- statement on a watched table. But each one makes the walsender of every
-- server send the transaction and the server decode it, which cost a
-- pgbench writer about a quarter of its throughput on a two-core box even
-- when nobody looked at the tables. With the same four lock tries as notify
-- mode, a table no server wants news of sends nothing, and the walsender
-- skips the transaction (PostgreSQL 15 sends no empty transaction). The
-- servers arm and re-arm through the same feed keys in both modes
-- (listen.Arms), so the no-loss argument is the same: a writer that skipped
-- holds its shared key until it ends, and a server's re-arm waits for it.

CREATE OR REPLACE FUNCTION dashboard.install_feed_trigger(mode text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    send text; -- the statement that sends the notice, by mode
BEGIN
    IF mode = 'logical' THEN
        send := 'PERFORM pg_catalog.pg_logical_emit_message(true, ''dashboard'', pg_catalog.format(''%I.%I'', TG_TABLE_SCHEMA, TG_TABLE_NAME));';
    ELSIF mode = 'notify' THEN
        send := 'PERFORM pg_catalog.pg_notify(''dashboard'', pg_catalog.format(''%I.%I'', TG_TABLE_SCHEMA, TG_TABLE_NAME));';
    ELSE
        RAISE EXCEPTION 'dashboard.install_feed_trigger: mode %, want notify or logical', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    -- One try per slot, unrolled, the keys spelled out: feed_key(s, oid) is
    -- ((1685258240 + s) << 32) | oid (checked by 0007). A failed try means
    -- that slot's server wants news; only then does the statement send.
    EXECUTE format($ddl$
CREATE OR REPLACE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF NOT (pg_catalog.pg_try_advisory_xact_lock_shared(7238129026114519040 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129030409486336 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129034704453632 OPERATOR(pg_catalog.|) TG_RELID::bigint)
        AND pg_catalog.pg_try_advisory_xact_lock_shared(7238129038999420928 OPERATOR(pg_catalog.|) TG_RELID::bigint)) THEN
        %s
    END IF;
    RETURN NULL;
END
$body$
$ddl$, send);
    COMMENT ON FUNCTION dashboard.notify_if_wanted() IS
        'Statement trigger function of watched user tables, written for the feed mode by dashboard.install_feed_trigger: only when some server holds the table''s feed key of its slot, it notifies channel dashboard (notify mode) or emits a transactional logical decoding message with prefix dashboard (logical mode). Runs as the writer; needs no privilege.';
END
$fn$;

SELECT dashboard.install_feed_trigger(dashboard.feed_mode());
