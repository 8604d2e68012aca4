#!/usr/bin/env bash
# CPU per stream of ugc-server packaging to HLS: the same 720p30 1.5 Mbps
# H.264 + AAC clip published N times over RTMP (FLV) and then over SRT
# (MPEG-TS, plain and AES-128), ffmpeg -re -c copy, looped. Prints the
# server's CPU % per stream for each way in and the SRT/RTMP ratio.
#
# Env: N=4 WINDOW=15 WARMUP=5 UGC_BIN=... (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-4}
WINDOW=${WINDOW:-15}
WARMUP=${WARMUP:-5}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
WORK=$(mktemp -d /tmp/ugc-srt-bench.XXXXXX)
MEDIA_DIR=${TMPDIR:-/tmp}/ugc-test-media
CLIP=$MEDIA_DIR/bench_720p30_1500k_aac_20s.mp4
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
mkdir -p "$MEDIA_DIR"
if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" -t 20 \
    -c:v libx264 -preset veryfast -b:v 1500k -maxrate 1500k -bufsize 3000k -g 60 -keyint_min 60 \
    -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k "$CLIP.tmp.mp4"
  mv "$CLIP.tmp.mp4" "$CLIP"
fi


run_case() { # $1 = rtmp | srt | srt-aes
  local how=$1 rtmp http srt
  rtmp=$(port 1); http=$(port 1); srt=$(port 2)
  rm -rf "$WORK/data"
  UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" --rtmp 127.0.0.1:$rtmp \
    --http 127.0.0.1:$http --srt 127.0.0.1:$srt --public-host 127.0.0.1 >/dev/null 2>"$WORK/$how.log" &
  SERVER=$!
  for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$http/api/v1/openapi.json" && break; sleep 0.1; done
  PIDS=()
  for i in $(seq "$N"); do
    local extra="" key
    [ "$how" = srt-aes ] && extra=', "srt_passphrase": "benchpassphrase1"'
    key=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
      -d "{\"name\": \"s$i\"$extra}" "http://127.0.0.1:$http/api/v1/streams" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
    local out
    case $how in
      rtmp) out=(-f flv "rtmp://127.0.0.1:$rtmp/live/$key") ;;
      srt) out=(-f mpegts "srt://127.0.0.1:$srt?streamid=#!::r=live/$key,m=publish") ;;
      srt-aes) out=(-f mpegts "srt://127.0.0.1:$srt?streamid=#!::r=live/$key,m=publish&passphrase=benchpassphrase1&pbkeylen=16") ;;
    esac
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy "${out[@]}" \
      </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
  sleep "$WARMUP"
  local t0 t1 segs
  t0=$(ticks "$SERVER")
  sleep "$WINDOW"
  t1=$(ticks "$SERVER")
  segs=$(curl -s "http://127.0.0.1:$http/live/s1/mono.m3u8" | grep -c '^seg' || true)
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true; SERVER=
  python3 -c "import sys; t=(int(sys.argv[1])-int(sys.argv[2]))/int(sys.argv[3]); print(f'{sys.argv[4]:8s} {int(sys.argv[5])} streams: {100*t/int(sys.argv[6]):6.2f} % CPU total, {100*t/int(sys.argv[6])/int(sys.argv[5]):5.2f} % per stream (s1 has {sys.argv[7]} segments)')" \
    "$t1" "$t0" "$HZ" "$how" "$N" "$WINDOW" "$segs"
  echo "$(( t1 - t0 ))" > "$WORK/$how.ticks"
}

echo "ugc-server $UGC_BIN, $N x 720p30 1.5 Mbps, ${WINDOW}s window"
run_case rtmp
run_case srt
run_case srt-aes
python3 -c "import sys; r,s,a=[int(open(f'$WORK/{k}.ticks').read()) for k in ('rtmp','srt','srt-aes')]; print(f'SRT / RTMP CPU: {s/max(r,1):.2f}x   SRT AES-128 / RTMP: {a/max(r,1):.2f}x')"
