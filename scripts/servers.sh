#!/usr/bin/env bash
# The real servers Postino's tests (and a person trying Postino) run against, on 127.0.0.1:
#   kafka      Apache Kafka 4.x, KRaft mode, one node (broker and controller), heap 512 MiB
#   cassandra  Apache Cassandra 5.0, one node, heap 1 GiB (the CQL server the ScyllaDB store
#              is exercised against: no ScyllaDB server can be had on these machines)
# Each is resolved from Maven Central once (its jars cached under ~/.cache/postino/servers)
# and started on free ports with a scratch data directory.
#
# Usage:
#   scripts/servers.sh start kafka|cassandra   starts it, waits until it answers, prints its
#                                              address and the variable naming it
#   scripts/servers.sh stop [kafka|cassandra]  stops it (both when none is named) and removes
#                                              its scratch directory
#   scripts/servers.sh env                     prints the variables of the running ones
#                                              (POSTINO_TEST_KAFKA, POSTINO_TEST_CQL), to eval
#   scripts/servers.sh classpath kafka-tools   prints the classpath of Kafka's own tools
#                                              (kafka-producer-perf-test and kin), fetched
#                                              once like the servers: for the benchmarks
# Needs java 17 and mvn. POSTINO_SERVERS_DIR moves the running servers' state (default
# /tmp/postino-servers).
set -euo pipefail

KAFKA_VERSION=4.1.1
CASSANDRA_VERSION=5.0.6
CACHE=${POSTINO_CACHE:-$HOME/.cache/postino}/servers
RUN=${POSTINO_SERVERS_DIR:-/tmp/postino-servers}

die() { echo "servers.sh: $*" >&2; exit 1; }

# resolve NAME GROUP ARTIFACT VERSION: the jars of ARTIFACT and its runtime dependencies in
# $CACHE/NAME-VERSION/lib, fetched with Maven the first time.
resolve() {
  local name=$1 group=$2 artifact=$3 version=$4
  local dir=$CACHE/$name-$version
  if [ -f "$dir/lib/.complete" ]; then echo "$dir/lib"; return; fi
  command -v mvn >/dev/null || die "mvn is needed to fetch $name (apt-get install maven)"
  mkdir -p "$dir"
  cat > "$dir/pom.xml" <<POM
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>postino.servers</groupId>
  <artifactId>$name</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>$group</groupId>
      <artifactId>$artifact</artifactId>
      <version>$version</version>
    </dependency>
  </dependencies>
</project>
POM
  echo "servers.sh: fetching $group:$artifact:$version and its dependencies with Maven" >&2
  (cd "$dir" && mvn -q -B -Dstyle.color=never dependency:copy-dependencies -DoutputDirectory=lib -DincludeScope=runtime >&2) \
    || die "Maven could not resolve $group:$artifact:$version"
  touch "$dir/lib/.complete"
  echo "$dir/lib"
}

# free_port: a port nothing listens on now.
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# wait_up PORT PID: 0 once PORT accepts connections, 1 if the process died first, 2 after
# 120 s.
wait_up() {
  local port=$1 pid=$2
  for _ in $(seq 1 600); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    kill -0 "$pid" 2>/dev/null || return 1
    sleep 0.2
  done
  return 2
}

# wait_for PORT PID NAME LOG: until PORT accepts connections, or the process died, or 120 s.
wait_for() {
  local port=$1 pid=$2 name=$3 log=$4 outcome=0
  wait_up "$port" "$pid" || outcome=$?
  case $outcome in
    0) return 0 ;;
    1) tail -n 30 "$log" >&2; die "$name exited while starting (log: $log)" ;;
    *) tail -n 30 "$log" >&2; die "$name did not answer on 127.0.0.1:$port within 120 s (log: $log)" ;;
  esac
}

start_kafka() {
  local lib dir port controller attempt outcome
  lib=$(resolve kafka org.apache.kafka kafka_2.13 "$KAFKA_VERSION")
  dir=$RUN/kafka
  # The ports are free when picked, not when the JVM binds them seconds later (other
  # servers start meanwhile, and Kafka logs nothing of it without an SLF4J binding): a
  # broker that dies while starting is started again on fresh ports, twice at most.
  for attempt in 1 2 3; do
    rm -rf "$dir"; mkdir -p "$dir/data"
    port=$(free_port); controller=$(free_port)
    cat > "$dir/server.properties" <<PROPS
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$controller
listeners=PLAINTEXT://127.0.0.1:$port,CONTROLLER://127.0.0.1:$controller
advertised.listeners=PLAINTEXT://127.0.0.1:$port
controller.listener.names=CONTROLLER
listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT
inter.broker.listener.name=PLAINTEXT
log.dirs=$dir/data
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
group.initial.rebalance.delay.ms=0
num.partitions=1
auto.create.topics.enable=false
PROPS
    local cluster
    cluster=$(java -cp "$lib/*" kafka.tools.StorageTool random-uuid 2>/dev/null)
    java -cp "$lib/*" kafka.tools.StorageTool format -t "$cluster" -c "$dir/server.properties" \
      > "$dir/format.log" 2>&1 || { cat "$dir/format.log" >&2; die "cannot format Kafka's log directory"; }
    nohup java -Xms256m -Xmx512m -XX:+UseSerialGC -cp "$lib/*" kafka.Kafka "$dir/server.properties" \
      > "$dir/kafka.log" 2>&1 &
    echo $! > "$dir/pid"
    outcome=0
    wait_up "$port" "$(cat "$dir/pid")" || outcome=$?
    if [ "$outcome" = 1 ] && [ "$attempt" -lt 3 ]; then
      echo "servers.sh: Kafka exited while starting on ports $port/$controller; again on fresh ports" >&2
      continue
    fi
    wait_for "$port" "$(cat "$dir/pid")" Kafka "$dir/kafka.log"
    break
  done
  echo "127.0.0.1:$port" > "$dir/address"
  echo "Kafka $KAFKA_VERSION on 127.0.0.1:$port (POSTINO_TEST_KAFKA=127.0.0.1:$port)"
}

start_cassandra() {
  local lib dir native storage jmx
  lib=$(resolve cassandra org.apache.cassandra cassandra-all "$CASSANDRA_VERSION")
  dir=$RUN/cassandra; rm -rf "$dir"; mkdir -p "$dir/data"
  native=$(free_port); storage=$(free_port); jmx=$(free_port)
  cat > "$dir/cassandra.yaml" <<YAML
cluster_name: postino-test
num_tokens: 1
partitioner: org.apache.cassandra.dht.Murmur3Partitioner
data_file_directories: [$dir/data/data]
commitlog_directory: $dir/data/commitlog
saved_caches_directory: $dir/data/saved_caches
hints_directory: $dir/data/hints
cdc_raw_directory: $dir/data/cdc_raw
commitlog_sync: periodic
commitlog_sync_period: 10000ms
seed_provider:
  - class_name: org.apache.cassandra.locator.SimpleSeedProvider
    parameters:
      - seeds: "127.0.0.1:$storage"
listen_address: 127.0.0.1
rpc_address: 127.0.0.1
storage_port: $storage
native_transport_port: $native
start_native_transport: true
endpoint_snitch: SimpleSnitch
authenticator: AllowAllAuthenticator
authorizer: AllowAllAuthorizer
auto_snapshot: false
YAML
  cat > "$dir/logback.xml" <<'XML'
<configuration>
  <appender name="STDOUT" class="ch.qos.logback.core.ConsoleAppender">
    <encoder><pattern>%d{HH:mm:ss.SSS} %-5level %logger{36} - %msg%n</pattern></encoder>
  </appender>
  <root level="WARN"><appender-ref ref="STDOUT"/></root>
  <logger name="org.apache.cassandra.service.CassandraDaemon" level="INFO"/>
</configuration>
XML
  # What Cassandra's own jvm17-server.options opens up for Java 17.
  local opens=()
  for p in java.base/jdk.internal.misc java.base/jdk.internal.ref java.base/sun.nio.ch \
           java.management.rmi/com.sun.jmx.remote.internal.rmi java.rmi/sun.rmi.registry \
           java.rmi/sun.rmi.server java.sql/java.sql; do
    opens+=("--add-exports=$p=ALL-UNNAMED")
  done
  for p in java.base/java.lang.module java.base/jdk.internal.loader java.base/jdk.internal.ref \
           java.base/jdk.internal.reflect java.base/jdk.internal.math java.base/jdk.internal.module \
           java.base/jdk.internal.util.jar jdk.management/com.sun.management.internal \
           java.base/sun.nio.ch java.base/java.io java.base/java.nio java.base/java.util.concurrent \
           java.base/java.util java.base/java.util.concurrent.atomic java.base/java.lang \
           java.base/java.math java.base/java.lang.reflect java.base/java.net; do
    opens+=("--add-opens=$p=ALL-UNNAMED")
  done
  nohup java "${opens[@]}" -Djdk.attach.allowAttachSelf=true -Xms1g -Xmx1g -Xss256k \
    -XX:+UseG1GC -XX:+ExitOnOutOfMemoryError \
    -Dcassandra.config="file://$dir/cassandra.yaml" -Dcassandra-foreground=yes \
    -Dlogback.configurationFile="$dir/logback.xml" -Dcassandra.jmx.local.port="$jmx" \
    -Dcassandra.skip_wait_for_gossip_to_settle=0 -Dcassandra.ring_delay_ms=100 \
    -Dcassandra.storagedir="$dir/data" \
    -cp "$lib/*" org.apache.cassandra.service.CassandraDaemon > "$dir/cassandra.log" 2>&1 &
  echo $! > "$dir/pid"
  wait_for "$native" "$(cat "$dir/pid")" Cassandra "$dir/cassandra.log"
  echo "127.0.0.1:$native" > "$dir/address"
  echo "Cassandra $CASSANDRA_VERSION on 127.0.0.1:$native (POSTINO_TEST_CQL=127.0.0.1:$native)"
}

stop_one() {
  local dir=$RUN/$1
  [ -f "$dir/pid" ] || return 0
  local pid; pid=$(cat "$dir/pid")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}

case "${1:-}" in
  start)
    case "${2:-}" in
      kafka) start_kafka ;;
      cassandra) start_cassandra ;;
      *) die "start what? kafka or cassandra" ;;
    esac ;;
  stop)
    case "${2:-}" in
      kafka|cassandra) stop_one "$2" ;;
      "") stop_one kafka; stop_one cassandra ;;
      *) die "stop what? kafka or cassandra" ;;
    esac ;;
  classpath)
    case "${2:-}" in
      kafka-tools) echo "$(resolve kafka-tools org.apache.kafka kafka-tools "$KAFKA_VERSION")/*" ;;
      *) die "classpath of what? kafka-tools" ;;
    esac ;;
  env)
    [ -f "$RUN/kafka/address" ] && echo "export POSTINO_TEST_KAFKA=$(cat "$RUN/kafka/address")"
    [ -f "$RUN/cassandra/address" ] && echo "export POSTINO_TEST_CQL=$(cat "$RUN/cassandra/address")"
    true ;;
  *) die "usage: scripts/servers.sh start kafka|cassandra | stop [kafka|cassandra] | env | classpath kafka-tools" ;;
esac
