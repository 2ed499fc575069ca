#!/bin/bash
# Run setup.sh first. CPU profile (perf, whole machine) and wait events of pgbench tpcb-like,
# 32 clients, fsync off, with the four tables unwatched and then watched with
# nobody wanting news (the gated trigger's lock tries only).
D=${D:-/tmp/trigexp/data}
PGBIN=$(dirname $(ls /usr/lib/postgresql/*/bin/postgres))
OUT=${OUT:-/tmp/trigexp/prof}; mkdir -p $OUT
su postgres -c "$PGBIN/pg_ctl -D $D/pg -l $D/log -o \"-c listen_addresses='' -c unix_socket_directories=$D -c fsync=off -c full_page_writes=off -c wal_level=logical -c shared_buffers=256MB -c max_connections=100\" -w start" >/dev/null
trap "su postgres -c '$PGBIN/pg_ctl -D $D/pg -m fast stop' >/dev/null" EXIT
P="psql -h $D -U postgres -q -X -At b"
DATABASE_URL="host=$D user=postgres dbname=b" ${BIN:-/tmp/bin/dashboard} migrate >/dev/null 2>&1 || { echo migrate failed; exit 1; }
$P -c "TRUNCATE waits"
for r in 1 2; do
for v in unwatched nobody; do
  for t in pgbench_accounts pgbench_tellers pgbench_branches pgbench_history; do
    if [ $v = unwatched ]; then $P -c "SELECT dashboard.unwatch('$t')" >/dev/null; else $P -c "SELECT dashboard.watch('$t')" >/dev/null; fi
  done
  $P -c "VACUUM pgbench_history" -c "CHECKPOINT"
  ( sleep 2; $P -c "CALL sample('$v', 8)" ) &
  ( sleep 2; perf record -a -g -o $OUT/$v-$r.data -- sleep 8 >/dev/null 2>&1 ) &
  tps=$(pgbench -h $D -U postgres -c 32 -j 2 -T 12 b 2>/dev/null | awk '/^tps/ {print $3}')
  wait
  echo "$r $v tps $tps"
done
done
$P -c "SELECT variant, w, sum(n), round(100.0 * sum(n) / sum(sum(n)) OVER (PARTITION BY variant), 1) AS pct FROM waits GROUP BY 1, 2 ORDER BY 1, 3 DESC"
