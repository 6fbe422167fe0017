#!/usr/bin/env bash
# A real rollout against its prediction: bench/fleet_run.sh [BUILD]
#
# tests/lib/fleet_rig.sh's 8 laptops (each its own cache and seed; four at
# headquarters, four in an office; half hold the last version) take the new
# version through `vmsync fleet run`, over relays (tests/lib/relay.py): the
# server's uplink at FLEET_RUN_UPLINK (RATE_BITS_PER_S:ONE_WAY_DELAY_MS,
# default 20000000:5) and the office's line behind it at FLEET_RUN_OFFICE
# (default 10000000:20, so 50 ms round trips from the office); then again
# with the office's laptops behind a reflector (vmsync-agent --upstream)
# whose upstream crosses that line, filled by the office's "warm" command.
# FLEET_RUN_RUNS rollouts of each (default 3); the median of actual /
# predicted makespan.  Output: a table on stdout, and
# $BUILD/bench-fleet-run.json with the run id $BENCH_RUN_ID.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-${BUILD:-build}}
BUILD=$(cd "$BUILD" && pwd)
RUNS=${FLEET_RUN_RUNS:-3}
UPLINK=${FLEET_RUN_UPLINK:-20000000:5}
OFFICE=${FLEET_RUN_OFFICE:-10000000:20}
OUT=$BUILD/bench-fleet-run.json
export BENCH_RUN_ID=${BENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}
msg() { printf 'fleet-run-bench: %s\n' "$*" >&2; }
for l in "$UPLINK" "$OFFICE"; do
    [[ $l =~ ^[1-9][0-9]*:[0-9]+$ ]] || { msg "not RATE:DELAY_MS: $l"; exit 1; }
done

export VMSYNC=$BUILD/vmsync VMSYNC_AGENT=$BUILD/vmsync-agent
TEST_NAME=bench-fleet-run
source "$HERE/../tests/lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/fleet_rig.sh"
export VMSYNC_HOST=admin VMSYNC_CACHE=$T/cache

fleet_rig "${UPLINK%%:*}" "${UPLINK#*:}" "${OFFICE%%:*}" "${OFFICE#*:}" >&2
for setup in direct reflector; do
    file=$T/fleet.json
    [[ $setup == direct ]] || file=$T/fleet-reflector.json
    for i in $(seq "$RUNS"); do
        msg "$setup: rollout $i of $RUNS"
        rm -rf "$T/lap"/*/desk.img "$T/lap"/*/cache "$T/rcache"
        vm_ok "$T/$setup-$i" fleet run "$file" --json "${FLEET_SSH_OPTS[@]}"
        for d in "$T"/lap/*/desk.img; do
            [[ $(repo_digest "$d") == "$FLEET_WANT" ]] || fail "$d is not the version's image"
        done
    done
done
python3 - "$OUT" "$UPLINK" "$OFFICE" "$T" "$RUNS" <<'PY'
import json, os, statistics, sys
out, uplink, office, tmp, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])
fig = {"run_id": os.environ.get("BENCH_RUN_ID"), "laptops": 8, "uplink": uplink, "office": office,
       "runs": runs}
print("| rollout (8 laptops, uplink %s, office %s) | predicted | actual, median of %d | actual / predicted |"
      % (uplink, office, runs))
print("| --- | --- | --- | --- |")
for setup in ("direct", "reflector"):
    docs = [json.load(open("%s/%s-%d.out" % (tmp, setup, i))) for i in range(1, runs + 1)]
    f = {"makespan_predicted": docs[0]["makespan_predicted"], "makespans": [d["makespan"] for d in docs],
         "makespan_median": statistics.median(d["makespan"] for d in docs),
         "ratio_median": statistics.median(d["makespan"] / d["makespan_predicted"] for d in docs)}
    fig[setup] = f
    print("| %s | %.1f s | %.1f s | %.3f |" % (
        "the office's laptops direct" if setup == "direct" else "the office behind a reflector",
        f["makespan_predicted"], f["makespan_median"], f["ratio_median"]))
json.dump(fig, open(out, "w"), indent=2, sort_keys=True)
PY
finish >&2
