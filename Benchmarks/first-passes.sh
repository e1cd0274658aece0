#!/usr/bin/env bash
# A sold-out sale's crowd of new buyers, each with a pass of its own (issues 22 and 26): most of a
# flash sale's attempts come from buyers Crest has not seen before, so their passes are verified
# for the first time. For each build and round, a fresh release `crest serve` (buyer passes on, or
# off for the control), and `crest loadtest` as `crest demo` plays it — 100,000 buyers, 64
# connections, a sale of one unit, so every attempt but the first is a `409 sold-out` — with
# $REQUESTS attempts. Prints attempts/s, the server's and the load generator's CPU per attempt
# (from /proc) and how many of the refusals went on to the route (`hb_requests`: the rest were
# answered in the channel).
#
#   Benchmarks/first-passes.sh                                  # this tree's build, 2 rounds
#   BINS="/tmp/a/crest /tmp/b/crest" ROUNDS=3 Benchmarks/first-passes.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh
ROUNDS=${ROUNDS:-2}
REQUESTS=${REQUESTS:-150000}
[ -n "${BINS:-}" ] || { [ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null; BINS=.build/release/crest; }
WORK=$(mktemp -d /tmp/crest-first-passes.XXXXXX)
trap 'if [ -n "${CREST_PID:-}" ]; then stop_crest || true; fi; rm -rf "$WORK"' EXIT

route_refusals() {
  curl -sf "$CREST_URL/metrics" |
    awk '$1 ~ /^hb_requests\{/ && /http_route="\/v1\/sales\/\{saleID\}\/orders"/ && /http_response_status_code="409"/ {s += $2} END {print s + 0}'
}

# one BIN PASSES(on|off) — one server, one crowd; prints a table row.
one() {
  CREST_BIN=$1
  rm -rf "$WORK/data" "$WORK/data.log"
  BUYER_AUTH=$2 start_crest "$WORK/data"
  local c0 l0 c1 t0 t1 routed
  c0=$(server_cpu "$CREST_PID")
  t0=$(date +%s.%N)
  /usr/bin/time -f "%U %S" -o "$WORK/lt.time" "$CREST_BIN" loadtest --url "$CREST_URL" --admin-token "$ADMIN_TOKEN" \
    --data-dir "$WORK/data" --stock 1 --requests "$REQUESTS" --buyers 100000 --concurrency 64 --repeat-share 0.05 \
    > "$WORK/lt.out" 2>&1 || { echo "loadtest failed:"; tail -5 "$WORK/lt.out"; exit 1; }
  t1=$(date +%s.%N)
  c1=$(server_cpu "$CREST_PID")
  routed=$(route_refusals)
  stop_crest
  python3 - "$1" "$2" "$REQUESTS" "$c0" "$c1" "$t0" "$t1" "$routed" $(tail -1 "$WORK/lt.time") "$(getconf CLK_TCK)" <<'PY'
import sys
bin_, passes, n, c0, c1, t0, t1, routed, lu, ls, tck = sys.argv[1:]
n = int(n)
server = (int(c1) - int(c0)) * 1e6 / int(tck) / n
load = (float(lu) + float(ls)) * 1e6 / n
print(f"| {bin_} | {passes} | {n / (float(t1) - float(t0)):.0f} | {server:.1f} | {load:.1f} | {int(routed) / n:.1%} |")
PY
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  attempts per run: $REQUESTS"
echo
echo "| build | passes | attempts/s | server µs/attempt | load generator µs/attempt | refusals on the route |"
echo "|---|---|---|---|---|---|"
for _ in $(seq "$ROUNDS"); do
  for bin in $BINS; do
    for passes in on off; do one "$bin" "$passes"; done
  done
done
