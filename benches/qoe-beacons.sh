#!/usr/bin/env bash
# What players' QoE beacons cost the origin (issue #16: under 1 % of a core
# at 1,000 viewers). ugc-server (release) with one stream published by
# ffmpeg (a 320x180 clip, copied); then ROUNDS rounds, side by side, of
# DURATION-second phases (benches/qoe_load.py makes the traffic, from 64
# loopback addresses over keep-alive connections):
#  1. idle: ingest and packaging only (the baseline of 2 and 3);
#  2. VIEWERS / INTERVAL beacons a second alone (each player posts one
#     every INTERVAL seconds: the origin's --qoe-interval-s, default 20):
#     an otherwise idle server, where every request pays for waking it;
#  3. the same rate of GETs of the multivariant playlist (what any request
#     costs at that rate);
#  4. the VIEWERS players' own traffic: one request a second each (the
#     media playlist and the newest segment every 2 s), which an origin
#     with that many viewers serves anyway;
#  5. 4 with the beacons: their cost on a serving origin (5 - 4);
#  6. nginx (when installed) answering a bare 204 at the beacon rate: the
#     floor of one request on this machine.
# Then the /metrics families the beacons add.
#
# Env: VIEWERS=1000 INTERVALS="10 20" ROUNDS=3 DURATION=30 UGC_BIN=...
# (default: the release build). VIEWERS=10000 asks the client for over
# 10,000 requests a second, more than one Python process sends here: read
# its lateness.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

VIEWERS=${VIEWERS:-1000}
INTERVALS=${INTERVALS:-10 20}
ROUNDS=${ROUNDS:-3}
SECONDS_EACH=${DURATION:-30}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
WORK=$(mktemp -d /tmp/ugc-qoe-bench.XXXXXX)
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
clip=$(bench_clip 320x180 25 300k 30)

rtmp=$(free_port 1); http=$(free_port 1); srt=$(free_port 2)
UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" \
  --rtmp 127.0.0.1:$rtmp --http 127.0.0.1:$http --srt 127.0.0.1:$srt \
  --public-host 127.0.0.1 >/dev/null 2>"$WORK/server.log" &
SERVER=$!
wait_http "$http"
key=$(curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name": "qoe"}' "http://127.0.0.1:$http/api/v1/streams" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$clip" -c copy \
  -f flv "rtmp://127.0.0.1:$rtmp/live/$key" </dev/null >/dev/null 2>"$WORK/ffmpeg.log" &
PIDS+=($!)
for _ in $(seq 100); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$http/live/qoe/index.m3u8")" = 200 ] && break
  sleep 0.2
done
sleep 3

# nginx answering a bare 204 on the beacon's path: the floor of one
# keep-alive request on this machine (parsing, a response, the wake-ups).
NGINX_PID=
if command -v nginx >/dev/null; then
  nport=$(free_port 1)
  mkdir -p "$WORK/nginx"
  cat >"$WORK/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  client_body_temp_path $WORK/nginx/body; proxy_temp_path $WORK/nginx/proxy;
  fastcgi_temp_path $WORK/nginx/fcgi; uwsgi_temp_path $WORK/nginx/uwsgi; scgi_temp_path $WORK/nginx/scgi;
  server { listen 127.0.0.1:$nport; location = /live/qoe/qoe { return 204; } }
}
EOF
  nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" &
  PIDS+=($!)
  for _ in $(seq 50); do [ -s "$WORK/nginx/nginx.pid" ] && break; sleep 0.1; done
  sleep 0.5
  NGINX_PID=$(pgrep -P "$(cat "$WORK/nginx/nginx.pid")" | head -1)
fi

# Server CPU ticks over one phase: $1 = beacons/s, $2 = viewers' requests/s,
# $3 = post|get|nginx, $4 = pid to count (default: ugc); prints
# "ticks|client report".
phase() {
  local pid=${4:-$SERVER} p=$http t0 t1 out
  [ "$3" = nginx ] && p=$nport
  t0=$(ticks "$pid")
  out=$(python3 benches/qoe_load.py "$p" "$SECONDS_EACH" "$1" "$2" "$3" qoe "$v")
  t1=$(ticks "$pid")
  echo "$((t1 - t0))|$out"
}

echo "$ROUNDS rounds of ${SECONDS_EACH} s phases; server CPU in % of a core"
for v in $VIEWERS; do
 for iv in $INTERVALS; do
  rate=$(python3 -c "print($v / $iv)")
  for ((r = 1; r <= ROUNDS; r++)); do
    b0=$(ticks "$SERVER"); sleep "$SECONDS_EACH"; b1=$(ticks "$SERVER")
    beacons=$(phase "$rate" 0 post)
    gets=$(phase "$rate" 0 get)
    players=$(phase 0 "$v" post)
    both=$(phase "$rate" "$v" post)
    floor="0|{} {} 0"
    [ -n "$NGINX_PID" ] && floor=$(phase "$rate" 0 nginx "$NGINX_PID")
    python3 - "$v" "$SECONDS_EACH" "$HZ" "$((b1 - b0))" "$beacons" "$gets" "$players" "$both" "$floor" "$iv" <<'EOF'
import sys
v, secs, hz, base = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
iv = float(sys.argv[10])
def parse(a):
    ticks, report = a.split("|", 1)
    return int(ticks), report
(tb, rb), (tg, rg), (tp, rp), (tv, rv), (tn, rn) = (parse(a) for a in sys.argv[5:10])
rate = v / iv
pct = lambda t: t / hz / secs * 100
per = lambda t: t / hz / (rate * secs) * 1e6
print(f"{v:>6} viewers, a beacon every {iv:.0f} s ({rate:.0f}/s): idle {pct(base):.2f} %; "
      f"beacons alone +{pct(tb - base):.2f} % ({per(tb - base):.0f} us each); "
      f"playlist GETs alone +{pct(tg - base):.2f} % ({per(tg - base):.0f} us); "
      f"players' own traffic ({v} req/s) {pct(tp):.2f} %, with the beacons {pct(tv):.2f} %: "
      f"beacons +{pct(tv - tp):.2f} % ({per(tv - tp):.0f} us each); "
      f"nginx bare 204 at the beacon rate {pct(tn):.2f} % ({per(tn):.0f} us)")
print(f"        clients (sent, statuses, late s): {rb} | {rg} | {rp} | {rv} | {rn}")
EOF
  done
 done
done
echo "families: $(curl -s "http://127.0.0.1:$http/metrics" | grep -c '^# TYPE ugc_qoe_')," \
  "viewers counted: $(curl -s "http://127.0.0.1:$http/metrics" | grep '^ugc_stream_viewers{stream="live/qoe"}' | awk '{print $2}')"
