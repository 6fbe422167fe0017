#!/usr/bin/env bash
# Runs libFuzzer targets for a while each, seeded from the shared corpus.
#
#   tests/fuzz/run.sh SECONDS [TARGET...]
#
# TARGET is a libFuzzer binary (path) or a name under build-fuzz/ (default: all
# build-fuzz/fuzz_*).  Each runs for SECONDS (-max_total_time) with
# -rss_limit_mb=2048 -timeout=10 on a scratch corpus seeded with the small
# decompressed images of ../shared/corpus (VMSYNC_CORPUS).  Exit 1 when a target
# finds a crash, leak, timeout or OOM, or a unit that is slow again when re-run
# alone (FUZZ_SLOW_AGAIN seconds, default 5; artifacts are copied to
# ${FUZZ_ARTIFACTS:-build-fuzz/artifacts}), 2 on usage errors.
#
# Environment: FUZZ_SEED_MAX (bytes, default 16 MiB): largest seed image;
# FUZZ_ARGS: extra libFuzzer options; FUZZ_JOBS: targets run at once (default 1).
set -euo pipefail
umask 022

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
if [[ $# -lt 1 || ! $1 =~ ^[0-9]+$ ]]; then
    echo "usage: $0 SECONDS [TARGET...]" >&2
    exit 2
fi
SECS=$1
shift
targets=("$@")
if [[ ${#targets[@]} -eq 0 ]]; then
    shopt -s nullglob
    targets=("$REPO"/build-fuzz/fuzz_*)
    shopt -u nullglob
    [[ ${#targets[@]} -gt 0 ]] || { echo "fuzz: no targets in $REPO/build-fuzz (make fuzz)" >&2; exit 2; }
fi

CORPUS=${VMSYNC_CORPUS:-$REPO/../shared/corpus}
ARTIFACTS=${FUZZ_ARTIFACTS:-$REPO/build-fuzz/artifacts}
SEED_MAX=${FUZZ_SEED_MAX:-$((16 << 20))}
JOBS=${FUZZ_JOBS:-1}

WORK=$(mktemp -d "${TMPDIR_LARGE:-/var/tmp}/vmsync-fuzz.XXXXXX")
trap 'rm -rf "$WORK"' EXIT
trap 'exit 130' INT TERM

# shellcheck source=tests/lib/corpus.sh
source "$REPO/tests/lib/corpus.sh"
mkdir -p "$WORK/seeds"
if corpus_available; then
    n=$(corpus_extract "$WORK/seeds" "$SEED_MAX")
    echo "# fuzz: $n seed images (<= $SEED_MAX bytes) from $CORPUS"
else
    echo "# fuzz: no corpus at $CORPUS; starting from an empty corpus"
fi

# A unit libFuzzer timed at 10 s or more on a loaded machine fails the run
# only when it is slow again alone: the count of those that are (at least
# SLOW_AGAIN seconds); the others are deleted, with a line that says so.
SLOW_AGAIN=${FUZZ_SLOW_AGAIN:-5}
slow_units_again() {
    local bin=$1 dir=$2 unit start ms again=0
    for unit in "$dir"/slow-unit-*; do
        [[ -f $unit ]] || continue
        start=$(date +%s%N)
        "$bin" -timeout=60 -rss_limit_mb=2048 "$unit" >/dev/null 2>&1 || true
        ms=$((($(date +%s%N) - start) / 1000000))
        if ((ms >= SLOW_AGAIN * 1000)); then
            again=$((again + 1))
        else
            echo "# $(basename "$bin"): $(basename "$unit") took ${ms} ms alone; not slow again, dropped" >&2
            rm -f "$unit"
        fi
    done
    echo "$again"
}

fails=0
run_target() {
    local t=$1 bin name rc=0
    if [[ $t == */* ]]; then bin=$t; else bin=$REPO/build-fuzz/$t; fi
    name=$(basename "$bin")
    if [[ ! -x $bin ]]; then
        echo "FAIL $name (no such fuzz target: $bin)"
        return 1
    fi
    local dir="$WORK/$name" seeds="$WORK/seeds"
    mkdir -p "$dir/corpus" "$dir/artifacts"
    # a target with a seed generator of its own starts from what it makes
    if [[ -x $REPO/tests/fuzz/seeds-$name.py ]]; then
        seeds="$dir/seeds"
        "$REPO/tests/fuzz/seeds-$name.py" "$seeds"
    fi
    # shellcheck disable=SC2086
    timeout -k 30 $((SECS + 120)) "$bin" "$dir/corpus" "$seeds" \
        -max_total_time="$SECS" -rss_limit_mb=2048 -timeout=10 \
        -artifact_prefix="$dir/artifacts/" -print_final_stats=1 ${FUZZ_ARGS:-} \
        >"$dir/log" 2>&1 || rc=$?
    local arts
    arts=$(find "$dir/artifacts" -type f ! -name 'slow-unit-*' | wc -l)
    arts=$((arts + $(slow_units_again "$bin" "$dir/artifacts")))
    if ((rc != 0 || arts > 0)); then
        mkdir -p "$ARTIFACTS/$name"
        cp "$dir"/artifacts/* "$ARTIFACTS/$name/" 2>/dev/null || true
        cp "$dir/log" "$ARTIFACTS/$name/fuzz.log"
        local what
        what=$(grep -m1 -E '^==[0-9]+==ERROR|^SUMMARY|ERROR: libFuzzer|runtime error|^Slowest unit' "$dir/log" | cut -c1-200 || true)
        echo "FAIL $name (status $rc, $arts artifact(s) in $ARTIFACTS/$name: ${what:-see fuzz.log}; reproduce: $bin ARTIFACT)"
        return 1
    fi
    local execs
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
    echo "PASS $name (${SECS}s, ${execs:-?} executions, corpus $(find "$dir/corpus" -type f | wc -l) new inputs)"
}

running=0
for t in "${targets[@]}"; do
    if ((JOBS > 1)); then
        run_target "$t" &
        running=$((running + 1))
        if ((running >= JOBS)); then
            wait -n || fails=$((fails + 1))
            running=$((running - 1))
        fi
    else
        run_target "$t" || fails=$((fails + 1))
    fi
done
while ((running > 0)); do
    wait -n || fails=$((fails + 1))
    running=$((running - 1))
done
echo "$((${#targets[@]} - fails)) passed, $fails failed"
((fails == 0))
