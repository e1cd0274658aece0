# Helpers to start and stop a release `crest serve` on a free loopback port (sourced by the benchmarks).
CREST_BIN=${CREST_BIN:-.build/release/crest}
ADMIN_TOKEN=bench-admin-token

# free_port — prints a free TCP port on 127.0.0.1.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_crest DATA_DIR [extra serve flags…] — sets CREST_PID and CREST_URL. Buyer passes are off
# (BUYER_AUTH=off, the default here): the order-path figures stay comparable with the earlier ones,
# and Benchmarks/passes.sh measures what passes add (it starts servers with BUYER_AUTH=on). The
# per-buyer rate limit is off too (`--buyer-rate 0`): these runs measure the write path, and some
# draw their buyers from a small set; a flag given after it wins. The listener's loops run at the
# process's priority (`--listener-nice 0`, LISTENER_NICE to change; `default`: serve's own, 5): the
# load generator shares these cores, and loops below it would lose them to it, which a server
# whose clients are elsewhere does not — the order-path figures stay comparable with the earlier
# ones; Benchmarks/overload.sh runs the default.
start_crest() {
  local dir=$1; shift
  local log="$dir.log"
  local nice=()
  if [ "${LISTENER_NICE:-0}" != default ]; then nice=(--listener-nice "${LISTENER_NICE:-0}"); fi
  "$CREST_BIN" serve --host 127.0.0.1 --port 0 --data-dir "$dir" --admin-token "$ADMIN_TOKEN" \
    --buyer-auth "${BUYER_AUTH:-off}" --buyer-rate 0 --log-level warning "${nice[@]}" "$@" > "$log" 2>&1 &
  CREST_PID=$!
  for _ in $(seq 1 300); do
    local port
    port=$(sed -n 's|.*crest listening on http://127.0.0.1:\([0-9]*\).*|\1|p' "$log" | head -1)
    if [ -n "$port" ]; then CREST_URL="http://127.0.0.1:$port"; return 0; fi
    sleep 0.1
  done
  echo "crest did not start:"; cat "$log"; return 1
}

# start_sim CREST_PORT SECRET LOG — starts `crest psp-sim` on a free port, its webhooks signed with
# SECRET and sent to the Crest that listens (or will) on CREST_PORT; sets SIM_PID and SIM_URL.
start_sim() {
  local port
  port=$(free_port)
  "$CREST_BIN" psp-sim --host 127.0.0.1 --port "$port" --webhook-secret "$2" \
    --webhook-url "http://127.0.0.1:$1/v1/webhooks/provider" > "$3" 2>&1 &
  SIM_PID=$!
  SIM_URL="http://127.0.0.1:$port"
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

# run_wrk NAME URL [lua script] — prints "NAME req/s p50 p99 non2xx" (wrk with $THREADS, $CONNECTIONS, $DURATION).
run_wrk() {
  local name=$1 url=$2 script=${3:-}
  local out
  if [ -n "$script" ]; then
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency -s "$script" "$url")
  else
    out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "$url")
  fi
  local rps p50 p99 bad
  rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
  p50=$(awk '$1=="50%" {print $2}' <<<"$out")
  p99=$(awk '$1=="99%" {print $2}' <<<"$out")
  bad=$(awk '/Non-2xx/ {print $5}' <<<"$out"); bad=${bad:-0}
  echo "$name $rps $p50 $p99 $bad"
}

# server_cpu PID — the process's user + system time so far, in clock ticks.
server_cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# load_cpu NAME URL [lua script] — loads the running server ($CREST_PID) with wrk for $DURATION and
# prints "NAME req/s µs-of-server-CPU-per-request" (CPU from /proc over 8 s inside the load, which
# must last at least 10 s). Writes wrk's output to $WORK/wrk.out. wrk runs at nice LOAD_NICE (default 0).
load_cpu() {
  local name=$1 url=$2 script=${3:-} c0 c1
  local wrk=(nice -n "${LOAD_NICE:-0}" wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION")
  if [ -n "$script" ]; then "${wrk[@]}" -s "$script" "$url" > "$WORK/wrk.out" &
  else "${wrk[@]}" "$url" > "$WORK/wrk.out" & fi
  local wrk_pid=$!
  sleep 1; c0=$(server_cpu "$CREST_PID"); sleep 8; c1=$(server_cpu "$CREST_PID")
  wait "$wrk_pid"
  local rps; rps=$(awk '/Requests\/sec/ {print $2}' "$WORK/wrk.out")
  python3 -c "print('$name', round($rps), round(($c1 - $c0) * 1e6 / $(getconf CLK_TCK) / 8 / $rps, 1))"
}
