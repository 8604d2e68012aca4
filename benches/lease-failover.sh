#!/usr/bin/env bash
# Transcoder failover figures (issue #22), from the real processes of
# e2e_roles (control plane, publishing node, two transcoders, origin, an
# ffmpeg publisher) on loopback:
# - per lease length (TTLS, ms), RUNS kills (`kill -9`) of the lease holder:
#   the time from the kill to the new holder's first whole segment at the
#   origin (`a_killed_or_frozen_transcoders_stream_is_taken_over_by_another`);
# - HLS_RUNS kills under hls.js (LL-HLS, headless Chromium), the kill moved
#   across a segment: the rendition's outage (kill to the successor's push
#   at the origin) and hls.js' longest freeze
#   (`hls_js_plays_a_rendition_through_a_transcoder_kill`).
# Prints min / p50 / p95 / max per series.
#
# Env: RUNS=5 TTLS="1500 3000" HLS_RUNS=8 (0 skips hls.js)
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
RUNS=${RUNS:-5}
TTLS=${TTLS:-"1500 3000"}
HLS_RUNS=${HLS_RUNS:-8}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

cargo test --workspace --locked --test e2e_roles --no-run -q 2>/dev/null

stats() { # label, file of numbers
  python3 - "$1" "$2" <<'EOF'
import sys
label, path = sys.argv[1], sys.argv[2]
v = sorted(float(x) for x in open(path) if x.strip())
if not v:
    print(f"{label}: no sample"); sys.exit()
pct = lambda p: v[min(len(v) - 1, int(p / 100 * len(v)))]
print(f"{label}: n={len(v)} min {v[0]:.2f} s, p50 {pct(50):.2f} s, "
      f"p95 {pct(95):.2f} s, max {v[-1]:.2f} s")
EOF
}

for ttl in $TTLS; do
  for _ in $(seq "$RUNS"); do
    UGC_TEST_LEASE_TTL_MS=$ttl cargo test --workspace --locked -q --test e2e_roles \
      a_killed_or_frozen -- --nocapture 2>&1 \
      | sed -n 's/.*first segment: \([0-9.]*\)s.*/\1/p' >> "$OUT/kill-$ttl"
  done
  stats "lease TTL $ttl ms: kill -9 to the new holder's first segment" "$OUT/kill-$ttl"
done

if [ "$HLS_RUNS" -gt 0 ]; then
  scripts/install-deps.sh browser >/dev/null
  (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  for i in $(seq 0 $((HLS_RUNS - 1))); do
    # The kill at HLS_RUNS points of a 2 s segment.
    after=$((8000 + i * 2000 / HLS_RUNS))
    line=$(UGC_TEST_KILL_AFTER_MS=$after cargo test --workspace --locked -q --test e2e_roles \
      hls_js_plays -- --ignored --nocapture 2>&1 | grep 'hls.js longest freeze' || true)
    outage=$(sed -n 's/.*outage \([0-9.]*\) s.*/\1/p' <<<"$line")
    freeze=$(sed -n 's/.*longest freeze \([0-9.]*\) s.*/\1/p' <<<"$line")
    echo "kill after ${after} ms: outage ${outage:-?} s, freeze ${freeze:-?} s"
    [ -n "$outage" ] && echo "$outage" >> "$OUT/outage"
    [ -n "$freeze" ] && echo "$freeze" >> "$OUT/freeze"
  done
  stats "rendition outage (kill to the successor's push)" "$OUT/outage"
  stats "hls.js longest freeze" "$OUT/freeze"
fi
