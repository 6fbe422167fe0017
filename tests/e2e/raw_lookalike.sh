#!/usr/bin/env bash
# A version whose disk starts like a qcow2 header can be exported.  The disk
# is ext4, and its first sector (boot code to ext4, which never reads it) is
# a qcow2 header naming /etc/passwd; imported from a qcow2 that holds it, its
# contents are that disk.  export and checkout write it raw, and must read
# what they wrote as raw: probed, it would be a qcow2 whose backing file is
# refused, and the version could never be exported.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd qemu-img mke2fs cmp
export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop-look

mkdir -p "$T/tree" "$T/out"
printf 'looks like a qcow2\n' >"$T/tree/note"
mke2fs -q -t ext4 -F -d "$T/tree" "$T/disk.raw" 8M
qemu-img create -q -f qcow2 -u -b /etc/passwd -F raw "$T/header.qcow2" 8M
dd if="$T/header.qcow2" of="$T/disk.raw" bs=512 count=1 conv=notrunc status=none
qemu-img convert -q -f raw -O qcow2 "$T/disk.raw" "$T/disk.qcow2"

vm_ok "$T/init" init "$T/repo"
vm_ok "$T/import" import "$T/repo" "$T/disk.qcow2" --name look -q
vm_ok "$T/export" export "$T/repo" look -o "$T/out/export.raw"
[[ ! -e $T/out/export.raw ]] || cmp -s "$T/disk.raw" "$T/out/export.raw" ||
    bad "export: the image differs from the disk imported"
vm_ok "$T/checkout" checkout "$T/repo" look -o "$T/out/checkout.raw"
[[ ! -e $T/out/checkout.raw ]] || cmp -s "$T/disk.raw" "$T/out/checkout.raw" ||
    bad "checkout: the image differs from the disk imported"
vm_ok "$T/qcow2" export "$T/repo" look -o "$T/out/export.qcow2" --format qcow2
finish
