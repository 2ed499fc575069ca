-- 0010_playlists.sql: playlists, named lists of dashboards that a kiosk
-- rotates through (docs/playlists.md, docs/architecture.md "Schema").
--
-- playlists.interval_seconds: how long each dashboard is shown. The server
--   raises a shorter one to DASHBOARD_PLAYLIST_MIN_INTERVAL (default 10 s);
--   files allow 10 s to 1 h.
-- playlist_items: the dashboards in rotation order. An item names its
--   dashboard by slug, not by id: deleting a dashboard (or a prune and a
--   re-apply of it) must not silently shorten a playlist. The server skips an
--   item whose dashboard does not exist, and shows it again when it does.
--   variables fixes the dashboard's variables for that item, as the address
--   would ({"region": ["eu"]}).
-- source_file/source_hash: as for dashboards (0009), set by `dashboard apply`.
-- access_tokens.playlist_id: a token scoped to a playlist opens exactly the
--   dashboards its items name (and /p/<slug>); dashboard_id is then NULL.

CREATE TABLE dashboard.playlists (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug             text NOT NULL UNIQUE
                     CONSTRAINT playlists_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    title            text NOT NULL
                     CONSTRAINT playlists_title_length CHECK (char_length(title) BETWEEN 1 AND 200),
    interval_seconds int NOT NULL DEFAULT 60
                     CONSTRAINT playlists_interval_range CHECK (interval_seconds BETWEEN 1 AND 3600),
    source_file      text NULL
                     CONSTRAINT playlists_source_file_length CHECK (char_length(source_file) <= 1024),
    source_hash      text NULL
                     CONSTRAINT playlists_source_hash_length CHECK (char_length(source_hash) <= 128),
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE dashboard.playlists IS
    'One row per playlist, served at /p/<slug>: a kiosk shows each of its dashboards for interval_seconds in turn.';

CREATE TRIGGER playlists_set_updated_at
    BEFORE UPDATE ON dashboard.playlists
    FOR EACH ROW EXECUTE FUNCTION dashboard.set_updated_at();

CREATE TABLE dashboard.playlist_items (
    playlist_id bigint NOT NULL REFERENCES dashboard.playlists (id) ON DELETE CASCADE,
    position    int NOT NULL
                CONSTRAINT playlist_items_position_range CHECK (position BETWEEN 0 AND 999),
    dashboard   text NOT NULL
                CONSTRAINT playlist_items_dashboard_format CHECK (dashboard ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    variables   jsonb NOT NULL DEFAULT '{}'
                CONSTRAINT playlist_items_variables_object CHECK (jsonb_typeof(variables) = 'object'
                    AND octet_length(variables::text) <= 65536),
    PRIMARY KEY (playlist_id, position)
);

COMMENT ON TABLE dashboard.playlist_items IS
    'The dashboards of a playlist, by slug, in rotation order; an item whose dashboard does not exist is skipped.';
COMMENT ON COLUMN dashboard.playlist_items.variables IS
    'Variables this item shows the dashboard with, {"name": ["value", ...]}, as ?var-name=value would.';

ALTER TABLE dashboard.access_tokens
    ADD COLUMN playlist_id bigint NULL REFERENCES dashboard.playlists (id) ON DELETE CASCADE,
    ADD CONSTRAINT access_tokens_one_scope CHECK (dashboard_id IS NULL OR playlist_id IS NULL);

-- Deleting a playlist cascades to its tokens; without this index that is a scan.
CREATE INDEX access_tokens_playlist_id_idx ON dashboard.access_tokens (playlist_id);

COMMENT ON COLUMN dashboard.access_tokens.playlist_id IS
    'The playlist whose dashboards the token opens; NULL for a token of one dashboard or of every one.';

-- Editing a playlist reaches every server's catalog and token set at once.
SELECT dashboard.watch('dashboard.playlists');
SELECT dashboard.watch('dashboard.playlist_items');

-- The server's role reads the dashboard tables (README, "Recommended
-- database role": GRANT SELECT ON ALL TABLES IN SCHEMA dashboard), and that
-- grant covered only the tables that existed when it was made. Every role
-- that may read the dashboards may read the playlists too, so an upgrade
-- does not leave a running deployment unable to load its catalog.
DO $$
DECLARE
    reader text;
BEGIN
    FOR reader IN
        SELECT DISTINCT quote_ident(r.rolname)
        FROM pg_class c, aclexplode(c.relacl) a, pg_roles r
        WHERE c.oid = 'dashboard.dashboards'::regclass
          AND a.privilege_type = 'SELECT' AND a.grantee = r.oid AND a.grantee <> c.relowner
    LOOP
        EXECUTE format('GRANT SELECT ON dashboard.playlists, dashboard.playlist_items TO %s', reader);
    END LOOP;
END
$$;
