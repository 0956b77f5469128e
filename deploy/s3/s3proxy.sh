#!/usr/bin/env bash
# Runs S3Proxy, a real S3-compatible server (filesystem backend), on 127.0.0.1.
#   s3proxy.sh up   [--port N] [--bucket B]   fetch jars if needed, start, wait until ready, create B
#   s3proxy.sh down [--port N]
#   s3proxy.sh status [--port N]
# Env: S3_PORT (9000), S3_BUCKET (autoglm), S3_ACCESS_KEY / S3_SECRET_KEY (autoglm / autoglm-secret),
#      S3_DATA (~/.cache/autoglm-mcp/s3-data-<port>), S3_CACHE (jar cache root).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cmd="${1:-up}"; shift || true
port="${S3_PORT:-9000}"
bucket="${S3_BUCKET:-autoglm}"
while [ $# -gt 0 ]; do
  case "$1" in
    --port) port="$2"; shift 2 ;;
    --bucket) bucket="$2"; shift 2 ;;
    *) echo "s3proxy.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
access_key="${S3_ACCESS_KEY:-autoglm}"
secret_key="${S3_SECRET_KEY:-autoglm-secret}"
cache_root="${S3_CACHE:-$HOME/.cache/autoglm-mcp}"
version="$(sed -n 's:.*<s3proxy.version>\(.*\)</s3proxy.version>.*:\1:p' "$here/pom.xml")"
jars="$cache_root/s3proxy-$version/libs"
data="${S3_DATA:-$cache_root/s3-data-$port}"
pidfile="$data/s3proxy.pid"
logfile="$data/s3proxy.log"
endpoint="http://127.0.0.1:$port"

ready() {
  # Any S3 answer (an anonymous request is refused with 403) means the server is serving.
  local code
  code="$(curl -s -o /dev/null -w '%{http_code}' --max-time 2 "$endpoint/" 2>/dev/null)" || return 1
  [ "$code" != "000" ]
}

fetch_jars() {
  if [ -f "$jars/.complete" ]; then return 0; fi
  echo "s3: fetching S3Proxy $version jars from Maven Central into $jars"
  mkdir -p "$jars"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime
  touch "$jars/.complete"
}

write_config() {
  mkdir -p "$data/blobs"
  cat > "$data/s3proxy.properties" <<PROPS
s3proxy.endpoint=$endpoint
s3proxy.authorization=aws-v2-or-v4
s3proxy.identity=$access_key
s3proxy.credential=$secret_key
jclouds.provider=filesystem-nio2
jclouds.identity=$access_key
jclouds.credential=$secret_key
jclouds.filesystem.basedir=$data/blobs
PROPS
}

create_bucket() {
  # A signed CreateBucket (SigV4, as any S3 client sends it); 409 means it is there already.
  local code empty_sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855
  code="$(curl -s -o "$data/create-bucket.out" -w '%{http_code}' -X PUT \
    -H "x-amz-content-sha256: $empty_sha256" --aws-sigv4 "aws:amz:us-east-1:s3" \
    --user "$access_key:$secret_key" "$endpoint/$bucket")"
  case "$code" in
    200|409) ;;
    *) echo "s3: creating bucket $bucket answered $code:" >&2; cat "$data/create-bucket.out" >&2; exit 1 ;;
  esac
}

up() {
  if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
    create_bucket
    echo "s3: already running on $endpoint (pid $(cat "$pidfile")), bucket $bucket"; return 0
  fi
  fetch_jars
  write_config
  local t0; t0=$(date +%s%N)
  nohup java -Xms64m -Xmx512m -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
    -Dlogback.configurationFile="$here/logback.xml" -cp "$jars/*" org.gaul.s3proxy.Main \
    --properties "$data/s3proxy.properties" >"$logfile" 2>&1 &
  echo $! >"$pidfile"
  for _ in $(seq 1 300); do
    if ! kill -0 "$(cat "$pidfile")" 2>/dev/null; then
      echo "s3: exited during start; last log lines:" >&2; tail -30 "$logfile" >&2; exit 1
    fi
    if ready; then
      create_bucket
      echo "s3: S3Proxy $version ready on $endpoint in $(( ($(date +%s%N) - t0) / 1000000 )) ms, bucket $bucket (log $logfile)"
      return 0
    fi
    sleep 0.2
  done
  echo "s3: not ready after 60s; last log lines:" >&2; tail -30 "$logfile" >&2; exit 1
}

down() {
  [ -f "$pidfile" ] || { echo "s3: not running (no $pidfile)"; return 0; }
  local pid; pid="$(cat "$pidfile")"
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM "$pid"
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid"
  fi
  rm -f "$pidfile"; echo "s3: stopped"
}

case "$cmd" in
  up) up ;;
  down) down ;;
  status) if ready; then echo "s3: ready on $endpoint"; else echo "s3: not ready on $endpoint"; exit 1; fi ;;
  *) echo "usage: s3proxy.sh up|down|status [--port N] [--bucket B]" >&2; exit 2 ;;
esac
