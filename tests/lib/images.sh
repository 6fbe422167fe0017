# shellcheck shell=bash
# The per-run image cache.  Tests source this (after common.sh) and call
#
#   img NAME     -> prints the path of image NAME, building it on first use
#   srctree NAME    -> prints the path of source tree NAME, building it on first use
#   img_info NAME KEY -> a fact about the image (part_start, part_bytes, fs,
#                   table, tree)
#
# Everything is built once per run into $VMSYNC_TEST_CACHE (one flock per
# object, so tests may run in parallel).  Executed directly,
#   tests/lib/images.sh prebuild [NAME...]
# builds the listed (default: all main) images, two at a time.
#
# Images:
#   ext4-gpt   GPT disk: p1 ext4 (256 MiB, tree "ext"), p2 no filesystem with junk
#   ext4-dos   MBR disk: p1 the same ext4, junk in the 1 MiB gap
#   ext4-bare  the same ext4, no partition table
#   ext4-1k    bare ext4 with 1 KiB blocks (64 MiB, tree "small-ext")
#   ext3-bare  bare ext3 (block maps, no extents; 64 MiB, tree "small-ext")
#   ntfs-gpt   GPT disk: p1 NTFS (256 MiB, tree "common"), p2 junk
#   ntfs-dos   MBR disk: p1 NTFS (256 MiB, tree "common")
#   BASE.qcow2, BASE.vmdk  conversions of any of the above
#   diffa-ext4, diffb-ext4, diffa-ntfs, diffb-ntfs  GPT disks, 64 MiB partition,
#              trees "small" and "smallb" (see mktree_diff_b)

_IMAGES_LIB=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=tests/lib/mktree.sh
source "$_IMAGES_LIB/mktree.sh"
# shellcheck source=tests/lib/mkimage.sh
source "$_IMAGES_LIB/mkimage.sh"

IMG_PART_START=1048576            # 1 MiB, sector 2048
IMG_PART_BYTES=$((256 << 20))
IMG_SMALL_PART_BYTES=$((64 << 20))
IMG_JUNK_BYTES=$((4 << 20))

_cache() {
    : "${VMSYNC_TEST_CACHE:?VMSYNC_TEST_CACHE is not set (source common.sh first)}"
    mkdir -p "$VMSYNC_TEST_CACHE"
    printf '%s' "$VMSYNC_TEST_CACHE"
}

# _locked NAME FUNC ARGS...: runs FUNC once per cache (marker NAME.done).
_locked() {
    local name=$1 c
    shift
    c=$(_cache)
    [[ -e $c/$name.done ]] && return 0
    (
        flock 9
        if [[ ! -e $c/$name.done ]]; then
            "$@" || exit 1
            touch "$c/$name.done"
        fi
    ) 9>"$c/.$name.lock" || { echo "images.sh: building $name failed" >&2; return 1; }
}

_build_tree() {
    local name=$1 dir
    dir="$(_cache)/tree-$name"
    rm -rf "$dir"
    case $name in
    common) mktree_common "$dir" ;;
    ext) mktree_common "$dir" && mktree_ext_extras "$dir" ;;
    small) mktree_common "$dir" 200 ;;
    small-ext) mktree_common "$dir" 200 && mktree_ext_extras "$dir" ;;
    smallb) srctree small >/dev/null && mktree_diff_b "$(_cache)/tree-small" "$dir" ;;
    *) echo "tree: unknown tree $name" >&2; return 2 ;;
    esac
}

srctree() {
    _locked "tree-$1" _build_tree "$1" || return 1
    printf '%s\n' "$(_cache)/tree-$1"
}

_info() { # _info NAME key=value...
    local f
    f="$(_cache)/$1.info"
    shift
    printf '%s\n' "$@" >"$f"
}

img_info() {
    img "$1" >/dev/null || return 1
    sed -n "s/^$2=//p" "$(_cache)/${1%.*}.info"
}

_build_img() {
    local name=$1 c out t s1 s2
    c=$(_cache)
    out="$c/$name"
    local part_sectors=$((IMG_PART_BYTES / 512)) small_sectors=$((IMG_SMALL_PART_BYTES / 512))
    local junk_sectors=$((IMG_JUNK_BYTES / 512))
    s1=$((IMG_PART_START / 512))
    s2=$((s1 + part_sectors))
    case $name in
    *.qcow2 | *.vmdk | *.vpc | *.vdi | *.vhdx)
        local base=${name%.*}
        img "$base" >/dev/null || return 1
        mkimg_convert "$c/$base" "${name##*.}" "$out.tmp" && mv "$out.tmp" "$out"
        return
        ;;
    ext4-gpt)
        t=$(srctree ext) || return 1
        mkimg_disk "$out.tmp" $((IMG_PART_START + IMG_PART_BYTES + IMG_JUNK_BYTES + (1 << 20))) gpt \
            "$s1 $part_sectors linux root" "$s2 $junk_sectors swap junk" &&
            mkimg_ext4 "$out.tmp" "$IMG_PART_START" "$IMG_PART_BYTES" "$t" &&
            mkimg_junk "$out.tmp" $((s2 * 512)) "$IMG_JUNK_BYTES" &&
            _fsck_ext "$out.tmp" "$IMG_PART_START" || return 1
        _info "$name" fs=ext fs_type=ext4 table=gpt tree=ext part_start=$IMG_PART_START part_bytes=$IMG_PART_BYTES block_size=4096
        ;;
    ext4-dos)
        # the same filesystem as ext4-gpt (mke2fs -d of the big tree is slow)
        img ext4-gpt >/dev/null || return 1
        mkimg_disk "$out.tmp" $((IMG_PART_START + IMG_PART_BYTES)) dos "$s1 $part_sectors linux" &&
            _copy_part "$c/ext4-gpt" "$out.tmp" &&
            mkimg_junk "$out.tmp" 65536 $((IMG_PART_START - 65536)) &&
            _fsck_ext "$out.tmp" "$IMG_PART_START" || return 1
        _info "$name" fs=ext fs_type=ext4 table=dos tree=ext part_start=$IMG_PART_START part_bytes=$IMG_PART_BYTES block_size=4096
        ;;
    ext4-bare)
        img ext4-gpt >/dev/null || return 1
        dd if="$c/ext4-gpt" of="$out.tmp" bs=1M iflag=skip_bytes,count_bytes skip="$IMG_PART_START" \
            count="$IMG_PART_BYTES" conv=sparse status=none || return 1
        truncate -s "$IMG_PART_BYTES" "$out.tmp"
        _info "$name" fs=ext fs_type=ext4 table=none tree=ext part_start=0 part_bytes=$IMG_PART_BYTES block_size=4096
        ;;
    ext4-1k | ext3-bare)
        t=$(srctree small-ext) || return 1
        rm -f "$out.tmp"
        if [[ $name == ext4-1k ]]; then
            mkimg_ext4 "$out.tmp" 0 "$IMG_SMALL_PART_BYTES" "$t" -b 1024 -N 4096 || return 1
            _info "$name" fs=ext fs_type=ext4 table=none tree=small-ext part_start=0 part_bytes=$IMG_SMALL_PART_BYTES block_size=1024
        else
            mkimg_ext4 "$out.tmp" 0 "$IMG_SMALL_PART_BYTES" "$t" -t ext3 -N 4096 || return 1
            _info "$name" fs=ext fs_type=ext3 table=none tree=small-ext part_start=0 part_bytes=$IMG_SMALL_PART_BYTES block_size=4096
        fi
        ;;
    ntfs-gpt | ntfs-dos)
        t=$(srctree common) || return 1
        local table=${name#ntfs-}
        if [[ $table == gpt ]]; then
            mkimg_disk "$out.tmp" $((IMG_PART_START + IMG_PART_BYTES + IMG_JUNK_BYTES + (1 << 20))) gpt \
                "$s1 $part_sectors ntfs data" "$s2 $junk_sectors swap junk" || return 1
            mkimg_junk "$out.tmp" $((s2 * 512)) "$IMG_JUNK_BYTES" || return 1
        else
            mkimg_disk "$out.tmp" $((IMG_PART_START + IMG_PART_BYTES)) dos "$s1 $part_sectors ntfs" || return 1
        fi
        _locked ntfs-part _build_ntfs_part "$t" || return 1
        mkimg_place "$out.tmp" "$c/ntfs-part" "$IMG_PART_START" || return 1
        _info "$name" fs=ntfs fs_type=ntfs table="$table" tree=common part_start=$IMG_PART_START part_bytes=$IMG_PART_BYTES block_size=4096
        ;;
    diffa-ext4 | diffb-ext4 | diffa-ntfs | diffb-ntfs)
        local which=${name%%-*} fs=${name#*-} tn
        if [[ $which == diffa ]]; then tn=small; else tn=smallb; fi
        t=$(srctree "$tn") || return 1
        mkimg_disk "$out.tmp" $((IMG_PART_START + IMG_SMALL_PART_BYTES + (1 << 20))) gpt \
            "$s1 $small_sectors ${fs/ext4/linux} data" || return 1
        if [[ $fs == ext4 ]]; then
            mkimg_ext4 "$out.tmp" "$IMG_PART_START" "$IMG_SMALL_PART_BYTES" "$t" -N 4096 || return 1
        else
            mkimg_ntfs_part "$out.tmp.part" "$IMG_SMALL_PART_BYTES" "$t" "$s1" &&
                mkimg_place "$out.tmp" "$out.tmp.part" "$IMG_PART_START" || return 1
            rm -f "$out.tmp.part"
        fi
        _info "$name" fs="${fs%4}" fs_type="$fs" table=gpt tree="$tn" part_start=$IMG_PART_START part_bytes=$IMG_SMALL_PART_BYTES block_size=4096
        ;;
    *)
        echo "img: unknown image $name" >&2
        return 2
        ;;
    esac
    mv "$out.tmp" "$out"
}

# _fsck_ext DISK OFFSET: the test image itself must be clean.
_fsck_ext() {
    local out
    out=$(e2fsck -fn "$1?offset=$2" 2>&1) || { echo "e2fsck of $1 at $2 failed: $out" >&2; return 1; }
}

# _copy_part FROM_DISK TO_DISK: copies the main partition's bytes.
_copy_part() {
    dd if="$1" of="$2" bs=1M iflag=skip_bytes,count_bytes oflag=seek_bytes skip="$IMG_PART_START" \
        seek="$IMG_PART_START" count="$IMG_PART_BYTES" conv=notrunc,sparse status=none
}

_build_ntfs_part() {
    mkimg_ntfs_part "$(_cache)/ntfs-part" "$IMG_PART_BYTES" "$1" $((IMG_PART_START / 512))
}

img() {
    _locked "$1" _build_img "$1" || return 1
    printf '%s\n' "$(_cache)/$1"
}

IMG_MAIN=(ext4-gpt ntfs-gpt ext4-dos ext4-bare ntfs-dos ext4-1k ext3-bare)

# images_prebuild NAME...: builds images two at a time.
images_prebuild() {
    local names=("$@") n rc=0 running=0
    [[ ${#names[@]} -gt 0 ]] || names=("${IMG_MAIN[@]}")
    # trees first (shared inputs), then the images two at a time
    srctree ext >/dev/null && srctree common >/dev/null || return 1
    for n in "${names[@]}"; do
        img "$n" >/dev/null &
        running=$((running + 1))
        if ((running >= 2)); then
            wait -n || rc=1
            running=$((running - 1))
        fi
    done
    while ((running > 0)); do
        wait -n || rc=1
        running=$((running - 1))
    done
    return $rc
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    umask 022
    [[ ${1:-} == prebuild ]] || { echo "usage: $0 prebuild [NAME...]" >&2; exit 2; }
    shift
    images_prebuild "$@"
fi
