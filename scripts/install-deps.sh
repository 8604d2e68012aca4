#!/usr/bin/env bash
# Installs what ugc's demo, tests and benchmarks need and is missing, from
# Debian packages and crates.io. Idempotent; safe to run on every `make`.
#   scripts/install-deps.sh            # runtime + test peers (ffmpeg, ffprobe)
#   scripts/install-deps.sh bench      # + nginx-rtmp, wrk (benchmark peers)
#   scripts/install-deps.sh fuzz       # + cargo-fuzz
#   scripts/install-deps.sh browser    # + chromium, node/npm, openssl (LL-HLS browser test)
set -euo pipefail

want_bench=0; want_fuzz=0; want_browser=0
for a in "$@"; do
  case "$a" in
    bench) want_bench=1 ;;
    fuzz) want_fuzz=1 ;;
    browser) want_browser=1 ;;
    *) echo "unknown option $a" >&2; exit 2 ;;
  esac
done

missing=()
need() { command -v "$1" >/dev/null 2>&1 || missing+=("$2"); }
need ffmpeg ffmpeg
need ffprobe ffmpeg
need curl curl
need pkg-config pkg-config
# ugc-auth's tests start a private PostgreSQL server from these binaries.
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
if [ "$want_bench" = 1 ]; then
  need nginx nginx
  [ -e /usr/lib/nginx/modules/ngx_rtmp_module.so ] || missing+=(libnginx-mod-rtmp)
  need wrk wrk
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

if [ "$want_fuzz" = 1 ] && ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  cargo install cargo-fuzz --locked --quiet
fi
