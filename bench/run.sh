#!/usr/bin/env bash
# vmsync benchmark: bench/run.sh [BUILD]   (make bench runs it with $(BUILD))
#
# Measures `vmsync manifest IMG -o M -q` (hashing on every CPU; the goal is at
# most 0.5 x openssl's wall time) against `openssl dgst -sha256 IMG`
# (wall time, warm page cache, median of BENCH_RUNS runs after one warm-up),
# vmsync's peak RSS and the manifest size, on four images:
#
#   debian-ext4   2.5 GB GPT disk, one ext4 partition holding a Debian bookworm
#                 minbase tree plus BENCH_PACKAGES (debootstrap)
#   debian-ntfs   the same tree on NTFS (mkntfs + wimlib capture/apply)
#   small-20k     2 GB GPT disk, ext4, 40 dirs x 500 files of 100..2000 bytes
#   small-200k    the same with 400 dirs (x10 files: peak RSS should stay flat)
#
# Trees and images are built once into $BUILD/bench-cache/ and reused; each is
# keyed by its recipe, so changing a recipe rebuilds only what depends on it.
# The table goes to stdout, the figures to $BUILD/bench-results.json, progress
# to stderr.  No loop devices and no mounts are used (debootstrap mounts /proc
# and /sys inside the tree while it runs; they are checked for and removed).
#
# Environment: BENCH_RUNS (5), BENCH_MIRROR (from /etc/apt/sources*),
# BENCH_SUITE (bookworm), BENCH_PACKAGES, BENCH_IMAGES (the subset to run),
# BENCH_VERIFY=0 skips the hash spot-checks.
# shellcheck disable=SC2317  # functions run via trap and cached()
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
BUILD=${1:-${BUILD:-build}}
RUNS=${BENCH_RUNS:-5}
SUITE=${BENCH_SUITE:-bookworm}
PACKAGES=${BENCH_PACKAGES:-git python3-numpy python3-scipy gcc}
IMAGES=${BENCH_IMAGES:-debian-ext4 debian-ntfs small-20k small-200k}
VERIFY=${BENCH_VERIFY:-1}

msg() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "BENCH_RUNS must be a positive integer"
[[ -d $BUILD ]] || die "build directory '$BUILD' does not exist (make BUILD=$BUILD $BUILD/vmsync)"
BUILD=$(cd "$BUILD" && pwd)
VMSYNC=$BUILD/vmsync
[[ -x $VMSYNC ]] || die "$VMSYNC not found; build it first: make BUILD=$BUILD $BUILD/vmsync"
CACHE=$BUILD/bench-cache
RESULTS_JSON=$BUILD/bench-results.json
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3 || true)
[[ -n $PY ]] || die "python3 is needed (apt-get install python3)"

need openssl sfdisk mke2fs truncate dd flock awk sort
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || die "another bench run holds $CACHE/.lock"

TMP=$(mktemp -d "${TMPDIR:-/tmp}/vmsync-bench.XXXXXX")
TREES=()


STEP=
cleanup() {
    local rc=$?
    [[ $rc == 0 || -z $STEP ]] || msg "error: $STEP failed (exit $rc)"
    unmount_below "$CACHE"
    rm -rf "$TMP"
    ((${#TREES[@]} == 0)) || rm -rf --one-file-system "${TREES[@]}"
    rm -rf --one-file-system "$CACHE"/*.tmp 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# ---------------------------------------------------------------- the trees


build_debian_tree() {
    local dir=$1 mirror log=$CACHE/debootstrap.log
    mirror=$(detect_mirror)
    need debootstrap chroot
    [[ $(id -u) == 0 ]] || die "debootstrap needs root (the tree is built once, then cached)"
    msg "building debootstrap tree (first run only, a few minutes): $SUITE from $mirror, log $log"
    if debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$log" 2>&1; then
        unmount_below "$dir"
        msg "installing into the tree with chroot apt-get: $PACKAGES"
        printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
        chmod 755 "$dir/usr/sbin/policy-rc.d"
        # shellcheck disable=SC2086
        if chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
            DEBIAN_FRONTEND=noninteractive sh -c \
            "apt-get -q update && apt-get -q -y install --no-install-recommends $PACKAGES && apt-get clean" \
            >>"$log" 2>&1; then
            rm -f "$dir/usr/sbin/policy-rc.d"
            unmount_below "$dir"
            return 0
        fi
        msg "chroot apt-get failed (see $log); retrying with debootstrap --include"
    else
        msg "debootstrap failed (see $log); retrying once with --include"
    fi
    unmount_below "$dir"
    remove_tree "$dir"
    debootstrap --variant=minbase --include="${PACKAGES// /,}" "$SUITE" "$dir" "$mirror" >>"$log" 2>&1 ||
        { unmount_below "$dir"; tail -n 20 "$log" >&2; return 1; }
    unmount_below "$dir"
    rm -rf "$dir/var/cache/apt/archives/"*.deb
}

# small_tree NDIRS: writes NDIRS x 500 small files into a new directory SMALL_TREE
# (on tmpfs when /dev/shm has room: creating and deleting 200K files on disk is
# slow).  The trees are not cached, only their images.
small_tree() {
    local base=$CACHE
    if [[ -d /dev/shm && -w /dev/shm ]] &&
        (($(df -Pk /dev/shm | awk 'NR == 2 { print $4 }') > 3 * 1024 * 1024)); then
        base=/dev/shm
    fi
    SMALL_TREE=$(mktemp -d "$base/vmsync-bench-tree.XXXXXX.tmp")
    TREES+=("$SMALL_TREE")
    msg "writing $(($1 * 500)) small files into $SMALL_TREE"
    "$PY" "$HERE/benchlib.py" gen-small "$SMALL_TREE" "$1" 500
}

# ---------------------------------------------------------------- the images

SECTOR=512
PART_START=2048 # sectors: 1 MiB
GPT_LINUX=0FC63DAF-8483-4772-B47D-E4DE47E47DB9
GPT_BASIC=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7

# mkdisk FILE SIZE_MIB TYPE: a sparse GPT disk with one partition from 1 MiB to
# 1 MiB before the end; prints the partition size in bytes.
mkdisk() {
    local f=$1 mib=$2 type=$3 sectors part
    sectors=$((mib * 2048))
    part=$((sectors - 2 * PART_START))
    rm -f "$f"
    truncate -s "${mib}M" "$f"
    printf 'label: gpt\nlabel-id: 5F3F0B4C-6A3B-4E0A-9D5B-0000BE4C0001\nunit: sectors\nstart=%d, size=%d, type=%s, uuid=5F3F0B4C-6A3B-4E0A-9D5B-0000BE4C0101, name="bench"\n' \
        "$PART_START" "$part" "$type" | sfdisk -q --no-reread --no-tell-kernel "$f" >/dev/null
    echo $((part * SECTOR))
}

# mkext4 DISK TREE PART_BYTES [mke2fs options]
mkext4() {
    local disk=$1 tree=$2 bytes=$3
    shift 3
    E2FSPROGS_FAKE_TIME=1609459200 mke2fs -F -q -t ext4 -b 4096 -L bench \
        -U 6b1c3a1e-0000-4000-8000-0000be4c0e40 \
        -E "offset=$((PART_START * SECTOR)),hash_seed=6b1c3a1e-0000-4000-8000-0000be4c00aa" \
        "$@" -d "$tree" "$disk" "$((bytes / 1024))k" >/dev/null
}

build_debian_ext4() {
    local img=$1 bytes
    msg "building debian-ext4 image (2.5 GB GPT disk, ext4)"
    bytes=$(mkdisk "$img" 2500 "$GPT_LINUX")
    mkext4 "$img" "$CACHE/tree-debian" "$bytes"
}

build_debian_ntfs() {
    local img=$1 bytes
    need mkntfs wimlib-imagex
    msg "building debian-ntfs image (2.5 GB GPT disk, NTFS via wimlib; a few minutes)"
    bytes=$(mkdisk "$img" 2500 "$GPT_BASIC")
    ntfs_partition "$img" "$CACHE/tree-debian" "$bytes" "$TMP"
    cp "$TMP/wim.log" "$CACHE/debian-ntfs.wimlib.log"
}

# 2 GB disks; the same inode count for both so only the file count differs.
build_small_img() { # IMG NAME NDIRS
    local img=$1 name=$2 bytes
    small_tree "$3"
    msg "building $name image (2 GB GPT disk, ext4)"
    bytes=$(mkdisk "$img" 2000 "$GPT_LINUX")
    mkext4 "$img" "$SMALL_TREE" "$bytes" -N 262144
    rm -rf --one-file-system "$SMALL_TREE"
}

# --------------------------------------------------------------- measuring

median() { sort -g | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else print (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }

# timed OUT CMD...: runs CMD, appends "wall_s rss_kib cpu_s" to OUT.
timed() {
    local out=$1 t0 t1
    shift
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%M %U %S' -o "$TMP/time" "$@" >/dev/null || return 1
    t1=$EPOCHREALTIME
    awk -v a="$t0" -v b="$t1" '{ printf "%.4f %d %.2f\n", b - a, $1, $2 + $3 }' "$TMP/time" >>"$out"
}

RESULTS_TSV=$TMP/results.tsv
printf 'image\tstatus\timage_bytes\thost_alloc_bytes\talloc_bytes\tfiles\tentries\twarnings\tmanifest_s\tmanifest_s_min\tmanifest_s_max\tcpu_s\trss_kib\topenssl_s\topenssl_cpu_s\topenssl_rss_kib\tmanifest_bytes\truns\tverify\n' >"$RESULTS_TSV"
FAILED=0

# measure NAME IMG [check args...]
measure() {
    local name=$1 img=$2
    shift 2
    local m=$TMP/$name.vmsm v=$TMP/$name.vms o=$TMP/$name.ssl i
    local image_bytes host_alloc
    image_bytes=$(stat -c %s "$img")
    host_alloc=$(($(stat -c %b "$img") * $(stat -c %B "$img")))
    msg "measuring $name: 1 warm-up + $RUNS runs each of vmsync and openssl"
    rm -f "$v" "$o"
    local rc=0
    "$VMSYNC" manifest "$img" -o "$m" -q 2>"$TMP/$name.err" || rc=$?
    if ((rc != 0)); then
        msg "vmsync failed on $name (exit $rc): $(head -c 500 "$TMP/$name.err")"
        printf '%s\tvmsync exit status %s\n' "$name" "$rc" >>"$RESULTS_TSV"
        FAILED=1
        return 0
    fi
    [[ -s $TMP/$name.err ]] && msg "vmsync stderr on $name: $(head -c 300 "$TMP/$name.err")"
    openssl dgst -sha256 "$img" >/dev/null
    for ((i = 0; i < RUNS; i++)); do # alternate, so drift hits both alike
        timed "$v" "$VMSYNC" manifest "$img" -o "$m" -q || die "vmsync failed on $name (run $i)"
        timed "$o" openssl dgst -sha256 "$img" || die "openssl failed on $name"
    done
    local summary entries alloc warnings files verify="skipped"
    # The binary manifest's summary: entries, allocated bytes, warnings.
    summary=$("$VMSYNC" manifest show "$m")
    entries=$(awk '/^entries:/ { print $2 }' <<<"$summary")
    alloc=$(awk '/^allocated:/ { print $2 }' <<<"$summary")
    warnings=$(awk '/^warnings:/ { print $2 }' <<<"$summary")
    "$VMSYNC" manifest show "$m" --json >"$TMP/$name.json"
    files=$(grep -c '"type":"file"' "$TMP/$name.json" || true)
    if [[ $VERIFY == 1 && $# -gt 0 ]]; then
        if verify=$("$PY" "$HERE/benchlib.py" "$1" "$TMP/$name.json" "${@:2}" 2>&1); then :; else
            FAILED=1
        fi
        msg "check $name: $verify"
        verify=$(head -n 1 <<<"$verify")
    fi
    rm -f "$TMP/$name.json"
    printf '%s\tok\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' \
        "$name" "$image_bytes" "$host_alloc" "$alloc" "$files" "$entries" "$warnings" \
        "$(cut -d' ' -f1 "$v" | median)" "$(cut -d' ' -f1 "$v" | sort -g | head -n1)" \
        "$(cut -d' ' -f1 "$v" | sort -g | tail -n1)" "$(cut -d' ' -f3 "$v" | median)" \
        "$(cut -d' ' -f2 "$v" | sort -n | tail -n1)" "$(cut -d' ' -f1 "$o" | median)" "$(cut -d' ' -f3 "$o" | median)" \
        "$(cut -d' ' -f2 "$o" | sort -n | tail -n1)" "$(stat -c %s "$m")" "$RUNS" "$verify" >>"$RESULTS_TSV"
}

# ------------------------------------------------------------------- main

T_START=$SECONDS
loadavg() { cut -d' ' -f1 /proc/loadavg; }
want() { [[ " $IMAGES " == *" $1 "* ]]; }

if want debian-ext4 || want debian-ntfs; then
    cached tree-debian "v1 $SUITE minbase + $PACKAGES" build_debian_tree
    msg "debian tree: $(du -sh --apparent-size "$CACHE/tree-debian" | cut -f1) apparent, $(find "$CACHE/tree-debian" -type f | wc -l) files"
fi
if want debian-ext4; then
    cached debian-ext4.img "v1 2500M gpt ext4 / $(keyof tree-debian)" build_debian_ext4
fi
if want debian-ntfs; then
    cached debian-ntfs.img "v1 2500M gpt ntfs / $(keyof tree-debian)" build_debian_ntfs
fi
for n in 20k 200k; do
    want "small-$n" || continue
    nd=$((${n%k} * 2)) # directories of 500 files
    cached "small-$n.img" "v1 2000M gpt ext4 N262144 $nd x 500 files" build_small_img "small-$n" "$nd"
done
unmount_below "$CACHE"
msg "images ready after $((SECONDS - T_START))s"
LOAD_BEFORE=$(loadavg)
if awk -v l="$LOAD_BEFORE" 'BEGIN { exit !(l > 0.5) }'; then
    msg "warning: load average is $LOAD_BEFORE before measuring; wall times will be noisy"
fi

want debian-ext4 && measure debian-ext4 "$CACHE/debian-ext4.img" check-tree "$CACHE/tree-debian"
want debian-ntfs && measure debian-ntfs "$CACHE/debian-ntfs.img" check-tree "$CACHE/tree-debian" dev proc sys
want small-20k && measure small-20k "$CACHE/small-20k.img" check-small 40 500
want small-200k && measure small-200k "$CACHE/small-200k.img" check-small 400 500

echo "vmsync manifest vs openssl dgst -sha256: warm cache, median of $RUNS runs; $(nproc) CPUs, load average $LOAD_BEFORE before, $(loadavg) after"
BENCH_LOAD="$LOAD_BEFORE $(loadavg)" BENCH_CPUS=$(nproc) \
    "$PY" "$HERE/benchlib.py" report "$RESULTS_TSV" "$RESULTS_JSON"
msg "results in $RESULTS_JSON; total $((SECONDS - T_START))s"
exit $FAILED
