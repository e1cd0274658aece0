#!/usr/bin/env bash
# Issue 6's benchmark: orders/s on the PostgreSQL store — one node, and three nodes behind nginx —
# against pgbench's naive path on the same PostgreSQL in the same run (one transaction per order:
# a conditional UPDATE of the stock row plus an INSERT of the order, 32 clients).
#
#   Benchmarks/postgres.sh                 # 15 s per load
#   DURATION=30s Benchmarks/postgres.sh
#   WARMUP=5s Benchmarks/postgres.sh      # the unmeasured run before each load (default 10 s)
# Uses deploy/three-nodes.sh (PostgreSQL with its default durability, three nodes, nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh
source Benchmarks/lib/postgres.sh

DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-32}
start_three_nodes pg

PSQL=$(pg_bin psql)
PGBENCH=$(pg_bin pgbench)
ADMIN_URL="postgres://crest@127.0.0.1:$CREST_PG_PORT/postgres?sslmode=disable"
NAIVE_URL="postgres://crest@127.0.0.1:$CREST_PG_PORT/naive?sslmode=disable"
"$PSQL" "$ADMIN_URL" -q -c "DROP DATABASE IF EXISTS naive" -c "CREATE DATABASE naive"
"$PSQL" "$NAIVE_URL" -q <<'SQL'
CREATE TABLE stock (id integer PRIMARY KEY, available bigint NOT NULL);
CREATE TABLE orders (id bigserial PRIMARY KEY, sale_id integer NOT NULL, buyer text NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(), UNIQUE (sale_id, buyer));
INSERT INTO stock VALUES (1, 1000000000);
SQL
cat > "$WORK/naive.sql" <<'SQL'
\set buyer random(1, 1000000000)
BEGIN;
UPDATE stock SET available = available - 1 WHERE id = 1 AND available >= 1;
INSERT INTO orders (sale_id, buyer) VALUES (1, 'b' || :buyer) ON CONFLICT DO NOTHING;
END;
SQL
naive_tps() {  # SECONDS — pgbench's tps over the naive path
  "$PGBENCH" -n -c "$PGBENCH_CLIENTS" -j "$THREADS" -T "$1" -f "$WORK/naive.sql" "$NAIVE_URL" 2>&1 |
    awk '/^tps/ {print $3; exit}'
}
# Every load runs once unmeasured first (WARMUP): a fresh database and fresh nodes measured
# ~30% fewer orders/s in their first 10 s than in the next, on either store path.
crest_load() {  # NAME URL — warms up on a sale of its own, then measures on a new one
  local sale
  sale=$(create_sale 1000000000)
  SALE=$sale RUN="$1-warmup" DURATION=$WARMUP run_wrk "$1" "$2" Benchmarks/lib/order.lua >/dev/null
  sale=$(create_sale 1000000000)
  SALE=$sale RUN="$1" run_wrk "$1" "$2" Benchmarks/lib/order.lua
  echo "$sale" >> "$WORK/sales"
}
naive_tps "${WARMUP%s}" >/dev/null
naive=$(naive_tps "${DURATION%s}")

CREST_URL="http://127.0.0.1:${NODES[0]}"
one=$(crest_load crest-one-node "$CREST_URL")
CREST_URL="http://127.0.0.1:$CREST_LB_PORT"
three=$(crest_load crest-three-nodes-nginx "$CREST_URL")
checks=$(while read -r sale; do
  curl -sf "$CREST_URL/v1/sales/$sale" | python3 -c 'import json,sys; s=json.load(sys.stdin)["stock"]; print(s["reserved"], s["available"]+s["reserved"]+s["sold"]==s["total"])'
done < "$WORK/sales" | tr '\n' ' ')

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  PostgreSQL: $("$PSQL" "$ADMIN_URL" -Atc 'SHOW server_version')  wrk: -t$THREADS -c$CONNECTIONS -d$DURATION  pgbench: -c$PGBENCH_CLIENTS -j$THREADS"
echo "sales after the run (reserved, conserved): $checks"
case "$checks" in "0 "*|*" 0 "*) echo "a load placed no order: its figure is refusals, not orders" >&2; exit 1 ;; esac
echo
echo "| load | orders/s | p50 | p99 | non-2xx | ratio to the naive path |"
echo "|---|---|---|---|---|---|"
echo "| pgbench naive path (UPDATE … available >= 1 + INSERT per transaction) | $naive | | | | 1.00 |"
for row in "$one" "$three"; do
  read -r name rps p50 p99 bad <<<"$row"
  echo "| $name | $rps | $p50 | $p99 | $bad | $(python3 -c "print(f'{$rps/$naive:.2f}')") |"
done
echo
echo "How each node's reservation batches were written, warm-ups included (crest_postgres_reservation_batches_total):"
for ops in "${OPS[@]}"; do echo "- node on ops port $ops: $(python3 Benchmarks/lib/prom.py paths "http://127.0.0.1:$ops")"; done
