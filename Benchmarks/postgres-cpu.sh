#!/usr/bin/env bash
# Where one PostgreSQL node's orders go: on `deploy/three-nodes.sh` (PostgreSQL with its default
# durability), wrk loads one node with orders on a hot sale; over a measured window, the CPU per
# order of that node, of every PostgreSQL process and of wrk (from /proc), the two cores' idle time
# per order (/proc/stat), and the node's order batches (count, mean size, mean commit, and how many
# went in one statement, from its own /metrics on --ops-port).
#
#   SKIP_BUILD=1 CREST_BIN=.build/release/crest Benchmarks/postgres-cpu.sh
#   RUNS=4 Benchmarks/postgres-cpu.sh          # measured runs, each on a new sale (default 2)
#   STATEMENTS=1 Benchmarks/postgres-cpu.sh    # also the server's time per statement
#                                              # (pg_stat_statements with track_planning)
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh
source Benchmarks/lib/postgres.sh

RUNS=${RUNS:-2}
WINDOW=${WINDOW:-8}
THREADS=${THREADS:-2}
CONNECTIONS=${CONNECTIONS:-64}
start_three_nodes pgcpu

PSQL=$(pg_bin psql)
if [ -n "${STATEMENTS:-}" ]; then
  printf "shared_preload_libraries = 'pg_stat_statements'\npg_stat_statements.track_planning = on\n" \
    >> "$WORK/deploy/pg/postgresql.conf"
  # With the options it was started with (postmaster.opts); the nodes reconnect.
  as_pg "$(pg_bin pg_ctl)" -D "$WORK/deploy/pg" -l "$WORK/deploy/postgres.log" -w restart >/dev/null
  "$PSQL" "$DATABASE_URL" -qc "CREATE EXTENSION pg_stat_statements"
  sleep 2
fi

CREST_URL="http://127.0.0.1:${NODES[0]}"
OPS_URL="http://127.0.0.1:${OPS[0]}"
node=$(ss -ltnpH "sport = :${NODES[0]}" | grep -o 'pid=[0-9]*' | head -1 | cut -d= -f2)
ticks() { awk '{print $14 + $15}' "/proc/$1/stat" 2>/dev/null || echo 0; }
postgres_ticks() { local t=0 p; for p in $(pgrep -x postgres); do t=$((t + $(ticks "$p"))); done; echo "$t"; }
idle_ticks() { awk '/^cpu / {print $5 + $6}' /proc/stat; }
reserved() {
  curl -sf "$CREST_URL/v1/sales/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock"]["reserved"])'
}

sale=$(create_sale 1000000000)
SALE=$sale DURATION=8s run_wrk warm-up "$CREST_URL" Benchmarks/lib/order.lua >/dev/null
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  PostgreSQL: $("$PSQL" "$DATABASE_URL" -Atc 'SHOW server_version')  wrk: -t$THREADS -c$CONNECTIONS on one node, ${WINDOW} s measured"
echo
echo "| run | orders/s | node µs/order | PostgreSQL µs/order | wrk µs/order | idle µs/order | batches | mean batch | mean commit | paths |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for run in $(seq "$RUNS"); do
  sale=$(create_sale 1000000000)
  SALE=$sale wrk -t"$THREADS" -c"$CONNECTIONS" -d$((WINDOW + 6))s -s Benchmarks/lib/order.lua "$CREST_URL" >/dev/null &
  load=$!
  sleep 3
  wrk_pid=$(pgrep -n -x wrk)
  [ -n "${STATEMENTS:-}" ] && "$PSQL" "$DATABASE_URL" -qAtc "SELECT pg_stat_statements_reset()" >/dev/null
  python3 Benchmarks/lib/prom.py save "$OPS_URL" "$WORK/metrics"
  n0=$(ticks "$node"); p0=$(postgres_ticks); w0=$(ticks "$wrk_pid"); i0=$(idle_ticks); o0=$(reserved "$sale")
  sleep "$WINDOW"
  n1=$(ticks "$node"); p1=$(postgres_ticks); w1=$(ticks "$wrk_pid"); i1=$(idle_ticks); o1=$(reserved "$sale")
  read -r batches size commit < <(python3 Benchmarks/lib/prom.py batches "$OPS_URL" "$WORK/metrics")
  paths=$(python3 Benchmarks/lib/prom.py paths "$OPS_URL" "$WORK/metrics")
  if [ -n "${STATEMENTS:-}" ]; then
    "$PSQL" "$DATABASE_URL" -qAtF ' | ' -c "
      SELECT calls, round((total_exec_time / NULLIF(calls, 0))::numeric, 3) AS exec_ms,
        round((total_plan_time / NULLIF(calls, 0))::numeric, 3) AS plan_ms,
        left(regexp_replace(query, '\s+', ' ', 'g'), 80)
      FROM pg_stat_statements ORDER BY total_exec_time + total_plan_time DESC LIMIT 8" > "$WORK/statements"
  fi
  while kill -0 "$load" 2>/dev/null; do sleep 0.5; done
  orders=$((o1 - o0))
  [ "$orders" -gt 0 ] || { echo "run $run placed no order" >&2; exit 1; }
  hz=$(getconf CLK_TCK)
  awk -v r="$run" -v o="$orders" -v s="$WINDOW" -v hz="$hz" -v n=$((n1 - n0)) -v p=$((p1 - p0)) -v w=$((w1 - w0)) \
    -v i=$((i1 - i0)) -v b="$batches" -v z="$size" -v c="$commit" -v paths="$paths" 'BEGIN {
      u = 1e6 / hz / o
      printf "| %d | %.0f | %.1f | %.1f | %.1f | %.1f | %d | %s | %s ms | %s |\n", r, o / s, n * u, p * u, w * u, i * u, b, z, c, paths }'
  if [ -n "${STATEMENTS:-}" ]; then
    echo; echo "calls | exec ms | plan ms | statement"; cat "$WORK/statements"; echo
  fi
done
