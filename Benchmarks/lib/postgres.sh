# Sourced by the benchmarks on PostgreSQL (after Benchmarks/lib/crest-server.sh).

# pg_bin TOOL — the path of a PostgreSQL tool (on PATH, or the newest under /usr/lib/postgresql).
pg_bin() { command -v "$1" 2>/dev/null || ls /usr/lib/postgresql/*/bin/"$1" | sort -r | head -1; }
# as_pg COMMAND… — runs it as the postgres user when root (PostgreSQL refuses to run as root).
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }

# start_three_nodes NAME — wrk and nginx at hand, the release build (unless SKIP_BUILD), then
# deploy/three-nodes.sh (PostgreSQL with its default durability, three nodes, nginx) started in a
# new directory $WORK with ports picked now, stopped and removed on exit. Sets NODES and OPS (the
# nodes' ports and --ops-ports) and DATABASE_URL.
start_three_nodes() {
  command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk; }
  command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || { apt-get update -qq && apt-get install -y -qq nginx-light; }
  if [ -z "${SKIP_BUILD:-}" ]; then swift build -c release --product crest >/dev/null; fi
  WORK=$(mktemp -d "/tmp/crest-bench-$1.XXXXXX")
  chmod 755 "$WORK"
  export CREST_BIN=$CREST_BIN CREST_DEPLOY_DIR=$WORK/deploy CREST_ADMIN_TOKEN=$ADMIN_TOKEN CREST_LOG_LEVEL=warning
  # As start_crest's servers (Benchmarks/lib/crest-server.sh): buyers named in the body, no
  # per-buyer rate limit — these measure the write path. (The nodes of deploy/three-nodes.sh require
  # buyer passes; with them every attempt of order.lua was answered 401 and the "orders/s" were refusals.)
  export CREST_BUYER_AUTH=off CREST_BUYER_RATE=0
  export CREST_LB_PORT=$(free_port) CREST_PG_PORT=$(free_port)
  export CREST_NODE_PORTS="$(free_port) $(free_port) $(free_port)"
  export CREST_OPS_PORTS="$(free_port) $(free_port) $(free_port)"
  trap 'deploy/three-nodes.sh stop >/dev/null 2>&1 || true; rm -rf "$WORK"' EXIT
  deploy/three-nodes.sh start >/dev/null
  read -r -a NODES <<< "$CREST_NODE_PORTS"
  read -r -a OPS <<< "$CREST_OPS_PORTS"
  DATABASE_URL="postgres://crest@127.0.0.1:$CREST_PG_PORT/crest?sslmode=disable"
}
