#!/usr/bin/env bash
# Runs a Redis Cluster on 127.0.0.1: three primaries and a replica of each (Debian's redis-server).
#   cluster.sh up   [--port N]            start six nodes on N..N+5, create the cluster, wait for ok
#   cluster.sh down [--port N]            stop every node and forget the cluster
#   cluster.sh start [--port N] --node P  start the node of port P again (it rejoins as a replica)
#   cluster.sh pid  [--port N] --node P   the process id of the node of port P
#   cluster.sh status [--port N]
# N defaults to 17610. Env: REDIS_CLUSTER_DATA (~/.cache/autoglm-mcp/redis-cluster-<N>).
set -euo pipefail
cmd="${1:-up}"; shift || true
port=17610
node=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --node) node="$2"; shift 2 ;;
    *) echo "redis cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done
root="${REDIS_CLUSTER_DATA:-$HOME/.cache/autoglm-mcp/redis-cluster-$port}"
ports=("$port" $((port + 1)) $((port + 2)) $((port + 3)) $((port + 4)) $((port + 5)))

ensure_installed() {
  command -v redis-server >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "redis cluster: installing Debian's redis-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis cluster: redis-server is not on PATH; install it (apt-get install redis-server)" >&2
    exit 1
  fi
}

start_node() {
  local p="$1" dir="$root/$1"
  redis-cli -p "$p" ping >/dev/null 2>&1 && return 0
  mkdir -p "$dir"
  # nodes.conf keeps the node's identity, so a restarted node rejoins its cluster.
  redis-server --port "$p" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
    --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file nodes.conf --cluster-node-timeout 2000 \
    --cluster-replica-validity-factor 0 --cluster-require-full-coverage no
  for _ in $(seq 1 100); do
    redis-cli -p "$p" ping >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "redis cluster: node $p not ready; log:" >&2; tail -20 "$dir/redis.log" >&2; exit 1
}

cluster_ok() {
  local p
  for p in "${ports[@]}"; do
    redis-cli -p "$p" cluster info 2>/dev/null | grep -q "cluster_state:ok" || return 1
  done
  # Every primary has its replica attached (a replica may still be syncing just after create).
  [ "$(redis-cli -p "$port" cluster nodes | grep -c "slave.* connected")" = 3 ]
}

up() {
  ensure_installed
  local p
  for p in "${ports[@]}"; do start_node "$p"; done
  if ! redis-cli -p "$port" cluster info | grep -q "cluster_slots_assigned:16384"; then
    local addresses=()
    for p in "${ports[@]}"; do addresses+=("127.0.0.1:$p"); done
    redis-cli --cluster create "${addresses[@]}" --cluster-replicas 1 --cluster-yes >"$root/create.log" \
      || { cat "$root/create.log" >&2; exit 1; }
  fi
  for _ in $(seq 1 300); do
    if cluster_ok; then
      echo "redis cluster: 3 primaries + 3 replicas ready on 127.0.0.1:$port-$((port + 5))"
      return 0
    fi
    sleep 0.1
  done
  echo "redis cluster: not ok after 30 s" >&2; redis-cli -p "$port" cluster info >&2; exit 1
}

down() {
  local p
  for p in "${ports[@]}"; do redis-cli -p "$p" shutdown nosave >/dev/null 2>&1 || true; done
  rm -rf "$root"
  echo "redis cluster: stopped"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  start) [ -n "$node" ] || { echo "--node PORT is required" >&2; exit 2; }; start_node "$node" ;;
  pid) [ -n "$node" ] || { echo "--node PORT is required" >&2; exit 2; }; cat "$root/$node/redis.pid" ;;
  status) redis-cli -p "$port" cluster nodes ;;
  *) echo "usage: cluster.sh up|down|start|pid|status [--port N] [--node P]" >&2; exit 2 ;;
esac
