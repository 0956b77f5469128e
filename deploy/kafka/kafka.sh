#!/usr/bin/env bash
# Runs one real Apache Kafka node (KRaft, broker+controller in one JVM) on 127.0.0.1.
#   kafka.sh up   [--port N] [--data DIR]   fetch jars if needed, format storage, start, wait until ready
#   kafka.sh down [--data DIR]              stop the node started with that data dir
#   kafka.sh status [--port N]
# Env: KAFKA_PORT (9092), KAFKA_DATA (~/.cache/autoglm-mcp/kafka-data-<port>), KAFKA_CACHE (jar cache root),
#      KAFKA_JAVA_OPTS (more JVM options, after the defaults), KAFKA_GC_OPTS (the collector and its
#      young generation, ZGC below by default; e.g. -XX:+UseG1GC replaces it), KAFKA_PROPS (more
#      server.properties lines, after the defaults: a later line wins). Pauses go to $data/gc.log.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-up}"; shift || true
port="${KAFKA_PORT:-9092}"
data="${KAFKA_DATA:-}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --data) data="$2"; shift 2 ;;
    *) echo "kafka.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
# shellcheck source=deploy/kafka/jars.sh
source "$here/jars.sh"
data="${data:-$cache_root/kafka-data-$port}"
controller_port=$((port + 1))
pidfile="$data/kafka.pid"
logfile="$data/kafka.log"

ready() {
  # An open port is not enough: the node is ready once it logged that the server started.
  timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$port" 2>/dev/null || return 1
  grep -q "Kafka Server started" "$logfile" 2>/dev/null
}

write_config() {
  mkdir -p "$data/logs"
  cat > "$data/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller_port
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller_port
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$data/logs
num.partitions=4
auto.create.topics.enable=false
offsets.topic.replication.factor=1
offsets.topic.num.partitions=8
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
transaction.state.log.num.partitions=8
group.initial.rebalance.delay.ms=0
# Worker groups of the consumer protocol (mcp.groups) may time out a silent worker after 10 s,
# as classic groups do, and hear of a new assignment within 1 s; Kafka's minimum session is 45 s,
# and under it kafka.group_protocol auto keeps the workers on the classic protocol.
group.consumer.min.session.timeout.ms=6000
group.consumer.session.timeout.ms=10000
group.consumer.min.heartbeat.interval.ms=500
group.consumer.heartbeat.interval.ms=1000
transaction.abort.timed.out.transaction.cleanup.interval.ms=5000
log.flush.interval.messages=9223372036854775807
# The log cleaner (compacted topics) keeps its key map in one heap buffer, 128 MiB by default:
# on a 1 GiB heap that live buffer kept G1 marking and collecting every second or two, 10-30 ms
# pauses that every request in flight waited out. 16 MiB holds ~700k keys per cleaning pass.
log.cleaner.dedupe.buffer.size=16777216
PROPS
  if [ -n "${KAFKA_PROPS:-}" ]; then printf '%s\n' "$KAFKA_PROPS" >>"$data/server.properties"; fi
}

# ZGC: its pauses stay under a millisecond, where G1's young collections (a 600 MiB young
# generation) stopped the broker for 28-110 ms every 5-15 s, and every request in flight
# waited one out. At 1,000 tasks/s end to end a pause lands in the p99 of every window it falls
# in; alternated with G1 in one session (README, footnote 2), ZGC took the 1,000/s long polls'
# p50 / p99 from 129-215 / 289-435 ms to 38-89 / 145-254 ms and 100/s from 9-12 / 31-36 ms to
# 7-9 / 17-22 ms, at the same broker CPU. KAFKA_GC_OPTS replaces it (e.g. G1 as it was:
# "-Xmn600m -XX:+UseG1GC -XX:MaxGCPauseMillis=20").
java_opts() {
  local gc="${KAFKA_GC_OPTS:--XX:+UseZGC}"
  echo "-Xms1g -Xmx1g $gc -Xlog:gc:file=$data/gc.log:uptime,level:filecount=2,filesize=10m -Djava.awt.headless=true -Dlog4j2.configurationFile=$here/log4j2.yaml ${KAFKA_JAVA_OPTS:-}"
}

up() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    echo "kafka: already running on 127.0.0.1:$port (pid $(cat "$pidfile"))"; return 0
  fi
  fetch_jars
  write_config
  local cp="$jars/*"
  if [ ! -f "$data/logs/meta.properties" ]; then
    java -cp "$cp" $(java_opts) kafka.tools.StorageTool format \
      -t "$(java -cp "$cp" kafka.tools.StorageTool random-uuid)" \
      -c "$data/server.properties" >"$data/format.log" 2>&1 \
      || { cat "$data/format.log" >&2; exit 1; }
  fi
  local t0; t0=$(date +%s%N)
  nohup java -cp "$cp" $(java_opts) kafka.Kafka "$data/server.properties" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 600); do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "kafka: exited during start; last log lines:" >&2; tail -30 "$logfile" >&2; exit 1
    fi
    if ready; then
      echo "kafka: Apache Kafka $version ready on 127.0.0.1:$port in $(( ($(date +%s%N) - t0) / 1000000 )) ms (log $logfile)"
      return 0
    fi
    sleep 0.2
  done
  echo "kafka: not ready after 120s; last log lines:" >&2; tail -30 "$logfile" >&2; exit 1
}

down() {
  [ -f "$pidfile" ] || { echo "kafka: not running (no $pidfile)"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"; echo "kafka: stopped"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) if ready; then echo "kafka: ready on 127.0.0.1:$port"; else echo "kafka: not ready on 127.0.0.1:$port"; exit 1; fi ;;
  *) echo "usage: kafka.sh up|down|status [--port N] [--data DIR]" >&2; exit 2 ;;
esac
