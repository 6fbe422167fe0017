#!/usr/bin/env bash
# Volatile files (here a Linux swap file) are ZERO runs in the layout: a
# checkout zero-fills them, and only import --keep-volatile plus checkout
# --keep-volatile brings their content back.  Every result still verifies.
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd mke2fs mkswap debugfs sha256sum

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=volatile-test
tree=$T/tree
mkdir -p "$tree/home"
echo "keep me" > "$tree/home/note.txt"
head -c $((3 << 20)) /dev/zero | tr '\0' 'x' > "$tree/swapfile"
mkswap "$tree/swapfile" >/dev/null 2>&1 || fail "mkswap failed"
swap_sha=$(sha256sum < "$tree/swapfile" | cut -d' ' -f1)
zero_sha=$(head -c "$(stat -c %s "$tree/swapfile")" /dev/zero | sha256sum | cut -d' ' -f1)
mke2fs -q -F -t ext4 -d "$tree" "$T/a.img" 32M || fail "mke2fs failed"

swap_in() { debugfs -R "cat /swapfile" "$1" 2>/dev/null | sha256sum | cut -d' ' -f1; }

vm "$T/m" manifest "$T/a.img" --json
[[ $VM_RC == 0 ]] || fail "manifest exited $VM_RC"
[[ $(jq -r '.volumes[0].entries[] | select(.path=="/swapfile") | .flags | index("volatile") != null' "$T/m.out") == true ]] \
    || bad "/swapfile is not flagged volatile"

vm_ok "$T/init" init "$T/repo"
vm_ok "$T/imp1" import "$T/repo" "$T/a.img" --name v
vm_ok "$T/exp1" export "$T/repo" v -o "$T/plain.img"
[[ $(swap_in "$T/plain.img") == "$zero_sha" ]] || bad "the default export does not zero-fill the swap file"
vm_ok "$T/ver1" verify "$T/repo" v "$T/plain.img"

vm "$T/exp2" export "$T/repo" v -o "$T/asked.img" --keep-volatile
[[ $VM_RC == 0 ]] || bad "export --keep-volatile without stored content exited $VM_RC"
grep -q "not in the repository" "$T/exp2.err" || bad "no warning that the volatile content is not stored"

vm_ok "$T/imp2" import "$T/repo" "$T/a.img" --name v --keep-volatile
vm_ok "$T/exp3" export "$T/repo" v@2 -o "$T/kept.img" --keep-volatile
[[ $(swap_in "$T/kept.img") == "$swap_sha" ]] || bad "--keep-volatile did not restore the swap file"
vm_ok "$T/ver2" verify "$T/repo" v@2 "$T/kept.img"

# A part that an interrupted --keep-volatile checkout left (its conversion to
# qcow2 failed) holds the swap file's bytes: a plain checkout to the same
# OUT must not resume it, or those bytes would stay where zeros belong.
mkdir -p "$T/bin"
printf '#!/bin/sh\nexit 1\n' >"$T/bin/qemu-img"
chmod +x "$T/bin/qemu-img"
PATH=$T/bin:$PATH vm "$T/kq" checkout "$T/repo" v@2 -o "$T/again.img" --keep-volatile --format qcow2 -q
((VM_RC != 0)) || fail "the checkout with a failing qemu-img succeeded"
[[ -s $T/again.img.vmsync-journal ]] || fail "no part and journal were kept"
vm_ok "$T/plain2" checkout "$T/repo" v@2 -o "$T/again.img"
! grep -q 'resuming an interrupted checkout' "$T/plain2.err" ||
    bad "a plain checkout resumed the part of a --keep-volatile one"
[[ $(swap_in "$T/again.img") == "$zero_sha" ]] || bad "the plain checkout kept the swap file's bytes"
finish
