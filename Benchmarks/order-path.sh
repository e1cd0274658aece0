#!/usr/bin/env bash
# Issue 2's benchmark: /healthz vs durable orders on a hot sale vs orders on a sold-out sale, all
# against one release `crest serve` on the embedded store, loaded by wrk in the same run; then the
# same order load with merging switched off (--max-batch 1).
#
# The three loads take turns for ROUNDS rounds, and each round's ratios are computed within the
# round: on a shared machine the /healthz rate alone moves by 2x over a day, so one 10 s load per
# route says little. The summary line gives the median of the rounds' ratios.
#
#   Benchmarks/order-path.sh            # 3 rounds, 10 s per load, 64 connections, 2 wrk threads
#   ROUNDS=5 DURATION=30s CONNECTIONS=128 Benchmarks/order-path.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ROUNDS=${ROUNDS:-3}
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
for round in $(seq "$ROUNDS"); do
  results+=("$(run_wrk "healthz#$round" "$CREST_URL/healthz")")
  results+=("$(SALE=$HOT RUN=hot$round run_wrk "orders-hot#$round" "$CREST_URL" Benchmarks/lib/order.lua)")
  results+=("$(SALE=$SOLD RUN=soldout$round run_wrk "orders-sold-out#$round" "$CREST_URL" Benchmarks/lib/order.lua)")
done
RESERVED=$(curl -sf "$CREST_URL/v1/sales/$HOT" | python3 -c 'import json,sys; s=json.load(sys.stdin)["stock"]; print(s["reserved"], s["available"]+s["reserved"]+s["sold"]==s["total"])')
stop_crest

start_crest "$WORK/unmerged" --max-batch 1
HOT1=$(create_sale 1000000000)
results+=("$(SALE=$HOT1 RUN=unmerged run_wrk orders-hot-max-batch-1 "$CREST_URL" Benchmarks/lib/order.lua)")
stop_crest

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk: -t$THREADS -c$CONNECTIONS -d$DURATION"
echo "hot sale after the run: reserved, conserved = $RESERVED"
echo
echo "| load | req/s | p50 | p99 | non-2xx | ratio to /healthz of its round |"
echo "|---|---|---|---|---|---|"
hot_ratios=(); sold_ratios=()
for row in "${results[@]}"; do
  read -r name rps p50 p99 bad <<<"$row"
  case $name in
    healthz*) base=$rps ;;
    orders-hot-max-batch-1*) ;;
    orders-hot*) hot_ratios+=("$(python3 -c "print($rps/$base)")") ;;
    orders-sold-out*) sold_ratios+=("$(python3 -c "print($rps/$base)")") ;;
  esac
  ratio=$(python3 -c "print(f'{$rps/$base:.2f}')")
  echo "| $name | $rps | $p50 | $p99 | $bad | $ratio |"
done
median() { python3 -c "import statistics,sys; print(f'{statistics.median(map(float, sys.argv[1:])):.2f}')" "$@"; }
echo
echo "median ratio to /healthz over $ROUNDS rounds: durable orders $(median "${hot_ratios[@]}"), sold-out $(median "${sold_ratios[@]}")"
