# Sourced by the scripts/bench-*.sh scripts (set PORT first): a release build, fresh data
# and work directories removed on exit, a Postino to start and stop on them, CPU time per
# message, and `queue_jobs`, which fills one delivery topic through a Postino without the
# dispatcher that consumes it.
export POSTINO_MANAGE_KEY=bench-manage-key-0123456789 POSTINO_JWT_SECRET=bench-jwt-secret-0123456789-abcdefgh POSTINO_LOG=warn
# A bench pushes at whatever hour it runs.
export POSTINO_PUSH_QUIET_HOURS=off
# PREBUILT: a directory holding `postino` and `loadtest` built earlier, to bench those
# (and build nothing) while the tree changes.
if [ -z "${PREBUILT:-}" ]; then cargo build -q --release -p postino -p loadtest; fi
BIN=${PREBUILT:-${CARGO_TARGET_DIR:-target}/release}
SERVER=${SERVER:-$BIN/postino}   # another postino build, to compare two builds of it
DATA=$(mktemp -d) WORK=$(mktemp -d)
PID=
HELPERS=()   # other processes to stop on exit
cleanup() {   # runs under `set -e`: a process already gone must not stop the rest
  if [ -n "$PID" ]; then kill "$PID" 2>/dev/null || true; fi
  for helper in "${HELPERS[@]}"; do kill "$helper" 2>/dev/null || true; done
  rm -rf "$DATA" "$WORK"
}
trap cleanup EXIT

# METRICS_LISTEN: where Postino serves its metrics (`off` for nowhere, to compare the cost;
# empty to pass no such option, for a build from before it had one).
start() { local metrics=${METRICS_LISTEN-127.0.0.1:$((PORT + 100))}
          "$SERVER" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT \
            ${metrics:+--metrics-listen "$metrics"} --roles "$1" & PID=$!
          until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.1; done; }
stop() { kill "$PID"; wait "$PID" 2>/dev/null || true; PID=; }

# cpu_ticks PID: the process's user + system CPU so far, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# per_message BEFORE AFTER MESSAGES: µs of CPU per message between two cpu_ticks readings.
per_message() { python3 -c "print(f'{($2 - $1) / $(getconf CLK_TCK) / $3 * 1e6:.1f}')"; }

# The newest offset on TOPIC in the embedded log (its record count: these benches never trim
# a topic they count).
log_count() { "$BIN/postino" log status --data-dir "$DATA" | awk -v t="$1" '$1 == t {n = $3} END {print n + 0}'; }

# queue_jobs TOPIC MESSAGES CITIZENS SEED-OPTION…: seeds CITIZENS (everyone accepting
# everything, plus the options given), sends MESSAGES, and waits until TOPIC holds as many.
queue_jobs() {
  local topic=$1 messages=$2 citizens=$3; shift 3
  start ingest,citizen,router,inbox
  "$BIN/loadtest" seed --url http://127.0.0.1:$PORT --citizens "$citizens" --services 1 \
    --no-profile 0 --inbox-disabled 0 --service-blocked 0 "$@" \
    --state "$WORK/state.json" | grep seeded
  "$BIN/loadtest" ingest --url http://127.0.0.1:$PORT --state "$WORK/state.json" --rate max \
    --connections 64 --baseline 0s --messages "$messages" --out "$WORK" | grep accepted
  while [ "$(log_count "$topic")" -lt "$messages" ]; do sleep 0.5; done
  stop
  echo "jobs queued on $topic: $(log_count "$topic")"
}

# thread_ticks PID: "name ticks" per thread group name (tokio workers summed), for a
# before/after split of where a process's CPU went.
thread_ticks() { for t in /proc/"$1"/task/*/stat; do awk '{sub(/^[0-9]+ \(/, ""); split($0, a, ") "); n=split(a[2], f, " "); print a[1], f[12] + f[13]}' "$t" 2>/dev/null; done | awk '{s[$1]+=$2} END {for (k in s) print k, s[k]}' | sort; }
# per_thread BEFORE-FILE AFTER-FILE MESSAGES: µs of CPU per message by thread name.
per_thread() { join -a2 -e0 -o 0,1.2,2.2 "$1" "$2" | while read -r name b a; do
  echo "  $name $(per_message "$b" "$a" "$3")"; done; }
