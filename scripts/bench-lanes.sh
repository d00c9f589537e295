#!/usr/bin/env bash
# Whether a campaign delays one-off messages (issue "Campaigns", priority lanes): against a
# fresh all-in-one Postino (embedded defaults, release build), seeds CITIZENS, then runs
# `loadtest lanes`: one-off messages at SINGLE_RATE/s (default 20) on the idle Postino for
# IDLE (default 10s), then again while a campaign to every citizen goes through the bulk API
# (BULK items a call, default 1000; BULK_CONNECTIONS calls in flight, default 4). Extra
# arguments go to `loadtest seed`.
# Usage: scripts/bench-lanes.sh [CITIZENS] [seed options…]
set -euo pipefail
cd "$(dirname "$0")/.."
CITIZENS=${1:-200000}; shift || true
PORT=18184
source scripts/bench-common.sh

start all
"$BIN/loadtest" seed --url http://127.0.0.1:$PORT --citizens "$CITIZENS" --services 1 "$@" \
  --state "$WORK/state.json" | grep seeded
"$BIN/loadtest" lanes --url http://127.0.0.1:$PORT --state "$WORK/state.json" \
  --single-rate "${SINGLE_RATE:-20}" --idle "${IDLE:-10s}" --bulk "${BULK:-1000}" \
  --bulk-connections "${BULK_CONNECTIONS:-4}" --out "$WORK"
echo "postino peak RSS (seeding included): $(awk '/^VmHWM/ {printf "%.0f MiB", $2 / 1024}' "/proc/$PID/status")"
stop
