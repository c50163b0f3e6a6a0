#!/usr/bin/env bash
# Installs what depin's build and tests need on a fresh Debian machine with rustup.
# Idempotent: safe to run before every build. Called by scripts/test.sh and .ci/run.
set -euo pipefail

need_apt=()
# Render: Debian's Blender (Cycles on CPU), run inside bubblewrap with prlimit's caps
# (util-linux); ffmpeg encodes fetched frames into a video. Later services add packages here
# (chromium for the web UI).
for pkg in blender bubblewrap util-linux ffmpeg "$@"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || need_apt+=("$pkg")
done
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" != 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust with rustup" >&2; exit 1; }

# The test command runs rustfmt and clippy as house checks.
if command -v rustup >/dev/null; then
  for component in rustfmt clippy; do
    rustup component list --installed | grep -q "^$component" || rustup component add "$component"
  done
fi

# The example compute jobs (examples/compute) are built for WebAssembly by the tests.
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-wasip1; then
  rustup target add wasm32-wasip1
fi
