#!/usr/bin/env bash
# HLS requests/s with play-token checks vs without, on one ugc-server.
#
# Two streams publish the same clip (ffmpeg -c copy, looped): "open" is
# public, "closed" is private. wrk then fetches, in turn, a segment and the
# media playlist of each: "closed" with ?token= (HMAC verified, revocation
# checked, playlist URIs rewritten with the token), "open" without, in
# A-B-B-A order ROUNDS times; the script prints the median requests/s of
# each side and their ratio token/no-token (the issue's goal: >= 0.9), and
# the server's CPU time per request of each side (from /proc), which is
# steadier than requests/s when other work shares the machine.
#
# Env: SECONDS_PER_RUN=5 ROUNDS=2 CONNS=100 UGC_BIN=... (default: release build).
set -euo pipefail
cd "$(dirname "$0")/.."

RUN_S=${SECONDS_PER_RUN:-5}
ROUNDS=${ROUNDS:-2}
CONNS=${CONNS:-100}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
ADMIN=token-load-admin-0123456789abcdef
WORK=$(mktemp -d /tmp/ugc-token-load.XXXXXX)
MEDIA_DIR=${TMPDIR:-/tmp}/ugc-test-media
CLIP=$MEDIA_DIR/bench_360p30_600k_aac_10s.mp4
PIDS=()
HZ=$(getconf CLK_TCK)

cleanup() {
  # Publishers first, then the server (PIDS[0]).
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
for c in ffmpeg wrk curl; do command -v $c >/dev/null || { echo "missing $c (scripts/install-deps.sh bench)" >&2; exit 1; }; done

mkdir -p "$MEDIA_DIR"
if [ ! -f "$CLIP" ]; then
  ffmpeg -hide_banner -loglevel error -y -f lavfi -i testsrc2=size=640x360:rate=30 \
    -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 10 \
    -c:v libx264 -preset veryfast -b:v 600k -maxrate 600k -bufsize 1200k -g 60 -keyint_min 60 \
    -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 96k "$CLIP.tmp.mp4"
  mv "$CLIP.tmp.mp4" "$CLIP"
fi

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
HTTP=127.0.0.1:$(free_port)
RTMP=127.0.0.1:$(free_port)
BASE=http://$HTTP

UGC_ADMIN_TOKEN=$ADMIN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" --http "$HTTP" --rtmp "$RTMP" \
  --public-host 127.0.0.1 >"$WORK/server.log" 2>&1 &
SERVER_PID=$!
PIDS+=($SERVER_PID)
for _ in $(seq 50); do curl -sf "$BASE/api/v1/openapi.json" >/dev/null && break; sleep 0.2; done

api() { curl -sf -H "Authorization: Bearer $ADMIN" -H 'Content-Type: application/json' "$@"; }
json() { python3 -c "import json,sys; print(json.load(sys.stdin)$1)"; }

KEY_OPEN=$(api -d '{"name":"open"}' "$BASE/api/v1/streams" | json "['key']")
KEY_CLOSED=$(api -d '{"name":"closed","private":true}' "$BASE/api/v1/streams" | json "['key']")
TOKEN=$(api -d '{"ttl_s":3600}' "$BASE/api/v1/streams/closed/play" | json "['token']")
for k in "$KEY_OPEN" "$KEY_CLOSED"; do
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -c copy \
    -f flv "rtmp://$RTMP/live/$k" 2>>"$WORK/ffmpeg.log" &
  PIDS+=($!)
done

last_segment() { grep '^seg-' | tail -n 1; }
for _ in $(seq 100); do
  SEG_OPEN=$(curl -sf "$BASE/live/open/mono.m3u8" | last_segment || true)
  SEG_CLOSED=$(curl -sf "$BASE/live/closed/mono.m3u8?token=$TOKEN" | last_segment || true)
  [ -n "$SEG_OPEN" ] && [ -n "$SEG_CLOSED" ] && break
  sleep 0.2
done
[ -n "$SEG_OPEN" ] && [ -n "$SEG_CLOSED" ] || { echo "no segments; server log:" >&2; cat "$WORK/server.log" >&2; exit 1; }
# The private playlist already carries ?token= in its segment URIs.
URL_SEG_OPEN="$BASE/live/open/$SEG_OPEN"
URL_SEG_CLOSED="$BASE/live/closed/$SEG_CLOSED"
URL_PL_OPEN="$BASE/live/open/mono.m3u8"
URL_PL_CLOSED="$BASE/live/closed/mono.m3u8?token=$TOKEN"
for u in "$URL_SEG_OPEN" "$URL_SEG_CLOSED" "$URL_PL_OPEN" "$URL_PL_CLOSED"; do
  code=$(curl -s -o /dev/null -w '%{http_code}' "$u")
  [ "$code" = 200 ] || { echo "$u answered $code" >&2; exit 1; }
done
[ "$(curl -s -o /dev/null -w '%{http_code}' "$BASE/live/closed/${SEG_CLOSED%%\?*}")" = 403 ] \
  || { echo "private segment without token was not refused" >&2; exit 1; }
SIZE_OPEN=$(curl -s "$URL_SEG_OPEN" | wc -c)
SIZE_CLOSED=$(curl -s "$URL_SEG_CLOSED" | wc -c)

# The URL of a target: seg-open, seg-closed (the newest segment at the time
# of the run, so it stays in the live window), pl-open, pl-closed.
url_of() {
  case "$1" in
    seg-open) echo "$BASE/live/open/$(curl -sf "$URL_PL_OPEN" | last_segment)" ;;
    seg-closed) echo "$BASE/live/closed/$(curl -sf "$URL_PL_CLOSED" | last_segment)" ;;
    pl-open) echo "$URL_PL_OPEN" ;;
    pl-closed) echo "$URL_PL_CLOSED" ;;
  esac
}

# CPU ticks (user + system) of the server so far.
server_ticks() { awk '{print $14 + $15}' "/proc/$SERVER_PID/stat"; }

# One wrk run: "<requests/s> <server CPU microseconds per request>". The
# second figure holds up better than the first on a busy machine.
rps() {
  local out url t0 t1
  url=$(url_of "$1")
  t0=$(server_ticks)
  out=$(wrk -t2 -c"$CONNS" -d"${RUN_S}s" "$url" 2>&1)
  t1=$(server_ticks)
  # (a subshell: a failure prints and yields no number, which measure() reports)
  if echo "$out" | grep -qE 'Non-2xx|Socket errors'; then echo "errors for $url:" >&2; echo "$out" >&2; return 1; fi
  echo "$out" | awk -v ticks=$((t1 - t0)) -v hz="$HZ" '
    /requests in/ {n = $1} /Requests\/sec/ {r = $2}
    END {printf "%s %.2f\n", r, ticks / hz * 1e6 / n}'
}

measure() { # name url_with url_without
  local with=() without=() i
  for ((i = 0; i < ROUNDS; i++)); do
    with+=("$(rps "$2")"); without+=("$(rps "$3")"); without+=("$(rps "$3")"); with+=("$(rps "$2")")
  done
  [ ${#with[@]} -eq $((2 * ROUNDS)) ] && [ ${#without[@]} -eq $((2 * ROUNDS)) ] \
    && ! printf '%s\n' "${with[@]}" "${without[@]}" | grep -qvx '[0-9.]* [0-9.]*' \
    || { echo "$1: a wrk run failed" >&2; exit 1; }
  python3 - "$1" "${with[*]}" "${without[*]}" <<'EOF'
import statistics, sys
name = sys.argv[1]
def parse(arg):
    v = [float(x) for x in arg.split()]
    return v[0::2], v[1::2]
ra, ca = parse(sys.argv[2])
rb, cb = parse(sys.argv[3])
m = statistics.median
print(f"{name:9} req/s: with token {m(ra):8.0f}  without {m(rb):8.0f}  ratio {m(ra) / m(rb):.3f}"
      f"   (runs: {' '.join(f'{x:.0f}' for x in ra)} | {' '.join(f'{x:.0f}' for x in rb)})")
print(f"{'':9} server CPU per request: with token {m(ca):6.2f} us  without {m(cb):6.2f} us"
      f"  -> CPU-bound ratio {m(cb) / m(ca):.3f}")
EOF
}

echo "ugc-server $UGC_BIN; wrk -t2 -c$CONNS, ${RUN_S}s per run, A-B-B-A x $ROUNDS, medians"
echo "segment sizes: private $SIZE_CLOSED bytes, public $SIZE_OPEN bytes;" \
  "playlists: private $(curl -s "$URL_PL_CLOSED" | wc -c) bytes, public $(curl -s "$URL_PL_OPEN" | wc -c) bytes"
measure segment seg-closed seg-open
measure playlist pl-closed pl-open
