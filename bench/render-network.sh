#!/usr/bin/env bash
# The camera-flight example through a local devnet with 4 render providers, beside plain
# `blender -b SCENE -f N` over the same frames, size and samples on the same machine.
# Prints a table: frames/hour of each, the verification overhead (re-render time of the
# check regions as a share of render time) and the network overhead (the job's wall time
# over what plain Blender plus the checks would take on this machine).
#
#   bench/render-network.sh            # 48 frames at 640x360, 64 samples
#   FRAMES=12 SIZE=320x180 SAMPLES=32 bench/render-network.sh
#
# Needs a built `depin` (DEPIN=target/release/depin by default) and Debian's blender.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPIN=${DEPIN:-target/release/depin}
FRAMES=${FRAMES:-48}
SIZE=${SIZE:-640x360}
SAMPLES=${SAMPLES:-64}
PORT=${PORT:-17300}
# Render slots and Blender threads of each provider (the devnet's defaults: 2 and every core).
SLOTS=${SLOTS:-2}
THREADS=${THREADS:-0}
W=${SIZE%x*}
H=${SIZE#*x}
[ -x "$DEPIN" ] || { echo "build depin first (cargo build --release), or set DEPIN" >&2; exit 1; }

work=$(mktemp -d)
devnet_pid=""
cleanup() {
  [ -n "$devnet_pid" ] && kill -INT "$devnet_pid" 2>/dev/null && wait "$devnet_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$DEPIN" render example camera_flight -o "$work/scene" >/dev/null
scene="$work/scene/scene.blend"
now() { date +%s.%N; }

# Plain Blender: one process per frame, the job's size and samples.
settings="import bpy; s=bpy.context.scene; s.render.resolution_x=$W; s.render.resolution_y=$H; s.render.resolution_percentage=100; s.cycles.samples=$SAMPLES; s.cycles.use_adaptive_sampling=False; s.cycles.use_denoising=False"
start=$(now)
for f in $(seq 1 "$FRAMES"); do
  blender -b "$scene" --python-expr "$settings" -o "$work/plain/f####" -F PNG -f "$f" >/dev/null 2>&1
done
plain_s=$(echo "$(now) - $start" | bc)

# The same frames through the network.
"$DEPIN" devnet --dir "$work/devnet" --providers 4 --render-providers 4 --base-port "$PORT" \
  --render-slots "$SLOTS" --render-threads "$THREADS" --block-interval-ms 500 >"$work/devnet.log" 2>&1 &
devnet_pid=$!
rpc="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do
  [ -f "$work/devnet/devnet.json" ] && grep -q '"pid": [1-9]' "$work/devnet/devnet.json" && break
  sleep 0.5
done
key="$work/devnet/user.key"
for _ in $(seq 1 600); do
  n=$("$DEPIN" --rpc "$rpc" --json render providers 2>/dev/null | grep -o '"address"' | wc -l || true)
  [ "$n" -ge 4 ] && break
  sleep 1
done
"$DEPIN" --rpc "$rpc" dc buy --amount 100 --key "$key" >/dev/null
start=$(now)
"$DEPIN" --rpc "$rpc" --json render submit "$scene" --frames "1-$FRAMES" --resolution "$SIZE" \
  --samples "$SAMPLES" --wait --key "$key" >"$work/submitted.json" 2>"$work/submit.log"
network_s=$(echo "$(now) - $start" | bc)

# Blender time on the providers, from their logs (render and check runs, milliseconds).
render_ms=$(grep -h "render piece committed" "$work"/devnet/node-*/node.log | grep -o 'blender_ms=[0-9]*' | cut -d= -f2 | paste -sd+ | bc)
verify_ms=$(grep -h "render verdict posted" "$work"/devnet/node-*/node.log | grep -o 'blender_ms=[0-9]*' | cut -d= -f2 | paste -sd+ | bc)

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
printf '\nmachine: %s, %s cores; %s frames of camera_flight at %s, %s samples; providers: %s slots, %s Blender threads (0: all)\n\n' \
  "$cpu" "$(nproc)" "$FRAMES" "$SIZE" "$SAMPLES" "$SLOTS" "$THREADS"
printf '| | seconds | frames/hour | compared with |\n|---|---:|---:|---|\n'
printf '| plain `blender -b SCENE -f N` | %.1f | %.0f | - |\n' "$plain_s" "$(echo "$FRAMES*3600/$plain_s" | bc -l)"
printf '| depin, 4 providers, submit to every frame checked | %.1f | %.0f | %.2fx plain |\n' \
  "$network_s" "$(echo "$FRAMES*3600/$network_s" | bc -l)" "$(echo "$network_s/$plain_s" | bc -l)"
printf '| Blender time of the renders on the providers | %.1f | | %.2fx plain |\n' \
  "$(echo "$render_ms/1000" | bc -l)" "$(echo "$render_ms/1000/$plain_s" | bc -l)"
printf '| Blender time of the checks (all regions of a piece in one run) | %.1f | | %.1f%% of render time (target <= 10%%) |\n' \
  "$(echo "$verify_ms/1000" | bc -l)" "$(echo "100*$verify_ms/$render_ms" | bc -l)"
# The ideal job on this one machine takes plain Blender's time plus the checks' share; the
# rest (sandbox, transfers, block waits, commitments) is the network's.
printf '| network overhead: job wall time over plain x (1 + checks share), less 1 | | | %.1f%% (target <= 10%%) |\n' \
  "$(echo "100*($network_s/($plain_s*(1+$verify_ms/$render_ms))-1)" | bc -l)"
