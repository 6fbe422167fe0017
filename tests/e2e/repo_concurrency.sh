#!/usr/bin/env bash
# Several vmsync processes on one repository at once: three imports of
# different images (two of them sharing most of their content with each other
# and with an image already stored, so they race to store the same objects),
# a checkout and an export, all started together.  All succeed, the log shows
# every import exactly once, every version exports to an image that verifies
# and has its source's digest, and gc afterwards finds nothing to drop.
# Then two imports under one name at once: an import records "version 1 (or
# the next version)", so both land, as versions 2 and 3.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq sqlite3

export VMSYNC_HOST=host-c VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
base=$(repo_img t ext4) || fail "cannot build T (ext4)"
declare -A src=(
    [s-ext4]=$(repo_img s ext4)
    [t-ntfs]=$(repo_img t ntfs)
    [big]=$(repo_img big ext4)
)
for n in "${!src[@]}"; do [[ -n ${src[$n]} ]] || fail "cannot build the image for $n"; done
vm_ok "$T/imp-base" import "$R" "$base" --name base -q
bdig=$(repo_digest "$base") || fail "no digest for $base"

# all at once
declare -A pid=()
for n in "${!src[@]}"; do
    repo_bg timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" import "$R" "${src[$n]}" --name "$n" -q \
        --stats-json "$T/imp-$n.json" >"$T/imp-$n.out" 2>"$T/imp-$n.err"
    pid[imp-$n]=$REPO_BG_PID
done
repo_bg timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" checkout "$R" base -o "$T/co.img" -q \
    >"$T/co.out" 2>"$T/co.err"
pid[checkout]=$REPO_BG_PID
repo_bg timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" export "$R" base -o "$T/ex.img" -q \
    >"$T/ex.out" 2>"$T/ex.err"
pid[export]=$REPO_BG_PID
for j in "${!pid[@]}"; do
    rc=0
    wait "${pid[$j]}" || rc=$?
    ((rc == 0)) || bad "concurrent $j exited $rc: $(head -c 300 "$T/$(sed 's/^checkout$/co/; s/^export$/ex/' <<<"$j").err")"
done

# the checkout and the export of base
for f in co ex; do
    [[ -f $T/$f.img ]] || { bad "the concurrent ${f/co/checkout} wrote no image"; continue; }
    [[ $(repo_digest "$T/$f.img") == "$bdig" ]] || bad "the concurrent ${f/co/checkout} of base has the wrong digest"
done

# the log: base and each import, once, as version 1
timeout 60 "$VMSYNC" log "$R" --json >"$T/log.json" || bad "vmsync log failed"
for n in base "${!src[@]}"; do
    c=$(jq -r --arg n "$n" 'select(.image == $n) | .version' "$T/log.json" | tr '\n' ' ')
    [[ $c == "1 " ]] || bad "the log shows versions '$c' for $n, expected exactly version 1"
done
nl=$(grep -c '^{' "$T/log.json" || true)
((nl == 4)) || bad "the log has $nl versions, expected 4"

# every version exports and verifies, with its source's digest
for n in "${!src[@]}"; do
    want=$(repo_digest "${src[$n]}") || fail "no digest for ${src[$n]}"
    [[ $(repo_stat "$T/imp-$n.json" canonical_digest) == "$want" ]] || bad "import of $n recorded digest $(repo_stat "$T/imp-$n.json" canonical_digest), the image has $want"
    vm "$T/export-$n" export "$R" "$n" -o "$T/$n.img"
    if ((VM_RC != 0)); then
        bad "export of $n exited $VM_RC: $(head -c 300 "$T/export-$n.err")"
        continue
    fi
    vm "$T/verify-$n" verify "$R" "$n" "$T/$n.img"
    ((VM_RC == 0)) || bad "verify of the export of $n exited $VM_RC"
    [[ $(repo_digest "$T/$n.img") == "$want" ]] || bad "the export of $n does not have its source's digest"
    rm -f "$T/$n.img"
done

# nothing is garbage: every stored object belongs to a version
vm "$T/gc" gc "$R"
if ((VM_RC != 0)); then
    bad "gc exited $VM_RC: $(head -c 300 "$T/gc.err")"
else
    info "gc: $(head -1 "$T/gc.out")"
    vm "$T/verify-after-gc" verify "$R" base "$T/co.img"
    ((VM_RC == 0)) || bad "verify after gc exited $VM_RC"
    vm "$T/export-after-gc" export "$R" s-ext4 -o "$T/s-after-gc.img"
    ((VM_RC == 0)) || bad "export of s-ext4 after gc exited $VM_RC: $(head -c 300 "$T/export-after-gc.err")"
    rm -f "$T/s-after-gc.img"
fi

# two imports of one name at once
one=$(repo_img s ntfs) || fail "cannot build S (ntfs)"
two=$(img diffa-ext4) || fail "cannot build diffa-ext4"
repo_bg timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" import "$R" "$one" --name base -q >"$T/same1.out" 2>"$T/same1.err"
p1=$REPO_BG_PID
repo_bg timeout -k 10 "$VMSYNC_CMD_TIMEOUT" "$VMSYNC" import "$R" "$two" --name base -q >"$T/same2.out" 2>"$T/same2.err"
p2=$REPO_BG_PID
r1=0 r2=0
wait "$p1" || r1=$?
wait "$p2" || r2=$?
((r1 == 0)) || bad "of two concurrent imports under one name, the first exited $r1: $(head -c 300 "$T/same1.err")"
((r2 == 0)) || bad "of two concurrent imports under one name, the second exited $r2: $(head -c 300 "$T/same2.err")"
vs=$(timeout 60 "$VMSYNC" log "$R" base --json | jq -r '"\(.version)/\(.parent)"' | tr '\n' ' ')
[[ $vs == "1/0 2/1 3/2 " ]] || bad "after two concurrent imports the versions/parents of base are '$vs', expected '1/0 2/1 3/2 '"
finish
