#!/usr/bin/env bash
# Issue 5's figures, against one release `crest serve` on the embedded store in one run:
#   1. wrk and `crest loadtest` (closed loop, same connections and duration, twice each, taking
#      turns) each load a hot sale
#      that never sells out — their orders/s should agree within 15%; both draw each attempt's
#      buyer at random from 10⁹ (the same work for the server: see RESULTS.md);
#   2. `crest loadtest` open loop at half the closed-loop mean — p99 from each attempt's due time
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

# wrk NAME — one wrk load on a new sale; prints "NAME orders/s p50 p99 non-2xx", orders/s as a
# whole number for the shell's arithmetic below.
wrk_load() {
  local sale name rps rest
  sale=$(create_sale 1000000000)
  read -r name rps rest <<<"$(SALE=$sale RUN=$1 BUYERS=1000000000 THREADS=2 DURATION="${DURATION}s" \
    run_wrk "$1" "$CREST_URL" Benchmarks/lib/order.lua)"
  echo "$name $(printf '%.0f' "$rps") $rest"
}

# The tools take turns, wrk / loadtest / loadtest / wrk: the database grows with every load, and a
# tool that always ran second would always meet the bigger one.
wrk1=$(wrk_load wrk-1)
closed1=$(loadtest closed-1 --concurrency "$CONNECTIONS")
closed2=$(loadtest closed-2 --concurrency "$CONNECTIONS")
wrk2=$(wrk_load wrk-2)
wrk_rps=$(( $(cut -d' ' -f2 <<<"$wrk1") + $(cut -d' ' -f2 <<<"$wrk2") ))
closed_rps=$(( $(cut -d' ' -f2 <<<"$closed1") + $(cut -d' ' -f2 <<<"$closed2") ))
half=$((closed_rps / 4))
open=$(loadtest open-half --rate "$half" --connections "$CONNECTIONS")

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  ${DURATION} s per load, $CONNECTIONS connections"
echo
echo "| load | orders/s | p50 ms | p99 ms | max ms | audit |"
echo "|---|---|---|---|---|---|"
for row in "$wrk1" "$closed1" "$closed2" "$wrk2"; do
  case $row in
    wrk*) read -r name rps p50 p99 bad <<<"$row"; echo "| $name, closed loop ($bad non-2xx) | $rps | $p50 | $p99 | | — |" ;;
    *) read -r name rps p50 p99 max audit <<<"$row"; echo "| crest loadtest $name, closed loop | $rps | $p50 | $p99 | $max | $audit |" ;;
  esac
done
read -r _ rps p50 p99 max audit <<<"$open"
echo "| crest loadtest, open loop at $half/s (half the closed-loop mean) | $rps | $p50 | $p99 | $max | $audit |"
echo
python3 -c "print(f'crest loadtest / wrk orders/s (sums of both turns): {$closed_rps/$wrk_rps:.2f}')"
