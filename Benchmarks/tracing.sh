#!/usr/bin/env bash
# What tracing costs: one release `crest serve` per setting — no OTLP endpoint (spans go to the
# no-op tracer), every request traced and exported, 1% of requests traced — each loaded by wrk
# with GET /healthz and with orders on a hot sale; prints req/s and the server's CPU per request
# (user + system time from /proc over 8 s of each 10 s load). The spans go to a small OTLP/HTTP
# sink in Python that reads and drops them. Settings take turns for ROUNDS rounds.
#
#   Benchmarks/tracing.sh              # 2 rounds, about 3 minutes after the release build
#   ROUNDS=3 Benchmarks/tracing.sh
set -euo pipefail
cd "$(dirname "$0")/.."
source Benchmarks/lib/crest-server.sh

ROUNDS=${ROUNDS:-2}
THREADS=2
CONNECTIONS=64
DURATION=10s
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
[ "${SKIP_BUILD:-}" = 1 ] || swift build -c release --product crest >/dev/null

WORK=$(mktemp -d /tmp/crest-bench.XXXXXX)
SINK_PORT=$(free_port)
python3 - "$SINK_PORT" > "$WORK/sink.log" 2>&1 <<'EOF' &
import http.server, sys
class Sink(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()
    def log_message(self, *args): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Sink).serve_forever()
EOF
SINK_PID=$!
trap 'kill "$(cat "$WORK/crest.pid" 2>/dev/null)" "$SINK_PID" 2>/dev/null; rm -rf "$WORK"' EXIT

# one SETTING — a fresh server with that setting's environment, healthz then hot orders.
one() {
  local setting=$1
  unset CREST_OTLP_ENDPOINT OTEL_TRACES_SAMPLER OTEL_TRACES_SAMPLER_ARG
  case $setting in
    all) export CREST_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" ;;
    1pct) export CREST_OTLP_ENDPOINT="http://127.0.0.1:$SINK_PORT" OTEL_TRACES_SAMPLER=parentbased_traceidratio \
            OTEL_TRACES_SAMPLER_ARG=0.01 ;;
  esac
  rm -rf "$WORK/data"
  start_crest "$WORK/data"
  echo "$CREST_PID" > "$WORK/crest.pid"
  local sale; sale=$(create_sale 1000000000)
  echo "$setting $(load_cpu healthz "$CREST_URL/healthz") $(SALE=$sale RUN="$setting$RANDOM" load_cpu orders "$CREST_URL" Benchmarks/lib/order.lua)"
  stop_crest
}

echo "date: $(date -u +%Y-%m-%dT%H:%MZ)  machine: $(nproc) cores, $(free -g | awk '/Mem:/ {print $2}') GiB  wrk -t$THREADS -c$CONNECTIONS -d$DURATION"
echo
echo "| round | tracing | healthz req/s | healthz server µs/req | orders/s | order server µs/order |"
echo "|---|---|---|---|---|---|"
for round in $(seq "$ROUNDS"); do
  for setting in off all 1pct; do
    read -r s _ h_rps h_cpu _ o_rps o_cpu <<<"$(one "$setting")"
    echo "| $round | $s | $h_rps | $h_cpu | $o_rps | $o_cpu |"
  done
done
