#!/usr/bin/env bash
# Many LL-HLS viewers on one stream (issue #17: 5,000 viewers, p99 from a
# part's availability to its delivery under one part duration, RSS < 1 GB).
#
# One release ugc-server (200 ms parts, 1 s segments), one ffmpeg publisher looping a small clip (-c copy, so the
# publisher costs next to nothing), and benches/src/bin/ll_fanout.rs: N
# viewers, each on its own connection doing blocking reloads and fetching
# every part. Prints the fan-out spread, the server's CPU, peak RSS and
# descriptors. The viewers run on the same 2 cores as the server: their
# own CPU is in the figures' noise, so the script prints it too.
#
# Env: N=5000 SECONDS_RUN=30 BITRATE=400k UGC_BIN=... (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

N=${N:-5000}
SECONDS_RUN=${SECONDS_RUN:-30}
BITRATE=${BITRATE:-400k}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
FANOUT_BIN=$TARGET/release/ll_fanout
MEDIA=${TMPDIR:-/tmp}/ugc-test-media
CLIP=$MEDIA/viewers_426x240_30fps_1sgop_${BITRATE}_20s.mp4
WORK=$(mktemp -d /tmp/ugc-viewers.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
cargo build --release --locked -q -p ugc-benches --bin ll_fanout
ulimit -n 20000 2>/dev/null || ulimit -n "$(ulimit -Hn)"
[ "$(ulimit -n)" -gt $((N * 2 + 200)) ] || { echo "need $((N * 2 + 200)) descriptors, have $(ulimit -n)" >&2; exit 1; }

mkdir -p "$MEDIA"
if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=426x240:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 20 \
    -c:v libx264 -preset veryfast -b:v "$BITRATE" -g 30 -keyint_min 30 -sc_threshold 0 \
    -pix_fmt yuv420p -c:a aac -b:a 64k "$CLIP.tmp.mp4"
  mv "$CLIP.tmp.mp4" "$CLIP"
fi

# One address holds every viewer: lift the per-address cap (default 1,024).
cat >"$WORK/ugc.toml" <<EOF
[http_limits]
max_connections_per_ip = $((N + 100))
EOF
UGC_ADMIN_TOKEN=$TOKEN "$UGC_BIN" --config "$WORK/ugc.toml" --data "$WORK/data" \
  --rtmp 127.0.0.1:19960 --http 127.0.0.1:18160 --srt 127.0.0.1:19961 \
  --public-host 127.0.0.1 --part-ms 200 --segment-ms 1000 >"$WORK/ugc.log" 2>&1 &
UGC_PID=$!
PIDS+=($UGC_PID)
for _ in $(seq 1 100); do curl -s -o /dev/null 127.0.0.1:18160/ && break; sleep 0.1; done
KEY=$(curl -s -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
  -d '{"name":"viewers"}' 127.0.0.1:18160/api/v1/streams |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
  -f flv "rtmp://127.0.0.1:19960/live/$KEY" 2>"$WORK/ffmpeg.log" &
PIDS+=($!)
URL=http://127.0.0.1:18160/live/viewers/mono.m3u8
for _ in $(seq 1 100); do curl -sf -o /dev/null "$URL" && break; sleep 0.2; done
sleep 3

rss_mb() { awk '/^VmRSS/ {print int($2 / 1024)}' "/proc/$1/status"; }
echo "ugc-server before: RSS $(rss_mb $UGC_PID) MB, fds $(ls /proc/$UGC_PID/fd | wc -l)"
t0=$(ticks $UGC_PID)
"$FANOUT_BIN" "$URL" "$N" "$SECONDS_RUN" >"$WORK/fanout.json" &
FAN=$!
peak_rss=0 peak_fds=0
while kill -0 $FAN 2>/dev/null; do
  r=$(rss_mb $UGC_PID); f=$(ls /proc/$UGC_PID/fd | wc -l)
  [ "$r" -gt "$peak_rss" ] && peak_rss=$r
  [ "$f" -gt "$peak_fds" ] && peak_fds=$f
  fan_ticks=$(ticks $FAN 2>/dev/null || echo "${fan_ticks:-0}")
  sleep 1
done
wait $FAN
t1=$(ticks $UGC_PID)
echo "$N viewers for ${SECONDS_RUN}s: $(cat "$WORK/fanout.json")"
python3 - "$WORK/fanout.json" "$t0" "$t1" "$HZ" "$SECONDS_RUN" "$peak_rss" "$peak_fds" "${fan_ticks:-0}" <<'EOF'
import json, sys
r = json.load(open(sys.argv[1]))
t0, t1, hz, secs = int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
cpu = (t1 - t0) / hz
p99 = r["part_delivered_after_available_ms"]["p99"]
print(f"ugc-server: CPU {cpu:.1f} s over {secs:.0f} s ({cpu / secs * 100:.0f} % of a core), "
      f"peak RSS {sys.argv[6]} MB, peak fds {sys.argv[7]}; "
      f"{cpu / max(r['delivered_mbit'], 1e-9) * 1000:.2f} ms CPU per Mbit delivered")
print(f"viewers' own CPU: {int(sys.argv[8]) / hz:.1f} s")
print(f"goal p99 part delivery < 200 ms: {p99:.0f} ms -> {'met' if p99 < 200 else 'NOT met'}; "
      f"goal RSS < 1024 MB: {'met' if int(sys.argv[6]) < 1024 else 'NOT met'}")
EOF
