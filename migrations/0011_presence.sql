-- 0011_presence.sql: who is watching, across servers, and which servers run
-- (docs/architecture.md "Who is watching").
--
-- presence: one row per server and dashboard with open streams on that
--   server: how many, and the labels of the tokens they hold. Each server
--   upserts its changed rows and refreshes the expiry of the others every
--   couple of seconds, deletes a row that reaches zero, and deletes all of
--   its rows when it stops cleanly. A server that dies leaves rows that stop
--   counting at expires_at.
-- presence_polls: one row per long-poll client and dashboard, whichever
--   servers it reached: behind a round-robin load balancer each request of a
--   client may reach another server, and a row per server would count it
--   once per server. The key is a digest of the client's id and address; the
--   row holds the label of its token, the server that saw it last and when
--   (that server's upsert wins while it is the latest). It counts while
--   seen_at is within the last 30 s; any server deletes expired rows now and
--   then. Each server upserts, once per round, the clients it saw since its
--   last round.
-- Every server reads, in one statement, the unexpired stream rows of the
-- others and the unexpired long-poll clients of all, and adds its own
-- streams.
-- servers: one row per running server of this release and later, refreshed
--   with its presence rows: lock_pid is the backend pid of the connection
--   that holds its feed slot lock (dashboard.slot_key). A slot lock whose pid
--   no unexpired row names belongs to an older server (`dashboard token
--   create --playlist` refuses while one runs: before 0010 a server took a
--   playlist's token for a token of every dashboard).
--
-- The tables are UNLOGGED: what they hold is a few seconds old and rewritten
-- every few seconds, so it is not worth WAL, replication or crash safety. A
-- crash or a promotion empties them; the servers write their rows again at
-- their next round (a server notices that its refresh found fewer rows than
-- it wrote). The rows are updated in place without touching a key, so the
-- updates are HOT; fillfactor leaves them room on the page.
--
-- No table here is watched: presence changes every few seconds and must not
-- reload any server's catalog, tokens or panels (a panel that reads these
-- tables is refreshed by the safety net, like any table that is not watched).

CREATE UNLOGGED TABLE dashboard.servers (
    server     uuid PRIMARY KEY,
    started_at timestamptz NOT NULL,
    expires_at timestamptz NOT NULL,
    lock_pid   int NULL,
    release    text NOT NULL DEFAULT ''
               CONSTRAINT servers_release_length CHECK (char_length(release) <= 200)
) WITH (fillfactor = 50);

COMMENT ON TABLE dashboard.servers IS
    'Running servers (0011 and later), each refreshed every few seconds; lock_pid is the backend holding its feed slot lock.';

CREATE UNLOGGED TABLE dashboard.presence (
    server       uuid NOT NULL,
    dashboard_id bigint NOT NULL REFERENCES dashboard.dashboards (id) ON DELETE CASCADE,
    viewers      int NOT NULL CONSTRAINT presence_viewers_positive CHECK (viewers > 0),
    labels       jsonb NOT NULL DEFAULT '[]'
                 CONSTRAINT presence_labels_array CHECK (jsonb_typeof(labels) = 'array'
                     AND octet_length(labels::text) <= 65536),
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (server, dashboard_id)
) WITH (fillfactor = 50);

-- Deleting a dashboard cascades to its rows; without this index that is a scan.
CREATE INDEX presence_dashboard_id_idx ON dashboard.presence (dashboard_id);

COMMENT ON TABLE dashboard.presence IS
    'Open streams of a dashboard on one server and the labels of their tokens; rows past expires_at do not count.';

CREATE UNLOGGED TABLE dashboard.presence_polls (
    dashboard_id bigint NOT NULL REFERENCES dashboard.dashboards (id) ON DELETE CASCADE,
    client       bytea NOT NULL CONSTRAINT presence_polls_client_length CHECK (octet_length(client) = 16),
    server       uuid NOT NULL,
    label        text NOT NULL DEFAULT ''
                 CONSTRAINT presence_polls_label_length CHECK (char_length(label) <= 200),
    seen_at      timestamptz NOT NULL,
    PRIMARY KEY (dashboard_id, client)
) WITH (fillfactor = 50);

COMMENT ON TABLE dashboard.presence_polls IS
    'Long-poll clients of a dashboard, once whichever servers they reached: the token label, the server that saw it last and when; counts for 30 s after seen_at.';

-- The servers' role reads the dashboard tables (README, "Recommended
-- database role"); every role that may read the dashboards may also write
-- the presence rows, which a server must do to count viewers across
-- servers. A role without the grant still serves: its pages count their own
-- server's viewers only, and the server logs the GRANT to run.
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
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON dashboard.presence, dashboard.presence_polls, dashboard.servers TO %s', reader);
    END LOOP;
END
$$;
