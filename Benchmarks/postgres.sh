#!/usr/bin/env bash
# Issue 6's benchmark: orders/s on the PostgreSQL store — one node, and three nodes behind nginx —
# against pgbench's naive path on the same PostgreSQL in the same run (one transaction per order:
# a conditional UPDATE of the stock row plus an INSERT of the order, 32 clients).
#
#   Benchmarks/postgres.sh                 # 15 s per load
#   DURATION=30s Benchmarks/postgres.sh
# Uses deploy/three-nodes.sh (PostgreSQL with its default durability, three nodes, nginx).
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

DURATION=${DURATION:-15s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
PGBENCH_CLIENTS=${PGBENCH_CLIENTS:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
if [ -z "${SKIP_BUILD:-}" ]; then swift build -c release --product crest >/dev/null; fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
WORK=$(mktemp -d /tmp/crest-bench-pg.XXXXXX)
chmod 755 "$WORK"
export CREST_BIN=$CREST_BIN CREST_DEPLOY_DIR=$WORK/deploy CREST_ADMIN_TOKEN=$ADMIN_TOKEN CREST_LOG_LEVEL=warning
export CREST_LB_PORT=$(free_port) CREST_PG_PORT=$(free_port)
export CREST_NODE_PORTS="$(free_port) $(free_port) $(free_port)"
trap 'deploy/three-nodes.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
deploy/three-nodes.sh start >/dev/null

PSQL=$(command -v psql || ls /usr/lib/postgresql/*/bin/psql | sort -r | head -1)
PGBENCH=$(command -v pgbench || ls /usr/lib/postgresql/*/bin/pgbench | sort -r | head -1)
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
naive=$("$PGBENCH" -n -c "$PGBENCH_CLIENTS" -j "$THREADS" -T "${DURATION%s}" -f "$WORK/naive.sql" "$NAIVE_URL" 2>&1 |
  awk '/^tps/ {print $3; exit}')

read -r -a NODES <<< "$CREST_NODE_PORTS"
CREST_URL="http://127.0.0.1:${NODES[0]}"
ONE=$(create_sale 1000000000)
one=$(SALE=$ONE RUN=pg-one run_wrk crest-one-node "$CREST_URL" Benchmarks/lib/order.lua)
CREST_URL="http://127.0.0.1:$CREST_LB_PORT"
THREE=$(create_sale 1000000000)
three=$(SALE=$THREE RUN=pg-three run_wrk crest-three-nodes-nginx "$CREST_URL" Benchmarks/lib/order.lua)
checks=$(for sale in "$ONE" "$THREE"; do
  curl -sf "$CREST_URL/v1/sales/$sale" | python3 -c 'import json,sys; s=json.load(sys.stdin)["stock"]; print(s["reserved"], s["available"]+s["reserved"]+s["sold"]==s["total"])'
done | tr '\n' ' ')

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  PostgreSQL: $("$PSQL" "$ADMIN_URL" -Atc 'SHOW server_version')  wrk: -t$THREADS -c$CONNECTIONS -d$DURATION  pgbench: -c$PGBENCH_CLIENTS -j$THREADS"
echo "sales after the run (reserved, conserved): $checks"
echo
echo "| load | orders/s | p50 | p99 | non-2xx | ratio to the naive path |"
echo "|---|---|---|---|---|---|"
echo "| pgbench naive path (UPDATE … available >= 1 + INSERT per transaction) | $naive | | | | 1.00 |"
for row in "$one" "$three"; do
  read -r name rps p50 p99 bad <<<"$row"
  echo "| $name | $rps | $p50 | $p99 | $bad | $(python3 -c "print(f'{$rps/$naive:.2f}')") |"
done
