#!/usr/bin/env bash
# Runs every check and test of Postino, installing what the tests need first.
# Usage: scripts/test.sh            (from the repository root)
# Builds go to $CARGO_TARGET_DIR when set (share one across clones to reuse builds).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# Nothing external is needed yet: the tests start Postino on its embedded log and store.
# The Kafka broker (tansu), an SMTP server and promtool join this list with the issues that
# need them, each installed here when missing.

step "rustfmt"
cargo fmt --all -- --check

step "clippy (warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "tests"
cargo test --workspace --locked
