#!/usr/bin/env bash
# vmsync rollout-simulation benchmark: bench/fleet.sh [BUILD]
#
# The simulated makespan (time until every laptop is ready) of the schedule
# that `vmsync fleet plan` chooses against everyone at once, in the same
# simulator, for a fleet of FLEET_LAPTOPS (300) laptops in FLEET_BRANCHES (8)
# branches written by bench/fleet_gen.py (seed FLEET_SEED, 14): headquarters
# at the server's site, the other branches behind 10 Mbit/s lines, half of
# them with a reflector, a quarter of the laptops online one hour a day.  The
# byte counts are synthetic (no repository is read); the planner's own wall
# time is recorded too.  The table goes to stdout, the figures to
# $BUILD/bench-fleet.json, progress to stderr.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-${BUILD:-build}}
VMSYNC=$(realpath "$BUILD/vmsync")
LAPTOPS=${FLEET_LAPTOPS:-300}
BRANCHES=${FLEET_BRANCHES:-8}
SEED=${FLEET_SEED:-14}
OUT=$BUILD/bench-fleet.json

msg() { printf 'fleet-bench: %s\n' "$*" >&2; }
T=$(mktemp -d /var/tmp/vmsync-fleet-bench.XXXXXX)
trap 'rm -rf "$T"' EXIT

msg "$LAPTOPS laptops in $BRANCHES branches (seed $SEED)"
python3 "$HERE/fleet_gen.py" "$LAPTOPS" "$BRANCHES" "$SEED" >"$T/fleet.json"
start=$(date +%s.%N)
nice "$VMSYNC" fleet plan "$T/fleet.json" --json >"$T/plan.json"
end=$(date +%s.%N)
python3 - "$T/plan.json" "$OUT" "$LAPTOPS" "$BRANCHES" "$SEED" "$start" "$end" <<'PY'
import json, os, sys
plan, out, laptops, branches, seed, start, end = sys.argv[1:]
p = json.load(open(plan))
fig = {"run_id": os.environ.get("BENCH_RUN_ID"), "laptops": int(laptops), "branches": int(branches),
       "seed": int(seed), "makespan": p["makespan"], "makespan_all_at_once": p["makespan_all_at_once"],
       "ratio": p["makespan"] / p["makespan_all_at_once"], "ranking": p["ranking"],
       "simulations": p["simulations"], "server_bytes": p["server_bytes"],
       "plan_seconds": float(end) - float(start)}
json.dump(fig, open(out, "w"), indent=2, sort_keys=True)
h = lambda s: "%.1f h" % (s / 3600)
print("| fleet | schedule | everyone at once | ratio | ranking | plan wall time |")
print("| --- | --- | --- | --- | --- | --- |")
print("| %d laptops, %d branches | %s | %s | %.3f | %s, %d simulations | %.1f s |" % (
    fig["laptops"], fig["branches"], h(fig["makespan"]), h(fig["makespan_all_at_once"]),
    fig["ratio"], fig["ranking"], fig["simulations"], fig["plan_seconds"]))
PY
