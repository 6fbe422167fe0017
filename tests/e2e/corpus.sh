#!/usr/bin/env bash
# Robustness on the shared third-party corpus (damaged ext2/3/4 and NTFS
# images).  For each image: vmsync manifest IMG -o OUT under a timeout (and an
# address-space limit unless built with ASan) must either succeed (and
# `manifest show OUT` read the result) or fail with a documented status and one
# "vmsync: IMG: ..." line on stderr.  Never a signal, a hang or a write to the
# input (read-only copy; sparse-aware fingerprint before and after).  A saved
# manifest must also keep the manifest shape and the layout rules (runs sorted,
# disjoint, inside the image, naming existing entries).
#
# Per-image results: $VMSYNC_TEST_LOGS/corpus.log (or the test output).
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/corpus.sh
source "$TESTS_LIB/corpus.sh"
need_vmsync
corpus_available || skip "no corpus at $CORPUS"

TMO=${VMSYNC_CORPUS_TIMEOUT:-60}
is_sanitized && TMO=${VMSYNC_CORPUS_TIMEOUT:-180}
JOBS=${VMSYNC_JOBS:-2}
LIMIT=()
if is_sanitized; then
    info "sanitizer build: no address-space limit"
else
    LIMIT=(prlimit --as=4000000000)
fi
LOG=${VMSYNC_TEST_LOGS:-$T}/corpus.log
mkdir -p "$(dirname "$LOG")" "$T/in" "$T/r"

n=$(corpus_extract "$T/in")
info "extracted $n images from $CORPUS"
((n > 0)) || skip "corpus is empty"
chmod a-w "$T"/in/*.img
python3 -m vmtest fingerprint "$T"/in/*.img >"$T/fp.before"

run_one() {
    local image=$1 name p rc reason=''
    name=$(basename "$image" .img)
    p="$T/r/$name"
    rc=0
    local t0=$EPOCHREALTIME
    timeout -k 5 "$TMO" "${LIMIT[@]}" "$VMSYNC" manifest "$image" -o "$p.vmm" >"$p.out" 2>"$p.err" || rc=$?
    if ((rc == 0)); then
        local src=0
        timeout -k 5 "$TMO" "${LIMIT[@]}" "$VMSYNC" manifest show "$p.vmm" --json --layout >"$p.show" 2>"$p.show.err" || src=$?
        if [[ ! -s $p.vmm ]]; then
            reason="exit 0 but no manifest written"
        elif ((src != 0)); then
            reason="exit 0 but manifest show failed with $src: $(head -c 200 "$p.show.err" | tr '\n' ' ')"
        elif ! jq -e '.format == "vmsync-manifest"' "$p.show" >/dev/null 2>&1; then
            reason="exit 0 but manifest show --json is not a manifest"
        elif ! stderr_is_clean "$p"; then
            reason="stray stderr: $(grep -v '^vmsync: ' "$p.err" | head -2 | tr '\n' '|')"
        else
            # the manifest of a damaged image still obeys the layout rules
            reason=$(python3 - "$p.show" "$image" <<'EOF'
import os, sys
import vmtest as V
m = V.load(sys.argv[1])
errs = []
V.check_manifest_shape(m, errs)
V.check_layout_shape(m, os.path.getsize(sys.argv[2]), errs)
print('; '.join(e[:200] for e in errs[:3]))
EOF
            ) || reason="layout check crashed"
        fi
    elif ((rc == 124 || rc == 137)); then
        reason="timeout after ${TMO}s"
    elif ((rc >= 128)); then
        reason="killed by signal $((rc - 128)): $(grep -m1 -E 'ERROR|runtime error|SUMMARY' "$p.err" | head -c 200)"
    elif ((rc == 2)); then
        reason="usage status 2 for valid arguments: $(head -c 200 "$p.err" | tr '\n' ' ')"
    elif ((rc > 7)); then
        reason="undocumented status $rc: $(head -c 200 "$p.err" | tr '\n' ' ')"
    else
        reason=$(one_error_line "$p" "$image") || true
    fi
    local msg secs
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    msg=$(grep -v '^vmsync: warning: ' "$p.err" | head -1 | cut -c1-160 || true)
    if [[ -z $reason ]]; then
        printf 'PASS %s status=%d %ss %s\n' "$name" "$rc" "$secs" "$msg" >"$p.res"
    else
        printf 'FAIL %s status=%d %ss %s\n' "$name" "$rc" "$secs" "$reason" >"$p.res"
    fi
    rm -f "$p.vmm" "$p.show"
}

corpus_each "$JOBS" run_one "$T"/in/*.img

python3 -m vmtest fingerprint "$T"/in/*.img >"$T/fp.after"
if ! cmp -s "$T/fp.before" "$T/fp.after"; then
    while read -r line; do
        bad "input modified: ${line##* }"
    done < <(diff "$T/fp.before" "$T/fp.after" | grep '^>' | cut -c3-)
fi

cat "$T"/r/*.res >"$LOG"
cat "$LOG"
total=$(wc -l <"$LOG")
npass=$(grep -c '^PASS' "$LOG" || true)
nfail=$(grep -c '^FAIL' "$LOG" || true)
statuses=$(sed -n 's/^[A-Z]* [^ ]* status=\([0-9]*\).*/\1/p' "$LOG" | sort -n | uniq -c | awk '{printf "%s%s:%s", (NR>1?" ":""), $2, $1}')
info "corpus: $total images, $npass pass, $nfail fail; exit statuses (status:count) $statuses; log $LOG"
if ((nfail > 0)); then
    bad "$nfail of $total corpus images failed: $(grep '^FAIL' "$LOG" | head -3 | cut -c1-150 | tr '\n' ';')"
fi
finish
