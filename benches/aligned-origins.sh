#!/usr/bin/env bash
# What aligned segments cost (issue #22): ugc-origin with
# --aligned-segments true and false, side by side, ROUNDS times each:
# control plane, publishing node and origin as processes on loopback, an
# ffmpeg publisher (1 s GOPs), and the time from the publisher's start to
# the first segment listed in the origin's media playlist, and to its
# first LL-HLS part. Aligned segments hold a stream's first two segments
# back (they start wherever the origin joined), the price of serving the
# same URIs as every other origin.
#
# Env: ROUNDS=3 SEGMENT_MS=2000 BUILD=debug|release (default debug: the
# binaries `cargo test` builds).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
ROUNDS=${ROUNDS:-3}
SEGMENT_MS=${SEGMENT_MS:-2000}
cluster_bench_start

one_round() { # aligned: true|false; prints "segment_s part_s"
  local aligned=$1 dir=$WORK/$1-$RANDOM
  mkdir -p "$dir"
  local cp pub_http rtmp srt origin
  cp=$(free_port 1); pub_http=$(free_port 1); rtmp=$(free_port 1); srt=$(free_port 2)
  origin=$(free_port 1)
  start_control "$dir" "$cp"
  start_publish "$dir" "$cp" "$rtmp" "$srt" "$pub_http"
  "$BIN/ugc-origin" --control-url "http://127.0.0.1:$cp" --http "127.0.0.1:$origin" \
    --data "$dir/origin" --public-host 127.0.0.1 --whep-udp off --segment-ms "$SEGMENT_MS" \
    --aligned-segments "$aligned" >"$dir/origin.log" 2>&1 &
  PIDS+=($!)
  wait_http "$pub_http"; wait_http "$origin"
  local key
  local answer
  answer=$(curl -s -H "Authorization: Bearer $UGC_ADMIN_TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "http://127.0.0.1:$cp/api/v1/streams")
  key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$answer") ||
    { echo "creating the stream: $answer" >&2; return 1; }
  # Both nodes registered and the origin in the topology.
  sleep 3
  local start; start=$(date +%s.%N)
  ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 \
    -b:v 1200k -pix_fmt yuv420p -c:a aac -b:a 96k -t 40 -f flv "rtmp://127.0.0.1:$rtmp/live/$key" \
    2>"$dir/ffmpeg.log" &
  local ff=$!
  PIDS+=($ff)
  local part="" seg="" now text
  for _ in $(seq 600); do
    text=$(curl -s "http://127.0.0.1:$origin/live/bench/mono.m3u8" || true)
    now=$(date +%s.%N)
    if [ -z "$part" ] && grep -q '^#EXT-X-PART:' <<<"$text"; then
      part=$(python3 -c "print(f'{$now - $start:.2f}')")
    fi
    if grep -q '^#EXTINF' <<<"$text"; then
      seg=$(python3 -c "print(f'{$now - $start:.2f}')")
      break
    fi
    sleep 0.05
  done
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  echo "${seg:-none} ${part:-none}"
}

echo "time from the publisher's start to the origin's first playlist (its first part and first segment)"
echo "(segment ${SEGMENT_MS} ms, 1 s GOPs, $BUILD binaries, $ROUNDS rounds each, alternating)"
for r in $(seq "$ROUNDS"); do
  for aligned in false true; do
    # In this shell, not a process substitution: the nodes a failed round
    # started stay in PIDS, which the EXIT trap stops.
    one_round "$aligned" >"$WORK/round"
    read -r seg part <"$WORK/round"
    echo "round $r aligned=$aligned: first part ${part} s, first segment ${seg} s"
  done
done
