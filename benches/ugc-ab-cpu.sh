#!/usr/bin/env bash
# Two ugc-server binaries side by side on the same load: N ffmpeg publishers
# (copy, 720p30 1.5 Mbps, the clip of load-vs-nginx.sh) to each, CPU ticks of
# both over the same window. For changes worth a few percent, which single
# windows on a 2-core VM (+-20-30 % from one to the next) cannot resolve:
# both servers see the same machine noise. Rounds alternate which binary
# starts first; the ratio is B / A per round, and their median.
#
# Usage: benches/ugc-ab-cpu.sh BIN_A BIN_B
# Env: N=8 WINDOW=20 WARMUP=20 ROUNDS=4
set -euo pipefail
cd "$(dirname "$0")/.."

A=${1:?usage: $0 BIN_A BIN_B}
B=${2:?usage: $0 BIN_A BIN_B}
N=${N:-8}
WINDOW=${WINDOW:-20}
WARMUP=${WARMUP:-20}
ROUNDS=${ROUNDS:-4}
CLIP=${TMPDIR:-/tmp}/ugc-test-media/bench_720p30_1500k_aac_20s.mp4
ADMIN=bench-admin-token-0123456789abcdef
WORK=$(mktemp -d /tmp/ugc-ab.XXXXXX)
PIDS=()

cleanup() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

for bin in "$A" "$B"; do [ -x "$bin" ] || { echo "not executable: $bin" >&2; exit 1; }; done
[ -f "$CLIP" ] || { echo "missing $CLIP: run benches/load-vs-nginx.sh once, it makes the clip" >&2; exit 1; }

start() { # bin slot -> pid
  UGC_ADMIN_TOKEN=$ADMIN "$1" --data "$WORK/data-$2" --rtmp "127.0.0.1:1993$2" \
    --http "127.0.0.1:1808$2" --srt "127.0.0.1:1995$2" --public-host 127.0.0.1 \
    >"$WORK/ugc-$2.log" 2>&1 &
  echo $!
}
ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

round() { # first_bin second_bin -> "ticks_first ticks_second"
  local p1 p2 k i key a0 b0 a1 b1 pubs=()
  p1=$(start "$1" 1); p2=$(start "$2" 2)
  for k in 1 2; do
    for _ in $(seq 1 50); do curl -s -o /dev/null "127.0.0.1:1808$k/" && break; sleep 0.1; done
  done
  for i in $(seq 1 "$N"); do
    for k in 1 2; do
      curl -s -X POST -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' \
        -d "{\"name\": \"s$i\"}" "127.0.0.1:1808$k/api/v1/streams" >/dev/null
      key=$(curl -s -X POST -H "Authorization: Bearer $ADMIN" "127.0.0.1:1808$k/api/v1/streams/s$i/key" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
      ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
        -f flv "rtmp://127.0.0.1:1993$k/live/$key" </dev/null >/dev/null 2>&1 &
      pubs+=($!)
    done
  done
  PIDS=("${pubs[@]}" "$p1" "$p2")
  sleep "$WARMUP"
  a0=$(ticks "$p1"); b0=$(ticks "$p2"); sleep "$WINDOW"; a1=$(ticks "$p1"); b1=$(ticks "$p2")
  kill "${pubs[@]}" 2>/dev/null || true; sleep 0.5
  kill "$p1" "$p2" 2>/dev/null || true; wait "$p1" "$p2" 2>/dev/null || true
  PIDS=()
  rm -rf "$WORK"/data-*
  echo "$((a1 - a0)) $((b1 - b0))"
}

echo "== $N publishers each, ${WINDOW}s windows after ${WARMUP}s warm-up; A=$A B=$B =="
ratios=()
for r in $(seq 1 "$ROUNDS"); do
  if [ $((r % 2)) = 1 ]; then read -r ta tb < <(round "$A" "$B")
  else read -r tb ta < <(round "$B" "$A"); fi
  ratio=$(python3 -c "print(f'{$tb / max(1, $ta):.2f}')")
  echo "round $r: A $ta ticks, B $tb ticks, B/A $ratio"
  ratios+=("$ratio")
done
python3 -c "import statistics, sys; r = sorted(map(float, sys.argv[1:])); print(f'B/A median {statistics.median(r):.2f} (rounds {\", \".join(f\"{x:.2f}\" for x in r)})')" "${ratios[@]}"
