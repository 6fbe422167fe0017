#!/usr/bin/env bash
# A real rollout against its prediction: bench/fleet_run.sh [BUILD]
#
# tests/lib/fleet_rig.sh's 8 laptops (each its own cache and seed; four at
# headquarters, four in an office; half hold the last version) take the new
# version through `vmsync fleet run`, over relays (tests/lib/relay.py): the
# server's uplink at FLEET_RUN_UPLINK (RATE_BITS_PER_S:ONE_WAY_DELAY_MS,
# default 20000000:5) and the office's line behind it at FLEET_RUN_OFFICE
# (default 10000000:20, so 50 ms round trips from the office).  FLEET_RUN_RUNS
# rollouts (default 3); the median of actual / predicted makespan.  Output: a
# table on stdout, and $BUILD/bench-fleet-run.json with the run id
# $BENCH_RUN_ID.
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
for i in $(seq "$RUNS"); do
    msg "rollout $i of $RUNS"
    rm -rf "$T/lap"/*/desk.img "$T/lap"/*/cache
    vm_ok "$T/run$i" fleet run "$T/fleet.json" --json "${FLEET_SSH_OPTS[@]}"
    for d in "$T"/lap/*; do
        [[ $(repo_digest "$d/desk.img") == "$FLEET_WANT" ]] || fail "$(basename "$d"): its image is not the version's"
    done
done
python3 - "$OUT" "$UPLINK" "$OFFICE" "$T"/run*.out <<'PY'
import json, os, statistics, sys
out, uplink, office, runs = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
docs = [json.load(open(r)) for r in runs]
ratios = [d["makespan"] / d["makespan_predicted"] for d in docs]
fig = {"run_id": os.environ.get("BENCH_RUN_ID"), "laptops": len(docs[0]["laptops"]),
       "uplink": uplink, "office": office, "runs": len(docs),
       "makespan_predicted": docs[0]["makespan_predicted"],
       "makespans": [d["makespan"] for d in docs],
       "makespan_median": statistics.median(d["makespan"] for d in docs),
       "ratio_median": statistics.median(ratios)}
json.dump(fig, open(out, "w"), indent=2, sort_keys=True)
print("| rollout | predicted | actual, median of %d | actual / predicted |" % len(docs))
print("| --- | --- | --- | --- |")
print("| %d laptops, uplink %s, office %s | %.1f s | %.1f s | %.3f |" % (
    fig["laptops"], uplink, office, fig["makespan_predicted"], fig["makespan_median"], fig["ratio_median"]))
PY
finish >&2
