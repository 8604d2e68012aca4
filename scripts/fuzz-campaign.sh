#!/usr/bin/env bash
# The long fuzz campaign (issue #17): every target until RUNS executions or
# SECONDS_EACH seconds, whichever comes first, with a random seed, new inputs
# that add coverage merged into the repo's corpus, and a table of what ran.
#
#   scripts/fuzz-campaign.sh [target ...]      (default: every target)
#   RUNS=10000000 SECONDS_EACH=3600 (the defaults)
#
# Crashes stop nothing: they are written to fuzz/artifacts/<target>/ and
# counted in the table, so one finding does not hide the others.
set -uo pipefail
cd "$(dirname "$0")/../fuzz"
CACHE=${CACHE:-$HOME/.cache/ugc}
RUNS=${RUNS:-10000000}
SECONDS_EACH=${SECONDS_EACH:-3600}
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
  mapfile -t targets < <(cargo fuzz list)
fi
log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
printf '%-16s %12s %8s %8s %8s %7s %7s %s\n' target execs exec/s seconds cov corpus crashes note
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t" "artifacts/$t"
  before=$(ls "artifacts/$t" | wc -l)
  start=$(date +%s)
  mkdir -p "$log/new-$t"
  CARGO_TARGET_DIR=$CACHE/fuzz-target cargo fuzz run -s none "$t" "$log/new-$t" "corpus/$t" -- \
    -runs="$RUNS" -max_total_time="$SECONDS_EACH" -print_final_stats=1 \
    -reload=0 >"$log/$t" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  execs=$(grep -o 'stat::number_of_executed_units: [0-9]*' "$log/$t" | awk '{print $2}' | tail -1)
  # libFuzzer prints no rate when -runs ends the run: execs / seconds.
  rate=$(( ${execs:-0} / (secs > 0 ? secs : 1) ))
  cov=$(grep -oE 'cov: [0-9]+' "$log/$t" | tail -1 | awk '{print $2}')
  # Keep the new inputs that add coverage (existing ones, regression
  # inputs among them, stay).
  CARGO_TARGET_DIR=$CACHE/fuzz-target cargo fuzz run -s none "$t" -- \
    -merge=1 "corpus/$t" "$log/new-$t" >"$log/merge-$t" 2>&1
  corpus=$(ls "corpus/$t" | wc -l)
  crashes=$(( $(ls "artifacts/$t" | wc -l) - before ))
  note=""
  [ "$rc" -ne 0 ] && note=$(grep -m1 -e 'panicked at' -e 'ERROR: libFuzzer' "$log/$t" | cut -c1-80)
  printf '%-16s %12s %8s %8s %8s %7s %7s %s\n' "$t" "${execs:-?}" "$rate" "$secs" "${cov:-?}" "$corpus" "$crashes" "$note"
done
