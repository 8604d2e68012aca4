#!/usr/bin/env bash
# Failover figures (issue #15): switch times over KILLS kills of the main
# publisher (p50/p95), the slate's takeover, and the server's CPU for a
# stream live vs on the slate. See benches/failover.py.
#
# Env: KILLS=10 SECONDS_CPU=20 PROFILE=release (or debug) BIN=path
set -euo pipefail
cd "$(dirname "$0")/.."
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
PROFILE=${PROFILE:-release}
if [ -z "${BIN:-}" ]; then
  if [ "$PROFILE" = release ]; then
    cargo build --release --locked -q -p ugc-server
  else
    cargo build --locked -q -p ugc-server
  fi
  BIN=$TARGET/$PROFILE/ugc-server
fi
exec python3 benches/failover.py "$BIN"
