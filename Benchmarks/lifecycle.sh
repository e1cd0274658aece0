#!/usr/bin/env bash
# Issue 26: where an order's whole life spends the server's CPU, part by part. A release
# `crest serve` on the embedded store (with `crest psp-sim` as its provider where payments are
# on), `crest loadtest --rate $RATE` (open loop, new buyers on a sale of 10⁷ units), and over 15 s
# of steady state (from $SKIP s on) the server's and the simulator's CPU and the server's context
# switches, from /proc, and the job runs (from /metrics), per order placed meanwhile, with the
# orders per reservation batch:
#
#   placement      no provider, a window of an hour: the order's placement alone
#   + creation     the provider: each order's payment created (a call out, its `created` webhook in)
#   + expiry       a window of 10 s: each order expires, after asking the provider
#   demo mix       30% of the orders paid (the buyer pays, two webhooks, the confirmation)
#
# At a moderate rate the cost is per wake-up more than per row (batches are small), which is
# what `crest demo` sees between its bursts. Alternate builds to compare them:
#
#   Benchmarks/lifecycle.sh
#   BINS="/tmp/a/crest /tmp/b/crest" ROUNDS=2 RATE=700 Benchmarks/lifecycle.sh
#   PARTS="creation mix" BINS=… Benchmarks/lifecycle.sh     # some parts only
#   CREST_PSP_WEBHOOK_EVENTS=payment_intent.processing,payment_intent.failed,payment_intent.succeeded,payment_intent.refunded \
#     Benchmarks/lifecycle.sh     # the simulator subscribed as `crest demo` is: no `created` webhooks
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh
RATE=${RATE:-700}
SKIP=${SKIP:-15}
ROUNDS=${ROUNDS:-1}
[ -n "${BINS:-}" ] || { [ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null; BINS=.build/release/crest; }
SECRET=lifecycle-bench-secret
WORK=$(mktemp -d /tmp/crest-lifecycle.XXXXXX)
SIM_PID=
trap 'if [ -n "${CREST_PID:-}" ]; then stop_crest || true; fi; [ -z "$SIM_PID" ] || kill "$SIM_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

accepted() { curl -sf "$CREST_URL/metrics" | awk '$1 == "crest_order_attempts_total{outcome=\"accepted\"}" {print $2}'; }
# The reservation batches committed and the job runs so far (every kind and outcome).
batches() { curl -sf "$CREST_URL/metrics" | awk '$1 == "crest_batch_size_count" {print $2}'; }
job_runs() { curl -sf "$CREST_URL/metrics" | awk '$1 ~ /^crest_job_attempts_total/ {s += $2} END {print s + 0}'; }
switches() { cat "/proc/$CREST_PID"/task/*/status 2>/dev/null | awk '/ctxt_switches/ {s += $2} END {print s}'; }
cpu_of() { if [ -n "$1" ]; then server_cpu "$1"; else echo 0; fi; }

# part NAME PROVIDER(0/1) WINDOW PAY_RATIO
part() {
  local name=$1 provider=$2 window=$3 pay=$4 port c0 c1 s0 s1 x0 x1 a0 a1 b0 b1 j0 j1
  rm -rf "$WORK/data" "$WORK/none"
  port=$(free_port)
  SIM_PID=
  if [ "$provider" = 1 ]; then
    start_sim "$port" "$SECRET" "$WORK/sim.log"
    start_crest "$WORK/data" --port "$port" --provider-url "$SIM_URL" --provider-webhook-secret "$SECRET"
  else
    start_crest "$WORK/data" --port "$port"
  fi
  "$CREST_BIN" loadtest --url "$CREST_URL" --admin-token "$ADMIN_TOKEN" --data-dir "$WORK/none" --rate "$RATE" \
    --duration "$((SKIP + 20))s" --payment-window "$window" --pay-ratio "$pay" --stock 10000000 --buyers 10000000 \
    --repeat-share 0 --json > "$WORK/loadtest.json" 2>/dev/null &
  local load=$!
  sleep "$SKIP"
  c0=$(server_cpu "$CREST_PID"); s0=$(cpu_of "$SIM_PID"); x0=$(switches); a0=$(accepted); b0=$(batches); j0=$(job_runs)
  sleep 15
  c1=$(server_cpu "$CREST_PID"); s1=$(cpu_of "$SIM_PID"); x1=$(switches); a1=$(accepted); b1=$(batches); j1=$(job_runs)
  kill "$load" 2>/dev/null || true; wait "$load" 2>/dev/null || true
  stop_crest; CREST_PID=
  [ -z "$SIM_PID" ] || { kill "$SIM_PID"; wait "$SIM_PID" 2>/dev/null || true; SIM_PID=; }
  python3 -c "
orders = $a1 - $a0
print(f'{\"$name\":<13} {orders / 15:6.0f} orders/s  crest {($c1 - $c0) * 1e4 / orders:5.0f} µs  simulator {($s1 - $s0) * 1e4 / orders:4.0f} µs  context switches {($x1 - $x0) / orders:4.1f}  job runs {($j1 - $j0) / orders:4.2f}  per order;  {orders / max($b1 - $b0, 1):4.1f} orders per batch  ($CREST_BIN)')"
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  rate: $RATE orders/s"
for _ in $(seq 1 "$ROUNDS"); do
  for CREST_BIN in $BINS; do
    for name in ${PARTS:-placement creation expiry mix}; do
      case $name in
        placement) part placement 0 3600 0 ;;
        creation) part "+ creation" 1 3600 0 ;;
        expiry) part "+ expiry" 1 10 0 ;;
        mix) part "demo mix" 1 10 0.3 ;;
        *) echo "unknown part: $name (placement, creation, expiry, mix)" >&2; exit 2 ;;
      esac
    done
  done
done
