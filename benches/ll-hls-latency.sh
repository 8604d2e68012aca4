#!/usr/bin/env bash
# Latency side by side, one encode fed to three servers (ffmpeg tee, -re,
# 640x360 30 fps, 1 s GOP, x264 zerolatency + AAC):
#   A. ugc-server LL-HLS (2 s segments, 200 ms parts)
#   B. ugc-server classic HLS (2 s segments, --part-ms 0)
#   C. nginx-rtmp HLS (2 s fragments)
# 1. Server side: when each LL part / classic segment becomes fetchable,
#    relative to the wall clock of its first frame (benches/ll_hls_probe.py).
# 2. Player: hls.js in headless Chromium (tests/browser/play.mjs), latency it
#    reports and wall clock minus PROGRAM-DATE-TIME of the frame on screen.
# 3. Fan-out: FANOUT clients doing blocking reloads on A; CPU per delivered
#    Mbit and spread of answer times for each new part.
#
# Env: PLAY_S=20 FANOUT=1000 FANOUT_S=15 UGC_BIN=... (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

PLAY_S=${PLAY_S:-20}
FANOUT=${FANOUT:-1000}
FANOUT_S=${FANOUT_S:-15}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
FANOUT_BIN=$TARGET/release/ll_fanout
NGINX_MOD=/usr/lib/nginx/modules/ngx_rtmp_module.so
WORK=$(mktemp -d /tmp/ugc-llbench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
TOKEN=bench-admin-token-0123456789

cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
cargo build --release --locked -q -p ugc-benches --bin ll_fanout
for c in ffmpeg nginx node python3; do command -v $c >/dev/null || { echo "missing $c (scripts/install-deps.sh bench browser)" >&2; exit 1; }; done
[ -e "$NGINX_MOD" ] || { echo "missing libnginx-mod-rtmp" >&2; exit 1; }
[ -d tests/browser/node_modules/hls.js ] || (cd tests/browser && npm ci --no-audit --no-fund >/dev/null)


start_ugc() { # name rtmp http part_ms
  # Each server gets its own SRT port (the default 9000 can be bound once).
  UGC_ADMIN_TOKEN=$TOKEN "$UGC_BIN" --data "$WORK/$1" --rtmp "127.0.0.1:$2" --http "127.0.0.1:$3" \
    --srt "127.0.0.1:$(($2 + 100))" --public-host 127.0.0.1 --part-ms "$4" >"$WORK/$1.log" 2>&1 &
  PIDS+=($!)
  for _ in $(seq 1 100); do curl -s -o /dev/null "127.0.0.1:$3/" && break; sleep 0.1; done
}
create_stream() { # http -> key
  curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"bench"}' "127.0.0.1:$1/api/v1/streams" |
    python3 -c 'import re,sys; t=sys.stdin.read(); m=re.search(r"\"key\":\s*\"([^\"]+)\"", t); print(m.group(1) if m else sys.exit("create stream: " + t))'
}

start_ugc ll 19945 18090 200
UGC_LL_PID=${PIDS[-1]}
start_ugc classic 19946 18091 0
KEY_LL=$(create_stream 18090)
KEY_CL=$(create_stream 18091)

mkdir -p "$WORK/nginx-hls" "$WORK/nginx-logs"
chmod 777 "$WORK/nginx-hls"
cat >"$WORK/nginx.conf" <<EOF
load_module $NGINX_MOD;
daemon on;
pid $WORK/nginx.pid;
worker_processes 1;
user root;
error_log $WORK/nginx-logs/error.log warn;
events { worker_connections 1024; }
rtmp {
  server {
    listen 127.0.0.1:19947;
    application live {
      live on;
      hls on;
      hls_path $WORK/nginx-hls;
      hls_fragment 2s;
      hls_playlist_length 12s;
    }
  }
}
http {
  access_log off;
  server {
    listen 127.0.0.1:18092;
    location /hls/ {
      alias $WORK/nginx-hls/;
      types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
      add_header Access-Control-Allow-Origin * always;
      add_header Cache-Control no-cache;
    }
  }
}
EOF
nginx -c "$WORK/nginx.conf" -p "$WORK"

tee_publish "rtmp://127.0.0.1:19945/live/$KEY_LL" "rtmp://127.0.0.1:19946/live/$KEY_CL" "rtmp://127.0.0.1:19947/live/bench"
echo "publishing; warming up 10 s" >&2
sleep 10

LL=http://127.0.0.1:18090/live/bench
CL=http://127.0.0.1:18091/live/bench
NG=http://127.0.0.1:18092/hls/bench.m3u8

echo "== 1. server-side availability (${PLAY_S}s) =="
python3 benches/ll_hls_probe.py avail "$LL/mono.m3u8" "$PLAY_S" "$WORK/progress.log" > "$WORK/avail-ll.json" &
p1=$!
python3 benches/ll_hls_probe.py segavail "$CL/mono.m3u8" "$PLAY_S" "$WORK/progress.log" > "$WORK/avail-cl.json" &
p2=$!
wait "$p1" "$p2"
echo "ugc LL-HLS parts:      $(cat "$WORK/avail-ll.json")"
echo "ugc classic segments:  $(cat "$WORK/avail-cl.json")"

echo "== 2. hls.js in headless Chromium (${PLAY_S}s each) =="
for spec in "ugc LL-HLS|$LL/index.m3u8|1" "ugc classic HLS|$CL/index.m3u8|0" "nginx-rtmp HLS|$NG|0"; do
  IFS='|' read -r label url ll <<<"$spec"
  res=$(node tests/browser/play.mjs --url "$url" --seconds "$PLAY_S" --low-latency "$ll" || echo '{"error":"play failed"}')
  echo "$label: $res"
done

echo "== 3. fan-out: $FANOUT LL-HLS clients doing blocking reloads (${FANOUT_S}s) =="
ulimit -n 8192 2>/dev/null || true
t0=$(ticks "$UGC_LL_PID")
res=$("$FANOUT_BIN" "$LL/mono.m3u8" "$FANOUT" "$FANOUT_S")
t1=$(ticks "$UGC_LL_PID")
echo "$res"
python3 - "$res" "$t0" "$t1" "$HZ" <<'EOF'
import json, sys
r = json.loads(sys.argv[1]); cpu = (int(sys.argv[3]) - int(sys.argv[2])) / int(sys.argv[4])
mbit = r['delivered_mbit'] or float('nan')
print(f"ugc-server CPU {cpu:.2f} s for {mbit} Mbit delivered: {cpu / mbit * 1000:.2f} ms CPU per Mbit")
EOF
