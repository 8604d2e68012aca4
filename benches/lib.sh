# Shell helpers of the benches/ scripts: source it (`. benches/lib.sh`).

HZ=$(getconf CLK_TCK)

# CPU ticks (user + system) of process $1 so far.
ticks() { sed 's/^.*) //' "/proc/$1/stat" | awk '{print $12 + $13}'; }

# Resident memory of process $1 in KiB.
rss_kb() { awk '/^VmRSS:/ {print $2}' "/proc/$1/status"; }

# A free port on loopback: $1 = 1 for TCP, 2 for UDP.
free_port() {
  python3 -c 'import socket,sys; s=socket.socket(socket.AF_INET, int(sys.argv[1])); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])' "$1"
}

# Waits up to 10 s for an HTTP server on 127.0.0.1:$1 to answer.
wait_http() {
  for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$1/metrics" && return
    sleep 0.1
  done
  echo "nothing answers HTTP on port $1" >&2
  return 1
}

# A test clip (testsrc2 + a 440 Hz tone, H.264 veryfast CBR-ish + AAC 128k,
# 2 s GOP), made once in $TMPDIR/ugc-test-media: size, fps, video bitrate,
# seconds. Prints its path.
bench_clip() {
  local dir=${TMPDIR:-/tmp}/ugc-test-media
  local clip=$dir/bench_${1}_${2}fps_${3}_aac_${4}s.mp4
  mkdir -p "$dir"
  if [ ! -f "$clip" ]; then
    ffmpeg -hide_banner -loglevel error -y -f lavfi -i "testsrc2=size=$1:rate=$2" \
      -f lavfi -i "sine=frequency=440:sample_rate=48000,aformat=channel_layouts=stereo" -t "$4" \
      -c:v libx264 -preset veryfast -b:v "$3" -maxrate "$3" -bufsize "$3" -g $(($2 * 2)) \
      -keyint_min $(($2 * 2)) -sc_threshold 0 -pix_fmt yuv420p -c:a aac -b:a 128k "$clip.tmp.mp4"
    mv "$clip.tmp.mp4" "$clip"
  fi
  echo "$clip"
}

# The older name of free_port.
port() { free_port "$@"; }

# One live encode (640x360 30 fps, 1 s GOP, x264 zerolatency 1.2 Mbit/s +
# AAC) to every RTMP URL given (ffmpeg tee; a failing one is ignored), with
# ffmpeg's progress stamped by the wall clock into $WORK/progress.log for
# benches/ll_hls_probe.py; its log in $WORK/ffmpeg.log. Adds the pipeline
# and its ffmpeg to PIDS.
tee_publish() {
  local outs="" u
  for u in "$@"; do outs+="${outs:+|}[f=flv:onfail=ignore]$u"; done
  ffmpeg -hide_banner -loglevel error -nostdin -re \
    -f lavfi -i testsrc2=size=640x360:rate=30 -f lavfi -i sine=frequency=440:sample_rate=48000 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 30 -keyint_min 30 -sc_threshold 0 \
    -b:v 1200k -pix_fmt yuv420p -c:a aac -b:a 96k -map 0:v -map 1:a -flags +global_header \
    -f tee "$outs" -progress pipe:1 -stats_period 0.1 </dev/null 2>"$WORK/ffmpeg.log" |
    python3 -u -c 'import sys, time
for l in sys.stdin:
    if l.startswith("out_time_us="): print(f"{time.time():.4f} {l.strip()}", flush=True)' >"$WORK/progress.log" &
  PIDS+=($!)
  sleep 0.5
  PIDS+=($(pgrep -f -- "$1" || true))
}

# The cluster benches' start: the role binaries built ($BUILD: debug, the
# binaries `cargo test` builds, or release; SKIP_BUILD=1: those built
# last) in BIN, a work directory WORK and the started processes PIDS,
# both cleaned up on exit, and the tokens the nodes share.
cluster_bench_start() {
  BUILD=${BUILD:-debug}
  if [ -n "${SKIP_BUILD:-}" ]; then
    :
  elif [ "$BUILD" = release ]; then
    cargo build --release --locked -p ugc-server --bins -q
  else
    cargo build --locked -p ugc-server --bins -q
  fi
  BIN=$CARGO_TARGET_DIR/$BUILD
  WORK=$(mktemp -d)
  PIDS=()
  trap cluster_bench_cleanup EXIT
  export UGC_ADMIN_TOKEN=bench-admin-token-0123456789abcdef
  export UGC_NODE_TOKEN=bench-node-token-0123456789abcdef
}

# A control plane on 127.0.0.1:$2 with its data and log below $1,
# waited for.
start_control() { # dir port
  "$BIN/ugc-control" --data "$1/control" --http "127.0.0.1:$2" --public-host 127.0.0.1 \
    >"$1/control.log" 2>&1 &
  PIDS+=($!)
  wait_http "$2"
}

# A publishing node of the control plane on port $2 (RTMP $3, SRT $4,
# HTTP $5, no WHIP), its log below $1; not waited for.
start_publish() { # dir control-port rtmp-port srt-port http-port
  "$BIN/ugc-publish" --control-url "http://127.0.0.1:$2" --rtmp "127.0.0.1:$3" \
    --srt "127.0.0.1:$4" --http "127.0.0.1:$5" --public-host 127.0.0.1 \
    --whip-udp off >"$1/publish.log" 2>&1 &
  PIDS+=($!)
}

cluster_bench_cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
