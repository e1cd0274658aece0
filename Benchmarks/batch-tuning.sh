#!/usr/bin/env bash
# How the batch window and the maximum batch size change durable order throughput: one release
# `crest serve` per setting, the same wrk order load on a hot sale, /healthz as the yardstick.
#
#   Benchmarks/batch-tuning.sh                     # windows 0 100 500 1000 µs, max batch 512
#   WINDOWS="0 200" MAX_BATCHES="64 512" Benchmarks/batch-tuning.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

DURATION=${DURATION:-8s}
CONNECTIONS=${CONNECTIONS:-64}
WINDOWS=${WINDOWS:-"0 100 500 1000"}
MAX_BATCHES=${MAX_BATCHES:-"512"}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
swift build -c release --product crest >/dev/null

WORK=$(mktemp -d /tmp/crest-tuning.XXXXXX)
trap 'stop_crest; rm -rf "$WORK"' EXIT

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk: -t2 -c$CONNECTIONS -d$DURATION"
echo "| window µs | max batch | orders/s | p50 | p99 | mean batch | /healthz req/s | ratio |"
echo "|---|---|---|---|---|---|---|---|"
for max in $MAX_BATCHES; do
  for window in $WINDOWS; do
    dir="$WORK/w$window-m$max"
    start_crest "$dir" --batch-window-us "$window" --max-batch "$max"
    hot=$(create_sale 1000000000)
    health=$(wrk -t2 -c"$CONNECTIONS" -d"$DURATION" "$CREST_URL/healthz" | awk '/Requests\/sec/ {print $2}')
    out=$(SALE=$hot RUN="w$window" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency -s Benchmarks/lib/order.lua "$CREST_URL")
    rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    p50=$(awk '$1=="50%" {print $2}' <<<"$out")
    p99=$(awk '$1=="99%" {print $2}' <<<"$out")
    batch=$(curl -sf "$CREST_URL/metrics" | awk '/^crest_batch_size_sum/ {s=$2} /^crest_batch_size_count/ {c=$2} END {printf "%.1f", s/c}')
    stop_crest
    echo "| $window | $max | $rps | $p50 | $p99 | $batch | $health | $(python3 -c "print(f'{$rps/$health:.2f}')") |"
  done
done
