# shellcheck shell=bash
# Image makers for the end-to-end tests.  No loop devices, no mounts: mke2fs -d
# writes straight into the disk file at the partition offset, NTFS is made in a
# partition file (mkntfs + wimlib) and copied into the disk with dd.
#
# Every maker is deterministic as far as the tools allow (fixed UUIDs, hash seed,
# timestamps, disk and partition identifiers).

MKIMAGE_FAKE_TIME=1609459200

# GPT type GUIDs
MKIMAGE_GPT_LINUX=0FC63DAF-8483-4772-B47D-E4DE47E47DB9
MKIMAGE_GPT_BASIC=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7
MKIMAGE_GPT_SWAP=0657FD6D-A4AB-43C4-84E5-0933C84B4F4F

# mkimg_disk DISK SIZE_BYTES TABLE PART...
#   TABLE is gpt or dos.  Each PART is "START_SECTOR SIZE_SECTORS KIND [NAME]"
#   with KIND linux, ntfs or swap.  Creates (or recreates) DISK as a sparse file.
mkimg_disk() {
    local disk=$1 size=$2 table=$3
    shift 3
    rm -f "$disk"
    truncate -s "$size" "$disk"
    local script n=0 p start len kind name type
    script="label: $table"$'\n'
    if [[ $table == gpt ]]; then
        script+="label-id: 5F3F0B4C-6A3B-4E0A-9D5B-00000000F00D"$'\n'
    else
        script+="label-id: 0x5eed1234"$'\n'
    fi
    script+="unit: sectors"$'\n'
    for p in "$@"; do
        n=$((n + 1))
        read -r start len kind name <<<"$p"
        if [[ $table == gpt ]]; then
            case $kind in
            linux) type=$MKIMAGE_GPT_LINUX ;;
            ntfs) type=$MKIMAGE_GPT_BASIC ;;
            swap) type=$MKIMAGE_GPT_SWAP ;;
            *) echo "mkimg_disk: bad kind $kind" >&2; return 2 ;;
            esac
            script+="start=$start, size=$len, type=$type, uuid=5F3F0B4C-6A3B-4E0A-9D5B-0000000000$(printf %02d "$n"), name=\"${name:-part$n}\""$'\n'
        else
            case $kind in
            linux) type=83 ;;
            ntfs) type=7 ;;
            swap) type=82 ;;
            *) echo "mkimg_disk: bad kind $kind" >&2; return 2 ;;
            esac
            script+="start=$start, size=$len, type=$type"$'\n'
        fi
    done
    printf '%s' "$script" | sfdisk -q --no-reread --no-tell-kernel "$disk" >/dev/null
}

# mkimg_ext4 TARGET OFFSET_BYTES FS_BYTES TREE [mke2fs options...]
#   Writes an ext2/3/4 filesystem holding TREE into TARGET at OFFSET (TARGET is
#   created when missing: a bare filesystem image).  Defaults: -t ext4 -b 4096
#   -N 40000; -t, -b, -N and -L given in the options replace the defaults, -E
#   options are added to the built-in offset and hash_seed, anything else is
#   passed to mke2fs as is.
mkimg_ext4() {
    local target=$1 off=$2 bytes=$3 tree=$4
    shift 4
    local fstype=ext4 bs=4096 inodes=40000 label=vmsync-test ext="" rest=()
    while [[ $# -gt 0 ]]; do
        case $1 in
        -t) fstype=$2; shift 2 ;;
        -b) bs=$2; shift 2 ;;
        -N) inodes=$2; shift 2 ;;
        -L) label=$2; shift 2 ;;
        -E) ext+=",$2"; shift 2 ;;
        *) rest+=("$1"); shift ;;
        esac
    done
    E2FSPROGS_FAKE_TIME=$MKIMAGE_FAKE_TIME \
        mke2fs -q -t "$fstype" -b "$bs" -N "$inodes" -L "$label" \
        -U 6b1c3a1e-0000-4000-8000-00000000e4e4 \
        -E "offset=$off,hash_seed=6b1c3a1e-0000-4000-8000-0000000000aa$ext" \
        "${rest[@]}" -d "$tree" "$target" "$((bytes / bs))" >/dev/null
}

# mkimg_ntfs_part PIMG FS_BYTES TREE START_SECTOR
#   Makes an NTFS filesystem image (a partition's content) holding TREE.
#   START_SECTOR is where it will sit in the disk (the boot sector's
#   hidden-sectors field).
mkimg_ntfs_part() {
    local pimg=$1 bytes=$2 tree=$3 start=$4
    local wim="$pimg.wim"
    rm -f "$pimg" "$wim"
    truncate -s "$bytes" "$pimg"
    mkntfs -q -F -Q -s 512 -c 4096 -p "$start" -H 255 -S 63 -L vmsync-test "$pimg" >/dev/null 2>&1 ||
        { echo "mkntfs failed on $pimg" >&2; return 1; }
    wimlib-imagex capture "$tree" "$wim" --no-acls --compress=none >/dev/null 2>"$wim.log" ||
        { cat "$wim.log" >&2; return 1; }
    wimlib-imagex apply "$wim" 1 "$pimg" >/dev/null 2>"$wim.log" ||
        { cat "$wim.log" >&2; return 1; }
    ntfslabel -f --new-serial=5eed5eed5eed5eed "$pimg" >/dev/null 2>&1 || true
    rm -f "$wim" "$wim.log"
}

# mkimg_place DISK PIMG OFFSET_BYTES: copies a partition image into the disk.
mkimg_place() {
    dd if="$2" of="$1" bs=1M conv=notrunc,sparse oflag=seek_bytes seek="$3" status=none
}

# mkimg_convert RAW FORMAT OUT: qcow2, vmdk, vpc, vdi, vhdx from a raw disk.
mkimg_convert() {
    rm -f "$3"
    qemu-img convert -q -f raw -O "$2" "$1" "$3"
}

# mkimg_junk FILE OFFSET_BYTES LENGTH_BYTES: writes a few deterministic non-zero
# 4 KiB blocks (with zero blocks between them, and one block holding a single
# non-zero byte) into [OFFSET, OFFSET+LENGTH), e.g. a partition that holds no
# filesystem or the gap before the first partition, so that the layout must
# report them as raw.  Nothing is written past OFFSET+LENGTH.
mkimg_junk() {
    python3 - "$1" "$2" "$3" <<'EOF'
import random, sys
f, off, length = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
r = random.Random(777)
with open(f, 'r+b') as fh:
    for blk in (0, 1, 5, 100, 200, 255):
        data = r.randbytes(4096)
        if (blk + 1) * 4096 <= length:
            fh.seek(off + blk * 4096)
            fh.write(data)
    for blk in (150, 300):
        if (blk + 1) * 4096 <= length:
            fh.seek(off + blk * 4096 + 17)
            fh.write(b'\x01')
EOF
}
