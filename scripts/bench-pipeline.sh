#!/usr/bin/env bash
# The pipeline alone (router + inbox dispatcher), without ingest competing for the cores.
# Starts a release Postino with only the ingest and citizen roles on a fresh data directory,
# seeds CITIZENS with `loadtest seed`, fills the log with MESSAGES with `loadtest ingest`,
# stops it, then starts only the router and inbox roles on the same data and times how long
# they take to drain the log, and prints the CPU time Postino spent per message in each
# phase. Needs python3 (reads the SQLite offsets).
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

count() { python3 - "$DATA" <<'PY'
import sqlite3, sys
log = sqlite3.connect(f"{sys.argv[1]}/log.sqlite")
def committed(topic, group):
    row = log.execute("SELECT committed FROM offsets WHERE topic=? AND grp=?", (topic, group)).fetchone()
    return row[0] if row else 0
def last(topic):
    try:
        return log.execute(f'SELECT coalesce(max(seq), 0) FROM "log/{topic}"').fetchone()[0]
    except sqlite3.OperationalError:
        return 0
inbox = sqlite3.connect(f"{sys.argv[1]}/store.sqlite").execute("SELECT count(*) FROM inbox").fetchone()[0]
done = committed("messages", "router") >= last("messages") and committed("deliveries.inbox", "inbox") >= last("deliveries.inbox")
print(inbox, int(done))
PY
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
