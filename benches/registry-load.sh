#!/usr/bin/env bash
# The node registry on one PostgreSQL (issue #22, "Scale"): simulated media
# nodes heartbeat every 2 s through ugc_auth::Store (one upsert each, by the
# database clock) while a reader lists every node once a second. For each
# node count: beats/s, beat and list latency, and the database's CPU per
# beat, from which the node count that saturates one PostgreSQL core
# follows (beats/s per core / 0.5 beats per node per second). The load
# generator runs on the same 2 cores, so figures near saturation are a
# lower bound of what a dedicated database host does.
#
# Env: COUNTS="250 1000 4000" SECONDS_RUN=20 STREAMS=10
#
# `registry-load.sh leases`: transcode leases instead (src/bin/lease_load.rs):
# for each transcoder count in TRANSCODERS, JOBS streams with a ladder on
# PUBLISHERS publishing nodes, the transcoders' lease rounds (a beat every
# second each) through ControlPlane::transcode_leases; a third of them stop
# half way. Prints round latency, run-up and takeover times and PostgreSQL
# CPU per round. Env: TRANSCODERS="10 100 300" JOBS=10000 PUBLISHERS=100
# SECONDS_RUN=30
set -euo pipefail
cd "$(dirname "$0")/.."

COUNTS=${COUNTS:-250 1000 4000}
SECONDS_RUN=${SECONDS_RUN:-20}
STREAMS=${STREAMS:-10}
TARGET=${CARGO_TARGET_DIR:-$HOME/.cache/ugc/target}
HZ=$(getconf CLK_TCK)
WORK=$(mktemp -d /tmp/ugc-registry.XXXXXX)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
[ -x "$PGBIN/initdb" ] || { echo "PostgreSQL not installed: scripts/install-deps.sh" >&2; exit 1; }
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); chown postgres "$WORK"; fi
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')

cleanup() {
  "${as_pg[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -m immediate stop >/dev/null 2>&1 || true
  rm -rf "$WORK"
}
trap cleanup EXIT

"${as_pg[@]}" "$PGBIN/initdb" -D "$WORK/data" -A trust -U postgres -E UTF8 >/dev/null
# Durable commits (fsync on): what a control plane runs with.
"${as_pg[@]}" "$PGBIN/pg_ctl" -D "$WORK/data" -l "$WORK/log" -w \
  -o "-p $PORT -k $WORK -c listen_addresses=127.0.0.1 -c max_connections=50" start >/dev/null
URL="postgres://postgres@127.0.0.1:$PORT/postgres"
cargo build --release --locked -q -p ugc-benches --bin registry_load --bin lease_load
BIN=$TARGET/release/registry_load

# CPU ticks of the postmaster and all its children, living (utime + stime)
# and exited (the postmaster's cutime + cstime: backends of closed
# connections are reaped by it).
pg_ticks() {
  local pm; pm=$(head -1 "$WORK/data/postmaster.pid")
  local total=0
  for p in $pm $(pgrep -P "$pm"); do
    [ -r "/proc/$p/stat" ] || continue
    # utime, stime, cutime, cstime: fields 14-17, counted after the ')'.
    local t; t=$(sed 's/.*) //' "/proc/$p/stat" | awk '{print $12 + $13 + $14 + $15}')
    total=$((total + t))
  done
  echo "$total"
}

if [ "${1:-}" = leases ]; then
  JOBS=${JOBS:-10000}
  PUBLISHERS=${PUBLISHERS:-100}
  SECONDS_RUN=${SECONDS_RUN:-30}
  printf '%-5s %6s %8s %8s %8s %8s %8s %8s %8s %11s\n' trans jobs rounds/s p50 p99 to_p99 run_up takeover max_held db_ms/round
  for t in ${TRANSCODERS:-10 100 300}; do
    "${as_pg[@]}" "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt \
      -c "DELETE FROM nodes; DELETE FROM transcode_leases" postgres >/dev/null 2>&1 || true
    t0=$(pg_ticks)
    out=$("$TARGET/release/lease_load" "$URL" "$t" "$JOBS" "$SECONDS_RUN" "$PUBLISHERS")
    t1=$(pg_ticks)
    get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $out"; }
    cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
    awk -v t="$t" -v j="$JOBS" -v r="$(get rounds)" -v s="$SECONDS_RUN" -v p50="$(get round_ms_p50)" \
        -v p99="$(get round_ms_p99)" -v to="$(get takeover_round_ms_p99)" -v up="$(get all_held_s)" \
        -v back="$(get retaken_s)" -v mh="$(get max_held)" -v cpu="$cpu_s" 'BEGIN {
      printf "%-5d %6d %8.0f %8.2f %8.2f %8.2f %8.1f %8.1f %8d %11.3f\n", t, j, r / s, p50, p99, to, up, back, mh, (r > 0 ? cpu * 1000 / r : 0)
    }'
    [ "$(get errors)" = 0 ] || echo "  errors: $(get errors)"
  done
  echo "(ms; run_up: s until every job was held; takeover: s from a third of the transcoders stopping"
  echo " until every job was held again; db_ms/round: PostgreSQL CPU per lease round, publishers' beats included)"
  exit 0
fi

printf '%-6s %9s %9s %9s %9s %9s %11s %13s\n' nodes beats/s beat_p50 beat_p99 list_p50 list_p99 db_ms/beat nodes/pg_core
for n in $COUNTS; do
  # Each round starts from an empty registry.
  "${as_pg[@]}" "$PGBIN/psql" -h 127.0.0.1 -p "$PORT" -U postgres -qAt \
    -c "DELETE FROM nodes" postgres >/dev/null 2>&1 || true
  t0=$(pg_ticks)
  out=$("$BIN" "$URL" "$n" "$SECONDS_RUN" "$STREAMS")
  t1=$(pg_ticks)
  get() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $out"; }
  beats=$(get beats)
  cpu_s=$(awk -v a="$t0" -v b="$t1" -v hz="$HZ" 'BEGIN { printf "%.2f", (b - a) / hz }')
  awk -v n="$n" -v bps="$(get beats_per_s)" -v b50="$(get beat_ms_p50)" -v b99="$(get beat_ms_p99)" \
      -v l50="$(get list_ms_p50)" -v l99="$(get list_ms_p99)" -v cpu="$cpu_s" -v beats="$beats" 'BEGIN {
    per = beats > 0 ? cpu * 1000 / beats : 0
    core = per > 0 ? (1000 / per) / 0.5 : 0
    printf "%-6d %9.0f %9.2f %9.2f %9.2f %9.2f %11.3f %13.0f\n", n, bps, b50, b99, l50, l99, per, core
  }'
  [ "$(get errors)" = 0 ] || echo "  errors: $(get errors)"
done
echo "(latencies in ms; db_ms/beat: PostgreSQL CPU per heartbeat, the reader's lists included)"
