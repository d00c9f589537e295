#!/usr/bin/env bash
# A mass notice against a fresh all-in-one Postino (embedded defaults, release build), the
# ARCHITECTURE.md §9 end-to-end scenario: seeds CITIZENS, sends one message each as fast as it goes,
# and prints loadtest's summary plus the CPU time each process spent per message
# (utime+stime from /proc over the mass notice alone, not the seeding), and Postino's peak RSS.
# Extra arguments go to `loadtest seed` (e.g. `--devices 0 --email 0`). BASELINE=5s first
# measures the no-op endpoint with the same generator, for the ratio. RATE=10000 offers that
# many messages/s (open model) instead of as fast as it goes.
# Usage: scripts/bench-mass-notice.sh [CITIZENS] [seed options…]
set -euo pipefail
cd "$(dirname "$0")/.."
CITIZENS=${1:-200000}; shift || true
PORT=18183
source scripts/bench-common.sh

GENERATOR=${GENERATOR:-$BIN/loadtest}   # another loadtest build, to compare generators

start all
"$BIN/loadtest" seed --url http://127.0.0.1:$PORT --citizens "$CITIZENS" --services 1 "$@" \
  --state "$WORK/state.json" | grep seeded
before=$(cpu_ticks "$PID"); thread_ticks "$PID" > "$WORK/threads.before"
if [ -n "${PERF_OUT:-}" ]; then perf record ${PERF_ARGS:--F 499 -g} -p "$PID" -o "$PERF_OUT" 2>/dev/null & PERF=$!; fi
"$GENERATOR" mass-notice --url http://127.0.0.1:$PORT --state "$WORK/state.json" --rate "${RATE:-max}" \
  --connections "${CONNECTIONS:-64}" --baseline "${BASELINE:-0s}" --out "$WORK" ${RUN_ARGS:-} &
LOADTEST=$!
HELPERS+=("$LOADTEST")
# The generator's own CPU, read just before it exits (it waits for the last inbox).
gen=0
while kill -0 "$LOADTEST" 2>/dev/null; do
  gen=$(cpu_ticks "$LOADTEST" 2>/dev/null || echo "$gen"); sleep 0.2
done
wait "$LOADTEST"
after=$(cpu_ticks "$PID"); thread_ticks "$PID" > "$WORK/threads.after"
echo "postino: $(per_message "$before" "$after" "$CITIZENS") µs CPU/message; loadtest: $(per_message 0 "$gen" "$CITIZENS") µs CPU/message"
echo "postino by thread (µs CPU/message):"; per_thread "$WORK/threads.before" "$WORK/threads.after" "$CITIZENS"
echo "postino peak RSS (seeding included): $(awk '/^VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$PID/status")"
stop
if [ -n "${PERF:-}" ]; then wait "$PERF" || true; fi
