#!/usr/bin/env bash
# The cost of a `/metrics` scrape of a node with N live streams (issue #16:
# under 50 ms and under 2 MB at 1,000). ugc-server (release) with N streams
# created through the API, each published over RTMP by ffmpeg (a tiny
# 160x90 2 fps H.264 clip, copied: the streams are real Hub streams with a
# publisher, packaged to HLS; P ffmpeg processes fan out with the tee
# muxer, at most ~150 outputs each: a tee opens them one by one, and the
# first ones must not sit idle past the 30 s RTMP idle limit). Then
# SCRAPES scrapes one after the other: time and size of each (p50, p95,
# max), the families, and the server's CPU per scrape.
#
# Env: N=1000 P=8 SCRAPES=20 UGC_BIN=... (default: the release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-1000}
P=${P:-8}
SCRAPES=${SCRAPES:-20}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
WORK=$(mktemp -d /tmp/ugc-metrics-bench.XXXXXX)
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
ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=160x90:rate=2 -t 30 \
  -c:v libx264 -preset ultrafast -g 2 -pix_fmt yuv420p -f flv "$WORK/tiny.flv"

rtmp=$(free_port 1); http=$(free_port 1); srt=$(free_port 2)
# One address publishes every stream: exempt it from the per-address caps.
cat > "$WORK/ugc.toml" <<EOF
max_rtmp_connections = $((N + 100))
ingest_cap_exempt = ["127.0.0.1"]
EOF
UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --config "$WORK/ugc.toml" --data "$WORK/data" \
  --rtmp 127.0.0.1:$rtmp --http 127.0.0.1:$http --srt 127.0.0.1:$srt \
  --public-host 127.0.0.1 >/dev/null 2>"$WORK/server.log" &
SERVER=$!
wait_http "$http"

echo "creating $N streams"
python3 - "$http" "$TOKEN" "$N" > "$WORK/keys" <<'EOF'
import json, sys, urllib.request
port, token, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
for i in range(n):
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/api/v1/streams", method="POST",
        data=json.dumps({"name": f"m{i}"}).encode(),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
    with urllib.request.urlopen(req) as r:
        print(json.load(r)["key"])
EOF

echo "publishing them from $P ffmpeg processes"
mapfile -t keys < "$WORK/keys"
per=$(( (N + P - 1) / P ))
for ((p = 0; p < P; p++)); do
  outs=()
  for ((i = p * per; i < (p + 1) * per && i < N; i++)); do
    outs+=("[f=flv:onfail=ignore]rtmp://127.0.0.1:$rtmp/live/${keys[$i]}")
  done
  tee=$(IFS='|'; echo "${outs[*]}")
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$WORK/tiny.flv" \
    -map 0 -c copy -f tee "$tee" </dev/null >/dev/null 2>"$WORK/ffmpeg-$p.log" &
  PIDS+=($!)
done

live() {
  curl -s "http://127.0.0.1:$http/metrics" | grep -c '^ugc_stream_publishing{.*} 1$' || true
}
for _ in $(seq 300); do
  [ "$(live)" -ge "$N" ] && break
  sleep 1
done
echo "streams publishing: $(live) of $N"
if [ "$(live)" -lt "$N" ]; then
  echo "--- server log (warnings):"; sort "$WORK/server.log" | uniq -c | sort -rn | head -5
  for f in "$WORK"/ffmpeg-*.log; do echo "--- $f"; sort "$f" | uniq -c | sort -rn | head -3; done
fi
sleep 5

t0=$(ticks "$SERVER")
for ((i = 0; i < SCRAPES; i++)); do
  curl -s -o "$WORK/last.txt" -w '%{time_total} %{size_download}\n' "http://127.0.0.1:$http/metrics"
done > "$WORK/scrapes"
t1=$(ticks "$SERVER")
# The server's CPU in the scrape window includes ingesting N streams: the
# same window without scrapes is the baseline.
sleep 0.2
b0=$(ticks "$SERVER")
sleep "$(awk '{s += $1} END {printf "%.2f", s}' "$WORK/scrapes")"
b1=$(ticks "$SERVER")
families=$(grep -c '^# TYPE' "$WORK/last.txt" || true)
samples=$(grep -vc '^#' "$WORK/last.txt" || true)
python3 - "$WORK/scrapes" "$N" "$families" "$samples" "$((t1 - t0))" "$((b1 - b0))" "$HZ" <<'EOF'
import statistics, sys
rows = [tuple(map(float, l.split())) for l in open(sys.argv[1]) if l.strip()]
n, families, samples = sys.argv[2], sys.argv[3], sys.argv[4]
scrape_ticks, base_ticks, hz = int(sys.argv[5]), int(sys.argv[6]), int(sys.argv[7])
t = sorted(r[0] * 1000 for r in rows)
size = sorted(r[1] for r in rows)
p95 = t[min(len(t) - 1, round(0.95 * (len(t) - 1)))]
print(f"/metrics of a node with {n} live streams, {len(rows)} scrapes one after the other:")
print(f"  time p50 {statistics.median(t):.1f} ms, p95 {p95:.1f} ms, max {t[-1]:.1f} ms")
print(f"  size {size[-1] / 1e6:.2f} MB ({size[-1] / int(n):.0f} B per stream), "
      f"{families} families, {samples} samples")
per = (scrape_ticks - base_ticks) / hz / len(rows) * 1000
print(f"  server CPU per scrape {per:.1f} ms (the window's minus the same length without scrapes)")
EOF
