#!/usr/bin/env bash
# A generated 60 s 1080p clip (ffmpeg testsrc2 with a tone) to the 4-rung ladder
# (1080p,720p,480p,360p): plain ffmpeg in one run with the orchestrators' pinned settings,
# and through a local devnet with 2 orchestrators (`depin video publish`, every segment
# paid by ticket and checked). Prints the realtime factor of each, the network overhead,
# and, for the clip read at its own pace (--realtime, as a live source), the segment
# latency from cut to all renditions stored (p50, p99).
#
#   bench/video-network.sh                  # 60 s at 1920x1080
#   SECONDS_LONG=20 SIZE=1280x720 bench/video-network.sh
#
# Needs a built `depin` (DEPIN=target/release/depin by default) and Debian's ffmpeg.
set -euo pipefail
cd "$(dirname "$0")/.."
DEPIN=${DEPIN:-target/release/depin}
LENGTH=${SECONDS_LONG:-60}
SIZE=${SIZE:-1920x1080}
LADDER=${LADDER:-1080p,720p,480p,360p}
PORT=${PORT:-17400}
[ -x "$DEPIN" ] || { echo "build depin first (cargo build --release), or set DEPIN" >&2; exit 1; }

work=$(mktemp -d)
devnet_pid=""
cleanup() {
  [ -n "$devnet_pid" ] && kill -INT "$devnet_pid" 2>/dev/null && wait "$devnet_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }

ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$SIZE:rate=30" \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$LENGTH" \
  -c:v libx264 -preset veryfast -g 60 -c:a aac "$work/clip.mp4"

# Plain ffmpeg: the whole clip to the ladder in one run, the settings orchestrators pin.
declare -A RUNG=([1080p]="1920 1080 6000" [720p]="1280 720 3000" [480p]="854 480 1200" [360p]="640 360 700" [240p]="426 240 400")
IFS=, read -ra rungs <<<"$LADDER"
filter="[0:v]split=${#rungs[@]}"
for i in "${!rungs[@]}"; do filter+="[s$i]"; done
args=()
for i in "${!rungs[@]}"; do
  read -r w h kbps <<<"${RUNG[${rungs[$i]}]}"
  filter+=";[s$i]scale=$w:$h:flags=bicubic,setsar=1[v$i]"
  args+=(-map "[v$i]" -map 0:a? -c:v libx264 -preset veryfast -threads 1 -sc_threshold 0
    -b:v "${kbps}k" -maxrate "${kbps}k" -bufsize "$((kbps * 2))k" -g 60 -keyint_min 60
    -pix_fmt yuv420p -c:a copy -f mpegts "$work/plain-${rungs[$i]}.ts")
done
start=$(now)
ffmpeg -hide_banner -nostdin -loglevel error -y -i "$work/clip.mp4" -filter_complex "$filter" "${args[@]}"
plain_s=$(echo "$(now) - $start" | bc)

"$DEPIN" devnet --dir "$work/devnet" --providers 2 --render-providers 0 --video-providers 2 \
  --base-port "$PORT" --block-interval-ms 500 >"$work/devnet.log" 2>&1 &
devnet_pid=$!
rpc="http://127.0.0.1:$PORT"
for _ in $(seq 1 600); do
  n=$("$DEPIN" --rpc "$rpc" --json video orchestrators 2>/dev/null | grep -o '"address"' | wc -l || true)
  [ "$n" -ge 2 ] && break
  sleep 1
done
key="$work/devnet/user.key"
"$DEPIN" --rpc "$rpc" dc buy --amount 100 --key "$key" >/dev/null
"$DEPIN" --rpc "$rpc" video fund --deposit 1000000 --reserve 100000 --key "$key" >/dev/null

publish() {
  "$DEPIN" --rpc "$rpc" --json video publish "$work/clip.mp4" --ladder "$LADDER" --key "$key" \
    --dir "$work/streams" --http-listen 127.0.0.1:0 --exit-when-done "$@" 2>>"$work/publish.log"
}
start=$(now)
publish >"$work/fast.json"
network_s=$(echo "$(now) - $start" | bc)
publish --realtime >"$work/live.json"

# Latencies (ms) of the live run's served segments, sorted.
mapfile -t lat < <(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))
for s in sorted(x["latency_ms"] for x in r["segments"] if x["check"] == "ok"):
    print(s)' "$work/live.json")
served_fast=$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(sum(1 for s in r["segments"] if s["check"]=="ok"), "of", len(r["segments"]))' "$work/fast.json")
pct() { local n=${#lat[@]}; local i=$(( ($1 * n + 99) / 100 - 1 )); [ "$i" -lt 0 ] && i=0; echo "${lat[$i]}"; }

cpu=$(grep -m1 "model name" /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')
printf '\nmachine: %s, %s cores; %s s of testsrc2 at %s, 30 fps, to %s; libx264 veryfast, 1 thread per rung; depin %s\n\n' \
  "$cpu" "$(nproc)" "$LENGTH" "$SIZE" "$LADDER" "$DEPIN"
printf '| | seconds | realtime factor | compared with |\n|---|---:|---:|---|\n'
printf '| plain `ffmpeg` (one run, every rung) | %.1f | %.2fx | - |\n' "$plain_s" "$(echo "$LENGTH/$plain_s" | bc -l)"
printf '| depin, 2 orchestrators, every segment paid and checked (%s segments served) | %.1f | %.2fx | %.2fx plain |\n' \
  "$served_fast" "$network_s" "$(echo "$LENGTH/$network_s" | bc -l)" "$(echo "$network_s/$plain_s" | bc -l)"
printf '| network overhead: wall time over plain, less 1 | | | %.1f%% (target <= 15%%) |\n' \
  "$(echo "100*($network_s/$plain_s-1)" | bc -l)"
printf '| live (--realtime) segment latency, cut to all renditions stored: p50 | %.2f | | target <= segment + 1 s = 3 s |\n' \
  "$(echo "$(pct 50)/1000" | bc -l)"
printf '| live segment latency p99 | %.2f | | |\n' "$(echo "$(pct 99)/1000" | bc -l)"
