#!/usr/bin/env bash
# The S3 tier (issue #20): how long after a live event ends its recording is
# in S3, and what reading it back costs: a segment from local disk (before
# the move), from S3 through the cache (first read: a fetch) and from the
# cache (second read: a hit).
#
# ugc-server (release build) with [dvr.s3] on s3s-fs (scripts/install-deps.sh
# s3), optionally over HTTPS (nginx terminating TLS, a test CA). A 1080p30
# 4.5 Mbit/s clip is published (ffmpeg -re -c copy, looped) for EVENT_S
# seconds, then the publisher leaves; after the grace time (2 s) the event
# ends and is uploaded. Printed per round:
#   - the event's size and the time from its end (publisher gone + grace)
#     to the object verified in S3 (ugc_dvr_s3_sessions_uploaded_total), and
#     the upload rate;
#   - GET latency of K archived segments (curl time_total, p50/p95/max):
#     local before the move, S3 through the cache, then cache hits.
#
# Env: EVENT_S=600 K=40 TLS="0 1" (0 plain HTTP, 1 HTTPS), UGC_BIN_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
. benches/lib.sh

EVENT_S=${EVENT_S:-600}
K=${K:-40}
TLS=${TLS:-0 1}
BIN=${UGC_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}/release}
WORK=$(mktemp -d /tmp/ugc-dvr-s3.XXXXXX)
TOKEN=bench-admin-token-0123456789abcdef
export UGC_LOG=info AWS_ACCESS_KEY_ID=benchaccess AWS_SECRET_ACCESS_KEY=benchsecret0123456789
PIDS=()
stop_all() {
  for p in "${PIDS[@]:-}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  PIDS=()
}
trap 'stop_all; rm -rf "$WORK"' EXIT
[ -x "$BIN/ugc-server" ] || { echo "build first: cargo build --release -p ugc-server" >&2; exit 1; }
S3FS=$(command -v s3s-fs || echo "$HOME/.cargo/bin/s3s-fs")
[ -x "$S3FS" ] || { echo "s3s-fs missing: scripts/install-deps.sh s3" >&2; exit 1; }
CLIP=$(bench_clip 1920x1080 30 4500k 20)

metric() { # name -> value at the server
  curl -fs "http://127.0.0.1:$HTTP/metrics" | awk -v n="$1" '$1 == n {print $2}'
}
latencies() { # label, file of URLs: GET each, print p50/p95/max of time_total
  local label=$1 list=$2
  while read -r u; do
    curl -fs -o /dev/null -w '%{time_total}\n' "$u"
  done <"$list" | python3 -c "
import sys
v = sorted(float(x) * 1000 for x in sys.stdin if x.strip())
q = lambda p: v[min(len(v) - 1, int(p * len(v)))]
print(f'$label: p50 {q(0.5):.1f} p95 {q(0.95):.1f} max {v[-1]:.1f} ms ({len(v)} segments)')"
}

for tls in $TLS; do
  stop_all
  rm -rf "${WORK:?}"/{data,s3,tls} "$WORK"/*.log
  mkdir -p "$WORK/s3/dvr" "$WORK/tls"
  S3=$(free_port 1) HTTP=$(free_port 1) RTMP=$(free_port 1)
  "$S3FS" --host 127.0.0.1 --port "$S3" --access-key "$AWS_ACCESS_KEY_ID" \
    --secret-key "$AWS_SECRET_ACCESS_KEY" "$WORK/s3" >"$WORK/s3fs.log" 2>&1 &
  PIDS+=($!)
  endpoint="http://127.0.0.1:$S3" ca=""
  if [ "$tls" = 1 ]; then
    T=$(free_port 1)
    (cd "$WORK/tls" &&
      openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 1 \
        -subj "/CN=bench CA" -keyout ca.key -out ca.pem 2>/dev/null &&
      openssl req -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -subj /CN=127.0.0.1 \
        -keyout s3.key -out s3.csr 2>/dev/null &&
      echo "subjectAltName=IP:127.0.0.1" >san.ext &&
      openssl x509 -req -in s3.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \
        -extfile san.ext -out s3.pem 2>/dev/null)
    cat >"$WORK/tls/nginx.conf" <<EOF
load_module /usr/lib/nginx/modules/ngx_stream_module.so;
daemon off;
master_process off;
pid $WORK/tls/nginx.pid;
error_log $WORK/tls/error.log;
events { worker_connections 64; }
stream { server { listen 127.0.0.1:$T ssl; ssl_certificate $WORK/tls/s3.pem;
  ssl_certificate_key $WORK/tls/s3.key; proxy_pass 127.0.0.1:$S3; } }
EOF
    nginx -c "$WORK/tls/nginx.conf" -p "$WORK/tls" &
    PIDS+=($!)
    endpoint="https://127.0.0.1:$T" ca="ca_file = \"$WORK/tls/ca.pem\""
  fi
  cat >"$WORK/ugc.toml" <<EOF
[dvr]
hours = 2
[dvr.s3]
endpoint = "$endpoint"
bucket = "dvr"
$ca
EOF
  UGC_ADMIN_TOKEN=$TOKEN "$BIN/ugc-server" --data "$WORK/data" --config "$WORK/ugc.toml" \
    --http "127.0.0.1:$HTTP" --rtmp "127.0.0.1:$RTMP" --srt "127.0.0.1:$(free_port 2)" \
    --whip-udp off --publisher-grace-s 2 --public-host 127.0.0.1 >"$WORK/server.log" 2>&1 &
  PIDS+=($!)
  wait_http "$HTTP"
  key=$(curl -fsS -H "Authorization: Bearer $TOKEN" -H 'Content-Type: application/json' \
    -d '{"name":"ev"}' "127.0.0.1:$HTTP/api/v1/streams" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])')
  echo "== $([ "$tls" = 1 ] && echo HTTPS || echo HTTP) to s3s-fs: a ${EVENT_S} s 1080p30 4.5 Mbit/s event =="
  ffmpeg -hide_banner -loglevel error -nostdin -re -stream_loop -1 -i "$CLIP" -t "$EVENT_S" \
    -c copy -f flv "rtmp://127.0.0.1:$RTMP/live/$key" </dev/null >/dev/null 2>&1 || true
  gone=$(date +%s.%N)
  # K segments of the event, from its range playlist, while still local.
  from=$(( ${gone%.*} - EVENT_S + 10 ))
  curl -fs "http://127.0.0.1:$HTTP/live/ev/index-$from-$((EVENT_S - 20)).m3u8" |
    grep -v '^#' | awk -v k="$K" -v h="http://127.0.0.1:$HTTP/live/ev/" \
      'NF {a[n++]=$0} END {step = n / k; if (step < 1) step = 1; for (i = 0; i < n && c < k; i += step) {print h a[int(i)]; c++}}' \
      >"$WORK/urls"
  latencies "local disk       " "$WORK/urls"
  for _ in $(seq 3000); do
    [ "$(metric ugc_dvr_s3_sessions_uploaded_total)" = "1" ] && break
    sleep 0.1
  done
  moved=$(date +%s.%N)
  bytes=$(du -sb "$WORK/s3/dvr" | cut -f1)
  python3 -c "
gone, moved, b = $gone, $moved, $bytes
end = gone + 2  # the grace time
print(f'event {b / 1e6:.1f} MB: in S3 (verified) {moved - end:.1f} s after the event ended '
      f'({b / 1e6 / max(moved - end, 1e-3):.1f} MB/s including the read-back check)')"
  latencies "S3 via the cache " "$WORK/urls"
  latencies "cache hit        " "$WORK/urls"
done
