#!/usr/bin/env bash
# Installs what ugc's demo, tests and benchmarks need and is missing, from
# Debian packages and crates.io. Idempotent; safe to run on every `make`.
#   scripts/install-deps.sh            # runtime + test peers (ffmpeg, ffprobe)
#   scripts/install-deps.sh bench      # + nginx-rtmp, wrk (benchmark peers)
#   scripts/install-deps.sh fuzz       # + cargo-fuzz
#   scripts/install-deps.sh nextest    # + cargo-nextest (the runner of `make unit`)
#   scripts/install-deps.sh browser    # + chromium, node/npm, openssl (browser tests: panels, LL-HLS)
#   scripts/install-deps.sh s3         # + s3s-fs and garage (S3 servers for the DVR's S3 tests)
set -euo pipefail

want_bench=0; want_fuzz=0; want_browser=0; want_s3=0; want_nextest=0
for a in "$@"; do
  case "$a" in
    bench) want_bench=1 ;;
    fuzz) want_fuzz=1 ;;
    nextest) want_nextest=1 ;;
    browser) want_browser=1 ;;
    s3) want_s3=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need ffmpeg ffmpeg
need ffprobe ffmpeg
need curl curl
# scripts/cluster-demo.sh reads the control API's answers.
need jq jq
need pkg-config pkg-config
# The web panels: scripts/build-web.sh installs hls.js with npm.
need node nodejs
need npm npm
# ugc-codec's `ffmpeg` feature (the transcoding ladder, rsmpeg): FFmpeg 5.1
# headers and libraries, and libclang for rusty_ffmpeg's bindgen.
for pkg in libavcodec-dev libavformat-dev libavutil-dev libavfilter-dev \
  libavdevice-dev libswscale-dev libswresample-dev libclang-dev; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
# ugc-auth's tests start a private PostgreSQL server from these binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
# SRT ingest and restream tests (issue 3): srt-live-transmit as an SRT caller,
# nginx-rtmp as a restream target, nginx `stream` + openssl for RTMPS.
need srt-live-transmit srt-tools
need openssl openssl
need nginx nginx
[ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
[ -e /usr/lib/nginx/modules/ngx_stream_module.so ] || missing+=(libnginx-mod-stream)
# GStreamer as a second publisher and player implementation (issue 21):
# rtmp2sink, srtsink, rtmpsink (librtmp), openh264enc, avenc_aac, playbin3.
need gst-launch-1.0 gstreamer1.0-tools
# GStreamer's webrtcbin as a WHIP publisher (issue 18), driven from Python
# (tests/gst/whip_webrtcbin.py; Debian 12's simple-whip-client aborts at
# start: libsoup 2 and 3 in one process): introspection data, libnice,
# x264enc (plugins-ugly).
for pkg in python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
  gir1.2-gst-plugins-bad-1.0; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
# deploy/prometheus.yml is tested against a real Prometheus (issue 16). The
# package's service is not started here (policy-rc.d); tests run their own.
need prometheus prometheus
for pkg in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
  gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-nice; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
done
if [ "$want_bench" = 1 ]; then
  need nginx nginx
  [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
  need wrk wrk
fi

if [ "$want_s3" = 1 ] && ! garage --version >/dev/null 2>&1; then
  # garage's build links these (feature system-libs).
  for pkg in libsodium-dev libzstd-dev libsqlite3-dev; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'ok installed' || missing+=("$pkg")
  done
fi

if [ "$want_browser" = 1 ]; then
  need chromium chromium
  need node nodejs
  need npm npm
  need openssl openssl
  need nginx nginx
fi

if [ ${#missing[@]} -gt 0 ]; then
  # shellcheck disable=SC2207
  pkgs=($(printf '%s\n' "${missing[@]}" | sort -u))
  echo "installing Debian packages: ${pkgs[*]}"
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${pkgs[@]}" >/dev/null
fi

# Python packages from PyPI, pinned: module, package==version, what for.
# pip's own failure is not fatal here (it warns about running as root), so
# the import is checked afterwards: a missing package stops the script
# instead of failing a test later.
pip_need() {
  python3 -c "import $1" >/dev/null 2>&1 && return
  echo "installing $2 ($3)"
  python3 -m pip install --quiet --disable-pip-version-check "$2" 2>&1 \
    | grep -v -i 'running pip as the' || true
  python3 -c "import $1" >/dev/null 2>&1 || { echo "could not install $2 with pip" >&2; exit 1; }
}
# FFmpeg 9 (static, inside a PyPI wheel): the only publisher here that sends
# Enhanced RTMP (HEVC/AV1 over RTMP); Debian's ffmpeg 5.1 cannot.
pip_need imageio_ffmpeg imageio-ffmpeg==0.8.1 "FFmpeg 9 for Enhanced RTMP tests"
# prometheus_client: the reference parser the /metrics test reads the
# exposition with.
pip_need prometheus_client prometheus-client==0.21.1 "parser for the /metrics test"

if [ "$want_fuzz" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi

# cargo-nextest runs `make unit`'s tests one process each, two at a time
# across all test binaries (cargo test runs the binaries one after another,
# so one long test leaves a core idle); 0.9.143 wants rustc 1.91.
if [ "$want_nextest" = 1 ] && ! cargo nextest --version >/dev/null 2>&1; then
  echo "installing cargo-nextest 0.9.143 (a few minutes, once)"
  cargo install cargo-nextest@0.9.143 --locked --quiet
fi

# A real SigV4 S3 server over a directory, for ugc-dvr's S3 tier tests; the
# binary lives in ~/.cargo/bin (outside the clone). 0.15+ needs a newer rustc.
if [ "$want_s3" = 1 ] && ! s3s-fs --version >/dev/null 2>&1; then
  echo "installing s3s-fs 0.14.1 (a few minutes, once)"
  cargo install s3s-fs@0.14.1 --locked --features binary --quiet
fi
# garage: a distributed S3 store (AGPL; run as an external server, never
# linked), the store several origins share in the DVR's shared-bucket test.
if [ "$want_s3" = 1 ] && ! garage --version >/dev/null 2>&1; then
  echo "installing garage 2.5.0 (about 10-15 minutes, once)"
  cargo install garage@2.5.0 --locked --no-default-features --features sqlite,system-libs --quiet
fi
