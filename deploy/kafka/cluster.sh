#!/usr/bin/env bash
# Runs a three-node Apache Kafka cluster (KRaft; each node broker + controller in one JVM) on
# 127.0.0.1, replicated the way a production cluster is: replication factor 3, min.insync.replicas 2.
#   cluster.sh up    [--port N]          fetch jars if needed, format, start all nodes, wait until ready
#   cluster.sh down  [--port N]          stop every node of the cluster
#   cluster.sh start [--port N] --node I start one node (1-3) again, e.g. after a test killed it
#   cluster.sh pid   [--port N] --node I the process id of a node
#   cluster.sh status [--port N]
# Brokers listen on N, N+1, N+2 and controllers on N+3, N+4, N+5 (N defaults to 19610).
# Env: KAFKA_CLUSTER_DATA (~/.cache/autoglm-mcp/kafka-cluster-<N>), KAFKA_CACHE (jar cache root),
# KAFKA_CLUSTER_HEAP (-Xmx of each node, default 384m), KAFKA_CLUSTER_JAVA_OPTS (appended to the
# JVM options; the nodes compile with C1 only by default, which saves CPU on a small machine).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-up}"; shift || true
port=19610
node=""
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --node) node="$2"; shift 2 ;;
    *) echo "cluster.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=deploy/kafka/jars.sh
source "$here/jars.sh"
root="${KAFKA_CLUSTER_DATA:-$cache_root/kafka-cluster-$port}"
heap="${KAFKA_CLUSTER_HEAP:-384m}"
nodes=(1 2 3)
voters="1@127.0.0.1:$((port + 3)),2@127.0.0.1:$((port + 4)),3@127.0.0.1:$((port + 5))"

broker_port() { echo $((port + $1 - 1)); }
controller_port() { echo $((port + $1 + 2)); }
node_dir() { echo "$root/node$1"; }

write_config() {
  local i="$1" dir; dir="$(node_dir "$i")"
  mkdir -p "$dir/logs"
  cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=$i
controller.quorum.voters=$voters
listeners=PLAINTEXT://127.0.0.1:$(broker_port "$i"),CONTROLLER://127.0.0.1:$(controller_port "$i")
advertised.listeners=PLAINTEXT://127.0.0.1:$(broker_port "$i")
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/logs
num.partitions=4
auto.create.topics.enable=false
default.replication.factor=3
min.insync.replicas=2
unclean.leader.election.enable=false
offsets.topic.replication.factor=3
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=3
transaction.state.log.min.isr=2
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
# Worker groups of the consumer protocol (mcp.groups) may time out a silent worker after 10 s,
# as classic groups do (Kafka's minimum is 45 s).
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
# A killed node is noticed within seconds, not the default 9 s / 30 s.
broker.session.timeout.ms=4000
broker.heartbeat.interval.ms=1000
replica.lag.time.max.ms=6000
num.network.threads=2
num.io.threads=2
num.replica.fetchers=1
background.threads=2
log.flush.interval.messages=9223372036854775807
PROPS
}

java_opts() {
  echo "-Xms128m -Xmx$heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Djava.awt.headless=true -Dlog4j2.configurationFile=$here/log4j2.yaml ${KAFKA_CLUSTER_JAVA_OPTS:-}"
}

alive() {
  local pidfile; pidfile="$(node_dir "$1")/kafka.pid"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

start_node() {
  local i="$1" dir; dir="$(node_dir "$i")"
  if alive "$i"; then return 0; fi
  write_config "$i"
  # A fresh log per start: readiness is the "Kafka Server started" line of this start.
  nohup java -cp "$jars/*" $(java_opts) kafka.Kafka "$dir/server.properties" >"$dir/kafka.log" 2>&1 &
  echo $! >"$dir/kafka.pid"
}

wait_node() {
  local i="$1" dir; dir="$(node_dir "$i")"
  for _ in $(seq 1 900); do
    if ! alive "$i"; then
      echo "kafka cluster: node $i exited during start; last log lines:" >&2
      tail -30 "$dir/kafka.log" >&2; return 1
    fi
    if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$(broker_port "$i")" 2>/dev/null \
        && grep -q "Kafka Server started" "$dir/kafka.log" 2>/dev/null; then
      return 0
    fi
    sleep 0.2
  done
  echo "kafka cluster: node $i not ready after 180s; last log lines:" >&2
  tail -30 "$dir/kafka.log" >&2; return 1
}

up() {
  fetch_jars
  local t0; t0=$(date +%s%N)
  if [ ! -f "$(node_dir 1)/logs/meta.properties" ]; then
    local id; id="$(java -cp "$jars/*" kafka.tools.StorageTool random-uuid)"
    for i in "${nodes[@]}"; do
      write_config "$i"
      java -cp "$jars/*" $(java_opts) kafka.tools.StorageTool format -t "$id" \
        -c "$(node_dir "$i")/server.properties" >"$(node_dir "$i")/format.log" 2>&1 \
        || { cat "$(node_dir "$i")/format.log" >&2; exit 1; }
    done
  fi
  for i in "${nodes[@]}"; do start_node "$i"; done
  for i in "${nodes[@]}"; do wait_node "$i"; done
  echo "kafka cluster: 3 nodes ready on 127.0.0.1:$port-$((port + 2)) in" \
       "$(( ($(date +%s%N) - t0) / 1000000 )) ms (data $root)"
}

stop_node() {
  local pidfile; pidfile="$(node_dir "$1")/kafka.pid"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"
}

down() {
  [ -d "$root" ] || { echo "kafka cluster: not running (no $root)"; return 0; }
  # All at once: a node stopping alone waits for the others to take over its partitions.
  for i in "${nodes[@]}"; do stop_node "$i" & done
  wait
  echo "kafka cluster: stopped"
}

need_node() {
  case "$node" in 1|2|3) ;; *) echo "cluster.sh: --node 1|2|3 is required" >&2; exit 2 ;; esac
}

case "$cmd" in
  up) up ;;
  down) down ;;
  start) need_node; start_node "$node"; wait_node "$node"; echo "kafka cluster: node $node ready" ;;
  pid) need_node; cat "$(node_dir "$node")/kafka.pid" ;;
  status)
    for i in "${nodes[@]}"; do
      if alive "$i"; then echo "node $i: running on 127.0.0.1:$(broker_port "$i")"
      else echo "node $i: stopped"; fi
    done ;;
  *) echo "usage: cluster.sh up|down|start|pid|status [--port N] [--node I]" >&2; exit 2 ;;
esac
