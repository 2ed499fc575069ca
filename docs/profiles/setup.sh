#!/bin/bash
# Creates (once) the private PostgreSQL 15 of the trigger profiles in $D
# (default /tmp/trigexp/data) with database b: pgbench tables at scale 10
# and the dashboard schema (needs a built dashboard binary in $BIN, default
# /tmp/bin/dashboard). Run as root; PostgreSQL runs as the postgres user.
set -e
D=${D:-/tmp/trigexp/data}
BIN=${BIN:-/tmp/bin/dashboard}
PGBIN=$(dirname $(ls /usr/lib/postgresql/*/bin/postgres))
if [ ! -d $D/pg ]; then
  mkdir -p $D && chown postgres $D && chmod 711 $(dirname $D)
  su postgres -c "$PGBIN/initdb -D $D/pg -A trust -U postgres >/dev/null"
fi
su postgres -c "$PGBIN/pg_ctl -D $D/pg -l $D/log -o \"-c listen_addresses='' -c unix_socket_directories=$D\" -w start" >/dev/null
trap "su postgres -c '$PGBIN/pg_ctl -D $D/pg -m fast stop' >/dev/null" EXIT
psql -h $D -U postgres -qX -c "DROP DATABASE IF EXISTS b" -c "CREATE DATABASE b"
pgbench -h $D -U postgres -i -s 10 -q b 2>/dev/null
DATABASE_URL="host=$D user=postgres dbname=b" $BIN migrate >/dev/null
psql -h $D -U postgres -qX b <<'SQL'
CREATE TABLE waits (variant text, w text, n int);
-- Samples what pgbench's backends wait on every 10 ms for secs seconds.
CREATE PROCEDURE sample(variant text, secs int) LANGUAGE plpgsql AS $$
DECLARE t0 timestamptz := clock_timestamp();
BEGIN
  CREATE TEMP TABLE IF NOT EXISTS s (w text);
  WHILE clock_timestamp() < t0 + make_interval(secs => secs) LOOP
    PERFORM pg_stat_clear_snapshot();
    INSERT INTO s SELECT coalesce(wait_event_type || ':' || wait_event, 'CPU')
      FROM pg_stat_activity WHERE application_name = 'pgbench' AND state = 'active';
    PERFORM pg_sleep(0.01);
  END LOOP;
  INSERT INTO waits SELECT variant, w, count(*) FROM s GROUP BY w;
  DROP TABLE s;
END$$;
SQL
