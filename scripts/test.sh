#!/usr/bin/env bash
# The test command of the README and of CI: set up, then run every test of the workspace.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
# A one-off CI build gains nothing from incremental state, which costs GiBs of disk.
if [ "${CI:-}" = "true" ]; then export CARGO_INCREMENTAL=0; fi
# House checks first: formatting and clippy with warnings as errors, on every target.
cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
# Production builds refuse the test-only solo finality; the workspace run enables `test-utils`
# (feature unification), so this check runs alone, without it.
cargo test -p depin-protocol --lib production_builds_refuse_solo_finality
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast "$@"
else
  cargo test --workspace --no-fail-fast "$@"
fi
