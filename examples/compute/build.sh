#!/usr/bin/env bash
# Builds the example compute jobs for wasm32-wasip1 and prints the path of each module.
# Usage: examples/compute/build.sh [native]   (native: for the host, for benchmarks)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
target_dir="${CARGO_TARGET_DIR:-$here/../../target}/examples-compute"
if [ "${1:-}" = native ]; then
  cargo build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir"
  for job in wordcount digest; do echo "$target_dir/release/$job"; done
else
  rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip1 \
    || rustup target add wasm32-wasip1 >&2
  cargo build -q --release --manifest-path "$here/Cargo.toml" --target-dir "$target_dir" \
    --target wasm32-wasip1
  for job in wordcount digest; do echo "$target_dir/wasm32-wasip1/release/$job.wasm"; done
fi
