#!/usr/bin/env bash
# Issue 27: what buyer passes cost the order path. One release build, alternating in each round: a
# `crest serve --buyer-auth off` loaded with orders whose body names one of 1,000 buyers, and a
# `crest serve --buyer-pass-secret …` loaded with orders from the same 1,000 buyers, each sending
# its own HS256 pass (minted here, as the shop would; every pass is used many times, so all but its
# first use are remembered). Same sale (10⁹ units, 1,000 per buyer: every attempt is a durable
# order), same store work; prints orders/s and the server's CPU per order (from /proc), with the
# day's /healthz CPU. Then the in-process cost of a first verification per algorithm (crest-bench).
#
#   Benchmarks/passes.sh            # 5 rounds
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ROUNDS=${ROUNDS:-5}
THREADS=2
CONNECTIONS=64
DURATION=10s
BUYERS=1000
SECRET=bench-buyer-pass-secret-0123456789abcdef
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
# Both products in one build: building them one after the other recompiles shared modules.
swift build -c release >/dev/null

WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
trap 'if [ -n "${CREST_PID:-}" ]; then stop_crest || true; fi; rm -rf "$WORK"' EXIT

# The shop's side: an HS256 pass per buyer, valid for an hour, limit 1,000 units.
python3 - "$SECRET" "$BUYERS" > "$WORK/passes.txt" <<'PY'
import base64, hashlib, hmac, json, sys, time
secret, buyers = sys.argv[1].encode(), int(sys.argv[2])
b64 = lambda data: base64.urlsafe_b64encode(data).rstrip(b"=")
header = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
now = int(time.time())
for n in range(1, buyers + 1):
    claims = b64(json.dumps({"sub": f"b-{n}", "iat": now, "exp": now + 3600, "perBuyerLimit": 1000}).encode())
    signature = b64(hmac.new(secret, header + b"." + claims, hashlib.sha256).digest())
    print(f"b-{n} {(header + b'.' + claims + b'.' + signature).decode()}")
PY

# sale_for_buyers — a sale of 10⁹ units, 1,000 per buyer; prints its id.
sale_for_buyers() {
  curl -sf -X POST "$CREST_URL/v1/sales" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -d '{"sku":"BENCH","title":"Passes","price":{"amount":100,"currency":"CNY"},"stock":1000000000,"perBuyerLimit":1000}' |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}

# one MODE — a fresh server in that mode, loaded; prints "MODE req/s µs/order" (and /healthz first).
one() {
  rm -rf "$WORK/data" "$WORK/data.log"
  if [ "$1" = off ]; then start_crest "$WORK/data" --buyer-auth off
  else BUYER_AUTH=on start_crest "$WORK/data" --buyer-pass-secret "$SECRET"; fi
  local sale; sale=$(sale_for_buyers)
  local healthz; healthz=$(load_cpu healthz "$CREST_URL/healthz")
  if [ "$1" = off ]; then
    echo "$healthz $(SALE=$sale RUN="off$RANDOM" BUYERS=$BUYERS load_cpu off "$CREST_URL" Benchmarks/lib/order.lua)"
  else
    echo "$healthz $(SALE=$sale RUN="pass$RANDOM" PASSES="$WORK/passes.txt" load_cpu passes "$CREST_URL" Benchmarks/lib/order-pass.lua)"
  fi
  grep -q "Non-2xx" "$WORK/wrk.out" && { echo "non-2xx answers:"; cat "$WORK/wrk.out"; exit 1; }
  stop_crest
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk -t$THREADS -c$CONNECTIONS -d$DURATION, $BUYERS buyers"
echo
echo "| round | mode | healthz µs/req | orders/s | µs/order |"
echo "|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for mode in off passes; do
    read -r _ _ h_cpu m o_rps o_cpu <<<"$(one "$mode")"
    echo "| $round | $m | $h_cpu | $o_rps | $o_cpu |"
  done
done
echo
.build/release/crest-bench passes
