#!/usr/bin/env bash
# The engine's typed events as --progress=json shows them: a checkout with
# two seeds names each seed it scans (1 of 2, 2 of 2), a check-in's scan is
# the image's and no seed's, gc and the qcow2 conversion report progress, an
# ssh:// handle reports its connection, and the last line of every run is the
# final event with the operation's result, a failed one's too.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs debugfs jq qemu-img

export VMSYNC_HOST=laptop-events
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
repo_init "$T/repo"
R=$T/repo

# events FILE: the JSON lines of FILE (the progress lines, not the messages)
events() { grep '^{' "$1" || true; }

# has_event PREFIX COND [JQ ARGS...]: some event of the run meets COND
has_event() {
    local p=$1 cond=$2
    shift 2
    events "$p.err" | jq -s -e "$@" "any(.[]; $cond)" >/dev/null
}

# last_is_done PREFIX RESULT: the run's last stderr line is the final event
# with RESULT ("0"), or ("nonzero") its last event is, followed by the one
# error line
last_is_done() {
    local p=$1 want=$2 last phase result
    if [[ $want == nonzero ]]; then
        last=$(events "$p.err" | tail -n 1)
        [[ $(tail -n 1 "$p.err") == "vmsync: "* ]] || bad "$p: the error line does not come last"
    else
        last=$(tail -n 1 "$p.err")
    fi
    phase=$(jq -r .phase <<<"$last" 2>/dev/null) || phase=
    result=$(jq -r .result <<<"$last" 2>/dev/null) || result=
    [[ $phase == done ]] || { bad "$p: the last line is not the final event: $last"; return; }
    if [[ $want == nonzero ]]; then
        [[ $result =~ ^-[0-9]+$ ]] || bad "$p: the final event of a failure carries result $result"
    else
        [[ $result == "$want" ]] || bad "$p: the final event carries result $result, not $want"
    fi
    (($(events "$p.err" | jq -r 'select(.phase == "done") | .phase' | grep -c .) == 1)) ||
        bad "$p: not exactly one final event"
}

# seed_scans PREFIX SEED: "INDEX/COUNT" of the scan lines that name SEED
seed_scans() {
    events "$1.err" | jq -r --arg s "$2" 'select(.phase == "scan-seed" and .subject == $s) |
        "\(.index)/\(.count)"' | sort -u | tr '\n' ' '
}

vm_ok "$T/imp" import "$R" "$timg" --name t --progress=json --cache "$T/cache-imp"
last_is_done "$T/imp" 0
has_event "$T/imp" '.phase == "scan-image" and .subject == $s' --arg s "$timg" ||
    bad "the import's scan does not name its image"

# ---- a checkout with two seeds, a fresh cache so both are scanned -----------
out=$T/out.img
vm_ok "$T/co" checkout "$R" t -o "$out" --seed "$timg" --seed "$simg" --progress=json \
    --cache "$T/cache-co"
[[ $(seed_scans "$T/co" "$timg") == "1/2 " ]] || bad "seed 1 scans as '$(seed_scans "$T/co" "$timg")', not 1/2"
[[ $(seed_scans "$T/co" "$simg") == "2/2 " ]] || bad "seed 2 scans as '$(seed_scans "$T/co" "$simg")', not 2/2"
has_event "$T/co" '.phase == "seed-copy" and .done > 0' ||
    bad "the checkout copied nothing from its seeds, or did not say so"
has_event "$T/co" '.phase == "verify" and .done == .total and .total > 0' ||
    bad "the checkout's verify scan does not report reaching its end"
last_is_done "$T/co" 0

# ---- a check-in: the image's scan, no seed's --------------------------------
repo_add_file "$out" events-work
vm_ok "$T/ci" checkin "$R" t "$out" -m work --progress=json --cache "$T/cache-co"
has_event "$T/ci" '.phase == "scan-image" and .subject == $s and .done == .total' --arg s "$out" ||
    bad "the check-in's scan is not reported as the image's scan, naming it, to its end"
! has_event "$T/ci" '.phase == "scan-seed"' ||
    bad "the check-in's scan is called a seed scan"
last_is_done "$T/ci" 0

# ---- gc ------------------------------------------------------------------------
vm_ok "$T/gc" gc "$R" --progress=json
for ph in gc-mark gc-sweep; do
    has_event "$T/gc" '.phase == $p and .done == .total and .total > 0' --arg p "$ph" ||
        bad "gc does not report $ph to its end"
done
last_is_done "$T/gc" 0

# ---- a qcow2 checkout: the conversion ------------------------------------------
vm_ok "$T/qc" checkout "$R" t -o "$T/out.qcow2" --format qcow2 --progress=json --cache "$T/cache-qc"
has_event "$T/qc" '.phase == "convert" and .done == 0' ||
    bad "the conversion to qcow2 does not report its start"
has_event "$T/qc" '.phase == "convert" and .done == .total and .total > 0' ||
    bad "the conversion to qcow2 does not report its end"
[[ $(qemu-img info --output=json "$T/out.qcow2" | jq -r .format) == qcow2 ]] ||
    bad "the qcow2 checkout is not qcow2"
last_is_done "$T/qc" 0

# ---- a failed conversion: the next run converts again and fetches nothing -------
mkdir -p "$T/no-qemu-img"
ln -s "$(command -v timeout)" "$T/no-qemu-img/timeout"
PATH=$T/no-qemu-img vm "$T/qc-fail" checkout "$R" t -o "$T/out2.qcow2" --format qcow2 --cache "$T/cache-qc2"
((VM_RC != 0)) || bad "a checkout without qemu-img succeeded"
[[ -e $T/out2.qcow2.vmsync-qcow2 ]] && bad "a failed conversion left its half-written qcow2"
vm_ok "$T/qc-again" checkout "$R" t -o "$T/out2.qcow2" --format qcow2 --stats-json "$T/qc-again.json" --cache "$T/cache-qc2"
jq -e '.objects_fetched == 0 and .bytes_resumed > 0' "$T/qc-again.json" >/dev/null ||
    bad "the run after a failed conversion fetched again: $(cat "$T/qc-again.json")"
for left in part journal qcow2; do
    [[ -e $T/out2.qcow2.vmsync-$left ]] && bad "a finished checkout left out2.qcow2.vmsync-$left"
done
cmp -s <(qemu-img convert -O raw "$T/out.qcow2" /dev/stdout) <(qemu-img convert -O raw "$T/out2.qcow2" /dev/stdout) ||
    bad "the qcow2 converted on the second run differs from the first checkout's"

# ---- a failed operation ends with the final event too ---------------------------
vm "$T/nope" checkout "$R" no-such-image -o "$T/nope.img" --progress=json --cache "$T/cache-qc"
((VM_RC != 0)) || bad "a checkout of a missing image succeeded"
last_is_done "$T/nope" nonzero

# ---- over ssh://: the connection -----------------------------------------------
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
vm_ok "$T/rimp" import "$SSHD_URL_BASE/repo" "$timg" --name t --progress=json \
    --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY" --cache "$T/cache-r"
has_event "$T/rimp" '.phase == "connect" and .done == 0' ||
    bad "the ssh:// import does not report the start of its connection"
has_event "$T/rimp" '.phase == "connect" and .done == .total and .total > 0' ||
    bad "the ssh:// import does not report its connection made"
has_event "$T/rimp" '.phase == "send"' ||
    bad "the ssh:// import does not report sending"
last_is_done "$T/rimp" 0
finish
