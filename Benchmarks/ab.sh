#!/usr/bin/env bash
# Two builds of crest compared in one run, alternating: for each round and build, a fresh release
# `crest serve` on the embedded store, loaded by wrk with GET /healthz, with orders on a hot sale
# and with orders on a sold-out sale; prints req/s and the server's CPU per request (user + system
# time from /proc over 8 s of each 10 s load). Says whether a change moved the order path beyond
# the day's noise: compare the builds within each round.
#
#   CREST_A=/tmp/base/crest CREST_B=.build/release/crest Benchmarks/ab.sh     # 3 rounds
#   ROUNDS=5 CREST_A=… CREST_B=… Benchmarks/ab.sh
#   GENERATOR_NICE=19 CREST_A=… CREST_B=… Benchmarks/ab.sh   # wrk below the server
#
# wrk shares the server's two cores. GENERATOR_NICE (default 0, the figures issue 26's targets are
# read from) is the nice value wrk runs at: with 19 the server has the cores first, as one whose
# clients are on other machines has — it says how much of a ratio is the shared machine's.
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ROUNDS=${ROUNDS:-3}
export LOAD_NICE=${GENERATOR_NICE:-0}
THREADS=2
CONNECTIONS=64
DURATION=10s
: "${CREST_A:?the first build's crest binary}" "${CREST_B:?the second build's crest binary}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
trap 'if [ -n "${CREST_PID:-}" ]; then stop_crest || true; fi; rm -rf "$WORK"' EXIT

# one BUILD BIN — healthz, hot orders, sold-out orders on a fresh server of that binary.
one() {
  local build=$1
  CREST_BIN=$2
  rm -rf "$WORK/data" "$WORK/data.log"
  start_crest "$WORK/data"
  local hot sold
  hot=$(create_sale 1000000000)
  sold=$(create_sale 1)
  curl -sf -X POST "$CREST_URL/v1/sales/$sold/orders" -H "Idempotency-Key: the-one" -d '{"buyer":"first","quantity":1}' >/dev/null
  echo "$build $(load_cpu healthz "$CREST_URL/healthz") $(SALE=$hot RUN="hot$RANDOM" load_cpu hot "$CREST_URL" Benchmarks/lib/order.lua) $(SALE=$sold RUN="sold$RANDOM" load_cpu sold "$CREST_URL" Benchmarks/lib/order.lua)"
  stop_crest
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk -t$THREADS -c$CONNECTIONS -d$DURATION at nice $LOAD_NICE"
echo "A: $CREST_A   B: $CREST_B"
echo
echo "| round | build | healthz req/s | healthz µs/req | orders/s | µs/order | sold-out req/s | µs/sold-out |"
echo "|---|---|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for build in A B; do
    if [ "$build" = A ]; then bin=$CREST_A; else bin=$CREST_B; fi
    read -r b _ h_rps h_cpu _ o_rps o_cpu _ s_rps s_cpu <<<"$(one "$build" "$bin")"
    echo "| $round | $b | $h_rps | $h_cpu | $o_rps | $o_cpu | $s_rps | $s_cpu |"
  done
done
