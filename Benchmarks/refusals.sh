#!/usr/bin/env bash
# Issue 22: what a refusal costs the server against a /healthz answer, for two builds alternating.
# Each round and build, fresh release `crest serve`s on the embedded store, wrk -t2 -c64 for 10 s
# each, server CPU per answer from /proc over 8 s (as Benchmarks/lib/crest-server.sh measures it):
#   healthz  GET /healthz;
#   503      order attempts while the write path is full (limit 1, no queue: nearly every attempt
#            is refused `503 overloaded`; the few admitted are in the figure);
#   429      order attempts of one buyer over `--buyer-rate 1 --buyer-burst 1`;
#   409      order attempts on a sold-out sale (each a new buyer).
#
#   CREST_A=/tmp/base/crest CREST_B=.build/release/crest Benchmarks/refusals.sh     # 3 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ROUNDS=${ROUNDS:-3}
THREADS=2
CONNECTIONS=64
DURATION=10s
: "${CREST_A:?the first build's crest binary}" "${CREST_B:?the second build's crest binary}"
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }

WORK=$(mktemp -d /tmp/crest-refusals.XXXXXX)
trap 'if [ -n "${CREST_PID:-}" ]; then stop_crest || true; fi; rm -rf "$WORK"' EXIT

# cost NAME SALE_STOCK [serve flags…] — "µs" of server CPU per order attempt on a fresh server.
cost() {
  local name=$1 stock=$2; shift 2
  rm -rf "$WORK/data" "$WORK/data.log"
  start_crest "$WORK/data" "$@"
  local sale buyers=""
  sale=$(create_sale "$stock")
  if [ "$stock" = 1 ]; then
    curl -sf -X POST "$CREST_URL/v1/sales/$sale/orders" -H "Idempotency-Key: the-one" -d '{"buyer":"first","quantity":1}' >/dev/null
  fi
  [ "$name" = 429 ] && buyers=1
  SALE=$sale RUN="$name$RANDOM" BUYERS=$buyers load_cpu "$name" "$CREST_URL" Benchmarks/lib/order.lua | awk '{print $3}'
  stop_crest
}

healthz() {
  rm -rf "$WORK/data" "$WORK/data.log"
  start_crest "$WORK/data"
  load_cpu healthz "$CREST_URL/healthz" | awk '{print $3}'
  stop_crest
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
echo "A: $CREST_A   B: $CREST_B"
echo
echo "| round | build | healthz µs | 503 (write path full) µs | 429 (one buyer) µs | 409 (sold out) µs |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for build in A B; do
    if [ "$build" = A ]; then CREST_BIN=$CREST_A; else CREST_BIN=$CREST_B; fi
    h=$(healthz)
    full=$(cost 503 1000000000 --write-path-limit 1 --write-path-min 1 --write-path-max 1 --write-path-queue 0)
    limited=$(cost 429 1000000000 --buyer-rate 1 --buyer-burst 1)
    sold=$(cost 409 1)
    echo "| $round | $build | $h | $full | $limited | $sold |"
  done
done
