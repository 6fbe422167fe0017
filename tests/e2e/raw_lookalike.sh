#!/usr/bin/env bash
# A version whose disk starts like a qcow2 header, or ends like a vpc footer,
# can be exported, checked out, changed and checked in.  One disk is ext4
# whose first sector (boot code to ext4, which never reads it) is a qcow2
# header naming /etc/passwd; the other is ext4 with one more sector, past the
# filesystem, that starts with "conectix".  Imported from a qcow2 that holds
# it, a version's contents are that disk.  export and checkout write it raw
# and read what they wrote as raw; checkin, verify and a later checkout read
# it as the raw image its OUT.vmsync-record says vmsync wrote, and so do
# manifest and a checkout that names it as a --seed; a qcow2, even one copied
# over a raw checkout, stays a qcow2.  Probed, a raw lookalike would be a
# qcow2 whose backing file is refused, or a vpc, and the user's work could not
# be checked in.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd qemu-img mke2fs debugfs cmp
export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop-look

mkdir -p "$T/tree" "$T/out"
printf 'looks like a qcow2\n' >"$T/tree/note"
printf 'work done offline\n' >"$T/work"

# qcow2.raw: the qcow2 header in its first sector.
mke2fs -q -t ext4 -F -d "$T/tree" "$T/qcow2.raw" 8M
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw "$T/header.qcow2" 8M
dd if="$T/header.qcow2" of="$T/qcow2.raw" bs=512 count=1 conv=notrunc status=none
# vpc.raw: a vpc footer's magic in its last sector.
mke2fs -q -t ext4 -F -d "$T/tree" "$T/vpc.raw" 8M
{ printf 'conectix'; head -c 504 /dev/zero; } >>"$T/vpc.raw"

vm_ok "$T/init" init "$T/repo"

# round_trip LOOK: imports LOOK.raw (wrapped in a qcow2), exports and checks
# it out, changes the checkout, checks it in and checks that work out again.
round_trip() {
    local n=$1 o=$T/out/$1
    qemu-img convert -q -f raw -O qcow2 "$T/$n.raw" "$T/$n.qcow2"
    vm_ok "$T/$n-import" import "$T/repo" "$T/$n.qcow2" --name "$n" -q
    vm_ok "$T/$n-export" export "$T/repo" "$n" -o "$o-export.raw"
    cmp -s "$T/$n.raw" "$o-export.raw" || bad "$n: export: the image differs from the disk imported"
    vm_ok "$T/$n-checkout" checkout "$T/repo" "$n" -o "$o.raw"
    cmp -s "$T/$n.raw" "$o.raw" || bad "$n: checkout: the image differs from the disk imported"
    vm_ok "$T/$n-manifest" manifest "$o.raw" -q -o "$T/$n-out.vmsm"
    vm_ok "$T/$n-mdigest" manifest show "$T/$n-out.vmsm"
    vm_ok "$T/$n-qdigest" manifest "$T/$n.qcow2"
    [[ $(grep '^digest:' "$T/$n-mdigest.out") == $(grep '^digest:' "$T/$n-qdigest.out") ]] ||
        bad "$n: manifest of the checkout: not the digest of the disk imported"
    vm_ok "$T/$n-qcow2" export "$T/repo" "$n" -o "$o-export.qcow2" --format qcow2

    debugfs -w -R "write $T/work work" "$o.raw" >/dev/null 2>&1 || fail "$n: debugfs cannot write"
    vm_expect "$T/$n-checkin" 0 checkin "$T/repo" "$n" "$o.raw" -m "work" -q || return 0
    vm_expect "$T/$n-verify" 0 verify "$T/repo" "$n@2" "$o.raw"
    grep -q 'matches' "$T/$n-verify.out" || bad "$n: verify does not say the checkin matches"
    vm_ok "$T/$n-again" checkout "$T/repo" "$n@2" -o "$o-again.raw"
    cmp -s "$o.raw" "$o-again.raw" || bad "$n: the version checked in differs from the work"
    vm_ok "$T/$n-seeded" checkout "$T/repo" "$n@2" -o "$o-seeded.raw" --seed "$o-again.raw" \
        --steal -q
    cmp -s "$o.raw" "$o-seeded.raw" || bad "$n: the checkout seeded by the work differs from it"

    # A qcow2 vmsync wrote stays a qcow2, and so does one copied over a raw
    # checkout (the same inode, another size).
    vm_expect "$T/$n-vqcow2" 0 verify "$T/repo" "$n@1" "$o-export.qcow2"
    vm_ok "$T/$n-export2" export "$T/repo" "$n@2" -o "$o-2.qcow2" --format qcow2
    cat "$o-2.qcow2" >"$o-again.raw"
    vm_expect "$T/$n-vswap" 0 verify "$T/repo" "$n@2" "$o-again.raw"
}

round_trip qcow2
round_trip vpc
finish
