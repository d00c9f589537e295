#!/usr/bin/env bash
# The email dispatcher alone, against a local SMTP server (scripts/smtp-sink.py, aiosmtpd).
# Queues MESSAGES email jobs (CITIZENS who each have a validated, enabled address) through
# a release Postino without the email role, stops it, then starts only the email role on the
# same data, pointed at the sink, and times until the sink holds every email. In the same
# run it measures the sink's own rate: a plain Python SMTP client with as many connections
# (email_max_in_flight, default 16) sending the same number of mails of the same size.
# Needs python3 with aiosmtpd, and curl.
# Usage: scripts/bench-email.sh [MESSAGES] [CITIZENS]
set -euo pipefail
cd "$(dirname "$0")/.."
MESSAGES=${1:-20000} CITIZENS=${2:-20000}
PORT=18184 CONNECTIONS=${POSTINO_EMAIL_MAX_IN_FLIGHT:-16}
. scripts/bench-common.sh

sink() { # sink DIR: starts the SMTP sink, sets SINK_PID and SINK_PORT
  local out="$1.out"   # one file per sink: a second sink must not read the first one's port
  python3 scripts/smtp-sink.py "$1" > "$out" & SINK_PID=$!; HELPERS+=($SINK_PID)
  until grep -q listening "$out" 2>/dev/null; do sleep 0.1; done
  SINK_PORT=$(sed -E 's/.*:([0-9]+)$/\1/' "$out")
}
eml() { find "$1" -name '*.eml' | wc -l; }

queue_jobs deliveries.email "$MESSAGES" "$CITIZENS" --email 100 --devices 0

# The sink's own rate, with a plain client, for mails of the size Postino sends.
mkdir -p "$WORK/raw" "$WORK/mail"
sink "$WORK/raw"
python3 - "$SINK_PORT" "$MESSAGES" "$CONNECTIONS" <<'PY'
import smtplib, sys, threading, time
port, n, k = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
# About the size of a Postino notification email (headers, text and HTML parts).
body = "Subject: Hai un nuovo messaggio\r\nContent-Type: text/plain\r\n\r\n" + ("x" * 76 + "\r\n") * 24
def worker(count):
    s = smtplib.SMTP("127.0.0.1", port)
    for i in range(count):
        s.sendmail("notifiche@postino.localhost", [f"c{i}@example.org"], body)
    s.quit()
t0 = time.time()
threads = [threading.Thread(target=worker, args=(n // k + (1 if i < n % k else 0),)) for i in range(k)]
for t in threads: t.start()
for t in threads: t.join()
d = time.time() - t0
print(f"the sink alone: {n} mails from a plain client with {k} connections in {d:.1f} s = {n/d:.0f}/s")
PY
kill $SINK_PID; wait $SINK_PID 2>/dev/null || true
echo "(each $(wc -c < "$WORK/raw/1.eml") bytes as stored)"

sink "$WORK/mail"
export POSTINO_SMTP_HOST=127.0.0.1 POSTINO_SMTP_PORT=$SINK_PORT POSTINO_SMTP_TLS=none
t0=$(date +%s.%N)
start email
while [ "$(eml "$WORK/mail")" -lt "$MESSAGES" ]; do sleep 0.2; done
t1=$(date +%s.%N)
stop
size=$(wc -c < "$WORK/mail/1.eml")
python3 -c "
n=$MESSAGES; wall=$t1-$t0
print(f'email alone: {n} emails ({$size} bytes each as stored) to the SMTP sink with email_max_in_flight = $CONNECTIONS in {wall:.1f} s, including the role\'s start = {n/wall:.0f}/s')"
