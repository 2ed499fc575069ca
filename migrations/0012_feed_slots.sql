-- 0012_feed_slots.sql: the number of feed slots is the operator's choice
-- (docs/architecture.md, "The change feed's cost").
--
-- Each server watching a database claims one of dashboard.feed_slots()
-- slots, and the trigger of every watched table tries one feed key per slot.
-- 0005 fixed the count at 4, so at most four servers could watch one
-- database; scaling out needs tens. dashboard.set_feed_slots(n) now replaces
-- feed_slots() and rewrites the trigger function with n tries, as
-- set_feed_mode replaces feed_mode() and rewrites it for the mode. The
-- default stays 4: each slot costs every statement on a watched table one
-- more lock try, and every writer transaction one more lock per watched
-- table it changes, held until it ends.
--
-- The tries are generated from dashboard.feed_key itself, so the keys cannot
-- drift from the ones servers take: feed_key(s, 0) is ((1685258240 + s) <<
-- 32), and for n = 4 the function's text is the one 0008 wrote.
--
-- Numbered 0012, not 0011: version 0011 belongs to another change. Up
-- applies every version it has not recorded, in order, and needs no
-- contiguous numbers: a database that ran 0012 first runs 0011 when it
-- arrives (the two touch different objects).

-- feed_slots is STABLE from now on: set_feed_slots changes what it returns.
-- Plans that folded it are invalidated when it is replaced.
CREATE OR REPLACE FUNCTION dashboard.feed_slots() RETURNS int
LANGUAGE sql STABLE PARALLEL SAFE
AS $$ SELECT 4 $$;

COMMENT ON FUNCTION dashboard.feed_slots() IS
    'How many servers can watch one database at once: each claims a slot, and triggers ask every slot. Set by dashboard.set_feed_slots (default 4).';

-- install_feed_trigger replaces notify_if_wanted with the body for mode and
-- one lock try per slot. It holds the lock that serialises changes of the
-- feed's mode and slot count (slot_key(2147483647), never a slot), so that
-- two concurrent switches wait for each other instead of failing on the
-- function they both replace, and the later one reads what the first wrote.
CREATE OR REPLACE FUNCTION dashboard.install_feed_trigger(mode text) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    send  text; -- the statement that sends the notice, by mode
    slots int;
    tries text := '';
BEGIN
    IF mode = 'logical' THEN
        send := 'PERFORM pg_catalog.pg_logical_emit_message(true, ''dashboard'', pg_catalog.format(''%I.%I'', TG_TABLE_SCHEMA, TG_TABLE_NAME));';
    ELSIF mode = 'notify' THEN
        send := 'PERFORM pg_catalog.pg_notify(''dashboard'', pg_catalog.format(''%I.%I'', TG_TABLE_SCHEMA, TG_TABLE_NAME));';
    ELSE
        RAISE EXCEPTION 'dashboard.install_feed_trigger: mode %, want notify or logical', coalesce(quote_literal(mode), 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    PERFORM pg_advisory_xact_lock(dashboard.slot_key(2147483647));
    slots := dashboard.feed_slots();
    IF slots IS NULL OR slots < 1 OR slots > 256 THEN
        RAISE EXCEPTION 'dashboard.install_feed_trigger: dashboard.feed_slots() is %, want 1 to 256', coalesce(slots::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Set it with dashboard.set_feed_slots.';
    END IF;
    -- One try per slot, unrolled, the keys spelled out (feed_key(s, 0) is
    -- the slot's high word; the table's oid fills the low one). A failed
    -- try means that slot's server wants news; only then does the
    -- statement send.
    FOR s IN 0 .. slots - 1 LOOP
        tries := tries || format('%spg_catalog.pg_try_advisory_xact_lock_shared(%s OPERATOR(pg_catalog.|) TG_RELID::bigint)',
                                 CASE WHEN s = 0 THEN '' ELSE E'\n        AND ' END,
                                 dashboard.feed_key(s, 0::oid));
    END LOOP;
    EXECUTE format($ddl$
CREATE OR REPLACE FUNCTION dashboard.notify_if_wanted() RETURNS trigger
LANGUAGE plpgsql
AS $body$
BEGIN
    IF NOT (%s) THEN
        %s
    END IF;
    RETURN NULL;
END
$body$
$ddl$, tries, send);
    COMMENT ON FUNCTION dashboard.notify_if_wanted() IS
        'Statement trigger function of watched user tables, written for the feed mode and slot count by dashboard.install_feed_trigger: only when some server holds the table''s feed key of its slot, it notifies channel dashboard (notify mode) or emits a transactional logical decoding message with prefix dashboard (logical mode). Runs as the writer; needs no privilege.';
END
$fn$;

COMMENT ON FUNCTION dashboard.install_feed_trigger(text) IS
    'Writes dashboard.notify_if_wanted() for a feed mode (notify or logical) with one lock try per feed slot. Called by dashboard.set_feed_mode and dashboard.set_feed_slots.';

-- set_feed_slots replaces feed_slots() and the trigger function.
--
-- Shrinking takes every slot that goes away (n to the old count - 1) as a
-- transaction lock first, so no server claims one while the switch runs,
-- and refuses while another session holds any slot at or above n: its
-- server's triggers would stop asking it. A server that read the old count
-- and claims a vanished slot after the commit reads the count again after
-- its claim and gives that slot back (listen.Arms).
--
-- Growing needs no check. But a writer transaction open across the grow
-- that skipped its notice under the old function holds no shared lock on a
-- new slot's keys, so a server that claims a new slot would not wait for
-- it. `dashboard feed slots N` therefore holds the new slots itself until
-- every transaction open at the grow has ended; a direct call of this
-- function does not.
CREATE FUNCTION dashboard.set_feed_slots(n int) RETURNS void
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    old  int;
    busy text;
    lost int[] := '{}';
BEGIN
    IF n IS NULL OR n < 1 OR n > 256 THEN
        RAISE EXCEPTION 'dashboard.set_feed_slots: % slots, want 1 to 256', coalesce(n::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT pg_has_role((SELECT nspowner FROM pg_namespace WHERE nspname = 'dashboard'), 'USAGE') THEN
        RAISE EXCEPTION 'dashboard.set_feed_slots: role % does not own schema dashboard', quote_ident(current_user)
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'Run it as the owner of schema dashboard, the role that ran the migrations.';
    END IF;
    PERFORM pg_advisory_xact_lock(dashboard.slot_key(2147483647));
    old := dashboard.feed_slots();
    IF n = old THEN
        RETURN;
    END IF;
    IF n < old THEN
        FOR s IN n .. old - 1 LOOP
            IF NOT pg_try_advisory_xact_lock(dashboard.slot_key(s)) THEN
                lost := lost || s;
            END IF;
        END LOOP;
        -- Who holds a slot that would go (up to the most there can be, in
        -- case one is held beyond the count).
        SELECT string_agg(format('slot %s (pid %s%s)', s, l.pid, coalesce(', ' || quote_literal(nullif(a.application_name, '')), '')),
                          ', ' ORDER BY s)
        INTO busy
        FROM generate_series(n, 255) s
        JOIN pg_locks l ON l.locktype = 'advisory' AND l.granted AND l.mode = 'ExclusiveLock' AND l.objsubid = 1
             AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
             AND ((l.classid::bigint << 32) | l.objid::bigint) = dashboard.slot_key(s)
             AND l.pid <> pg_backend_pid()
        LEFT JOIN pg_stat_activity a ON a.pid = l.pid;
        IF busy IS NOT NULL OR cardinality(lost) > 0 THEN
            RAISE EXCEPTION 'dashboard.set_feed_slots: cannot shrink from % to % slots while servers hold slots % or above: %',
                    old, n, n, coalesce(busy, format('slots %s', array_to_string(lost, ', ')))
                USING ERRCODE = 'object_in_use',
                      HINT = 'Stop those servers first (dashboard status lists them), or keep more slots.';
        END IF;
    END IF;
    EXECUTE format('CREATE OR REPLACE FUNCTION dashboard.feed_slots() RETURNS int '
                   'LANGUAGE sql STABLE PARALLEL SAFE AS %L', format('SELECT %s', n));
    PERFORM dashboard.install_feed_trigger(dashboard.feed_mode());
END
$fn$;

COMMENT ON FUNCTION dashboard.set_feed_slots(int) IS
    'Sets how many servers can watch the database at once (1 to 256, default 4): replaces dashboard.feed_slots() and the trigger function dashboard.notify_if_wanted(), which then tries N locks per statement on a watched table. Refuses to shrink below a slot a server holds. Needs the ownership of schema dashboard.';

SELECT dashboard.install_feed_trigger(dashboard.feed_mode());
