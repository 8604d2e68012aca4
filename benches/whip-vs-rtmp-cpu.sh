#!/usr/bin/env bash
# CPU per stream of ugc-server taking a publish to HLS over WHIP next to the
# same over RTMP (#18's goal: WHIP <= 1.5x RTMP per stream).
#
# PUBLISHER=chromium (default): headless Chromium's fake camera and
#   microphone (H.264 + Opus over SRTP) next to RTMP (ffmpeg -re -c copy of
#   an H.264 + AAC clip at the bitrate Chromium sent, same size and frame
#   rate). The browser picks its own (small, for a near-static picture)
#   bitrate, so the ratio is per Mbit/s.
# PUBLISHER=ffmpeg: one H.264 clip (constrained baseline, no B-pictures, as
#   WebRTC encoders send; WIDTHxHEIGHT at KBPS, 2 s GOP) sent as it is both
#   ways: FFmpeg 9's whip muxer with Opus, ffmpeg to RTMP with AAC. Same
#   pictures, same bitrate: the ratio is per stream. WHIP runs twice: with
#   the server's Opus -> AAC audio transcode (the default, what HLS players
#   need) and without (--opus-to-aac off: the transport alone).
#
# Prints each way's server CPU % per stream and per Mbit/s received.
#
# Env: N=1 (publishers at once) WINDOW=20 WARMUP=6 PUBLISHER=chromium
#      WIDTH/HEIGHT (640x360 for chromium, 1920x1080 for ffmpeg) KBPS=4000
#      UGC_BIN=... (default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-1}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-6}
PUBLISHER=${PUBLISHER:-chromium}
if [ "$PUBLISHER" = ffmpeg ]; then
  WIDTH=${WIDTH:-1920} HEIGHT=${HEIGHT:-1080}
else
  WIDTH=${WIDTH:-640} HEIGHT=${HEIGHT:-360}
fi
KBPS=${KBPS:-4000}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
WORK=$(mktemp -d /tmp/ugc-whip-bench.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
PIDS=()
SERVER=

cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
scripts/install-deps.sh browser >/dev/null
(cd tests/browser && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error >/dev/null)


start_server() { # extra server flags
  local rtmp srt
  rtmp=$(port 1); HTTP=$(port 1); srt=$(port 2); RTMP=$rtmp
  rm -rf "$WORK/data"
  UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" --rtmp 127.0.0.1:$rtmp \
    --http 127.0.0.1:$HTTP --srt 127.0.0.1:$srt --whip-udp 127.0.0.1:0 \
    --public-host 127.0.0.1 "$@" >/dev/null 2>"$WORK/server.log" &
  SERVER=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/api/v1/openapi.json" && break; sleep 0.1; done
}

stream_key() {
  curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\": \"$1\"}" "http://127.0.0.1:$HTTP/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# Media bytes the Hub took from publishers (frame payloads).
ingest_bytes() {
  curl -s "http://127.0.0.1:$HTTP/metrics" |
    awk '/^ugc_stream_bytes_in_total/ {s += $2} END {printf "%d\n", s}'
}

measure() { # label; sets CPU (% of one core) and MBPS
  local t0 t1 b0 b1
  sleep "$WARMUP"
  t0=$(ticks "$SERVER"); b0=$(ingest_bytes)
  sleep "$WINDOW"
  t1=$(ticks "$SERVER"); b1=$(ingest_bytes)
  CPU=$(python3 -c "print(100*($t1-$t0)/$HZ/$WINDOW)")
  MBPS=$(python3 -c "print(8*($b1-$b0)/$WINDOW/1e6)")
  python3 -c "import sys; c,m,n=float(sys.argv[2]),float(sys.argv[3]),int(sys.argv[4]); print(f'{sys.argv[1]:5s} {n} streams: {c:6.2f} % CPU, {c/n:5.2f} % per stream, {m/n:5.2f} Mbit/s per stream, {c/m if m else 0:5.2f} % per Mbit/s')" \
    "$1" "$CPU" "$MBPS" "$N"
}

ratio() { # whip-cpu whip-mbps rtmp-cpu rtmp-mbps label
  python3 -c "import sys; wc,wm,rc,rm=map(float,sys.argv[1:5]); w=wc/max(wm,1e-9); r=rc/max(rm,1e-9); print(f'{sys.argv[5]}: WHIP/RTMP CPU per stream {wc/rc if rc else 0:.2f}x, per Mbit/s {w/r if r else 0:.2f}x ({w:.2f} vs {r:.2f} % per Mbit/s)')" \
    "$@"
}

rtmp_run() { # clip
  start_server
  PIDS=()
  for i in $(seq "$N"); do
    key=$(stream_key "r$i")
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$1" -c copy \
      -f flv "rtmp://127.0.0.1:$RTMP/live/$key" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
  measure rtmp
  RTMP_CPU=$CPU RTMP_MBPS=$MBPS
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
}

if [ "$PUBLISHER" = ffmpeg ]; then
  FFMPEG9=$(python3 -c 'import imageio_ffmpeg; print(imageio_ffmpeg.get_ffmpeg_exe())') ||
    { echo "imageio-ffmpeg missing: scripts/install-deps.sh" >&2; exit 1; }
  VIDEO=$WORK/video.h264.mp4
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=${WIDTH}x${HEIGHT}:rate=30" -t 20 \
    -c:v libx264 -preset veryfast -profile:v baseline -bf 0 -b:v "${KBPS}k" -maxrate "${KBPS}k" \
    -bufsize "${KBPS}k" -g 60 -keyint_min 60 -sc_threshold 0 -pix_fmt yuv420p "$VIDEO"
  TONE="sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo"
  ffmpeg -hide_banner -loglevel error -y -i "$VIDEO" -f lavfi -i "$TONE" -t 20 -map 0:v -map 1:a \
    -c:v copy -c:a aac -b:a 128k "$WORK/clip_aac.mp4"
  ffmpeg -hide_banner -loglevel error -y -i "$VIDEO" -f lavfi -i "$TONE" -t 20 -map 0:v -map 1:a \
    -c:v copy -c:a libopus -b:a 128k "$WORK/clip_opus.mkv"
  whip_run() { # label, server flags
    local label=$1
    shift
    start_server "$@"
    PIDS=()
    for i in $(seq "$N"); do
      key=$(stream_key "w$i")
      "$FFMPEG9" -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$WORK/clip_opus.mkv" \
        -c copy -f whip -authorization "$key" "http://127.0.0.1:$HTTP/whip/w$i" \
        </dev/null >/dev/null 2>"$WORK/whip$i.log" &
      PIDS+=($!)
    done
    measure "$label"
    WHIP_CPU=$CPU WHIP_MBPS=$MBPS
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    python3 -c "import sys; sys.exit(float(sys.argv[1]) < 0.5 * $KBPS / 1000 * $N)" "$MBPS" ||
      { echo "WHIP publish failed ($MBPS Mbit/s in): $(cat "$WORK/whip1.log")" >&2; exit 1; }
    kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  }
  rtmp_run "$WORK/clip_aac.mp4"
  whip_run whip+aac
  ratio "$WHIP_CPU" "$WHIP_MBPS" "$RTMP_CPU" "$RTMP_MBPS" "with Opus -> AAC"
  whip_run whip --opus-to-aac off
  ratio "$WHIP_CPU" "$WHIP_MBPS" "$RTMP_CPU" "$RTMP_MBPS" "transport alone"
  exit 0
fi

# WHIP: N Chromium publishers.
start_server
PIDS=()
for i in $(seq "$N"); do
  key=$(stream_key "w$i")
  node tests/browser/whip.mjs --url "http://127.0.0.1:$HTTP/whip/w$i" --key "$key" \
    --seconds $((WARMUP + WINDOW + 4)) --width "$WIDTH" --height "$HEIGHT" \
    >"$WORK/whip$i.json" 2>&1 &
  PIDS+=($!)
done
measure whip
WHIP_CPU=$CPU WHIP_MBPS=$MBPS
wait "${PIDS[@]}" 2>/dev/null || true
grep -q '"post":201' "$WORK/whip1.json" || { echo "WHIP publish failed: $(cat "$WORK/whip1.json")" >&2; exit 1; }
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=

# RTMP: the same size and frame rate at the bitrate Chromium sent.
KBPS=$(python3 -c "print(max(200, int(1000*$WHIP_MBPS/$N)))")
CLIP=$WORK/clip.mp4
ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=${WIDTH}x${HEIGHT}:rate=30" \
  -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" -t 20 \
  -c:v libx264 -preset veryfast -b:v "${KBPS}k" -maxrate "${KBPS}k" -bufsize "$((2 * KBPS))k" \
  -g 60 -pix_fmt yuv420p -c:a aac -b:a 64k "$CLIP"
rtmp_run "$CLIP"
ratio "$WHIP_CPU" "$WHIP_MBPS" "$RTMP_CPU" "$RTMP_MBPS" "Chromium"
