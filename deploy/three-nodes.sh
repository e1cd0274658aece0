#!/usr/bin/env bash
# Three Crest nodes on one PostgreSQL behind nginx, all on 127.0.0.1, for a local try.
#
#   deploy/three-nodes.sh start   # PostgreSQL, `crest migrate`, three `crest serve`, nginx
#   deploy/three-nodes.sh status  # what runs, and the URL
#   deploy/three-nodes.sh stop    # stops everything it started (the data stays in $CREST_DEPLOY_DIR)
#
# Environment (defaults in brackets): CREST_DEPLOY_DIR [/tmp/crest-deploy], CREST_BIN [builds and
# uses .build/release/crest], CREST_LB_PORT [8080], CREST_NODE_PORTS ["8081 8082 8083"],
# CREST_LB_OPS_PORT [9080: the control plane through nginx — the provider's webhooks, /healthz,
# /readyz], CREST_OPS_PORTS ["9081 9082 9083": each node's --ops-port, for probes and scrapes],
# CREST_PG_PORT [54329], CREST_ADMIN_TOKEN [generated once, kept in $CREST_DEPLOY_DIR/admin-token],
# CREST_BUYER_PASS_SECRETS [the shop's HS256 secret(s), comma-separated; generated once, kept in
# $CREST_DEPLOY_DIR/buyer-pass-secret].
# Needs PostgreSQL 15 (initdb, pg_ctl, psql) and nginx (Debian: postgresql-15 nginx-light).
set -euo pipefail
cd "$(dirname "$0")/.."

DIR=${CREST_DEPLOY_DIR:-/tmp/crest-deploy}
LB_PORT=${CREST_LB_PORT:-8080}
read -r -a NODE_PORTS <<< "${CREST_NODE_PORTS:-8081 8082 8083}"
LB_OPS_PORT=${CREST_LB_OPS_PORT:-9080}
read -r -a OPS_PORTS <<< "${CREST_OPS_PORTS:-9081 9082 9083}"
PG_PORT=${CREST_PG_PORT:-54329}
DATABASE_URL="postgres://crest@127.0.0.1:$PG_PORT/crest?sslmode=disable"

pg_bin() {
  local tool=$1
  if command -v "$tool" >/dev/null 2>&1; then command -v "$tool"; return; fi
  ls /usr/lib/postgresql/*/bin/"$tool" 2>/dev/null | sort -r | head -1
}

# PostgreSQL refuses to run as root: as root, its commands run as the `postgres` user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

crest_bin() {
  if [ -n "${CREST_BIN:-}" ]; then echo "$CREST_BIN"; return; fi
  swift build -c release --product crest >&2
  echo .build/release/crest
}

wait_http() {  # URL — waits until it answers 200
  for _ in $(seq 1 300); do
    if curl -sf -o /dev/null "$1"; then return 0; fi
    sleep 0.1
  done
  echo "no answer from $1" >&2
  return 1
}

start() {
  local crest
  crest=$(crest_bin)
  trap 'echo "start failed; stopping what did start" >&2; stop' ERR
  mkdir -p "$DIR"
  if [ "$(id -u)" = 0 ]; then chown postgres "$DIR"; fi

  if [ ! -d "$DIR/pg" ]; then
    as_pg "$(pg_bin initdb)" -D "$DIR/pg" -U crest --auth=trust -E UTF8 >/dev/null
  fi
  as_pg "$(pg_bin pg_ctl)" -D "$DIR/pg" -l "$DIR/postgres.log" -w \
    -o "-p $PG_PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$DIR -c max_connections=200" start >/dev/null
  "$(pg_bin psql)" "postgres://crest@127.0.0.1:$PG_PORT/postgres?sslmode=disable" -qAt \
    -c "SELECT 1 FROM pg_database WHERE datname = 'crest'" | grep -q 1 ||
    "$(pg_bin psql)" "postgres://crest@127.0.0.1:$PG_PORT/postgres?sslmode=disable" -q -c "CREATE DATABASE crest"
  "$crest" migrate --database-url "$DATABASE_URL"

  if [ -z "${CREST_ADMIN_TOKEN:-}" ] && [ ! -f "$DIR/admin-token" ]; then
    head -c 24 /dev/urandom | base64 | tr -d '/+=' > "$DIR/admin-token"
  fi
  local token=${CREST_ADMIN_TOKEN:-$(cat "$DIR/admin-token")}
  # Every node verifies the same buyer passes: one shared secret (the nodes' own data directories
  # would each generate another).
  if [ -z "${CREST_BUYER_PASS_SECRETS:-}" ] && [ ! -f "$DIR/buyer-pass-secret" ]; then
    head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$DIR/buyer-pass-secret"
  fi
  local passes=${CREST_BUYER_PASS_SECRETS:-$(cat "$DIR/buyer-pass-secret")}

  # Each node also listens on its --ops-port: the control plane on a thread of its own, which a
  # crowd on the main port does not delay.
  local index=0
  for port in "${NODE_PORTS[@]}"; do
    CREST_BUYER_PASS_SECRETS="$passes" \
      "$crest" serve --host 127.0.0.1 --port "$port" --ops-port "${OPS_PORTS[$index]}" \
      --database-url "$DATABASE_URL" --admin-token "$token" --data-dir "$DIR/node$((index + 1))" \
      --log-level "${CREST_LOG_LEVEL:-notice}" > "$DIR/node$((index + 1)).log" 2>&1 &
    echo $! > "$DIR/node$((index + 1)).pid"
    index=$((index + 1))
  done
  for port in "${OPS_PORTS[@]}"; do wait_http "http://127.0.0.1:$port/readyz"; done

  sed -e "s|@PREFIX@|$DIR|g" -e "s|@LISTEN@|127.0.0.1:$LB_PORT|g" -e "s|@LISTEN_OPS@|127.0.0.1:$LB_OPS_PORT|g" \
    -e "s|@NODE1@|127.0.0.1:${NODE_PORTS[0]}|g" -e "s|@NODE2@|127.0.0.1:${NODE_PORTS[1]}|g" \
    -e "s|@NODE3@|127.0.0.1:${NODE_PORTS[2]}|g" -e "s|@OPS1@|127.0.0.1:${OPS_PORTS[0]}|g" \
    -e "s|@OPS2@|127.0.0.1:${OPS_PORTS[1]}|g" -e "s|@OPS3@|127.0.0.1:${OPS_PORTS[2]}|g" \
    deploy/nginx.conf.template > "$DIR/nginx.conf"
  nginx -p "$DIR" -c "$DIR/nginx.conf"
  wait_http "http://127.0.0.1:$LB_PORT/readyz"
  wait_http "http://127.0.0.1:$LB_OPS_PORT/readyz"
  echo "Crest: http://127.0.0.1:$LB_PORT (nginx) → nodes on ports ${NODE_PORTS[*]}; PostgreSQL: $DATABASE_URL"
  echo "control plane: http://127.0.0.1:$LB_OPS_PORT (nginx: the provider's webhooks, /healthz, /readyz) → the nodes' --ops-port ${OPS_PORTS[*]} (probes and /metrics of each node)"
  echo "admin token: $token"
  echo "buyer passes: CREST_BUYER_PASS_SECRETS=<the secret in $DIR/buyer-pass-secret> $crest buyer-pass <buyer>"
  echo "stop with: $0 stop"
}

stop() {
  if [ -f "$DIR/nginx.pid" ]; then nginx -p "$DIR" -c "$DIR/nginx.conf" -s quit 2>/dev/null || true; fi
  for pidfile in "$DIR"/node*.pid; do
    [ -f "$pidfile" ] || continue
    local pid
    pid=$(cat "$pidfile")
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    rm -f "$pidfile"
  done
  if [ -f "$DIR/pg/postmaster.pid" ]; then as_pg "$(pg_bin pg_ctl)" -D "$DIR/pg" -m fast -w stop >/dev/null; fi
  echo "stopped (data in $DIR)"
}

status() {
  for pidfile in "$DIR"/node*.pid; do
    [ -f "$pidfile" ] || continue
    if kill -0 "$(cat "$pidfile")" 2>/dev/null; then echo "$(basename "$pidfile" .pid): running"; else echo "$(basename "$pidfile" .pid): dead"; fi
  done
  curl -sf "http://127.0.0.1:$LB_PORT/readyz" && echo " ← http://127.0.0.1:$LB_PORT" || echo "nginx: no answer on $LB_PORT"
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
