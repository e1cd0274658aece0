#!/usr/bin/env bash
# Issue 5's figures, against one release `crest serve` on the embedded store in one run:
#   1. wrk and `crest loadtest` (closed loop, same connections and duration) each load a hot sale
#      that never sells out, taking turns for ROUNDS rounds (which goes first alternates) — their
#      orders/s should agree within 15%; each round's ratio is computed within the round, and the
#      summary gives the median (single loads on a shared machine move by ±10%). Both draw each
#      attempt's buyer at random from 10⁹ (the same work for the server: see RESULTS.md);
#   2. `crest loadtest` open loop at half the median closed-loop rate, ROUNDS times — p99 from
#      each attempt's due time (target ≤ 10 ms), and its median.
#
#   Benchmarks/loadtest.sh                 # 3 rounds, 10 s per load, 64 connections
#   ROUNDS=5 DURATION=20 CONNECTIONS=128 Benchmarks/loadtest.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
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
median() { python3 -c "import statistics,sys; print(statistics.median(map(float, sys.argv[1:])))" "$@"; }
rows=()
ratios=()
closed_rates=()
for round in $(seq "$ROUNDS"); do
  if (( round % 2 )); then
    wrk=$(wrk_load "wrk#$round"); closed=$(loadtest "closed#$round" --concurrency "$CONNECTIONS")
  else
    closed=$(loadtest "closed#$round" --concurrency "$CONNECTIONS"); wrk=$(wrk_load "wrk#$round")
  fi
  rows+=("$wrk" "$closed")
  wrk_rps=$(cut -d' ' -f2 <<<"$wrk"); closed_rps=$(cut -d' ' -f2 <<<"$closed")
  ratios+=("$(python3 -c "print(f'{$closed_rps/$wrk_rps:.2f}')")")
  closed_rates+=("$closed_rps")
done
half=$(python3 -c "print(round($(median "${closed_rates[@]}") / 2))")
p99s=()
for round in $(seq "$ROUNDS"); do
  open=$(loadtest "open#$round" --rate "$half" --connections "$CONNECTIONS")
  rows+=("$open")
  p99s+=("$(cut -d' ' -f4 <<<"$open")")
done

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  ${DURATION} s per load, $CONNECTIONS connections, $ROUNDS rounds"
echo
echo "| load | orders/s | p50 ms | p99 ms | max ms | audit |"
echo "|---|---|---|---|---|---|"
for row in "${rows[@]}"; do
  case $row in
    wrk*) read -r name rps p50 p99 bad <<<"$row"; echo "| $name, closed loop ($bad non-2xx) | $rps | $p50 | $p99 | | — |" ;;
    open*) read -r name rps p50 p99 max audit <<<"$row"; echo "| crest loadtest $name, open loop at $half/s | $rps | $p50 | $p99 | $max | $audit |" ;;
    *) read -r name rps p50 p99 max audit <<<"$row"; echo "| crest loadtest $name, closed loop | $rps | $p50 | $p99 | $max | $audit |" ;;
  esac
done
echo
echo "crest loadtest / wrk orders/s, median of the rounds: $(median "${ratios[@]}") (rounds: ${ratios[*]})"
echo "open-loop p99 at $half/s (half the median closed-loop rate), median: $(median "${p99s[@]}") ms (rounds: ${p99s[*]})"
