#!/usr/bin/env bash
# A checkout verifies while it writes: the canonical digest comes from the
# layout with the hashes of what the run wrote from checked bytes, and only
# the rest is read back.  For ext4 and NTFS, a checkout of T with seed S
# vouches for what it wrote from checked bytes (bytes_verified_while_writing)
# and reads back less than --full-verify does (bytes_rescanned: a large file
# whose chunks came partly from the seed, partly fetched, is read back), and
# gives the bytes of a clean export.  Then a complete OUT.vmsync-part and its journal
# (kept when the qcow2 conversion fails) get one wrong byte, in a small
# file's data or in a ZERO run of the layout: the next checkout to OUT resumes with nothing to write, reads
# what the earlier run wrote back, finds the wrong byte, rebuilds the image
# from scratch and installs the right bytes.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq cmp python3

export VMSYNC_HOST=laptop-vw VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"

for fs in ext4 ntfs; do
    timg=$(repo_img t "$fs") || fail "cannot build T ($fs)"
    simg=$(repo_img s "$fs") || fail "cannot build S ($fs)"
    vm_ok "$T/imp-$fs" import "$R" "$timg" --name "t-$fs" -q
    vm_ok "$T/clean-$fs" export "$R" "t-$fs" -o "$T/clean-$fs.img" --full-verify -q
    vm_ok "$T/co-$fs" checkout "$R" "t-$fs" -o "$T/co-$fs.img" --seed "$simg" -q \
        --stats-json "$T/co-$fs.json"
    cmp -s "$T/co-$fs.img" "$T/clean-$fs.img" || bad "$fs: the checkout differs from a clean export"
    vouched=$(repo_stat "$T/co-$fs.json" bytes_verified_while_writing)
    reread=$(repo_stat "$T/co-$fs.json" bytes_rescanned)
    seeded=$(repo_stat "$T/co-$fs.json" bytes_from_seeds)
    ((seeded > 0)) || bad "$fs: nothing came from the seed"
    ((vouched > 0)) || bad "$fs: the check took no bytes on the writer's hash"
    info "$fs: $vouched bytes verified while writing, $reread read back"
    vm_ok "$T/full-$fs" checkout "$R" "t-$fs" -o "$T/full-$fs.img" --seed "$simg" -q --full-verify \
        --stats-json "$T/full-$fs.json"
    [[ $(repo_stat "$T/full-$fs.json" bytes_verified_while_writing) == 0 ]] ||
        bad "$fs: --full-verify took bytes on the writer's hash"
    full=$(repo_stat "$T/full-$fs.json" bytes_rescanned)
    ((full > vouched && full > reread)) ||
        bad "$fs: --full-verify read back $full bytes, the fast check $reread (and skipped $vouched)"
done

# A complete part and journal, left by a failed conversion to qcow2.
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 1\n' >"$T/bin/qemu-img"
chmod +x "$T/bin/qemu-img"
vm_ok "$T/layout" manifest "$T/clean-ext4.img" --json --layout
# wrong_spot KIND: an offset inside the first small file's data (file) or
# inside the first ZERO run (zero)
wrong_spot() {
    python3 - "$T/layout.out" "$1" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
small = {(e['seq'], 0) for v in m['volumes'] for e in v['entries']
         if e.get('type') == 'file' and 4096 < e.get('size', 0) < (1 << 20)}
if sys.argv[2] == 'zero':
    print(next(r['offset'] + r['length'] // 2 for r in m['layout'] if r['kind'] == 'zero'))
else:
    print(next(r['offset'] + 100 for r in m['layout']
               if r['kind'] == 'file' and (r['entry'], r['stream']) in small))
PY
}
for kind in file zero; do
    out=$T/resumed-$kind.img
    PATH=$T/bin:$PATH vm "$T/qcow-$kind" checkout "$R" t-ext4 -o "$out" --format qcow2 -q
    ((VM_RC != 0)) || fail "the checkout with a failing qemu-img succeeded"
    [[ -s $out.vmsync-part && -s $out.vmsync-journal ]] || fail "no part and journal were kept"
    cmp -s "$out.vmsync-part" "$T/clean-ext4.img" || fail "the kept part is not the image"
    at=$(wrong_spot "$kind") || fail "no $kind run in the layout"
    python3 - "$out.vmsync-part" "$at" <<'PY'
import os, sys
fd = os.open(sys.argv[1], os.O_RDWR)
at = int(sys.argv[2])
b = os.pread(fd, 1, at)
os.pwrite(fd, bytes([b[0] ^ 0x5a]), at)
os.close(fd)
PY
    vm_ok "$T/resume-$kind" checkout "$R" t-ext4 -o "$out" --stats-json "$T/resume-$kind.json"
    grep -q 'resuming an interrupted checkout' "$T/resume-$kind.err" || bad "$kind: the checkout did not resume"
    grep -q 'the resumed image did not verify; rebuilding it from scratch' "$T/resume-$kind.err" ||
        bad "$kind: the wrong byte in the resumed part went unseen: $(head -c 600 "$T/resume-$kind.err")"
    cmp -s "$out" "$T/clean-ext4.img" || bad "$kind: the image installed after the resume is not the version"
    (($(repo_stat "$T/resume-$kind.json" bytes_rescanned) > 0)) || bad "$kind: the resumed run read nothing back"
    [[ ! -e $out.vmsync-journal ]] || bad "$kind: the journal is left behind"
done
finish
