#!/usr/bin/env bash
# DVR replication (issue #20): how fast a restarted origin restores the
# hole in its archive from the other origin, and what the restore costs
# live viewers, side by side for each replication rate of RATES.
#
# A control plane, a publishing node and two origins (release build). N
# copies of a 1080p30 4.5 Mbit/s clip (ffmpeg -re -c copy, looped) and one
# live 640x360 encode (the probe: its LL-HLS parts are measured against
# the publisher's clock, benches/ll_hls_probe.py) are published and
# recorded by both origins. Origin A is killed (-9) for DOWN seconds and
# restarted on its data directory. Printed per round:
#   - restore: bytes A copied from B (ugc_dvr_sync_bytes_total), when the
#     last arrived, and the MB/s while fetching (A's log);
#   - the probe's part availability at A (p50/p95 after the part's first
#     frame, and the worst) before the kill (baseline) and during the PLAY_S seconds after
#     the restart (the restore), and at B meanwhile (it serves the copy).
#
# Env: N=3 DOWN=60 PLAY_S=20 RATES="64 0" (Mbit/s, --dvr-sync-mbps; 0 =
# unpaced), UGC_BIN_DIR (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-3}
DOWN=${DOWN:-60}
PLAY_S=${PLAY_S:-20}
RATES=${RATES:-64 0}
BIN=${UGC_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}/release}
WORK=$(mktemp -d /tmp/ugc-dvr-restore.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
export UGC_NODE_TOKEN=bench-node-token-0123456789abcdef UGC_LOG=info
PIDS=()
cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT
for b in ugc-control ugc-publish ugc-origin; do
  [ -x "$BIN/$b" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
done
CLIP=$(bench_clip 1920x1080 30 4500k 20)

bg() { # name, binary, args...: started in the background, logged
  local name=$1 b=$2
  shift 2
  "$BIN/$b" "$@" >>"$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  eval "PID_$name=$!"
}
create() { # stream name -> its key (DVR 1 h)
  curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d "{\"name\":\"$1\",\"dvr_hours\":1}" "127.0.0.1:$C_HTTP/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}
synced() { # origin http port -> ugc_dvr_sync_bytes_total
  curl -fs "http://127.0.0.1:$1/metrics" | awk '$1 == "ugc_dvr_sync_bytes_total" {print $2}'
}
avail() { # origin http port, seconds, output file: the probe's part availability
  python3 benches/ll_hls_probe.py avail "http://127.0.0.1:$1/live/probe/mono.m3u8" "$2" \
    "$WORK/progress.log" >"$3"
}
summary() { # json file -> "p50 X p95 Y ms (n parts)"
  python3 - "$1" <<'EOF2'
import json, sys
try:
    d = json.load(open(sys.argv[1])).get('part_available_after_first_frame_ms') or {}
except (OSError, ValueError):
    d = {}
nan = float('nan')
print(f"p50 {d.get('p50', nan):.1f} p95 {d.get('p95', nan):.1f} max {d.get('max', nan):.1f} ms "
      f"({d.get('n', 0)} parts)")
EOF2
}
wait_probe() { # origin http port: until its probe playlist answers (60 s)
  for _ in $(seq 300); do
    curl -fs -o /dev/null "http://127.0.0.1:$1/live/probe/mono.m3u8" && return
    sleep 0.2
  done
  echo "no probe playlist at port $1" >&2
  return 1
}
for rate in $RATES; do
  echo "== rate ${rate} Mbit/s (0 = unpaced): $N x 1080p30 4.5 Mbit/s + the probe, A down ${DOWN}s =="
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
  rm -rf "${WORK:?}"/{control,a,b,publish} "$WORK"/*.log
  C_HTTP=$(free_port 1) P_RTMP=$(free_port 1) P_HTTP=$(free_port 1) A_HTTP=$(free_port 1) B_HTTP=$(free_port 1)
  UGC_ADMIN_TOKEN=$TOKEN bg control ugc-control --http "127.0.0.1:$C_HTTP" --data "$WORK/control" \
    --public-host 127.0.0.1
  wait_http "$C_HTTP"
  node=(--control-url "http://127.0.0.1:$C_HTTP" --public-host 127.0.0.1)
  origin=(--whep-udp off --web off --dvr-sync-mbps "$rate")
  bg a ugc-origin "${node[@]}" --http "127.0.0.1:$A_HTTP" --data "$WORK/a" "${origin[@]}"
  bg b ugc-origin "${node[@]}" --http "127.0.0.1:$B_HTTP" --data "$WORK/b" "${origin[@]}"
  bg publish ugc-publish "${node[@]}" --http "127.0.0.1:$P_HTTP" --rtmp "127.0.0.1:$P_RTMP" \
    --srt "127.0.0.1:$(free_port 2)" --whip-udp off
  wait_http "$A_HTTP"
  wait_http "$B_HTTP"
  wait_http "$P_HTTP"
  sleep 3 # the origins register, the publishing node follows the topology
  tee_publish "rtmp://127.0.0.1:$P_RTMP/live/$(create probe)"
  for i in $(seq "$N"); do
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
      -f flv "rtmp://127.0.0.1:$P_RTMP/live/$(create "load$i")" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
  wait_probe "$A_HTTP"
  wait_probe "$B_HTTP"
  sleep 8
  avail "$A_HTTP" "$PLAY_S" "$WORK/base.json"
  kill -9 "$PID_a"
  sleep "$DOWN"
  bg a ugc-origin "${node[@]}" --http "127.0.0.1:$A_HTTP" --data "$WORK/a" "${origin[@]}"
  wait_http "$A_HTTP"
  restarted=$(date +%s.%N)
  wait_probe "$A_HTTP"
  avail "$A_HTTP" "$PLAY_S" "$WORK/during-a.json" &
  pa=$!
  avail "$B_HTTP" "$PLAY_S" "$WORK/during-b.json" &
  pb=$!
  # Copied bytes sampled every 0.2 s until they stop growing for 15 s
  # (past the settle and a round).
  : >"$WORK/synced"
  last=-1 still=0
  while [ "$still" -lt 75 ]; do
    now=$(synced "$A_HTTP" || echo 0)
    echo "$(date +%s.%N) ${now:-0}" >>"$WORK/synced"
    if [ "${now:-0}" = "$last" ]; then still=$((still + 1)); else still=0; last=${now:-0}; fi
    sleep 0.2
  done
  wait "$pa" "$pb"
  python3 - "$WORK/synced" "$restarted" <<'EOF'
import sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if len(l.split()) == 2]
start = float(sys.argv[2])
total = rows[-1][1]
first = next((t for t, b in rows if b > 0), None)
last = next((t for t, b in rows if b >= total), None)
if not total or first is None:
    print("restore: nothing copied")
else:
    print(f"restore: {total / 1e6:.1f} MB copied, complete {last - start:.1f} s after the restart "
          f"(the hole's last seconds wait for the settle)")
EOF
  echo "probe parts at A before the kill:     $(summary "$WORK/base.json")"
  echo "probe parts at A during the restore:  $(summary "$WORK/during-a.json")"
  echo "probe parts at B during the restore:  $(summary "$WORK/during-b.json")"
  # Throughput while fetching: each track's run of a round (bytes, secs
  # including the pacing), summed.
  sed 's/\x1b\[[0-9;]*m//g' "$WORK/a.log" | python3 -c '
import re, sys
rows = [(int(m.group(1)), float(m.group(2))) for m in
        (re.search(r"archive hole filled.* bytes=(\d+) secs=([0-9.]+)", l) for l in sys.stdin) if m]
b, s = sum(r[0] for r in rows), sum(r[1] for r in rows)
print(f"fetching: {len(rows)} runs, {b / 1e6:.1f} MB in {s:.2f} s: {b / 1e6 / max(s, 1e-3):.1f} MB/s")'
done
