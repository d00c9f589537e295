#!/usr/bin/env bash
# Fuzzes the parsers of what senders and citizens send (fuzz/fuzz_targets/), each for
# FUZZ_SECONDS (default 30), with `cargo fuzz` (libFuzzer), installing it when missing.
#
# cargo fuzz needs a nightly compiler's -Z flags; RUSTC_BOOTSTRAP=1 lets this stable
# toolchain take them (no nightly toolchain can be installed on these machines). No
# sanitizer: Postino forbids unsafe code, so a crash is a panic, which libFuzzer catches
# as it is. Each target starts from its seeds (fuzz/seeds/<target>/: valid inputs, and
# every input that ever crashed it, kept there as a regression test once fixed); what
# libFuzzer learns goes to a scratch corpus. A crash fails the run and leaves its input in
# fuzz/artifacts/<target>/.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
seconds=${FUZZ_SECONDS:-30}
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz (once)"
  cargo install cargo-fuzz --version 0.13.2 --locked --quiet
fi
# Beside Postino's own builds, outside the clone, so runs on one machine reuse it.
target_dir=${CARGO_TARGET_DIR:-$HOME/.cache/postino/target}-fuzz
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
export RUSTC_BOOTSTRAP=1
for target in $(cargo fuzz list); do
  echo "fuzzing $target for ${seconds} s"
  mkdir -p "$scratch/$target"
  set +e
  cargo fuzz run "$target" --sanitizer none --target-dir "$target_dir" \
    "$scratch/$target" "seeds/$target" -- -max_total_time="$seconds" 2>&1 \
    | grep -E "^(Done|INFO: (seed|loaded))|panicked|SUMMARY|Test unit written|==[0-9]+=="
  status=${PIPESTATUS[0]}
  set -e
  if [ "$status" -ne 0 ]; then
    echo "fuzz target $target found a crash: see fuzz/artifacts/$target/" >&2
    exit 1
  fi
done
