# Helpers to start and stop a release `crest serve` on a free loopback port (sourced by the benchmarks).
CREST_BIN=${CREST_BIN:-.build/release/crest}
ADMIN_TOKEN=bench-admin-token

# start_crest DATA_DIR [extra serve flags…] — sets CREST_PID and CREST_URL.
start_crest() {
  local dir=$1; shift
  local log="$dir.log"
  "$CREST_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$dir" --admin-token "$ADMIN_TOKEN" \
    --log-level warning "$@" > "$log" 2>&1 &
  CREST_PID=$!
  for _ in $(seq 1 300); do
    local port
    port=$(sed -n 's|.*crest listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | head -1)
    if [ -n "$port" ]; then CREST_URL="http://127.0.0.1:$port"; return 0; fi
    sleep 0.1
  done
  echo "crest did not start:"; cat "$log"; return 1
}

stop_crest() {
  kill -TERM "$CREST_PID" 2>/dev/null || true
  wait "$CREST_PID" 2>/dev/null || true
}

# create_sale STOCK — prints the new sale's id.
create_sale() {
  curl -sf -X POST "$CREST_URL/v1/sales" -H "Authorization: Bearer $ADMIN_TOKEN" \
    -d "{\"sku\":\"BENCH\",\"title\":\"Benchmark\",\"price\":{\"amount\":100,\"currency\":\"CNY\"},\"stock\":$1}" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])'
}
