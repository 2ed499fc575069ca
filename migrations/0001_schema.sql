-- 0001_schema.sql: the tables the product owns (docs/architecture.md, "Schema").
--
-- dashboard.schema_migrations is created by migrations.Up itself before any file
-- runs, because Up must read it to know which files to apply.

CREATE SCHEMA IF NOT EXISTS dashboard;

-- set_updated_at keeps updated_at honest whatever client writes the row.
CREATE FUNCTION dashboard.set_updated_at() RETURNS trigger
LANGUAGE plpgsql
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
    NEW.updated_at := now();
    RETURN NEW;
END
$$;

COMMENT ON FUNCTION dashboard.set_updated_at() IS
    'Row trigger function: sets updated_at to the transaction time on every UPDATE.';

CREATE TABLE dashboard.dashboards (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    slug           text NOT NULL UNIQUE
                   CONSTRAINT dashboards_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    title          text NOT NULL,
    description    text NOT NULL DEFAULT '',
    visibility     text NOT NULL DEFAULT 'public'
                   CONSTRAINT dashboards_visibility_valid CHECK (visibility IN ('public', 'private')),
    max_refresh_hz double precision NULL
                   CONSTRAINT dashboards_max_refresh_hz_positive CHECK (max_refresh_hz > 0),
    position       int NOT NULL DEFAULT 0,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now()
);

COMMENT ON TABLE dashboard.dashboards IS
    'One row per dashboard, served at /d/<slug>.';
COMMENT ON COLUMN dashboard.dashboards.max_refresh_hz IS
    'Per-panel refresh cap for this dashboard in refreshes per second; NULL means the server default.';

CREATE TRIGGER dashboards_set_updated_at
    BEFORE UPDATE ON dashboard.dashboards
    FOR EACH ROW EXECUTE FUNCTION dashboard.set_updated_at();

CREATE TABLE dashboard.panels (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    dashboard_id bigint NOT NULL REFERENCES dashboard.dashboards (id) ON DELETE CASCADE,
    slug         text NOT NULL
                 CONSTRAINT panels_slug_format CHECK (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    title        text NOT NULL,
    kind         text NOT NULL
                 CONSTRAINT panels_kind_valid CHECK (kind IN ('stat', 'table', 'timeseries', 'bar', 'feed')),
    sql          text NOT NULL,
    position     int NOT NULL DEFAULT 0,
    width        int NOT NULL DEFAULT 1
                 CONSTRAINT panels_width_range CHECK (width BETWEEN 1 AND 4),
    height       int NOT NULL DEFAULT 1
                 CONSTRAINT panels_height_range CHECK (height BETWEEN 1 AND 4),
    options      jsonb NOT NULL DEFAULT '{}',
    depends_on   text[] NOT NULL DEFAULT '{}',
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT panels_dashboard_id_slug_key UNIQUE (dashboard_id, slug)
);

COMMENT ON TABLE dashboard.panels IS
    'Panels of a dashboard: one operator-written read-only query each, rendered by kind.';
COMMENT ON COLUMN dashboard.panels.depends_on IS
    'Tables the panel depends on in addition to those EXPLAIN finds, as schema-qualified names.';

CREATE TRIGGER panels_set_updated_at
    BEFORE UPDATE ON dashboard.panels
    FOR EACH ROW EXECUTE FUNCTION dashboard.set_updated_at();

CREATE TABLE dashboard.access_tokens (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    token_hash   bytea NOT NULL UNIQUE
                 CONSTRAINT access_tokens_token_hash_sha256 CHECK (octet_length(token_hash) = 32),
    label        text NOT NULL,
    dashboard_id bigint NULL REFERENCES dashboard.dashboards (id) ON DELETE CASCADE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NULL
);

-- Deleting a dashboard cascades to its tokens; without this index that is a scan.
CREATE INDEX access_tokens_dashboard_id_idx ON dashboard.access_tokens (dashboard_id);

COMMENT ON TABLE dashboard.access_tokens IS
    'Bearer tokens for private dashboards, stored as sha256 hashes only.';
COMMENT ON COLUMN dashboard.access_tokens.dashboard_id IS
    'The one dashboard the token opens; NULL means every dashboard.';
