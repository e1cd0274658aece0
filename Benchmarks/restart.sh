#!/usr/bin/env bash
# Issue 26: what a crash leaves to recover on the embedded store, and how long start-up takes with
# it. A release `crest serve` takes a hot sale's orders from `crest loadtest` (closed loop, 64 in
# flight, every attempt a new buyer; with WITH_PROVIDER=1 a `crest psp-sim` is the provider, so
# each order also has its payment-creation job) and is killed with SIGKILL mid-load once ORDERS
# (default 100,000) are accepted. Then, on the same data:
#   - what is left: the WAL's size, the orders, the jobs not done;
#   - `crest serve` again, timed to its listening line, to /readyz 200, and to the answer of the
#     first order attempt on the sale (its stock gate loaded from the store: every order of the
#     sale is read for the holdings and the idempotency keys);
#   - `crest audit` of the data after the jobs due have run (stock conserved, events, jobs).
# RUNS restarts (default 3) of the same data, each after its own SIGKILL.
#
#   Benchmarks/restart.sh
#   ORDERS=100000 WITH_PROVIDER=1 Benchmarks/restart.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ORDERS=${ORDERS:-100000}
RUNS=${RUNS:-3}
swift build -c release --product crest >/dev/null

WORK=$(mktemp -d /tmp/crest-restart.XXXXXX)
SIM_PID=
trap 'for pid in ${CREST_PID:-} ${SIM_PID:-}; do kill -9 "$pid" 2>/dev/null || true; done; wait 2>/dev/null; rm -rf "$WORK"' EXIT

now() { date +%s.%N; }
accepted() { curl -sf "$CREST_URL/metrics" | awk '/^crest_order_attempts_total\{outcome="accepted"\}/ {print int($2)}'; }
sql() { python3 -c "import sqlite3,sys; print(sqlite3.connect(sys.argv[1]).execute(sys.argv[2]).fetchone()[0])" "$WORK/data/crest.sqlite" "$1"; }

# One port for every start: the provider's webhooks find the restarted server.
serve_flags=(--port "$(free_port)")
if [ -n "${WITH_PROVIDER:-}" ]; then
  SECRET=restart-provider-webhook-secret
  start_sim "${serve_flags[1]}" "$SECRET" "$WORK/sim.log"
  serve_flags+=(--provider-url "$SIM_URL" --provider-webhook-secret "$SECRET")
fi

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  orders: $ORDERS  provider: ${WITH_PROVIDER:-none}"
start_crest "$WORK/data" "${serve_flags[@]}"
SALE=$(create_sale 1000000000)
"$CREST_BIN" loadtest --url "$CREST_URL" --admin-token "$ADMIN_TOKEN" --data-dir "$WORK/none" --sale "$SALE" \
  --buyers 100000000 --repeat-share 0 --concurrency 64 --requests $((ORDERS * 3)) --timeout 10s > "$WORK/load.log" 2>&1 &
LOAD_PID=$!
started=$(now)
while [ "$(accepted)" -lt "$ORDERS" ]; do sleep 0.05; done
kill -9 "$CREST_PID"; wait "$CREST_PID" 2>/dev/null || true
kill "$LOAD_PID" 2>/dev/null || true; wait "$LOAD_PID" 2>/dev/null || true
echo "killed mid-load after $(python3 -c "print(round($(now) - $started, 1))") s"

for run in $(seq 1 "$RUNS"); do
  wal=$(stat -c %s "$WORK/data/crest.sqlite-wal" 2>/dev/null || echo 0)
  orders=$(sql "SELECT count(*) FROM orders")
  jobs=$(sql "SELECT count(*) FROM jobs WHERE state NOT IN ('completed', 'discarded')")
  t0=$(now)
  start_crest "$WORK/data" "${serve_flags[@]}"
  t1=$(now)
  until curl -sf -o /dev/null "$CREST_URL/readyz"; do sleep 0.01; done
  t2=$(now)
  status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "$CREST_URL/v1/sales/$SALE/orders" \
    -H "Idempotency-Key: after-restart-$run" -d "{\"buyer\":\"after-restart-$run\",\"quantity\":1}")
  t3=$(now)
  python3 - "$run" "$wal" "$orders" "$jobs" "$t0" "$t1" "$t2" "$t3" "$status" <<'PY'
import sys
run, wal, orders, jobs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
t0, t1, t2, t3 = map(float, sys.argv[5:9])
print(f"restart {run}: left by the crash: WAL {wal / 2**20:.1f} MiB, {orders} orders, {jobs} jobs not done; "
      f"listening after {t1 - t0:.2f} s, /readyz 200 after {t2 - t0:.2f} s, "
      f"first order on the sale answered {sys.argv[9]} after {t3 - t0:.2f} s ({(t3 - t2) * 1000:.0f} ms for it)")
PY
  kill -9 "$CREST_PID"; wait "$CREST_PID" 2>/dev/null || true
done

# The audit checks the store's promises on what the crashes left (before any job ran after them).
"$CREST_BIN" audit --data-dir "$WORK/data" > "$WORK/audit.log" 2>&1 && echo "crest audit: passed" ||
  { echo "crest audit: FAILED"; tail -20 "$WORK/audit.log"; exit 1; }
