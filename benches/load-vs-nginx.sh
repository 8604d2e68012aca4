#!/usr/bin/env bash
# ugc-server vs nginx-rtmp on the same input, side by side.
#
# 1. Ingest + HLS packaging: N ffmpeg publishers (-re, -c copy, 720p30
#    1.5 Mbps H.264 + AAC, looped) to each server in turn; CPU seconds of the
#    server's processes over the same window, per stream, and the ratio.
# 2. HLS delivery: wrk (200 connections) on one segment from ugc-server vs
#    nginx serving the same bytes as a static file; requests/s and ratio.
# 3. Viewers: ugc-server RSS with 10 and 1000 concurrent wrk connections.
#
# Env: COUNTS="8 32" WINDOW=20 WARMUP=20 REPEAT=3 UGC_BIN=... (defaults below),
# UGC_ARGS: extra ugc-server flags (e.g. "--ingest-batch-ms 0" measures it
# reading as data arrives, as it does for streams with LL-HLS viewers; with
# no viewer here, the default batches its reads).
# WARMUP covers ugc's live window filling up (6 x 2 s segments + grace held
# in memory): measured during the fill, first-touch page faults of that
# memory (~33 k per 20 s at 32 streams, ~1 k once it is full) count
# against ugc, while nginx-rtmp keeps its segments in files.
# Each count runs REPEAT rounds of ugc then nginx; the ratio is the median of
# the rounds' ratios (single windows vary by +-20 % on a 2-core VM).
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-"8 32"}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-20}
REPEAT=${REPEAT:-3}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
read -r -a UGC_ARGS <<<"${UGC_ARGS:-}"
NGINX_MOD=/usr/lib/nginx/modules/ngx_rtmp_module.so
WORK=$(mktemp -d /tmp/ugc-bench.XXXXXX)
chmod 755 "$WORK"
MEDIA_DIR=${TMPDIR:-/tmp}/ugc-test-media
CLIP=$MEDIA_DIR/bench_720p30_1500k_aac_20s.mp4
HZ=$(getconf CLK_TCK)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  pkill -f "$WORK" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
for c in ffmpeg nginx wrk; do command -v $c >/dev/null || { echo "missing $c (scripts/install-deps.sh bench)" >&2; exit 1; }; done
[ -e "$NGINX_MOD" ] || { echo "missing libnginx-mod-rtmp" >&2; exit 1; }

mkdir -p "$MEDIA_DIR"
if [ ! -f "$CLIP" ]; then
  echo "making the 720p30 1.5 Mbps test clip"
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=1280x720:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" -t 20 \
    -c:v libx264 -preset veryfast -b:v 1500k -maxrate 1500k -bufsize 3000k -g 60 -keyint_min 60 \
    -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k "$CLIP.tmp.mp4"
  mv "$CLIP.tmp.mp4" "$CLIP"
fi

# CPU ticks (user+system) of a set of pids.
ticks() {
  local t=0
  for p in "$@"; do
    [ -r "/proc/$p/stat" ] || continue
    local s; s=$(sed 's/^.*) //' "/proc/$p/stat")
    # fields after the comm: state is $1, utime $12, stime $13
    t=$((t + $(echo "$s" | awk '{print $12 + $13}')))
  done
  echo $t
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }

ADMIN=bench-admin-token-0123456789abcdef
# Key of stream s$1 on ugc-server (created through the control API), or the
# stream name itself for nginx-rtmp, which takes any name.
ugc_key() {
  curl -s -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
    -d "{\"name\": \"s$1\"}" 127.0.0.1:18080/api/v1/streams >/dev/null
  curl -s -X POST -H "Authorization: Bearer $ADMIN" 127.0.0.1:18080/api/v1/streams/s$1/key \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

publishers() { # target(ugc|nginx) url_prefix count
  local target=$1 prefix=$2 n=$3 name
  for i in $(seq 1 "$n"); do
    if [ "$target" = ugc ]; then name=$(ugc_key "$i"); else name="s$i"; fi
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
      -f flv "$prefix/$name" </dev/null >/dev/null 2>&1 &
    PIDS+=($!)
  done
}
stop_publishers() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  for p in "${PIDS[@]:-}"; do wait "$p" 2>/dev/null || true; done
  PIDS=()
}

start_ugc() {
  UGC_ADMIN_TOKEN=$ADMIN "$UGC_BIN" --data "$WORK/ugc-data" --rtmp 127.0.0.1:19935 --http 127.0.0.1:18080 \
    --public-host 127.0.0.1 "${UGC_ARGS[@]}" >"$WORK/ugc.log" 2>&1 &
  UGC_PID=$!
  for _ in $(seq 1 50); do curl -s -o /dev/null 127.0.0.1:18080/ && break; sleep 0.1; done
  kill -0 "$UGC_PID" || { cat "$WORK/ugc.log"; exit 1; }
}

start_nginx() {
  mkdir -p "$WORK/nginx-hls" "$WORK/nginx-logs" "$WORK/static"
  chmod 777 "$WORK/nginx-hls" "$WORK/static"
  cat >"$WORK/nginx.conf" <<EOF
load_module $NGINX_MOD;
daemon on;
pid $WORK/nginx.pid;
worker_processes 1;
user root;
error_log $WORK/nginx-logs/error.log warn;
events { worker_connections 4096; }
rtmp {
  server {
    listen 127.0.0.1:19936;
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
  sendfile on;
  server {
    listen 127.0.0.1:18081;
    root $WORK/static;
    location / { add_header Cache-Control "public, max-age=31536000, immutable"; }
  }
}
EOF
  nginx -c "$WORK/nginx.conf" -p "$WORK"
  sleep 0.5
}
nginx_pids() { local m; m=$(cat "$WORK/nginx.pid"); echo "$m" $(pgrep -P "$m"); }

measure() { # label pids... -> prints cpu seconds over WINDOW
  local a b; a=$(ticks "$@"); sleep "$WINDOW"; b=$(ticks "$@")
  python3 -c "print(f'{($b - $a) / $HZ:.2f}')"
}

echo "== ingest + HLS packaging, ${WINDOW}s windows after ${WARMUP}s warm-up, $REPEAT rounds =="
printf '%-4s %-6s %14s %14s %10s %14s %14s\n' N round ugc_cpu_s nginx_cpu_s ratio ugc_per_stream nginx_per_str
for n in $COUNTS; do
  rounds=()
  for r in $(seq 1 "$REPEAT"); do
    start_ugc
    publishers ugc rtmp://127.0.0.1:19935/live "$n"
    sleep "$WARMUP"
    ugc=$(measure "$UGC_PID")
    live=$(curl -s 127.0.0.1:18080/live/s1/mono.m3u8 | grep -c '^seg-' || true)
    stop_publishers
    kill "$UGC_PID"; wait "$UGC_PID" 2>/dev/null || true
    rm -rf "$WORK/ugc-data"

    start_nginx
    publishers nginx rtmp://127.0.0.1:19936/live "$n"
    sleep "$WARMUP"
    # shellcheck disable=SC2046
    ngx=$(measure $(nginx_pids))
    nlive=$(ls "$WORK/nginx-hls" | grep -c '\.ts$' || true)
    stop_publishers
    kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; sleep 0.5
    rm -rf "$WORK/nginx-hls"
    python3 - "$n" "$r" "$ugc" "$ngx" <<'PY'
import sys
n, r, u, g = int(sys.argv[1]), sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
ratio = u / g if g > 0 else float('inf')
print(f"{n:<4} {r:<6} {u:14.2f} {g:14.2f} {ratio:10.2f} {u/n:14.3f} {g/n:14.3f}")
PY
    echo "            (ugc s1 playlist segments: $live; nginx .ts files: $nlive)"
    rounds+=("$ugc:$ngx")
  done
  python3 - "$n" "${rounds[@]}" <<'PY'
import statistics, sys
n = int(sys.argv[1])
pairs = [tuple(map(float, a.split(':'))) for a in sys.argv[2:]]
ratios = sorted(u / g for u, g in pairs if g > 0)
u = statistics.median(p[0] for p in pairs)
g = statistics.median(p[1] for p in pairs)
print(f"{n:<4} median {u:14.2f} {g:14.2f} {statistics.median(ratios):10.2f} {u/n:14.3f} {g/n:14.3f}"
      f"   (ratios {', '.join(f'{r:.2f}' for r in ratios)})")
PY
done

echo
echo "== HLS segment delivery: wrk -c 200 -d 10s, same bytes =="
start_ugc
publishers ugc rtmp://127.0.0.1:19935/live 1
for _ in $(seq 1 100); do curl -s 127.0.0.1:18080/live/s1/mono.m3u8 | grep -q '^seg-' && break; sleep 0.2; done
SEG=$(curl -s 127.0.0.1:18080/live/s1/mono.m3u8 | grep '^seg-' | head -1)
curl -s -o "$WORK/seg.m4s" "127.0.0.1:18080/live/s1/$SEG"
start_nginx
cp "$WORK/seg.m4s" "$WORK/static/seg.m4s"; chmod 644 "$WORK/static/seg.m4s"
SIZE=$(stat -c %s "$WORK/seg.m4s")
ugc_rps=$(wrk -t2 -c200 -d10s "http://127.0.0.1:18080/live/s1/$SEG" | awk '/Requests\/sec/ {print $2}')
ngx_rps=$(wrk -t2 -c200 -d10s "http://127.0.0.1:18081/seg.m4s" | awk '/Requests\/sec/ {print $2}')
python3 -c "print(f'segment {$SIZE} bytes: ugc {float(\"$ugc_rps\"):.0f} req/s, nginx static {float(\"$ngx_rps\"):.0f} req/s, ratio {float(\"$ugc_rps\")/float(\"$ngx_rps\"):.2f}')"

echo
echo "== ugc-server memory with concurrent viewers (playlist + segment) =="
for c in 10 1000; do
  wrk -t2 -c"$c" -d8s "http://127.0.0.1:18080/live/s1/$SEG" >/dev/null 2>&1 &
  W=$!
  sleep 6
  echo "viewers $c: RSS $(rss_kb "$UGC_PID") kB"
  wait $W || true
done
