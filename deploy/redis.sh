#!/usr/bin/env bash
# Runs redis-server on 127.0.0.1; installs Debian's redis-server when it is missing and we are root.
#   redis.sh up [--port N]   |   redis.sh down [--port N]
# Persistence is off on purpose for local runs: Redis is a projection of Kafka, and after a
# restart `autoglm replay` rebuilds it (the README's "Losing Redis" recommends it on in production).
set -euo pipefail
cmd="${1:-up}"; shift || true
port="${REDIS_PORT:-6379}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    *) echo "redis.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
dir="${REDIS_DATA:-$HOME/.cache/autoglm-mcp/redis-$port}"

ensure_installed() {
  command -v redis-server >/dev/null && return 0
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "redis: installing Debian's redis-server"
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "redis: redis-server is not on PATH; install it (apt-get install redis-server)" >&2; exit 1
  fi
}

case "$cmd" in
  up)
    ensure_installed
    if redis-cli -p "$port" ping >/dev/null 2>&1; then echo "redis: already running on 127.0.0.1:$port"; exit 0; fi
    mkdir -p "$dir"
    redis-server --port "$port" --bind 127.0.0.1 --dir "$dir" --daemonize yes \
      --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" --save "" --appendonly no
    for _ in $(seq 1 100); do
      redis-cli -p "$port" ping >/dev/null 2>&1 && { echo "redis: ready on 127.0.0.1:$port"; exit 0; }
      sleep 0.1
    done
    echo "redis: not ready; log:" >&2; tail -20 "$dir/redis.log" >&2; exit 1 ;;
  down)
    redis-cli -p "$port" shutdown nosave >/dev/null 2>&1 || true; echo "redis: stopped" ;;
  *) echo "usage: redis.sh up|down [--port N]" >&2; exit 2 ;;
esac
