#!/usr/bin/env bash
# Interim ingest and end-to-end measurement, until the `loadtest` tool exists.
# Starts a release Postino on a fresh data directory, seeds CITIZENS profiles, then drives
# POST /api/v1/messages/{fiscal_code} with wrk (keep-alive, closed loop) for DURATION, and
# the no-op GET /health with the same settings for the machine's own HTTP ceiling. Finally
# it waits until every accepted message is out of ACCEPTED and reports the drain time.
# Needs: wrk (Debian package `wrk`), python3. Usage: scripts/bench-ingest.sh [DURATION] [CONNECTIONS] [CITIZENS]
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION=${1:-20s} CONNS=${2:-32} CITIZENS=${3:-1000}
PORT=18181 KEY=bench-manage-key-0123456789 SECRET=bench-jwt-secret-0123456789-abcdefgh
command -v wrk >/dev/null || { echo "install wrk first (apt-get install wrk)"; exit 1; }
cargo build -q --release -p postino
BIN=${CARGO_TARGET_DIR:-target}/release/postino
DATA=$(mktemp -d) WORK=$(mktemp -d)
trap 'kill $PID 2>/dev/null; wait $PID 2>/dev/null; rm -rf "$DATA" "$WORK"' EXIT
POSTINO_MANAGE_KEY=$KEY POSTINO_JWT_SECRET=$SECRET POSTINO_LOG=warn "$BIN" serve --data-dir "$DATA" --listen 127.0.0.1:$PORT --metrics-listen 127.0.0.1:$((PORT + 100)) &
PID=$!
until curl -sf http://127.0.0.1:$PORT/health >/dev/null; do sleep 0.1; done
API=http://127.0.0.1:$PORT

SID=$(curl -sf -X POST $API/api/v1/manage/services -H "Ocp-Apim-Subscription-Key: $KEY" \
  -H 'Content-Type: application/json' -d '{"name":"Bench","description":"bench","organization":{"name":"o","fiscal_code":"00493410583"},"metadata":{"scope":"LOCAL"},"mode":"production","rate_limit":{"requests":1000000,"period_seconds":1}}' \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
SKEY=$(curl -sf $API/api/v1/manage/services/$SID/keys -H "Ocp-Apim-Subscription-Key: $KEY" \
  | python3 -c 'import json,sys;print(json.load(sys.stdin)["primary_key"])')

# Valid fiscal codes (check character computed) and a wrk script cycling through them.
python3 - "$CITIZENS" "$WORK" <<'PY'
import sys, random
n, work = int(sys.argv[1]), sys.argv[2]
odd = [1,0,5,7,9,13,15,17,19,21,2,4,18,20,11,3,6,8,12,14,16,10,22,25,24,23]
def val(c): return ord(c)-48 if c.isdigit() else ord(c)-65
def check(s): return chr(65 + sum(odd[val(c)] if i % 2 == 0 else val(c) for i, c in enumerate(s)) % 26)
random.seed(7); codes = set()
while len(codes) < n:
    s = "".join(random.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(6)) + "%02d" % random.randrange(100) + \
        random.choice("ABCDEHLMPRST") + "%02d" % random.randrange(1, 29) + "H501"
    codes.add(s + check(s))
codes = sorted(codes)
open(f"{work}/codes.txt", "w").write("\n".join(codes) + "\n")
body = '{"content":{"subject":"Bollo auto in scadenza","markdown":"' + "Il bollo della tua auto scade il 31 gennaio. " * 3 + '"}}'
lua = ["codes = {" + ",".join('"%s"' % c for c in codes) + "}", "i = 0",
       "request = function() i = i + 1; return wrk.format('POST', '/api/v1/messages/' .. codes[(i %% #codes) + 1], nil, %r) end" % body]
open(f"{work}/send.lua", "w").write("\n".join(lua).replace("%%", "%") + "\n")
PY
echo "seeding $CITIZENS profiles..."
while read -r FC; do
  TOKEN=$(POSTINO_JWT_SECRET=$SECRET "$BIN" admin token --fiscal-code "$FC")
  curl -sf -o /dev/null -X PUT $API/citizen/v1/profile -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' -d '{}'
done < "$WORK/codes.txt"

echo "== no-op endpoint (GET /health): the machine's HTTP ceiling with this load generator"
wrk -t2 -c"$CONNS" -d"$DURATION" --latency $API/health | grep -E "Requests/sec|50%|90%|99%|requests in"
echo "== ingest (POST /api/v1/messages/{fiscal_code})"
START=$(date +%s.%N)
wrk -t2 -c"$CONNS" -d"$DURATION" --latency -s "$WORK/send.lua" -H "Ocp-Apim-Subscription-Key: $SKEY" \
  -H "Content-Type: application/json" $API | grep -E "Requests/sec|50%|90%|99%|requests in|Non-2xx"
SENT_END=$(date +%s.%N)
python3 - "$DATA/store.sqlite" "$START" "$SENT_END" <<'PY'
import sqlite3, sys, time
db, start, sent_end = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
c = sqlite3.connect(db)
while c.execute("SELECT count(*) FROM messages WHERE rank = 0").fetchone()[0] > 0:
    time.sleep(0.05)
done = time.time()
inbox = c.execute("SELECT count(*) FROM inbox").fetchone()[0]
print(f"== end to end: {inbox} messages in inboxes; pipeline drained {done - sent_end:.1f} s after the load stopped; "
      f"{inbox / (done - start):.0f} messages/s from first send to last inbox write")
PY
