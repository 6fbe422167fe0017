#!/usr/bin/env bash
# Runs the vmsync test suite against one build.
#
#   tests/run.sh BUILD [PATTERN...]
#
# Runs the unit test binaries ($BUILD/tests/*) and every tests/e2e/*.sh with
# BUILD and VMSYNC=$BUILD/vmsync exported, each under a timeout, and prints one
# line per test (PASS name / FAIL name (reason) / SKIP name), then
# "N passed, N failed, N skipped".  Exit status 1 when anything failed.
# PATTERNs (shell globs on the test name, e.g. 'e2e/diff' or 'unit/*') select
# tests.
#
# Environment:
#   VMSYNC_TEST_TIMEOUT  seconds per test (default 900, 1800 for sanitizer builds)
#   VMSYNC_TEST_LOGS     where the per-test logs go (default $BUILD/test-logs)
#   VMSYNC_TEST_CACHE    reuse images from this directory across runs (default:
#                        built fresh in the run's scratch directory)
#   VMSYNC_TEST_KEEP=1   keep the scratch directory
#   TMPDIR_LARGE         where the scratch directory goes (default /var/tmp)
#   VMSYNC_CORPUS        the shared corpus (default ../shared/corpus)
set -euo pipefail
umask 022

if [[ $# -lt 1 || $1 == -h || $1 == --help ]]; then
    echo "usage: $0 BUILD [PATTERN...]"
    [[ $# -ge 1 ]] && exit 0
    exit 2
fi
BUILD=${1%/}
shift
PATTERNS=("$@")

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$REPO"
if [[ $BUILD == /* ]]; then BUILD_DIR=$BUILD; else BUILD_DIR=$REPO/$BUILD; fi
VMSYNC=$BUILD_DIR/vmsync
export BUILD VMSYNC

WORK=$(mktemp -d "${TMPDIR_LARGE:-/var/tmp}/vmsync-tests.XXXXXX")
cleanup() {
    local rc=$?
    if [[ ${VMSYNC_TEST_KEEP:-0} == 1 ]]; then
        echo "# scratch kept in $WORK" >&2
    else
        chmod -R u+w "$WORK" 2>/dev/null || true
        rm -rf "$WORK"
    fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export VMSYNC_TEST_WORK=$WORK
export VMSYNC_TEST_CACHE=${VMSYNC_TEST_CACHE:-$WORK/cache}
LOGS=${VMSYNC_TEST_LOGS:-$BUILD_DIR/test-logs}
rm -rf "$LOGS"
mkdir -p "$LOGS"
export VMSYNC_TEST_LOGS=$LOGS

sanitized=0
if [[ $BUILD == *san* ]] || { [[ -x $VMSYNC ]] && nm "$VMSYNC" 2>/dev/null | grep -q __asan_init; }; then
    sanitized=1
fi
if [[ $sanitized == 1 ]]; then
    export VMSYNC_SANITIZED=1
    TMO=${VMSYNC_TEST_TIMEOUT:-1800}
else
    TMO=${VMSYNC_TEST_TIMEOUT:-900}
fi

selected() {
    local name=$1 p
    [[ ${#PATTERNS[@]} -eq 0 ]] && return 0
    for p in "${PATTERNS[@]}"; do
        # shellcheck disable=SC2053
        [[ $name == $p || $name == "e2e/$p" || $name == "unit/$p" ]] && return 0
    done
    return 1
}

npass=0 nfail=0 nskip=0
start_all=$SECONDS

# run_test NAME CMD...: runs one test with its output in $LOGS/NAME.log.
run_test() {
    local name=$1 rc=0 t0=$SECONDS reason log
    shift
    log="$LOGS/${name//\//_}.log"
    timeout -k 30 "$TMO" "$@" >"$log" 2>&1 </dev/null || rc=$?
    local secs=$((SECONDS - t0))
    case $rc in
    0)
        echo "PASS $name (${secs}s)"
        npass=$((npass + 1))
        ;;
    77)
        reason=$(sed -n 's/^SKIP: //p' "$log" | head -1)
        echo "SKIP $name${reason:+ ($reason)}"
        nskip=$((nskip + 1))
        ;;
    *)
        if ((rc == 124 || rc == 137)); then
            reason="timed out after ${TMO}s"
        else
            reason=$(sed -n 's/^FAIL: //p' "$log" | head -1 | cut -c1-300)
            local more
            more=$(grep -c '^FAIL: ' "$log" || true)
            ((more > 1)) && reason+=" [+$((more - 1)) more]"
            [[ -n $reason ]] || reason="exit status $rc: $(tail -1 "$log" | cut -c1-200)"
        fi
        echo "FAIL $name ($reason; log $log)"
        nfail=$((nfail + 1))
        ;;
    esac
}

echo "# vmsync tests: build $BUILD, binary $VMSYNC, scratch $WORK, logs $LOGS"
[[ -x $VMSYNC ]] || echo "# warning: $VMSYNC does not exist; the end-to-end tests will fail"

# unit tests
if [[ -d $BUILD_DIR/tests ]]; then
    for u in "$BUILD_DIR"/tests/*; do
        [[ -f $u && -x $u ]] || continue
        name="unit/$(basename "$u")"
        selected "$name" || continue
        run_test "$name" "$u"
    done
fi

# end-to-end tests: build the shared images first (two at a time)
e2e=()
for t in "$REPO"/tests/e2e/*.sh; do
    [[ -f $t ]] || continue
    name="e2e/$(basename "$t" .sh)"
    selected "$name" && e2e+=("$t")
done
if [[ ${#e2e[@]} -gt 0 ]]; then
    t0=$SECONDS
    if bash "$REPO/tests/lib/images.sh" prebuild >"$LOGS/images.log" 2>&1; then
        echo "# test images built in $((SECONDS - t0))s"
    else
        echo "# warning: building the test images failed (see $LOGS/images.log)"
    fi
fi
for t in "${e2e[@]}"; do
    run_test "e2e/$(basename "$t" .sh)" bash "$t"
done

echo "# total $((SECONDS - start_all))s"
echo "$npass passed, $nfail failed, $nskip skipped"
((nfail == 0))
