#!/usr/bin/env bash
# The ceiling issue's figures in one invocation: the peer kit's references
# (calibration, the SDK agent alone, the SDK broker, PostgreSQL's
# three-transaction ceiling, graphile-worker) beside two builds of
# Switchyard, and the project's own `hotpath` and `queue` benches for each.
#
# A build is a directory holding `switchyard`, `hotpath` and `queue`, all
# release builds of one commit; collect one from a checkout with
#
#   benches/ceiling.sh collect /tmp/sy-before      # after `cargo build --release`
#
# (it builds the two benches first), then
#
#   BEFORE=/tmp/sy-before AFTER=/tmp/sy-after benches/ceiling.sh
#
# Needs the peer kit set up (`../shared/peers/setup.sh`) and PostgreSQL on
# 127.0.0.1:5432. Every load run is bounded (DUR seconds) and talks to
# loopback only; the whole takes about twenty minutes. The log on stdout is
# the report's source.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"

if [ "${1:-}" = collect ]; then
  out=${2:?collect DIR}
  mkdir -p "$out"
  cargo build --release --bin switchyard
  cargo bench --no-run --bench hotpath --bench queue 2>&1 | tee /dev/stderr |
    sed -n 's/.*Executable benches\/\([a-z_]*\)\.rs (\(.*\))/\1 \2/p' |
    while read -r name path; do cp "$path" "$out/$name"; done
  cp target/release/switchyard "$out/switchyard"
  ls -l "$out"
  exit 0
fi

KIT=${KIT:-$ROOT/../shared/peers}
BEFORE=${BEFORE:?a directory collected from the commit before}
AFTER=${AFTER:?a directory collected from the commit after}
export DUR=${DUR:-15} RUNS=${RUNS:-1} CONCS=${CONCS:-"1 32"}
export PGSSLMODE=disable
# The project's benches only: the kit's scripts read DATABASE_URL too.
BENCH_DB=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/test?sslmode=disable}

section() { printf '\n===== %s (%s) =====\n' "$1" "$(date -u +%H:%M:%S)"; }

if [ -z "${SKIP_KIT:-}" ]; then
section "A2A: calibration, peers, Switchyard before"
SY_BIN=$BEFORE/switchyard SCENARIOS="bare_axum echo_mem_w1 broker_db_w1 switchyard_dev switchyard_demo0" \
  python3 "$KIT/a2a/run_a2a_bench.py"
section "A2A: Switchyard after, the agent alone again, calibration"
SY_BIN=$AFTER/switchyard SCENARIOS="switchyard_dev switchyard_demo0 echo_mem_w1 bare_axum_end" \
  python3 "$KIT/a2a/run_a2a_bench.py"

section "PostgreSQL: the three-transaction ceiling"
CLIENTS="4 16" python3 "$KIT/pg/run_pg_bench.py"

section "Queues: graphile-worker"
VARIANTS="graphile_localqueue" python3 "$KIT/nodeq/run_nodeq.py"
fi

for side in BEFORE AFTER; do
  dir=${!side}
  section "hotpath, $side"
  DATABASE_URL=$BENCH_DB SWITCHYARD_BIN=$dir/switchyard BENCH_SECONDS=${BENCH_SECONDS:-8} "$dir/hotpath" --bench
  section "queue, $side"
  DATABASE_URL=$BENCH_DB "$dir/queue" --bench
done
section "done"
