#!/usr/bin/env bash
# What a hop of the relay costs (issue #14), side by side on this machine:
#
# 1. LL-HLS part availability, three hops vs one process: one encode (ffmpeg
#    tee, -re, 640x360 30 fps, 1 s GOP) to ugc-server and to a cluster where
#    the stream goes ugc-publish -> relay node -> ugc-origin (the relay node
#    is a ugc-transcode with no ladder: relay in, relay out). Each part's
#    availability is measured against the publisher's clock
#    (benches/ll_hls_probe.py); goal: p95 added by the hops <= 50 ms.
# 2. CPU and memory per relayed 1080p stream: N copies of a 1080p30
#    4.5 Mbit/s H.264 + AAC clip (ffmpeg -re -c copy, looped) published
#    (a) to a publishing node that sends nothing on: its CPU is the RTMP
#        ingest alone;
#    (b) to the cluster above: the relay node's CPU is a pure relay hop (in
#        and out); the publishing node's CPU minus (a) is what sending over
#        the relay costs. Goal: hop <= 0.5x ingest. The relay node's RSS
#        growth per stream; goal <= 8 MB plus the relay window.
#
# Both parts run for each relay batch of BATCHES (ms, the nodes'
# --relay-batch-ms: frames sent together, less CPU per hop, more latency).
#
# Env: N=4 WINDOW=20 WARMUP=8 PLAY_S=30 ROUNDS=2 BATCHES="0 100",
# UGC_BIN_DIR (default: the release build of ugc-server's package).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-4}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-8}
PLAY_S=${PLAY_S:-30}
ROUNDS=${ROUNDS:-2}
BATCHES=${BATCHES:-0 100}
BIN=${UGC_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}/release}
WORK=$(mktemp -d /tmp/ugc-relay-hop.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
export UGC_NODE_TOKEN=bench-node-token-0123456789abcdef UGC_LOG=warn
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
for b in ugc-server ugc-control ugc-publish ugc-transcode ugc-origin; do
  [ -x "$BIN/$b" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
done
CLIP=$(bench_clip 1920x1080 30 4500k 20)

bg() { # name, binary, args...: started in the background, logged
  local name=$1 b=$2
  shift 2
  "$BIN/$b" "$@" >"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
create() { # http port -> key of a new stream "bench"
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "127.0.0.1:$1/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
stop_all() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}

# A cluster "$1": control (naming the relay node and the origin when $2 is
# relay, nothing when it is none), a publishing node, and with relay the
# relay node and the origin; relay batches of $3 ms. Sets C_HTTP, P_RTMP,
# R_HTTP, O_HTTP.
cluster() {
  local name=$1 shape=$2 batch=${3:-0} topo=()
  C_HTTP=$(free_port 1) P_RTMP=$(free_port 1) R_HTTP=$(free_port 1) O_HTTP=$(free_port 1)
  rm -rf "${WORK:?}/$name"
  mkdir -p "$WORK/$name"
  [ "$shape" = relay ] && topo=(--transcoders "http://127.0.0.1:$R_HTTP" --origins "http://127.0.0.1:$O_HTTP")
  UGC_ADMIN_TOKEN=$TOKEN bg control ugc-control --http "127.0.0.1:$C_HTTP" --data "$WORK/$name/control" \
    --public-host 127.0.0.1 "${topo[@]}"
  wait_http "$C_HTTP"
  local node=(--control-url "http://127.0.0.1:$C_HTTP" --public-host 127.0.0.1)
  if [ "$shape" = relay ]; then
    bg origin ugc-origin "${node[@]}" --http "127.0.0.1:$O_HTTP" --data "$WORK/$name/origin" \
      --whep-udp off --web off
    bg relay ugc-transcode "${node[@]}" --http "127.0.0.1:$R_HTTP" --relay-batch-ms "$batch"
    wait_http "$O_HTTP"
    wait_http "$R_HTTP"
  fi
  local p_http
  p_http=$(free_port 1)
  bg publish ugc-publish "${node[@]}" --http "127.0.0.1:$p_http" --rtmp "127.0.0.1:$P_RTMP" \
    --srt "127.0.0.1:$(free_port 2)" --whip-udp off --relay-batch-ms "$batch"
  wait_http "$p_http"
}

for batch in $BATCHES; do
echo "== 1. LL-HLS part availability: one process vs publish -> relay -> origin, relay batch ${batch} ms (${PLAY_S}s) =="
S_HTTP=$(free_port 1) S_RTMP=$(free_port 1)
rm -rf "$WORK/server"
UGC_ADMIN_TOKEN=$TOKEN bg server ugc-server --data "$WORK/server" --rtmp "127.0.0.1:$S_RTMP" \
  --http "127.0.0.1:$S_HTTP" --srt "127.0.0.1:$(free_port 2)" --whip-udp off --public-host 127.0.0.1
wait_http "$S_HTTP"
cluster avail relay "$batch"
KEY_S=$(create "$S_HTTP")
KEY_C=$(create "$C_HTTP")
tee_publish "rtmp://127.0.0.1:$S_RTMP/live/$KEY_S" "rtmp://127.0.0.1:$P_RTMP/live/$KEY_C"
sleep 10
python3 benches/ll_hls_probe.py avail "http://127.0.0.1:$S_HTTP/live/bench/mono.m3u8" "$PLAY_S" \
  "$WORK/progress.log" >"$WORK/avail-one.json" &
a=$!
python3 benches/ll_hls_probe.py avail "http://127.0.0.1:$O_HTTP/live/bench/mono.m3u8" "$PLAY_S" \
  "$WORK/progress.log" >"$WORK/avail-hops.json" &
b=$!
wait "$a" "$b"
echo "one process (ugc-server):        $(cat "$WORK/avail-one.json")"
echo "three hops (publish/relay/origin): $(cat "$WORK/avail-hops.json")"
python3 - "$WORK/avail-one.json" "$WORK/avail-hops.json" <<'EOF'
import json, sys
one, hops = (json.load(open(p)) for p in sys.argv[1:3])
k = 'part_available_after_first_frame_ms'
if one.get(k) and hops.get(k):
    print(f"added by the hops: p50 {hops[k]['p50'] - one[k]['p50']:+.1f} ms, "
          f"p95 {hops[k]['p95'] - one[k]['p95']:+.1f} ms (goal p95 <= +50 ms)")
EOF
stop_all
done

echo "== 2. CPU and memory: $N x 1080p30 4.5 Mbit/s, ${WINDOW}s windows, $ROUNDS rounds =="
streams() { # http port: N streams b1..bN -> their keys, space-separated
  local i keys=()
  for i in $(seq "$N"); do
    keys+=("$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
      -d "{\"name\":\"b$i\"}" "127.0.0.1:$1/api/v1/streams" |
      python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')")
  done
  echo "${keys[@]}"
}
publish_keys() { # rtmp port, keys...
  local rtmp=$1 k
  shift
  for k in "$@"; do
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
      -f flv "rtmp://127.0.0.1:$rtmp/live/$k" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
}
: >"$WORK/rounds"
for r in $(seq "$ROUNDS"); do
  # (a) RTMP ingest alone.
  cluster ingest none
  # shellcheck disable=SC2046
  publish_keys "$P_RTMP" $(streams "$C_HTTP")
  sleep "$WARMUP"
  x0=$(ticks "$PID_publish")
  sleep "$WINDOW"
  x1=$(ticks "$PID_publish")
  stop_all
  # (b) publish -> relay node -> origin, for each batch.
  for batch in $BATCHES; do
    cluster relay relay "$batch"
    rss0=$(rss_kb "$PID_relay")
    # shellcheck disable=SC2046
    publish_keys "$P_RTMP" $(streams "$C_HTTP")
    sleep "$WARMUP"
    p0=$(ticks "$PID_publish") h0=$(ticks "$PID_relay") o0=$(ticks "$PID_origin")
    sleep "$WINDOW"
    p1=$(ticks "$PID_publish") h1=$(ticks "$PID_relay") o1=$(ticks "$PID_origin")
    rss1=$(rss_kb "$PID_relay")
    segs=$(curl -fs "http://127.0.0.1:$O_HTTP/live/b$N/mono.m3u8" | grep -c '^#EXTINF' || true)
    stop_all
    echo "$r $batch $((x1 - x0)) $((p1 - p0)) $((h1 - h0)) $((o1 - o0)) $rss0 $rss1 $segs" >>"$WORK/rounds"
  done
done
python3 - "$WORK/rounds" "$N" "$WINDOW" "$HZ" <<'EOF'
import sys
rows = [list(map(int, l.split())) for l in open(sys.argv[1])]
n, window, hz = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
pct = lambda ticks: 100 * ticks / hz / window / n  # % of a core per stream
for r, batch, x, p, h, o, rss0, rss1, segs in rows:
    print(f"round {r}, batch {batch} ms: per stream, % of a core: RTMP ingest {pct(x):.2f} | "
          f"publishing node with relay out {pct(p):.2f} (relay out {pct(p - x):+.2f}) | "
          f"relay node (in + out) {pct(h):.2f} = {h / max(x, 1):.2f}x ingest | "
          f"origin {pct(o):.2f} | relay node RSS {rss0 / 1024:.1f} -> {rss1 / 1024:.1f} MB, "
          f"{(rss1 - rss0) / 1024 / n:.1f} MB per stream | origin b{n}: {segs} segments")
EOF
