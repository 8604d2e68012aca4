#!/usr/bin/env bash
# Slowloris against two ugc-server builds (issue #17): N half request heads,
# the server's descriptors over time, a control request's latency.
#   benches/http-slowloris.sh OLD_BIN NEW_BIN [N] [SECONDS]
set -euo pipefail
N=${3:-3000}
S=${4:-35}
here=$(cd "$(dirname "$0")" && pwd)
for bin in "$1" "$2"; do
  d=$(mktemp -d)
  UGC_ADMIN_TOKEN=bench-token-0123456789abcdef0123456789 "$bin" --data "$d" \
    --rtmp 127.0.0.1:19350 --http 127.0.0.1:18080 --srt 127.0.0.1:19000 >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do (: <>/dev/tcp/127.0.0.1/18080) 2>/dev/null && break; sleep 0.1; done
  echo "== $bin"
  python3 "$here/http-slowloris.py" "$pid" 18080 "$N" "$S"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$d"
done
