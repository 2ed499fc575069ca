-- 0003_size_limits.sql: upper bounds on operator-written text (docs/architecture.md, "Schema").
--
-- Every value here is read by every server on every catalog load and most of
-- it is rendered into every page, so an accidental paste of a whole file into
-- a title must fail where it is written, with a constraint name that says
-- which limit it broke, not slow down every screen.
--
-- Text shown to people is limited in characters (char_length); text parsed
-- by machines (panel SQL, options) in bytes (octet_length), since that is what
-- it costs to store, send and parse.
--
-- The constraints are NOT VALID: rows written before this migration are not
-- checked, so migrate never fails on a database that already holds a longer
-- value. Such a row keeps working, but its next UPDATE (of any column) must
-- bring it within the limits. An operator can check the old rows with
-- ALTER TABLE ... VALIDATE CONSTRAINT <name>.

ALTER TABLE dashboard.dashboards
    ADD CONSTRAINT dashboards_title_length
        CHECK (char_length(title) <= 200) NOT VALID,
    ADD CONSTRAINT dashboards_description_length
        CHECK (char_length(description) <= 2000) NOT VALID;

ALTER TABLE dashboard.panels
    ADD CONSTRAINT panels_title_length
        CHECK (char_length(title) <= 200) NOT VALID,
    ADD CONSTRAINT panels_sql_length
        CHECK (octet_length(sql) <= 65536) NOT VALID,
    ADD CONSTRAINT panels_options_size
        CHECK (octet_length(options::text) <= 65536) NOT VALID,
    ADD CONSTRAINT panels_depends_on_count
        CHECK (cardinality(depends_on) <= 64) NOT VALID;

ALTER TABLE dashboard.access_tokens
    ADD CONSTRAINT access_tokens_label_length
        CHECK (char_length(label) <= 200) NOT VALID;

COMMENT ON CONSTRAINT dashboards_title_length ON dashboard.dashboards IS
    'A dashboard title has at most 200 characters.';
COMMENT ON CONSTRAINT dashboards_description_length ON dashboard.dashboards IS
    'A dashboard description has at most 2000 characters.';
COMMENT ON CONSTRAINT panels_title_length ON dashboard.panels IS
    'A panel title has at most 200 characters.';
COMMENT ON CONSTRAINT panels_sql_length ON dashboard.panels IS
    'A panel query has at most 64 KiB (65536 bytes) of UTF-8.';
COMMENT ON CONSTRAINT panels_options_size ON dashboard.panels IS
    'A panel''s options, as jsonb text, have at most 64 KiB (65536 bytes).';
COMMENT ON CONSTRAINT panels_depends_on_count ON dashboard.panels IS
    'A panel names at most 64 explicit dependencies.';
COMMENT ON CONSTRAINT access_tokens_label_length ON dashboard.access_tokens IS
    'A token label has at most 200 characters.';
