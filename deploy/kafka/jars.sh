# Sourced by kafka.sh and cluster.sh: where the Kafka jars of pom.xml's version are cached, and
# `fetch_jars`, which copies them from Maven Central once. Needs `here` (this folder).
cache_root="${KAFKA_CACHE:-$HOME/.cache/autoglm-mcp}"
version="$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$here/pom.xml")"
jars="$cache_root/kafka-$version/libs"

fetch_jars() {
  if [ -f "$jars/.complete" ]; then return 0; fi
  echo "kafka: fetching Apache Kafka $version jars from Maven Central into $jars"
  mkdir -p "$jars"
  mvn -q -B -f "$here/pom.xml" dependency:copy-dependencies \
      -DoutputDirectory="$jars" -DincludeScope=runtime
  touch "$jars/.complete"
}
