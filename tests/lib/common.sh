# shellcheck shell=bash
# Shared helpers for the end-to-end tests.  Source it first:
#
#   source "$(dirname "$0")/../lib/common.sh"
#
# Environment (set by tests/run.sh; defaults let a test run on its own):
#   BUILD              build directory name (default build)
#   VMSYNC             the binary under test (default $REPO/$BUILD/vmsync)
#   VMSYNC_TEST_WORK   scratch root for the run (default: a private mktemp -d)
#   VMSYNC_TEST_CACHE  image cache (default $VMSYNC_TEST_WORK/cache)
#   VMSYNC_TEST_KEEP=1 keep the test's scratch directory
#   VMSYNC_CORPUS      the shared corpus (default $REPO/../shared/corpus)
#   VMSYNC_SANITIZED=1 force sanitizer mode (otherwise detected from the binary)
#
# Exit protocol: 0 pass, 1 fail, 77 skip.  The first "FAIL: ..." line a test
# prints is the reason run.sh shows.

set -euo pipefail
umask 022
export LC_ALL=C.UTF-8
export TZ=UTC
# the machine's /etc/vmsync/vmsync.conf and the shell's VMSYNC_REPO never
# reach a test: a test that wants them sets its own
export VMSYNC_SYSTEM_CONFIG=/nonexistent/vmsync.conf
unset VMSYNC_REPO

TESTS_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TESTS_DIR=$(dirname "$TESTS_LIB")
REPO=$(dirname "$TESTS_DIR")
export PYTHONPATH="$TESTS_LIB${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1

BUILD=${BUILD:-build}
VMSYNC=${VMSYNC:-$REPO/$BUILD/vmsync}
[[ $VMSYNC == /* ]] || VMSYNC="$PWD/$VMSYNC"
export BUILD VMSYNC
export CORPUS=${VMSYNC_CORPUS:-$REPO/../shared/corpus}
TEST_NAME=${TEST_NAME:-$(basename "$0" .sh)}
# Per-invocation limit for vmsync (a hang shows up as status 124).
VMSYNC_CMD_TIMEOUT=${VMSYNC_CMD_TIMEOUT:-300}

_COMMON_OWN_WORK=0
if [[ -z ${VMSYNC_TEST_WORK:-} ]]; then
    VMSYNC_TEST_WORK=$(mktemp -d "${TMPDIR_LARGE:-/var/tmp}/vmsync-test.XXXXXX")
    _COMMON_OWN_WORK=1
fi
export VMSYNC_TEST_WORK
export VMSYNC_TEST_CACHE=${VMSYNC_TEST_CACHE:-$VMSYNC_TEST_WORK/cache}
T="$VMSYNC_TEST_WORK/t-$TEST_NAME"
rm -rf "$T"
mkdir -p "$T"

_common_cleanup() {
    local rc=$?
    if [[ ${VMSYNC_TEST_KEEP:-0} != 1 ]]; then
        chmod -R u+w "$T" 2>/dev/null || true
        rm -rf "$T"
        if [[ $_COMMON_OWN_WORK == 1 ]]; then
            chmod -R u+w "$VMSYNC_TEST_WORK" 2>/dev/null || true
            rm -rf "$VMSYNC_TEST_WORK"
        fi
    else
        echo "# kept $T" >&2
    fi
    return $rc
}
trap _common_cleanup EXIT

FAILS=0
# fail MSG: fatal failure.
fail() {
    echo "FAIL: $*"
    exit 1
}
# bad MSG: records a failure and carries on; finish reports.
bad() {
    echo "FAIL: $*"
    FAILS=$((FAILS + 1))
}
skip() {
    echo "SKIP: $*"
    exit 77
}
info() { echo "# $*"; }
# finish: exit status from the recorded failures.
finish() {
    if ((FAILS > 0)); then
        echo "$FAILS check(s) failed"
        exit 1
    fi
    echo "ok"
    exit 0
}

need_cmd() {
    local c
    for c in "$@"; do
        command -v "$c" >/dev/null 2>&1 || skip "missing tool: $c"
    done
}

need_vmsync() {
    [[ -x $VMSYNC ]] || fail "binary under test not found: $VMSYNC"
}

# is_sanitized: true when the binary is built with ASan (needs a big address
# space, no prlimit --as).
is_sanitized() {
    [[ -n ${VMSYNC_SANITIZED:-} ]] && return 0
    [[ $BUILD == *san* ]] && return 0
    if command -v nm >/dev/null 2>&1 && nm "$VMSYNC" 2>/dev/null | grep -q '__asan_init'; then
        return 0
    fi
    ldd "$VMSYNC" 2>/dev/null | grep -q 'libasan'
}

# vm PREFIX ARGS...: runs vmsync ARGS with stdout in PREFIX.out and stderr in
# PREFIX.err; sets VM_RC.  Never fails by itself.
VM_RC=0
vm() {
    local p=$1
    shift
    VM_RC=0
    timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" "$@" >"$p.out" 2>"$p.err" || VM_RC=$?
}

# vm_ok PREFIX ARGS...: like vm, but a non-zero status is a fatal failure.
vm_ok() {
    vm "$@"
    if ((VM_RC != 0)); then
        fail "vmsync ${*:2} exited $VM_RC: $(head -c 600 "$1.err" | tr '\n' ' ')"
    fi
}

# vm_expect PREFIX STATUS ARGS...: runs vmsync, records a failure unless the
# exit status is STATUS.  Returns 1 on mismatch.
vm_expect() {
    local p=$1 want=$2
    shift 2
    vm "$p" "$@"
    if ((VM_RC != want)); then
        bad "vmsync $* exited $VM_RC, expected $want; stderr: $(head -c 300 "$p.err" | tr '\n' ' ')"
        return 1
    fi
}

# stderr_is_clean PREFIX: every stderr line has the "vmsync: " prefix, or is
# the JSON error object of a command run with --json.
stderr_is_clean() {
    ! grep -qv -e '^vmsync: ' -e '^{"error":{' "$1.err"
}

# one_error_line PREFIX PATH [WORD]: stderr holds exactly one non-warning
# "vmsync: " line (or JSON error object, with --json), it names PATH (and
# contains WORD, case-insensitive, if given).
# Prints what is wrong and returns 1 otherwise.
one_error_line() {
    local p=$1 path=$2 word=${3:-} errs
    if ! stderr_is_clean "$p"; then
        echo "stderr has lines without the 'vmsync: ' prefix: $(grep -v -e '^vmsync: ' -e '^{"error":{' "$p.err" | head -3 | tr '\n' '|')"
        return 1
    fi
    errs=$(grep -v '^vmsync: warning: ' "$p.err" || true)
    if [[ $(printf '%s' "$errs" | grep -c '^') -ne 1 ]]; then
        echo "expected exactly one error line, got: $(head -c 300 "$p.err" | tr '\n' '|')"
        return 1
    fi
    if [[ $errs != *"$path"* ]]; then
        echo "error line does not name $path: $errs"
        return 1
    fi
    if [[ -n $word ]] && ! grep -qi -- "$word" <<<"$errs"; then
        echo "error line does not mention '$word': $errs"
        return 1
    fi
}

# json_ok FILE: FILE parses as JSON.
json_ok() { jq -e . "$1" >/dev/null 2>&1; }

# jget FILE FILTER: jq -r shortcut.
jget() { jq -r "$2" "$1"; }

# manifest_json PREFIX IMAGE [ARGS...]: vmsync manifest IMAGE --json ARGS into
# PREFIX.out (fatal on a non-zero status or invalid JSON).
manifest_json() {
    local p=$1 imgf=$2
    shift 2
    vm_ok "$p" manifest "$imgf" --json "$@"
    json_ok "$p.out" || fail "vmsync manifest $imgf --json $*: stdout is not JSON: $(head -c 200 "$p.out")"
}

# py: runs python3 with the test helpers importable.
py() { python3 "$@"; }
