#!/usr/bin/env bash
# The control stream under each hostile client of issue #17, baseline vs
# under attack, side by side: an ffmpeg publisher's LL-HLS part gaps (p95:
# the time between parts reaching a viewer, about the part duration when
# healthy) and a viewer's segment fetch time (p95), the server's peak RSS
# and descriptors, with ratios. The attacks: an RTMP chunk-size /
# extended-timestamp storm (8 connections), an SRT handshake flood (1,200
# sockets' inductions plus 4 hammering sockets; a new SRT publisher must
# still get in), 20 HTTP slow readers (1 byte/s), IDLE idle connections to
# both RTMP and HTTP, an HTTP/2 rapid reset (4 connections sending HEADERS +
# RST_STREAM bursts, reconnecting when the server ends them).
#   benches/hostile-control.sh [BIN] [SECONDS]
# Env: IDLE=1000, ATTACKS='rtmp-storm srt-flood slow-read idle h2-reset' (a subset),
# EXTRA_CONFIG='max_srt_handshakes_per_ip = 0' (top-level TOML keys, e.g.
# to turn a cap off and see what it prevents).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
BIN=${1:-$TARGET/release/ugc-server}
ulimit -n 20000 2>/dev/null || true
exec python3 "$here/hostile-control.py" run "$BIN" "${2:-10}"
