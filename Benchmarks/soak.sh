#!/usr/bin/env bash
# Issue 25's soak: a release `crest serve` on the embedded store with payments on (`crest psp-sim`
# as the provider, signed webhooks), fed for SOAK_MINUTES (10) at 80% of the lifecycle's
# capacity by an open loop (`crest loadtest --rate`, half the orders paid, the rest expire after
# their 20 s window); the server's own /metrics and its RSS sampled each minute. Flat means the
# last minute no more than 10% worse than the second for orders/s, order p99 and RSS; no 5xx, no
# discarded job, the loadtest's audit passed. Exit 1 otherwise.
#
# The capacity is the lifecycle's, not placement's: a closed loop of 64 connections for 20 s,
# over the time until every job it made has run (payment creation and expiry are jobs that fall
# behind placement at saturation; at 80% of placement capacity their backlog, and with it the
# memory, would grow by design).
#
#   Benchmarks/soak.sh            SOAK_MINUTES=2 Benchmarks/soak.sh (a short try)
set -euo pipefail
cd "$(dirname "$0")/.."
[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null
source Benchmarks/lib/crest-server.sh
MINUTES=${SOAK_MINUTES:-10}
WORK=$(mktemp -d /tmp/crest-soak.XXXXXX)
SIM_PID=
cleanup() { stop_crest 2>/dev/null || true; [ -n "$SIM_PID" ] && kill "$SIM_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB"
SECRET=soak-provider-webhook-secret
CREST_PORT=$(free_port)
start_sim "$CREST_PORT" "$SECRET" "$WORK/sim.log"
start_crest "$WORK/data" --port "$CREST_PORT" --provider-url "$SIM_URL" \
  --provider-webhook-secret "$SECRET"

read -r _ _ healthz_us <<<"$(THREADS=2 CONNECTIONS=64 DURATION=10s load_cpu healthz "$CREST_URL/healthz")"
echo "healthz (64 connections): $healthz_us µs of server CPU per answer"

counter() { curl -sf "$CREST_URL/metrics" | awk -v series="$1" '$1 == series {print $2}'; }
accepted_series='crest_order_attempts_total{outcome="accepted"}'

# Every run draws its buyers from 10,000 who may hold up to 1,000 units each, so the buyers' state
# is bounded and nearly every attempt is an order; the sale's stock outlasts the run.
loadtest() {
  "$CREST_BIN" loadtest --url "$CREST_URL" --admin-token "$ADMIN_TOKEN" --data-dir "$WORK/none" \
    --stock 1000000000 --buyers 10000 --per-buyer-limit 1000 --repeat-share 0.02 --pay-ratio 0.5 \
    --timeout 10s --json "$@"
}

# 1. The lifecycle's capacity: the orders of 20 s at saturation over the time until their jobs
# are done — every due job run (payments created, expiries) once the last order's window passed.
# The calibration's own audit is not awaited: at saturation its expiries run late by design.
accepted0=$(counter "$accepted_series")
start=$(date +%s.%N)
loadtest --concurrency 64 --duration 20s --payment-window 20 > "$WORK/calibration.json" 2> "$WORK/calibration.log" &
calibration=$!
sleep 46  # the last window's end, and the job statistics' 5 s
until python3 -c "import sys; sys.exit(0 if float('$(counter crest_job_queue_depth)') == 0 else 1)"; do sleep 0.5; done
drained=$(date +%s.%N)
accepted=$(counter "$accepted_series")
kill "$calibration" 2>/dev/null || true
wait "$calibration" 2>/dev/null || true
capacity=$(python3 -c "print(int(($accepted - $accepted0) / ($drained - $start - 20)))")
rate=$((capacity * 8 / 10))
echo "lifecycle capacity: $capacity orders/s (every accepted order with its payment created); soak at $rate/s for $MINUTES min"

# 2. The soak.
loadtest --rate "$rate" --connections 64 --duration "${MINUTES}m" > "$WORK/soak.json" 2> "$WORK/soak.log" &
soak=$!
python3 Benchmarks/lib/soak_sample.py "$CREST_URL" "$CREST_PID" 60 "$MINUTES" "$WORK/samples.json"
status=0
wait "$soak" || status=$?
python3 - "$WORK/soak.json" "$WORK/samples.json" "$status" <<'PY'
import json, sys
rows = json.load(open(sys.argv[2]))
failures = []
try:
    report = json.load(open(sys.argv[1]))
    outcomes = ", ".join(f"{k} x{v}" for k, v in sorted(report["outcomes"].items(), key=lambda kv: -kv[1]))
    print(f"loadtest: {report['acceptedPerSecond']:.0f} accepted/s, latency p50 {report['latencyMs']['p50']} ms "
          f"p99 {report['latencyMs']['p99']} ms; audit {'passed' if report['auditPassed'] else 'FAILED'}; [{outcomes}]")
    if not report["auditPassed"]:
        failures.append("the loadtest's audit failed")
except Exception as error:
    failures.append(f"no loadtest report (exit {sys.argv[3]}): {error}")
print()
print("| minute | orders/s | order p50 / p99 ms | 4xx | 5xx | payments created/s | paid/s | to payment p99 ms | jobs due | RSS MB | server CPU |")
print("|---|---|---|---|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['minute']} | {r['orders_per_s']:,.0f} | {r['order_p50_ms']} / {r['order_p99_ms']} | {r['answers_4xx']} | "
          f"{r['answers_5xx']} | {r['payments_created_per_s']:,.0f} | {r['paid_per_s']:,.0f} | {r['to_payment_p99_ms']} | "
          f"{r['jobs_due']} | {r['rss_mb']} | {r['cpu_percent']}% |")
if sum(r["answers_5xx"] for r in rows):
    failures.append("5xx answers")
if rows and rows[-1]["jobs_discarded"]:
    failures.append(f"{rows[-1]['jobs_discarded']} jobs discarded")
if len(rows) >= 3:
    second, last = rows[1], rows[-1]
    # One-sided: fewer orders, a longer p99 or more memory in the last minute than in the second.
    for key, name, worse in [("orders_per_s", "orders/s", -1), ("order_p99_ms", "order p99", 1), ("rss_mb", "RSS", 1)]:
        if second[key] and last[key] is not None and worse * (last[key] - second[key]) > 0.1 * second[key]:
            failures.append(f"{name} not flat: {second[key]} in minute 2, {last[key]} in the last")
print()
print("soak: " + ("flat, no error" if not failures else "FAILED: " + "; ".join(failures)))
sys.exit(1 if failures else 0)
PY
