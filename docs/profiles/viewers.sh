#!/bin/bash
# Run setup.sh first, and build the stand-in server:
#   go build -o /tmp/bin/rearm docs/profiles/rearm.go
# pgbench tpcb-like, fsync on, $CLIENTS clients: unwatched vs watched with one
# emulated server wanting news of all four tables at a 10 Hz cap (rearm).
D=${D:-/tmp/trigexp/data}
PGBIN=$(dirname $(ls /usr/lib/postgresql/*/bin/postgres))
su postgres -c "$PGBIN/pg_ctl -D $D/pg -l $D/log -o \"-c listen_addresses='' -c unix_socket_directories=$D -c fsync=on -c full_page_writes=on -c wal_level=logical -c shared_buffers=256MB -c max_connections=100\" -w start" >/dev/null
trap "su postgres -c '$PGBIN/pg_ctl -D $D/pg -m fast stop' >/dev/null" EXIT
P="psql -h $D -U postgres -q -X -At b"
URL="host=$D user=postgres dbname=b"
$P -c "TRUNCATE waits"
for r in 1 2; do
for v in unwatched viewers; do
  for t in pgbench_accounts pgbench_tellers pgbench_branches pgbench_history; do
    if [ $v = unwatched ]; then $P -c "SELECT dashboard.unwatch('$t')" >/dev/null; else $P -c "SELECT dashboard.watch('$t')" >/dev/null; fi
  done
  $P -c "VACUUM pgbench_history" -c "CHECKPOINT"
  ( sleep 2; $P -c "CALL sample('$v', 8)" ) &
  if [ $v = viewers ]; then ( ${REARM:-/tmp/bin/rearm} "$URL" 11s > $D/rearm-$r.txt ) & fi
  tps=$(pgbench -h $D -U postgres -c ${CLIENTS:-8} -j 2 -T 12 b 2>/dev/null | awk '/^tps/ {print $3}')
  wait
  echo "$r $v tps $tps $( [ $v = viewers ] && cat $D/rearm-$r.txt)"
done
done
$P -c "SELECT variant, w, sum(n), round(100.0 * sum(n) / sum(sum(n)) OVER (PARTITION BY variant), 1) AS pct FROM waits GROUP BY 1, 2 ORDER BY 1, 3 DESC"
