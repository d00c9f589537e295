#!/usr/bin/env bash
# The push dispatcher alone, against the FCM stand-in. Starts the stand-in and a release
# Postino without the push role on a fresh data directory, seeds CITIZENS who each have one
# FCM phone and accept everything, sends MESSAGES and lets the router and the inbox
# dispatcher turn them into push jobs, stops Postino, then starts only the push role on the
# same data and times how long it takes until the stand-in has received every push.
# Postino's push settings come from the environment as usual: FCM's default quota
# (fcm_per_minute = 600,000) caps the rate at 10,000/s, so to measure the dispatcher itself
# raise it, e.g. POSTINO_FCM_PER_MINUTE=6000000. Needs python3, openssl and curl.
# Usage: scripts/bench-push.sh [MESSAGES] [CITIZENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-100000} CITIZENS=${2:-100000}
PORT=18183 FCM_PORT=19011
FCM=http://127.0.0.1:$FCM_PORT
. scripts/bench-common.sh

scripts/stand-in-keys.sh "$WORK/creds" "$FCM/token" >/dev/null
"$BIN/loadtest" fake-fcm --public-key "$WORK/creds/fcm-public.pem" --listen 127.0.0.1:$FCM_PORT 2>/dev/null & HELPERS+=($!)
export POSTINO_FCM_SERVICE_ACCOUNT=$WORK/creds/fcm-service-account.json POSTINO_FCM_BASE_URL=$FCM
standin() { curl -sf --http2-prior-knowledge "$FCM/_standin/received?from=$1"; }
until standin 0 >/dev/null; do sleep 0.1; done

queue_jobs deliveries.push "$MESSAGES" "$CITIZENS" --email 0 --devices 100 --apns 0

t0=$(date +%s.%N)
start push
accepted() { standin 999999999 | python3 -c 'import json,sys; print(json.load(sys.stdin)["accepted"])'; }
while [ "$(accepted)" -lt "$MESSAGES" ]; do sleep 0.2; done
t1=$(date +%s.%N)
stop
first=$(standin 0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["received"][0]["at_ms"])')
last=$(standin $((MESSAGES - 1)) | python3 -c 'import json,sys; print(json.load(sys.stdin)["received"][0]["at_ms"])')
python3 -c "
n=$MESSAGES; wall=$t1-$t0; span=($last-$first)/1000
print(f'push alone: {n} pushes to the FCM stand-in; first to last push {span:.1f} s = {n/span:.0f}/s; '
      f'including the push role\'s start {wall:.1f} s = {n/wall:.0f}/s')"
