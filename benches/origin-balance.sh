#!/usr/bin/env bash
# What viewer balancing by redirect costs a new viewer (issue #22): two
# origins with `--balance redirect` behind one control plane, a publishing
# node and an ffmpeg publisher on loopback; N new viewers (requests for
# the stream's multivariant playlist) asked at origin A, side by side with
# N asked with `balanced=1` (served at once, nobody asked): the answer
# time of each kind (p50 / p95 / max, curl's time_total), and where the
# control plane sent the new viewers (A kept, B redirected). Then the
# same after ten viewers are counted at A (their QoE beacons, one beat).
#
# Env: VIEWERS=200 BUILD=debug|release (default debug: the binaries
# `cargo test` builds), SKIP_BUILD=1 to run the binaries built last.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
VIEWERS=${VIEWERS:-200}
cluster_bench_start

cp=$(free_port 1); pub_http=$(free_port 1); rtmp=$(free_port 1); srt=$(free_port 2)
a=$(free_port 1); b=$(free_port 1)
start_control "$WORK" "$cp"
start_publish "$WORK" "$cp" "$rtmp" "$srt" "$pub_http"
for port in "$a" "$b"; do
  "$BIN/ugc-origin" --control-url "http://127.0.0.1:$cp" --http "127.0.0.1:$port" \
    --data "$WORK/origin-$port" --public-host 127.0.0.1 --whep-udp off --segment-ms 1000 \
    --balance redirect >"$WORK/origin-$port.log" 2>&1 &
  PIDS+=($!)
done
wait_http "$pub_http"; wait_http "$a"; wait_http "$b"
answer=$(curl -s -H "Authorization: Bearer $UGC_ADMIN_TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"bench"}' "http://127.0.0.1:$cp/api/v1/streams")
key=$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["key"])' "$answer") ||
  { echo "creating the stream: $answer" >&2; exit 1; }
sleep 3
ffmpeg -hide_banner -loglevel error -nostdin -re \
  -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
  -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 \
  -b:v 1200k -pix_fmt yuv420p -c:a aac -b:a 96k -t 300 -f flv "rtmp://127.0.0.1:$rtmp/live/$key" \
  2>"$WORK/ffmpeg.log" &
PIDS+=($!)
for port in "$a" "$b"; do
  for _ in $(seq 300); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/live/bench/index.m3u8?balanced=1")" = 200 ] && break
    sleep 0.1
  done
done
# Both origins' beats carry the stream.
sleep 3

# $1: query; prints "p50 p95 max kept redirected" over VIEWERS requests.
round() {
  local out=$WORK/times
  : >"$out"
  for _ in $(seq "$VIEWERS"); do
    curl -s -o /dev/null -w '%{http_code} %{time_total}\n' \
      "http://127.0.0.1:$a/live/bench/index.m3u8$1" >>"$out"
  done
  python3 - "$out" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
t = sorted(float(r[1]) * 1000 for r in rows)
q = lambda p: t[min(len(t) - 1, int(p * len(t)))]
kept = sum(r[0] == "200" for r in rows)
sent = sum(r[0] == "302" for r in rows)
print(f"p50 {q(0.5):.2f} ms, p95 {q(0.95):.2f} ms, max {t[-1]:.2f} ms; kept at A {kept}, redirected to B {sent}")
PY
}

echo "new viewers at origin A ($VIEWERS each, $BUILD binaries, sequential):"
echo "  served at once (balanced=1):    $(round '?balanced=1')"
echo "  balanced (asks the control plane): $(round '')"
for v in $(seq 10); do
  curl -s -o /dev/null -d "sid=bench$v&startup_ms=500&played_ms=1000" \
    "http://127.0.0.1:$a/live/bench/qoe"
done
sleep 4.5
echo "  ten viewers counted at A:       $(round '')"
