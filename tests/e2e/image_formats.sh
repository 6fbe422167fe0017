#!/usr/bin/env bash
# Unusual containers and bare filesystems:
# - a fixed vhdx (digest_formats covers the dynamic one), whose export serves
#   whole 512-byte blocks only: every read is aligned, and the digest is the
#   raw image's;
# - a bare ext filesystem with boot code and the 0x55AA signature in sector 0
#   (as GRUB's stage 1 leaves it) is that filesystem, not an empty MBR disk;
# - a bare NTFS volume (its boot sector has 0x55AA too) is still read.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd qemu-img qemu-nbd jq

# entries_of PREFIX: the files of every volume, without what the container
# changes (positions, digest).
entries_of() { jq -S '[.volumes[] | {fs, fs_type, label, entries}]' "$1.out"; }

# -- vhdx
for base in ext4-1k diffa-ntfs; do
    raw=$(img "$base") || fail "cannot build $base"
    manifest_json "$T/$base.raw" "$raw"
    d_raw=$(jget "$T/$base.raw.out" .digest)
    for sub in fixed; do
        rm -f "$T/$base.$sub.vhdx"
        qemu-img convert -q -f raw -O vhdx -o subformat=$sub "$raw" "$T/$base.$sub.vhdx"
        vm "$T/$base.$sub" manifest "$T/$base.$sub.vhdx" --json
        if ((VM_RC != 0)); then
            bad "$base $sub vhdx: manifest exited $VM_RC: $(head -c 300 "$T/$base.$sub.err" | tr '\n' ' ')"
            continue
        fi
        d=$(jget "$T/$base.$sub.out" .digest)
        [[ $d == "$d_raw" ]] || bad "$base $sub vhdx: digest $d != raw digest $d_raw"
        f=$(jget "$T/$base.$sub.out" .image.format)
        [[ $f == vhdx ]] || bad "$base $sub vhdx: image.format is '$f'"
    done
    rm -f "$T/$base".*.vhdx
done

# -- a bare ext filesystem with boot code in front
plain=$(img ext4-1k) || fail "cannot build ext4-1k"
cp --sparse=always "$plain" "$T/boot.img"
head -c 446 /dev/urandom | dd of="$T/boot.img" conv=notrunc status=none
printf '\x55\xaa' | dd of="$T/boot.img" bs=1 seek=510 conv=notrunc status=none
[[ $(od -An -tx1 -j510 -N2 "$T/boot.img" | tr -d ' ') == 55aa ]] || fail "no boot signature written"
manifest_json "$T/plain" "$plain"
vm "$T/boot" manifest "$T/boot.img" --json
if ((VM_RC != 0)); then
    bad "bare ext with boot code: manifest exited $VM_RC: $(head -c 300 "$T/boot.err" | tr '\n' ' ')"
else
    [[ $(jget "$T/boot.out" '.volumes | length') == 1 && $(jget "$T/boot.out" '.volumes[0].fs_type') == ext4 ]] ||
        bad "bare ext with boot code: volumes $(jq -c '[.volumes[] | {index, fs_type}]' "$T/boot.out")"
    cmp -s <(entries_of "$T/plain") <(entries_of "$T/boot") ||
        bad "bare ext with boot code: its files differ from the same filesystem's without it"
    # the boot code is part of the image, so the digests differ
    [[ $(jget "$T/boot.out" .digest) != $(jget "$T/plain.out" .digest) ]] ||
        bad "bare ext with boot code: the boot sector is not covered by the digest"
    vm_ok "$T/inspect" inspect "$T/boot.img"
    grep -q 'partition table none' "$T/inspect.out" || bad "inspect: $(head -2 "$T/inspect.out" | tr '\n' ' ')"
fi

# -- a bare NTFS volume, cut out of its GPT disk
disk=$(img diffa-ntfs) || fail "cannot build diffa-ntfs"
start=$(img_info diffa-ntfs part_start)
bytes=$(img_info diffa-ntfs part_bytes)
dd if="$disk" of="$T/ntfs.img" bs=1M iflag=skip_bytes,count_bytes skip="$start" count="$bytes" \
    conv=sparse status=none
[[ $(od -An -tx1 -j510 -N2 "$T/ntfs.img" | tr -d ' ') == 55aa ]] || fail "the NTFS boot sector has no 0x55AA"
vm "$T/ntfs" manifest "$T/ntfs.img" --json
if ((VM_RC != 0)); then
    bad "bare NTFS: manifest exited $VM_RC: $(head -c 300 "$T/ntfs.err" | tr '\n' ' ')"
else
    [[ $(jget "$T/ntfs.out" '.volumes[0].fs_type') == ntfs ]] || bad "bare NTFS: read as $(jq -c '[.volumes[].fs_type]' "$T/ntfs.out")"
    cmp -s <(entries_of "$T/diffa-ntfs.raw") <(entries_of "$T/ntfs") ||
        bad "bare NTFS: its files differ from the partition's"
fi
finish
