#!/usr/bin/env bash
# `make cluster-demo`: the platform of several servers on this machine, one
# process per role, as they would run on separate machines:
#   ugc-control   :8080  API, panels, node registry, transcode leases (SQLite)
#   ugc-publish   :1935 RTMP, :9000 SRT, :8081 HTTP (relay, WHIP; UDP 8189)
#   ugc-transcode :8083  the ladder of the demo stream (720p + 360p)
#   ugc-origin    :8082  HLS/LL-HLS, DVR, WHEP (UDP and ICE-TCP 8190), the watch page
# Nodes register with the control plane and take their work from it; the
# control plane names only the origin (where renditions go). Prints the
# panel, the publish settings (on the publishing node the control plane
# placed the stream on) and the watch URL (on the origin), then runs until
# Ctrl-C, which stops every node.
#
#   scripts/cluster-demo.sh            # release binaries of $CARGO_TARGET_DIR
#   scripts/cluster-demo.sh --check    # also publish a test pattern with
#                                      # ffmpeg, wait for the ladder at the
#                                      # origin, print it and stop (a test)
# Env: UGC_BIN_DIR (binaries), DATA (default ./data; the demo uses
# $DATA/cluster), UGC_PUBLIC_HOST (default 127.0.0.1: what the nodes tell
# publishers and viewers), UGC_PORT_BASE (default 8080; the other ports
# keep their offsets: 8081-8083, RTMP 1935, SRT 9000, UDP 8189-8190 move by
# the same amount).
set -euo pipefail

check=0
[[ "${1:-}" == "--check" ]] && check=1
root=$(cd "$(dirname "$0")/.." && pwd)
bin=${UGC_BIN_DIR:-${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}/release}
data=${DATA:-$root/data}/cluster
host=${UGC_PUBLIC_HOST:-127.0.0.1}
base=${UGC_PORT_BASE:-8080}
off=$((base - 8080))
control=$base publish_http=$((8081 + off)) origin=$((8082 + off)) transcode=$((8083 + off))
rtmp=$((1935 + off)) srt=$((9000 + off)) whip_udp=$((8189 + off)) whep_udp=$((8190 + off))
for b in ugc-control ugc-publish ugc-transcode ugc-origin; do
  [[ -x "$bin/$b" ]] || { echo "$bin/$b is missing: build with cargo build --release -p ugc-server" >&2; exit 1; }
done
mkdir -p "$data"/{control,origin,logs}

# Tokens: made once, kept with the demo's data so the panel sign-in holds.
token() {
  [[ -s "$data/$1" ]] || head -c 18 /dev/urandom | base64 | tr '+/' '-_' >"$data/$1"
  cat "$data/$1"
}
admin=$(token admin-token)
export UGC_NODE_TOKEN
UGC_NODE_TOKEN=$(token node-token)
# A ladder a 2-core machine keeps in real time.
cat >"$data/ugc.toml" <<'EOF'
[transcode.profiles.demo]
preset = "superfast"
renditions = [
  { name = "720p", height = 720, video_kbps = 2000, audio_kbps = 128 },
  { name = "360p", height = 360, video_kbps = 800, audio_kbps = 96 },
]
EOF

pids=()
stop() {
  trap - EXIT INT TERM
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap stop EXIT
trap 'stop; exit 130' INT TERM
names=()
start() { # name, binary, args...
  local name=$1 b=$2
  shift 2
  "$bin/$b" "$@" >"$data/logs/$name.log" 2>&1 &
  pids+=($!)
  names+=("$name")
}
wait_http() { # port, what
  for _ in $(seq 100); do
    curl -fso /dev/null "http://127.0.0.1:$1/metrics" && return
    sleep 0.1
  done
  echo "$2 did not start; its log:" >&2
  tail -n 20 "$data/logs/$2.log" >&2
  exit 1
}
api() { # method, path, [body]
  curl -fsS -X "$1" -H "Authorization: Bearer $admin" -H 'Content-Type: application/json' \
    ${3:+--data "$3"} "http://127.0.0.1:$control/api/v1$2"
}

web=()
[[ -f "$root/web/dist/hls.min.js" ]] && web=(--web "$root/web")
UGC_ADMIN_TOKEN=$admin start control ugc-control --http "0.0.0.0:$control" \
  --data "$data/control" --public-host "$host" "${web[@]}" \
  --origins "http://127.0.0.1:$origin" --transcode-profiles demo
wait_http "$control" control
start origin ugc-origin --control-url "http://127.0.0.1:$control" --http "0.0.0.0:$origin" \
  --data "$data/origin" --public-host "$host" --node-id origin-1 "${web[@]}" \
  --whep-udp "0.0.0.0:$whep_udp"
start transcode ugc-transcode --control-url "http://127.0.0.1:$control" \
  --http "0.0.0.0:$transcode" --config "$data/ugc.toml" --public-host "$host" \
  --data "$data/transcode" --node-id transcode-1
start publish ugc-publish --control-url "http://127.0.0.1:$control" --http "0.0.0.0:$publish_http" \
  --rtmp "0.0.0.0:$rtmp" --srt "0.0.0.0:$srt" --whip-udp "0.0.0.0:$whip_udp" \
  --public-host "$host" --data "$data/publish" --node-id publish-1
for p in "$origin" "$transcode" "$publish_http"; do
  wait_http "$p" "$(case $p in "$origin") echo origin ;; "$transcode") echo transcode ;; *) echo publish ;; esac)"
done
# The three nodes are in the registry once each has beaten.
for _ in $(seq 100); do
  [[ $(api GET /nodes | jq '[.[] | select(.state == "live")] | length') == 3 ]] && break
  sleep 0.1
done
api GET /streams/demo >/dev/null 2>&1 ||
  api POST /streams '{"name": "demo", "title": "Cluster demo", "transcode": "demo"}' >/dev/null
stream=$(api GET /streams/demo)
key=$(jq -r .key <<<"$stream")
rtmp_url=$(jq -r .publish.rtmp <<<"$stream")
watch=$(jq -r .play <<<"$stream" | sed 's|/live/demo/index.m3u8.*|/watch/demo|')

cat <<EOF

  ugc cluster demo: control, publish, transcode and origin nodes
  Creator panel:  http://$host:$control/  (admin token: $admin)
  Nodes:          curl -H 'Authorization: Bearer $admin' http://$host:$control/api/v1/nodes
  Demo stream "demo" (ladder 720p + 360p on the transcoding node):
    OBS:        Settings > Stream > Custom
      Server:     ${rtmp_url%/*}
      Stream key: $key
    ffmpeg:     ffmpeg -re -i input.mp4 -c copy -f flv $rtmp_url
    SRT:        $(jq -r .publish.srt <<<"$stream")
    WHIP:       $(jq -r .publish.whip <<<"$stream")
    Watch:      $watch  (the origin node)
    HLS:        $(jq -r .play <<<"$stream")
  Logs: $data/logs/  ·  Ctrl-C stops every node.

EOF

if [[ $check == 0 ]]; then
  dead=""
  while [[ -z $dead ]]; do
    sleep 1
    for i in "${!pids[@]}"; do
      kill -0 "${pids[$i]}" 2>/dev/null && continue
      wait "${pids[$i]}" && status=0 || status=$?
      dead="${names[$i]} (exit status $status)"
    done
  done
  echo "$dead stopped; the logs in $data/logs/ end:" >&2
  tail -n 5 "$data"/logs/*.log >&2
  exit 1
fi

# --check: publish a test pattern and wait for the ladder at the origin.
ffmpeg -hide_banner -loglevel error -re -f lavfi -i testsrc2=size=1280x720:rate=25 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -c:v libx264 -preset ultrafast \
  -tune zerolatency -g 25 -pix_fmt yuv420p -c:a aac -b:a 64k -t 60 -f flv "$rtmp_url" \
  >"$data/logs/ffmpeg.log" 2>&1 &
pids+=($!)
master=""
for _ in $(seq 300); do
  master=$(curl -fs "http://127.0.0.1:$origin/live/demo/index.m3u8" || true)
  if grep -q 720p <<<"$master" && grep -q 360p <<<"$master" &&
    curl -fs "http://127.0.0.1:$origin/live/demo/360p/mono.m3u8" | grep -q '^#EXTINF'; then
    break
  fi
  sleep 0.1
done
echo "$master"
grep -q 360p <<<"$master" || {
  echo "no ladder at the origin; logs in $data/logs/" >&2
  tail -n 5 "$data"/logs/*.log >&2
  exit 1
}
if [[ ${#web[@]} != 0 ]]; then
  page=$(curl -fsS -o /dev/null -w '%{http_code}' "$watch")
  echo "watch page at the origin: HTTP $page"
  # The panel's preview plays from the origin: its page policy allows it.
  csp=$(curl -fsSI "http://127.0.0.1:$control/" | grep -i '^content-security-policy:')
  grep -q "connect-src 'self'.* http://$host:$origin" <<<"$csp" || {
    echo "the panel may not play from the origin: $csp" >&2
    exit 1
  }
  echo "panel preview may play from http://$host:$origin"
fi
echo "cluster demo: ok"
