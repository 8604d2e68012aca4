#!/usr/bin/env bash
# DVR figures, side by side with ffmpeg:
#  1. MP4 export: `ugc-server dvr export` vs `ffmpeg -c copy -movflags +faststart`
#     building an MP4 (moov first) from the same archived segments: MB/s and
#     peak memory.
#  2. CPU of the server per published stream, recording on vs off (same load).
# Usage: benches/dvr-vs-ffmpeg.sh   (UGC_SERVER_BIN overrides the binary;
# STREAMS, LOAD_S, LOOPS tune the load; SKIP_CPU=1 runs the export part only).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${UGC_SERVER_BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}/release/ugc-server}
[ -x "$BIN" ] || { echo "build first: cargo build --release -p ugc-server"; exit 1; }
STREAMS=${STREAMS:-4}
LOAD_S=${LOAD_S:-20}
LOOPS=${LOOPS:-8}
WORK=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$WORK"; }
trap cleanup EXIT
export UGC_ADMIN_TOKEN=bench-admin-token-0123456789abcdef
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

CLIP=$WORK/clip.mp4
echo "making a 20 s 1280x720 4 Mbit/s clip"
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t 20 -c:v libx264 -preset ultrafast \
  -b:v 4000k -maxrate 4000k -bufsize 8000k -g 60 -keyint_min 60 -sc_threshold 0 -c:a aac "$CLIP"

start_server() { # $1 = data dir, $2 = extra flags
  HTTP=$(port); RTMP=$(port)
  "$BIN" --data "$1" --http 127.0.0.1:$HTTP --rtmp 127.0.0.1:$RTMP --public-host 127.0.0.1 \
    --publisher-grace-s 2 $2 >/dev/null 2>"$1.log" &
  SERVER=$!; PIDS+=("$SERVER")
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/" && break; sleep 0.1; done
}
create() { # $1 name, $2 extra json
  curl -s -X POST -H "Authorization: Bearer $UGC_ADMIN_TOKEN" -H 'content-type: application/json' \
    -d "{\"name\":\"$1\"$2}" "http://127.0.0.1:$HTTP/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

# ---- 1. export
mkdir -p "$WORK/a"
start_server "$WORK/a" "--dvr-hours 1"
KEY=$(create exp '')
echo "publishing $(( (LOOPS + 1) * 20 )) s faster than real time"
ffmpeg -hide_banner -loglevel error -stream_loop "$LOOPS" -i "$CLIP" -c copy -f flv "rtmp://127.0.0.1:$RTMP/live/$KEY"
sleep 4
DIR=$WORK/a/dvr/live/exp/src
INIT=$(ls "$DIR"/i*.mp4 | head -1)
SEGS=$(ls "$DIR"/s*.m4s | sort)
FROM=$(basename "$(echo "$SEGS" | head -1)" | sed -E 's/^s([0-9]+)_.*/\1/'); FROM=$((FROM / 1000))
NSEG=$(echo "$SEGS" | wc -l)
echo "archive: $NSEG segments, $(du -sh "$DIR" | cut -f1)"
best() { sort -n | head -1; }
ours=(); theirs=()
for i in 1 2 3; do
  /usr/bin/time -f "%e %M" -o "$WORK/t" "$BIN" dvr export --data "$WORK/a" --stream exp \
    --from "$FROM" --duration 86400 -o "$WORK/ours.mp4" 2>/dev/null
  ours+=("$(cat "$WORK/t")")
  CONCAT="concat:$INIT|$(echo "$SEGS" | paste -sd '|')"
  /usr/bin/time -f "%e %M" -o "$WORK/t" ffmpeg -hide_banner -loglevel error -y -i "$CONCAT" \
    -c copy -movflags +faststart "$WORK/theirs.mp4"
  theirs+=("$(cat "$WORK/t")")
done
http=()
for i in 1 2 3; do
  http+=("$(curl -s -o "$WORK/http.mp4" -w '%{time_total}' "http://127.0.0.1:$HTTP/live/exp/archive-$FROM-86400.mp4")")
done
HTTP_S=$(printf '%s\n' "${http[@]}" | best)
cmp -s "$WORK/http.mp4" "$WORK/ours.mp4" || echo "warning: HTTP export differs from the CLI export"
OURS_S=$(printf '%s\n' "${ours[@]}" | cut -d' ' -f1 | best)
THEIRS_S=$(printf '%s\n' "${theirs[@]}" | cut -d' ' -f1 | best)
OURS_KB=$(printf '%s\n' "${ours[@]}" | cut -d' ' -f2 | sort -n | tail -1)
THEIRS_KB=$(printf '%s\n' "${theirs[@]}" | cut -d' ' -f2 | sort -n | tail -1)
SIZE=$(stat -c %s "$WORK/ours.mp4"); FSIZE=$(stat -c %s "$WORK/theirs.mp4")
DUR=$(ffprobe -v error -show_entries format=duration -of csv=p=0 "$WORK/ours.mp4")
python3 - "$SIZE" "$OURS_S" "$OURS_KB" "$FSIZE" "$THEIRS_S" "$THEIRS_KB" "$DUR" "$HTTP_S" <<'EOF'
import sys
size, ts, kb, fsize, fs, fkb, dur, hs = sys.argv[1:]
hs = max(float(hs), 0.01)
size, ts, fsize, fs = int(size), max(float(ts), 0.01), int(fsize), max(float(fs), 0.01)
print(f"MP4 export of {float(dur):.0f} s ({size/1e6:.1f} MB):")
print(f"  ugc-server dvr export : {ts:.2f} s  {size/ts/1e6:7.0f} MB/s  peak RSS {int(kb)/1024:.0f} MiB")
print(f"  GET archive-....mp4 (HTTP, loopback): {hs:.2f} s  {size/hs/1e6:7.0f} MB/s")
print(f"  ffmpeg -c copy +faststart: {fs:.2f} s  {fsize/fs/1e6:7.0f} MB/s  peak RSS {int(fkb)/1024:.0f} MiB")
print(f"  ratio: {fs/ts:.1f}x")
EOF
kill "$SERVER"; wait "$SERVER" 2>/dev/null || true

# ---- 2. CPU, recording on vs off
cpu_run() { # $1 label, $2 dvr hours
  mkdir -p "$WORK/$1"
  start_server "$WORK/$1" "--dvr-hours $2"
  local pubs=()
  for n in $(seq "$STREAMS"); do
    K=$(create "s$n" '')
    ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy -f flv \
      "rtmp://127.0.0.1:$RTMP/live/$K" >/dev/null 2>&1 &
    pubs+=($!); PIDS+=($!)
  done
  sleep 5
  local t0 t1
  t0=$(awk '{print $14+$15}' "/proc/$SERVER/stat")
  sleep "$LOAD_S"
  t1=$(awk '{print $14+$15}' "/proc/$SERVER/stat")
  local hz; hz=$(getconf CLK_TCK)
  python3 -c "print(f'  recording {\"$1\":>3}: {($t1-$t0)/$hz/$LOAD_S*100:5.1f}% of a core for $STREAMS streams = {($t1-$t0)/$hz/$LOAD_S*100/$STREAMS:4.2f}% per stream')"
  for p in "${pubs[@]}"; do kill "$p" 2>/dev/null || true; done
  if [ "$2" != 0 ]; then echo "  archived: $(du -sh "$WORK/$1/dvr" | cut -f1) in ${LOAD_S}+5 s"; fi
  kill "$SERVER"; wait "$SERVER" 2>/dev/null || true
}
[ "${SKIP_CPU:-0}" = 1 ] && exit 0
echo "server CPU with $STREAMS x 4 Mbit/s 720p streams, ${LOAD_S} s:"
cpu_run off 0
cpu_run on 1
