#!/usr/bin/env bash
# The roles apart on the production engines, beside those engines' own raw rates, all in
# one run on this machine (issue 18's measurement): Apache Kafka and Apache Cassandra from
# scripts/servers.sh; ingest (with the citizen API), router, inbox, push and email as five
# release-build `postino` processes with nothing shared; then `loadtest seed` and a mass
# notice of one message per citizen as fast as it goes (`--devices 0 --email 0`: the inbox
# path). Then, on the same servers: Kafka's own producer and consumer perf tools on records
# of the size of an accepted message, and the CQL store's raw write of the same rows
# (store/examples/cql_write_rate.rs). Prints loadtest's summary, each process's CPU per
# message, and the raw rates.
# Usage: scripts/bench-roles-apart.sh [CITIZENS]
set -euo pipefail
cd "$(dirname "$0")/.."
CITIZENS=${1:-100000}
PORT=18190
source scripts/bench-common.sh
cargo build -q --release -p store --features scylla,testsuite --example cql_write_rate

export POSTINO_SERVERS_DIR=$WORK/servers
trap 'scripts/servers.sh stop >/dev/null 2>&1 || true; cleanup' EXIT
scripts/servers.sh start kafka
scripts/servers.sh start cassandra
eval "$(scripts/servers.sh env)"

CONFIG=$WORK/postino.toml
cat > "$CONFIG" <<TOML
bus = "kafka://$POSTINO_TEST_KAFKA"
store = "scylla://$POSTINO_TEST_CQL/postino"
secret = "$(python3 -c 'print("5e" * 32)')"
[kafka]
partitions = 6
[scylla]
replication = "simple:1"
TOML
"$BIN/postino" store migrate --config "$CONFIG"
"$BIN/postino" kafka init --config "$CONFIG" | grep -c created | sed 's/$/ topics created/'

PIDS=()
port=$PORT
for role in ingest,citizen router inbox push email; do
  "$SERVER" serve --config "$CONFIG" --roles "$role" --data-dir "$DATA/${role//,/-}" \
    --listen 127.0.0.1:$port --metrics-listen 127.0.0.1:$((port + 100)) &
  PIDS+=("$!"); HELPERS+=("$!")
  until curl -sf http://127.0.0.1:$port/health >/dev/null; do sleep 0.1; done
  port=$((port + 1))
done
"$BIN/loadtest" seed --url http://127.0.0.1:$PORT --citizens "$CITIZENS" --services 1 \
  --devices 0 --email 0 --no-profile 0 --inbox-disabled 0 --service-blocked 0 \
  --state "$WORK/state.json" | grep seeded
JVMS=("$(cat "$POSTINO_SERVERS_DIR/kafka/pid")" "$(cat "$POSTINO_SERVERS_DIR/cassandra/pid")")
declare -A BEFORE
for pid in "${PIDS[@]}" "${JVMS[@]}"; do BEFORE[$pid]=$(cpu_ticks "$pid"); done
"$BIN/loadtest" mass-notice --url http://127.0.0.1:$PORT --state "$WORK/state.json" --rate max \
  --connections "${CONNECTIONS:-64}" --baseline 0s --out "$WORK"
i=0
for role in ingest,citizen router inbox push email; do
  pid=${PIDS[$i]}
  echo "$role: $(per_message "${BEFORE[$pid]}" "$(cpu_ticks "$pid")" "$CITIZENS") µs CPU/message"
  i=$((i + 1))
done
echo "Kafka: $(per_message "${BEFORE[${JVMS[0]}]}" "$(cpu_ticks "${JVMS[0]}")" "$CITIZENS") µs CPU/message"
echo "Cassandra: $(per_message "${BEFORE[${JVMS[1]}]}" "$(cpu_ticks "${JVMS[1]}")" "$CITIZENS") µs CPU/message"
for pid in "${PIDS[@]}"; do kill "$pid"; wait "$pid" 2>/dev/null || true; done

echo "== raw rates of the same servers"
TOOLS=$(scripts/servers.sh classpath kafka-tools 2>/dev/null)
SIZE=${RECORD_BYTES:-900}   # about an accepted message's record on the messages topic
# The broker creates no topic by itself (as Postino's production settings expect).
java -Xmx256m -cp "$TOOLS" org.apache.kafka.tools.TopicCommand --bootstrap-server "$POSTINO_TEST_KAFKA" \
  --create --topic raw-rate --partitions 6 --replication-factor 1 2>/dev/null
java -Xmx512m -cp "$TOOLS" org.apache.kafka.tools.ProducerPerformance --topic raw-rate \
  --num-records "$CITIZENS" --record-size "$SIZE" --throughput -1 \
  --producer-props bootstrap.servers="$POSTINO_TEST_KAFKA" acks=all 2>/dev/null | tail -1
java -Xmx512m -cp "$TOOLS" org.apache.kafka.tools.ConsumerPerformance --topic raw-rate \
  --messages "$CITIZENS" --bootstrap-server "$POSTINO_TEST_KAFKA" 2>/dev/null | tail -2
"${CARGO_TARGET_DIR:-target}/release/examples/cql_write_rate" "$CITIZENS"
