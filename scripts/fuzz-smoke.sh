#!/usr/bin/env bash
# The fuzz smoke of `make test`: each target for FUZZ_SECONDS from the
# fixed seed FUZZ_SEED over the repo's corpus (a regression run: a red CI
# means a change broke something, not that this run's dice found an old
# bug), JOBS targets at a time. libFuzzer runs one thread, so on this
# 2-core machine two at a time halve the wall time at the same executions
# per target.
#
#   scripts/fuzz-smoke.sh target ...
#   FUZZ_SECONDS=8 FUZZ_SEED=1 JOBS=<cores> (the defaults)
#
# Prints each target's last line in order; on a failure, the panic or
# error with the input that caused it, and exits 1 after every target ran.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
CACHE=${CACHE:-$HOME/.cache/ugc}
FUZZ_SECONDS=${FUZZ_SECONDS:-8}
FUZZ_SEED=${FUZZ_SEED:-1}
JOBS=${JOBS:-$(nproc)}
export CARGO_TARGET_DIR=$CACHE/fuzz-target
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# Built once, before the runs (parallel builds would wait on each other).
cargo fuzz build -s none >"$tmp/build.log" 2>&1 || {
  cat "$tmp/build.log"
  exit 1
}

one() {
  local t=$1
  mkdir -p "$tmp/$t"
  if TMPDIR="$tmp" cargo fuzz run -s none "$t" "$tmp/$t" "corpus/$t" -- \
    -max_total_time="$FUZZ_SECONDS" -seed="$FUZZ_SEED" -print_final_stats=0 \
    >"$tmp/$t.log" 2>&1; then
    echo ok >"$tmp/$t.rc"
  else
    echo failed >"$tmp/$t.rc"
  fi
}
export -f one
export tmp FUZZ_SECONDS FUZZ_SEED
printf '%s\n' "$@" | xargs -P "$JOBS" -I{} bash -c 'one {}'

failed=0
for t in "$@"; do
  echo "fuzz $t for ${FUZZ_SECONDS}s"
  if [ "$(cat "$tmp/$t.rc" 2>/dev/null)" = ok ]; then
    tail -n 1 "$tmp/$t.log"
  else
    failed=1
    grep -v -e '^#' -e '^INFO:' "$tmp/$t.log" | grep -m1 -A8 -e 'panicked' -e 'ERROR:' || tail -n 20 "$tmp/$t.log"
    grep -e 'Test unit written' -e '^Base64:' "$tmp/$t.log" || true
  fi
done
exit $failed
