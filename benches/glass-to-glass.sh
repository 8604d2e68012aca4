#!/usr/bin/env bash
# Glass-to-glass delay of a browser's publish, watched two ways side by
# side (issue #18): headless Chromium publishes a canvas showing its clock
# over WHIP and, in the same page, watches it over WHEP (WebRTC) or over
# LL-HLS with hls.js (the watch page's settings); every picture shown is
# read for the clock it was drawn at (tests/browser/whep.mjs). ROUNDS
# rounds of each, alternating, on one ugc-server (release build, its
# defaults: 2 s segments, 500 ms parts). Prints each round's p50/p95/max
# in ms and the medians' ratio.
#
# Env: ROUNDS=3 ROUND_S=15 UGC_BIN=... (default: release build)
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

ROUNDS=${ROUNDS:-3}
ROUND_S=${ROUND_S:-15}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
UGC_BIN=${UGC_BIN:-$TARGET/release/ugc-server}
WORK=$(mktemp -d /tmp/ugc-g2g.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
SERVER=

cleanup() {
  [ -n "$SERVER" ] && kill "$SERVER" 2>/dev/null || true
  sleep 0.5
  rm -rf "$WORK"
}
trap cleanup EXIT

[ -x "$UGC_BIN" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
scripts/install-deps.sh browser >/dev/null
(cd tests/browser && [ -d node_modules ] || npm ci --no-audit --no-fund --loglevel=error >/dev/null)

RTMP=$(port 1); HTTP=$(port 1); SRT=$(port 2)
UGC_ADMIN_TOKEN=$TOKEN UGC_LOG=warn "$UGC_BIN" --data "$WORK/data" --rtmp 127.0.0.1:$RTMP \
  --http 127.0.0.1:$HTTP --srt 127.0.0.1:$SRT --whip-udp 127.0.0.1:0 \
  --public-host 127.0.0.1 >/dev/null 2>"$WORK/server.log" &
SERVER=$!
for _ in $(seq 50); do curl -s -o /dev/null "http://127.0.0.1:$HTTP/api/v1/openapi.json" && break; sleep 0.1; done

key() {
  curl -s -X POST -H "Authorization: Bearer $TOKEN" -H 'content-type: application/json' \
    -d "{\"name\": \"$1\"}" "http://127.0.0.1:$HTTP/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])'
}

summary() { # label json
  python3 - "$1" "$2" <<'PY'
import json, sys
r = json.loads(open(sys.argv[2]).read().strip().splitlines()[-1])
l = r.get("latency")
if not l:
    print(f"{sys.argv[1]:7s} no pictures read: {r.get('errors')}")
    sys.exit(0)
print(f"{sys.argv[1]:7s} p50 {l['p50']:5d} ms  p95 {l['p95']:5d} ms  max {l['max']:5d} ms  "
      f"({l['n']} pictures, first after {r.get('firstPictureMs')} ms)")
PY
}

P50S_W=() P50S_H=()
for i in $(seq "$ROUNDS"); do
  k=$(key "w$i")
  node tests/browser/whep.mjs --url "http://127.0.0.1:$HTTP/whep/w$i" \
    --whip "http://127.0.0.1:$HTTP/whip/w$i" --key "$k" --seconds "$ROUND_S" >"$WORK/w$i.json"
  summary "WHEP" "$WORK/w$i.json"
  P50S_W+=("$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get('latency',{}).get('p50',0))" "$WORK/w$i.json")")
  k=$(key "h$i")
  node tests/browser/whep.mjs --hls "http://127.0.0.1:$HTTP/live/h$i/index.m3u8" \
    --whip "http://127.0.0.1:$HTTP/whip/h$i" --key "$k" --seconds "$((ROUND_S + 10))" >"$WORK/h$i.json"
  summary "LL-HLS" "$WORK/h$i.json"
  P50S_H+=("$(python3 -c "import json,sys; print(json.loads(open(sys.argv[1]).read().strip().splitlines()[-1]).get('latency',{}).get('p50',0))" "$WORK/h$i.json")")
done
python3 -c "
import statistics, sys
w = [int(x) for x in sys.argv[1].split()]; h = [int(x) for x in sys.argv[2].split()]
mw, mh = statistics.median(w), statistics.median(h)
print(f'median p50: WHEP {mw:.0f} ms, LL-HLS {mh:.0f} ms: LL-HLS/WHEP {mh / mw if mw else 0:.1f}x')
" "${P50S_W[*]}" "${P50S_H[*]}"
