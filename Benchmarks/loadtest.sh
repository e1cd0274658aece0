#!/usr/bin/env bash
# Issue 5's figures, against one release `crest serve` on the embedded store in one run:
#   1. wrk and `crest loadtest` (closed loop, same connections and duration) each load a hot sale
#      that never sells out — their orders/s should agree within 15%; both draw each attempt's
#      buyer at random from 10⁹ (the same work for the server: see RESULTS.md);
#   2. `crest loadtest` open loop at half the closed-loop peak — p99 from each attempt's due time
#      (target ≤ 10 ms).
#
#   Benchmarks/loadtest.sh                 # 10 s per load, 64 connections
#   DURATION=20 CONNECTIONS=128 Benchmarks/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-64}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null

WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
trap 'stop_crest; rm -rf "$WORK"' EXIT
start_crest "$WORK/data"

# loadtest NAME [flags…] — runs `crest loadtest` on a new sale of 10⁹ units (one per buyer, buyers
# drawn from 10⁹, no repeats) and prints "NAME orders/s p50 p99 max audit".
loadtest() {
  local name=$1; shift
  "$CREST_BIN" loadtest --url "$CREST_URL" --admin-token "$ADMIN_TOKEN" --stock 1000000000 \
    --buyers 1000000000 --repeat-share 0 --duration "${DURATION}s" --json "$@" 2>"$WORK/$name.err" |
    python3 -c '
import json, sys
r = json.load(sys.stdin); l = r["latencyMs"]
print(sys.argv[1], round(r["acceptedPerSecond"]), l["p50"], l["p99"], l["max"], "passed" if r["auditPassed"] else "FAILED")
' "$name"
}

HOT=$(create_sale 1000000000)
wrk_out=$(SALE=$HOT RUN=wrk BUYERS=1000000000 wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency -s Benchmarks/lib/order.lua "$CREST_URL")
wrk_rps=$(awk '/Requests\/sec/ {printf "%.0f", $2}' <<<"$wrk_out")
wrk_p50=$(awk '$1=="50%" {print $2}' <<<"$wrk_out")
wrk_p99=$(awk '$1=="99%" {print $2}' <<<"$wrk_out")
wrk_bad=$(awk '/Non-2xx/ {print $5}' <<<"$wrk_out"); wrk_bad=${wrk_bad:-0}

closed=$(loadtest closed --concurrency "$CONNECTIONS")
read -r _ closed_rps _ _ _ _ <<<"$closed"
half=$((closed_rps / 2))
open=$(loadtest open-half --rate "$half" --connections "$CONNECTIONS")

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  ${DURATION} s per load, $CONNECTIONS connections"
echo
echo "| load | orders/s | p50 ms | p99 ms | max ms | audit |"
echo "|---|---|---|---|---|---|"
echo "| wrk, closed loop ($wrk_bad non-2xx) | $wrk_rps | ${wrk_p50} | ${wrk_p99} | | — |"
read -r _ rps p50 p99 max audit <<<"$closed"
echo "| crest loadtest, closed loop | $rps | $p50 | $p99 | $max | $audit |"
read -r _ rps p50 p99 max audit <<<"$open"
echo "| crest loadtest, open loop at $half/s | $rps | $p50 | $p99 | $max | $audit |"
echo
python3 -c "print(f'crest loadtest / wrk orders/s: {$closed_rps/$wrk_rps:.2f}')"
