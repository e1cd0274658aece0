#!/usr/bin/env bash
# Issue 2's benchmark: /healthz vs durable orders on a hot sale vs orders on a sold-out sale, all
# against one release `crest serve` on the embedded store, loaded by wrk in the same run; then the
# same order load with merging switched off (--max-batch 1).
#
#   Benchmarks/order-path.sh            # 10 s per load, 64 connections, 2 wrk threads
#   DURATION=30s CONNECTIONS=128 Benchmarks/order-path.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
THREADS=${THREADS:-2}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
swift build -c release --product crest >/dev/null

WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
trap 'stop_crest; rm -rf "$WORK"' EXIT

start_crest "$WORK/merged"
HOT=$(create_sale 1000000000)
SOLD=$(create_sale 1)
curl -sf -X POST "$CREST_URL/v1/sales/$SOLD/orders" -H "Idempotency-Key: the-one" -d '{"buyer":"first","quantity":1}' >/dev/null

results=()
results+=("$(run_wrk healthz "$CREST_URL/healthz")")
results+=("$(SALE=$HOT RUN=hot run_wrk orders-hot "$CREST_URL" Benchmarks/lib/order.lua)")
results+=("$(SALE=$SOLD RUN=soldout run_wrk orders-sold-out "$CREST_URL" Benchmarks/lib/order.lua)")
RESERVED=$(curl -sf "$CREST_URL/v1/sales/$HOT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["stock"]; print(s["reserved"], s["available"]+s["reserved"]+s["sold"]==s["total"])')
stop_crest

start_crest "$WORK/unmerged" --max-batch 1
HOT1=$(create_sale 1000000000)
results+=("$(SALE=$HOT1 RUN=unmerged run_wrk orders-hot-max-batch-1 "$CREST_URL" Benchmarks/lib/order.lua)")
stop_crest

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk: -t$THREADS -c$CONNECTIONS -d$DURATION"
echo "hot sale after the run: reserved, conserved = $RESERVED"
echo
echo "| load | req/s | p50 | p99 | non-2xx | ratio to /healthz |"
echo "|---|---|---|---|---|---|"
base=$(awk '{print $2}' <<<"${results[0]}")
for row in "${results[@]}"; do
  read -r name rps p50 p99 bad <<<"$row"
  ratio=$(python3 -c "print(f'{$rps/$base:.2f}')")
  echo "| $name | $rps | $p50 | $p99 | $bad | $ratio |"
done
