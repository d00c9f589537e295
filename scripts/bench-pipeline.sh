#!/usr/bin/env bash
# The pipeline alone (router + inbox dispatcher), without ingest competing for the cores.
# Starts a release Postino with only the ingest and citizen roles on a fresh data directory,
# seeds CITIZENS with `loadtest seed`, fills the log with MESSAGES with `loadtest ingest`,
# stops it, then starts only the router and inbox roles on the same data and times how long
# they take to drain the log, and prints the CPU time Postino spent per message in each
# phase. Needs python3 (counts the inbox rows in store.sqlite).
# Usage: scripts/bench-pipeline.sh [MESSAGES] [CITIZENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-100000} CITIZENS=${2:-100000}
PORT=18182
source scripts/bench-common.sh

start ingest,citizen
"$BIN/loadtest" seed --url http://127.0.0.1:$PORT --citizens "$CITIZENS" --state "$WORK/state.json" | grep seeded
"$BIN/loadtest" ingest --url http://127.0.0.1:$PORT --state "$WORK/state.json" --rate max \
  --connections 64 --baseline 0s --messages "$MESSAGES" --out "$WORK" | grep accepted &
c0=$(cpu_ticks "$PID")
wait $!
echo "ingest: $(per_message "$c0" "$(cpu_ticks "$PID")" "$MESSAGES") µs CPU/message (Postino)"
stop

# Inbox rows so far, and 1 once the router and the inbox have committed everything.
count() {
  local inbox done
  inbox=$(python3 -c "import sqlite3, sys; print(sqlite3.connect(sys.argv[1]).execute('SELECT count(*) FROM inbox').fetchone()[0])" "$DATA/store.sqlite")
  done=$("$BIN/postino" log status --data-dir "$DATA" | awk '($1 == "messages" && $4 == "router") || ($1 == "deliveries.inbox" && $4 == "inbox") {n++; if ($6 != 0) busy = 1} END {print (n == 2 && !busy) ? 1 : 0}')
  echo "$inbox $done"
}
read -r before _ < <(count)
t0=$(date +%s.%N)
start router,inbox
c0=$(cpu_ticks "$PID")
while read -r _ done < <(count) && [ "$done" != 1 ]; do sleep 0.2; done
t1=$(date +%s.%N)
c1=$(cpu_ticks "$PID")
stop
read -r after _ < <(count)
python3 -c "d=$t1-$t0; n=$after-$before; print(f'pipeline alone: {n} inbox writes in {d:.1f} s = {n/d:.0f}/s')"
echo "pipeline: $(per_message "$c0" "$c1" "$MESSAGES") µs CPU/message"
