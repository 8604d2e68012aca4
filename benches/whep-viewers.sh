#!/usr/bin/env bash
# WHEP viewers of one stream on this machine (issue #18: "100 WHEP viewers
# of one stream on 2 cores"): FFmpeg 9 publishes a 1280x720 30 fps H.264
# (no B pictures, 2.5 Mbit/s) + Opus clip over WHIP (-c copy: the publisher
# costs no encoding), then `whep_viewers` (benches/src/bin: str0m peers on
# loopback that depacketize what they get, as a browser does short of
# decoding) plays it with N viewers for each N of COUNTS. Prints the
# server's CPU (% of one core) with no viewer and with N, the CPU per
# viewer above the no-viewer figure, and what the viewers saw (connected,
# playing, pictures per second, stalls over 1 s, first picture, Mbit/s).
# The client runs on the same 2 cores: its CPU is printed too.
#
# Env: COUNTS="25 50 100" WINDOW=20 WARMUP=8 KBPS=2500
#      UGC_BIN=... (default: release build), VIEWERS_BIN=... (same)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

COUNTS=${COUNTS:-25 50 100}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-8}
KBPS=${KBPS:-2500}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
VIEWERS_BIN=${VIEWERS_BIN:-$TARGET/release/whep_viewers}
WORK=$(mktemp -d /tmp/ugc-whep-bench.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
PUBLISHER=
SERVER=

cleanup() {
  [ -n "$PUBLISHER" ] && kill "$PUBLISHER" 2>/dev/null || true
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

for b in "$UGC_BIN" "$VIEWERS_BIN"; do
  [ -x "$b" ] || { echo "build first: cargo build --release -p ugc-server -p ugc-benches --bin ugc-server --bin whep_viewers" >&2; exit 1; }
done
FFMPEG9=$(python3 -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())') ||
  { echo "imageio-ffmpeg missing: scripts/install-deps.sh" >&2; exit 1; }


RTMP=$(port 1); HTTP=$(port 1); SRT=$(port 2)
UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" --rtmp 127.0.0.1:$RTMP \
  --http 127.0.0.1:$HTTP --srt 127.0.0.1:$SRT --whip-udp 127.0.0.1:0 \
  --public-host 127.0.0.1 >/dev/null 2>"$WORK/server.log" &
SERVER=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/api/v1/openapi.json" && break; sleep 0.1; done
KEY=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
  -d '{"name": "cam"}' "http://127.0.0.1:$HTTP/api/v1/streams" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')

CLIP=$WORK/clip.mkv
"$FFMPEG9" -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=1280x720:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" -t 20 \
  -c:v libx264 -preset veryfast -profile:v main -bf 0 -g 60 -b:v "${KBPS}k" -maxrate "${KBPS}k" \
  -bufsize "$((2 * KBPS))k" -pix_fmt yuv420p -c:a libopus -b:a 64k "$CLIP"
"$FFMPEG9" -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
  -f whip -authorization "$KEY" "http://127.0.0.1:$HTTP/whip/cam" </dev/null >"$WORK/ffmpeg.log" 2>&1 &
PUBLISHER=$!

window_cpu() { # server CPU % of one core over WINDOW
  local t0 t1
  t0=$(ticks "$SERVER"); sleep "$WINDOW"; t1=$(ticks "$SERVER")
  python3 -c "print(round(100*($t1-$t0)/$HZ/$WINDOW, 2))"
}

sleep "$WARMUP"
curl -s "http://127.0.0.1:$HTTP/metrics" | grep -q '^ugc_whip_connected{.* 1$' ||
  { echo "the WHIP publish did not connect: $(cat "$WORK/ffmpeg.log")" >&2; exit 1; }
BASE=$(window_cpu)
echo "no viewer: server ${BASE} % CPU (WHIP ingest of ${KBPS} kbit/s 720p30 + Opus, HLS packaging)"
for n in $COUNTS; do
  "$VIEWERS_BIN" "http://127.0.0.1:$HTTP/whep/cam" "$n" $((WARMUP + WINDOW + 2)) >"$WORK/v$n.json" &
  client=$!
  sleep "$WARMUP"
  cpu=$(window_cpu)
  wait "$client" || true
  python3 - "$n" "$cpu" "$BASE" "$WORK/v$n.json" <<'EOF'
import json, sys
n, cpu, base = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
r = json.load(open(sys.argv[4]))
per = (cpu - base) / n
print(f"{n:4d} viewers: server {cpu:6.2f} % CPU, {per:5.2f} % per viewer; "
      f"connected {r['connected']}, playing {r['playing']}, fps p50 {r['fps_p50']:.1f} "
      f"min {r['fps_min']:.1f}, audio fps p50 {r['audio_fps_p50']:.1f}, stalls {r['stalls']}, "
      f"first picture p50 {r['first_picture_ms_p50']:.0f} ms p95 {r['first_picture_ms_p95']:.0f} ms, "
      f"{r['mbit_s']:.1f} Mbit/s out; client {r['client_cpu_s']:.1f} CPU s"
      + (f"; errors {r['errors']}" if r['errors'] else ""))
EOF
  sleep 2
done
