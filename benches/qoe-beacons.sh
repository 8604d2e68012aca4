#!/usr/bin/env bash
# What players' QoE beacons cost the origin (issue #16: under 1 % of a core
# at 1,000 viewers). ugc-server (release) with one stream published by
# ffmpeg (a 320x180 clip, copied); then ROUNDS rounds, side by side, each
# of DURATION seconds without beacons (the baseline: ingest and packaging only) and
# DURATION seconds with VIEWERS simulated players posting a beacon every 10 s each
# (VIEWERS / 10 beacons a second, as the watch page's player does) from 64
# loopback addresses over keep-alive connections, and DURATION seconds of
# the same rate of GETs of the stream's multivariant playlist (what any
# HTTP request costs this server at that rate). The difference of the
# server's CPU to the baseline is the beacons' cost; also per beacon, and
# the /metrics families they add.
#
# Env: VIEWERS="1000 10000" ROUNDS=3 DURATION=30 UGC_BIN=... (default: the
# release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

VIEWERS=${VIEWERS:-"1000 10000"}
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

# Posts beacons of $1 viewers at $1/10 a second for $2 seconds (or with
# $3 = get, the same rate of GETs of the stream's multivariant playlist:
# the cheapest request a player makes, for comparison); prints "sent
# status-counts lateness".
beacons() {
  python3 - "$http" "$1" "$2" "${3:-post}" <<'EOF'
import collections, http.client, sys, time
port, viewers, seconds, kind = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
rate = viewers / 10.0
addrs = [f"127.0.4.{i + 1}" for i in range(64)]
conns = {}
def conn(a):
    c = conns.get(a)
    if c is None:
        c = conns[a] = http.client.HTTPConnection("127.0.0.1", port, source_address=(a, 0), timeout=5)
    return c
status = collections.Counter()
start = time.monotonic()
n = 0
while True:
    due = start + n / rate
    now = time.monotonic()
    if due - start >= seconds:
        break
    if due > now:
        time.sleep(due - now)
    v = n % viewers
    a = addrs[v % len(addrs)]
    body = f"sid=v{v}&played_ms=10000&latency_ms=3000" + ("&startup_ms=800" if n < viewers else "")
    if n % 50 == 7:
        body += "&stalls=400"
    c = conn(a)
    try:
        if kind == "get":
            c.request("GET", "/live/qoe/index.m3u8")
        else:
            c.request("POST", "/live/qoe/qoe", body, {"Content-Type": "application/x-www-form-urlencoded"})
        r = c.getresponse()
        r.read()
        status[r.status] += 1
    except Exception as e:
        status[type(e).__name__] += 1
        conns.pop(a, None)
    n += 1
late = time.monotonic() - start - seconds
print(n, dict(status), f"{late:.2f}")
EOF
}

for v in $VIEWERS; do
  for ((r = 1; r <= ROUNDS; r++)); do
    b0=$(ticks "$SERVER"); sleep "$SECONDS_EACH"; b1=$(ticks "$SERVER")
    t0=$(ticks "$SERVER"); out=$(beacons "$v" "$SECONDS_EACH"); t1=$(ticks "$SERVER")
    g0=$(ticks "$SERVER"); gout=$(beacons "$v" "$SECONDS_EACH" get); g1=$(ticks "$SERVER")
    python3 - "$v" "$SECONDS_EACH" "$((b1 - b0))" "$((t1 - t0))" "$((g1 - g0))" "$HZ" "$out" "$gout" <<'EOF'
import sys
v, secs = int(sys.argv[1]), float(sys.argv[2])
base, load, gets, hz = (int(x) for x in sys.argv[3:7])
out, gout = sys.argv[7], sys.argv[8]
sent = int(out.split()[0])
pct = lambda t: t / hz / secs * 100
print(f"{v:>6} viewers ({sent / secs:.0f} beacons/s): server CPU {pct(base):.2f} % without, "
      f"{pct(load):.2f} % with beacons: +{pct(load) - pct(base):.2f} % of a core, "
      f"{(load - base) / hz / sent * 1e6:.0f} us per beacon; the same rate of playlist GETs "
      f"+{pct(gets) - pct(base):.2f} %, {(gets - base) / hz / sent * 1e6:.0f} us per GET "
      f"[{out.split(' ', 1)[1]}; {gout.split(' ', 1)[1]}]")
EOF
  done
done
echo "families: $(curl -s "http://127.0.0.1:$http/metrics" | grep -c '^# TYPE ugc_qoe_')," \
  "viewers counted: $(curl -s "http://127.0.0.1:$http/metrics" | grep '^ugc_stream_viewers{stream="live/qoe"}' | awk '{print $2}')"
