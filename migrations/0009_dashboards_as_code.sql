-- 0009_dashboards_as_code.sql: what a dashboard file holds beyond 0001
-- (docs/architecture.md, "Schema" and "Dashboards as files").
--
-- time_zone: the IANA name axes, tables and feeds are drawn in.
-- refresh_seconds: the interval on which panels that read the clock (the
--   time range) run again, and to which "now" is rounded down so that every
--   server computes the same view. NULL means 60 seconds.
-- variables: the dashboard's variables as a JSON array (internal/panel,
--   Variable); time_from/time_to: the default time range, NULL when the
--   dashboard has none.
-- source_file/source_hash: set by `dashboard apply` for a dashboard that came
--   from a file, so that `dashboard diff` can tell a later edit in SQL (drift).
-- access_tokens.variables: variables a token fixes ({"customer": ["acme"]}).

ALTER TABLE dashboard.dashboards
    ADD COLUMN time_zone text NOT NULL DEFAULT 'UTC'
        CONSTRAINT dashboards_time_zone_length CHECK (char_length(time_zone) BETWEEN 1 AND 64),
    ADD COLUMN refresh_seconds int NULL
        CONSTRAINT dashboards_refresh_seconds_range CHECK (refresh_seconds BETWEEN 1 AND 86400),
    ADD COLUMN variables jsonb NOT NULL DEFAULT '[]'
        CONSTRAINT dashboards_variables_array CHECK (jsonb_typeof(variables) = 'array'
            AND octet_length(variables::text) <= 65536),
    ADD COLUMN time_from text NULL,
    ADD COLUMN time_to text NULL,
    ADD CONSTRAINT dashboards_time_range_pair CHECK ((time_from IS NULL) = (time_to IS NULL)
        AND char_length(time_from) <= 64 AND char_length(time_to) <= 64),
    ADD COLUMN source_file text NULL
        CONSTRAINT dashboards_source_file_length CHECK (char_length(source_file) <= 1024),
    ADD COLUMN source_hash text NULL
        CONSTRAINT dashboards_source_hash_length CHECK (char_length(source_hash) <= 128);

ALTER TABLE dashboard.access_tokens
    ADD COLUMN variables jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT access_tokens_variables_object CHECK (jsonb_typeof(variables) = 'object'
            AND octet_length(variables::text) <= 65536);

COMMENT ON COLUMN dashboard.dashboards.variables IS
    'The dashboard''s variables, a JSON array of {name, label, kind (query|list|text), sql, options, multi, default}.';
COMMENT ON COLUMN dashboard.dashboards.refresh_seconds IS
    'Interval on which clock-dependent panels run again and to which now is rounded down; NULL means 60.';
COMMENT ON COLUMN dashboard.dashboards.source_file IS
    'The file `dashboard apply` read this dashboard from; NULL for a dashboard made in SQL.';
COMMENT ON COLUMN dashboard.access_tokens.variables IS
    'Variables the token fixes, {"name": ["value", ...]}: its holders cannot choose them.';
