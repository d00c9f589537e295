#!/usr/bin/env bash
# Runs every check and test of Postino, installing what the tests need first.
# Usage: scripts/test.sh            (from the repository root)
# Builds go to $CARGO_TARGET_DIR when set (share one across clones to reuse builds).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# What the tests need beyond Rust, installed when missing.
need() { # need COMMAND DEBIAN-PACKAGE
  command -v "$1" >/dev/null && return
  step "installing $2 (for $1)"
  if command -v apt-get >/dev/null; then
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get update -qq && $sudo apt-get install -y -qq "$2"
  else
    echo "please install $2 (the tests need the $1 command)" >&2; exit 1
  fi
}
need openssl openssl   # makes RS256/ES256 key pairs for the citizen-token and push tests
need python3 python3   # writes the stand-ins' service-account file (scripts/stand-in-keys.sh)
need java openjdk-17-jre-headless   # runs Apache Kafka and Apache Cassandra (scripts/servers.sh)
need mvn maven         # fetches them from Maven Central, once (scripts/servers.sh)
need promtool prometheus   # the Prometheus server and promtool the metrics, alert-rule and dashboard tests run

# The SMTP server the email tests start (scripts/smtp-sink.py): aiosmtpd, for the python3
# on PATH. Debian's package when that is the system's python, else from PyPI.
if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
  step "installing aiosmtpd (the SMTP server of the email tests)"
  if command -v apt-get >/dev/null; then
    sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq python3-aiosmtpd || true
  fi
  if ! python3 -c 'import aiosmtpd' 2>/dev/null; then
    python3 -m pip install --quiet --user aiosmtpd 2>/dev/null \
      || python3 -m pip install --quiet --user --break-system-packages aiosmtpd
  fi
fi

# Apache Kafka for the Kafka tests and Apache Cassandra for the ScyllaDB store's: one of
# each for the run (tests keep apart by their own topics and ids; the store's keyspace is
# made once, by the first test that needs it), stopped however the run ends. Tests that
# freeze a server start their own.
step "starting Kafka and Cassandra (scripts/servers.sh)"
export POSTINO_SERVERS_DIR=${POSTINO_SERVERS_DIR:-$(mktemp -d)}
trap 'scripts/servers.sh stop; rm -rf "$POSTINO_SERVERS_DIR"' EXIT
scripts/servers.sh start kafka
scripts/servers.sh start cassandra
eval "$(scripts/servers.sh env)"

step "rustfmt"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings
# The binary without its `kafka` and `scylla` features (no librdkafka, no CQL driver):
# what is compiled only then.
cargo clippy -p postino --no-default-features --locked -- -D warnings

step "tests"
cargo test --workspace --locked

step "fuzzing the message parser and the citizen tokens (scripts/fuzz.sh)"
scripts/fuzz.sh
