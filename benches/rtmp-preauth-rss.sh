#!/usr/bin/env bash
# Peak RSS of ugc-server while N unauthorized RTMP peers each send one 16 MiB
# command message (issue #17). Run against two builds to compare:
#   benches/rtmp-preauth-rss.sh OLD_BIN NEW_BIN [N]
set -euo pipefail
N=${3:-20}
here=$(cd "$(dirname "$0")" && pwd)
for bin in "$1" "$2"; do
  d=$(mktemp -d)
  UGC_ADMIN_TOKEN=bench-token-0123456789abcdef0123456789 "$bin" --data "$d" \
    --rtmp 127.0.0.1:19350 --http 127.0.0.1:18080 --srt 127.0.0.1:19000 >"$d/log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do (: <>/dev/tcp/127.0.0.1/19350) 2>/dev/null && break; sleep 0.1; done
  idle=$(awk '/VmRSS/{print $2}' "/proc/$pid/status")
  python3 "$here/rtmp-preauth-rss.py" 127.0.0.1 19350 "$N" >"$d/probe" &
  probe=$!
  peak=$idle
  while kill -0 "$probe" 2>/dev/null; do
    r=$(awk '/VmRSS/{print $2}' "/proc/$pid/status"); ((r > peak)) && peak=$r; sleep 0.1
  done
  echo "$bin: idle ${idle} kB, peak ${peak} kB with $N peers; $(tr '\n' ';' <"$d/probe")"
  kill "$pid"; wait "$pid" 2>/dev/null || true; rm -rf "$d"
done
