#!/usr/bin/env bash
# How fast one node on the PostgreSQL store gives expired stock back: orders placed for 3 s on a
# sale with a 5 s payment window, then the time until every one has expired and its stock is back
# in `available` (the node's expiry jobs, claimed and run as they fall due).
#
#   Benchmarks/postgres-expiry.sh
#   CREST_BIN=/path/to/other/crest SKIP_BUILD=1 Benchmarks/postgres-expiry.sh   # compare builds
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh
source Benchmarks/lib/postgres.sh
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null


WORK=$(mktemp -d /tmp/crest-bench-expiry.XXXXXX)
chmod 755 "$WORK"
if [ "$(id -u)" = 0 ]; then chown postgres "$WORK"; fi
PG_PORT=$(free_port)
trap 'stop_crest; as_pg "$(pg_bin pg_ctl)" -D "$WORK/pg" -m fast -w stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
as_pg "$(pg_bin initdb)" -D "$WORK/pg" -U crest --auth=trust -E UTF8 >/dev/null
as_pg "$(pg_bin pg_ctl)" -D "$WORK/pg" -l "$WORK/postgres.log" -w \
  -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$WORK" start >/dev/null
"$(pg_bin psql)" "postgres://crest@127.0.0.1:$PG_PORT/postgres" -q -c "CREATE DATABASE crest"
start_crest "$WORK/node" --database-url "postgres://crest@127.0.0.1:$PG_PORT/crest?sslmode=disable"

reserved() {
  curl -sf "$CREST_URL/v1/sales/$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["stock"]["reserved"])'
}
SALE=$(curl -sf -X POST "$CREST_URL/v1/sales" -H "Authorization: Bearer $ADMIN_TOKEN" \
  -d '{"sku":"EXPIRY","title":"Expiry","price":{"amount":100,"currency":"CNY"},"stock":1000000,"paymentWindowSeconds":5}' |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
rps=$(SALE=$SALE wrk -t2 -c64 -d3s -s Benchmarks/lib/order.lua "$CREST_URL" | awk '/Requests\/sec/ {print $2}')
ended=$(date +%s.%N)
orders=$(reserved "$SALE")
while [ "$(reserved "$SALE")" != 0 ]; do sleep 0.2; done
done_at=$(date +%s.%N)
echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
python3 -c "
orders, took = $orders, $done_at - $ended
print(f'{orders} orders placed in 3 s ({float(\"$rps\"):.0f} req/s); all expired and back in stock {took:.1f} s after the load ended')
print(f'≈ {orders / max(took - 5, 0.1):.0f} expiries/s (the last orders fall due 5 s after the load ends, the first 3 s earlier)')"
