#!/usr/bin/env bash
# Makes throw-away credentials for the push stand-ins (`loadtest fake-fcm`, `loadtest fake-apns`).
# Usage: scripts/stand-in-keys.sh DIR [FCM_TOKEN_URI]
#   DIR/fcm-service-account.json  a service-account key file for Postino's `push.fcm.service_account`
#   DIR/fcm-public.pem            its public key, for `loadtest fake-fcm --public-key`
#   DIR/apns-key.p8               an APNs signing key for Postino's `apns_key_file`
#   DIR/apns-public.pem           its public key, for `loadtest fake-apns --public-key`
# Never use these with the real providers: they are made here and trusted only by the stand-ins.
set -euo pipefail
dir="${1:?usage: $0 DIR [FCM_TOKEN_URI]}"
token_uri="${2:-http://127.0.0.1:9011/token}"
mkdir -p "$dir"
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$dir/fcm-key.pem" 2>/dev/null
openssl pkey -in "$dir/fcm-key.pem" -pubout -out "$dir/fcm-public.pem"
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/apns-key.p8" 2>/dev/null
openssl pkey -in "$dir/apns-key.p8" -pubout -out "$dir/apns-public.pem"
python3 - "$dir" "$token_uri" <<'PY'
import json, sys
d, uri = sys.argv[1], sys.argv[2]
key = open(f"{d}/fcm-key.pem").read()
json.dump({"type": "service_account", "project_id": "postino-stand-in", "private_key_id": "stand-in-key",
           "private_key": key, "client_email": "postino@postino-stand-in.iam.gserviceaccount.com",
           "token_uri": uri}, open(f"{d}/fcm-service-account.json", "w"), indent=2)
PY
echo "stand-in credentials written to $dir"
