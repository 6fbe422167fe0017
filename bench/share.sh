#!/usr/bin/env bash
# vmsync rebuild-on-one-host benchmark: bench/share.sh [BUILD]
#
# The laptop's held image (bench/sync.sh's ext4-held.img) lies on the same
# filesystem as the checkout's output: a local-repository checkout of the
# target (ext4-target.img, imported once into a repository under /var/tmp)
# with the held image as seed, on a fresh XFS (reflink) and btrfs loop
# filesystem of 6 GiB, each:
#   copy     the seed is outside the filesystem (the cache's own file), so
#            vmsync writes every byte it takes from it
#   shared   the seed is a copy on the same filesystem: its blocks are shared
# Figures per run: wall and CPU seconds (user + sys, /usr/bin/time), bytes
# written to the loop device (/sys/block/loopN/stat, after sync), growth of
# the filesystem's used space (df), and bytes_shared from --stats-json.
# The seed's index is warm (a checkout of each kind runs first, unmeasured),
# and so is the page cache.  Needs root (loop devices) and the images of
# bench/sync.sh (run it first).  Environment: SHARE_RUNS (3; medians
# reported), SHARE_FS ("xfs btrfs").  The table goes to stdout, the figures
# to $BUILD/bench-share.json, progress to stderr.
set -euo pipefail
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
BUILD=${1:-${BUILD:-build}}
RUNS=${SHARE_RUNS:-3}
FSES=${SHARE_FS:-xfs btrfs}
VMSYNC=$(realpath "$BUILD/vmsync")
CACHE=$BUILD/bench-cache/sync
HELD=$CACHE/ext4-held.img
TARGET=$CACHE/ext4-target.img

msg() { printf 'share-bench: %s\n' "$*" >&2; }
die() { printf 'share-bench: error: %s\n' "$*" >&2; exit 1; }

[[ $(id -u) == 0 ]] || die "needs root (loop devices)"
need mkfs.xfs mkfs.btrfs losetup /usr/bin/time
[[ -f $HELD && -f $TARGET ]] || die "no $HELD or $TARGET: run bench/sync.sh first"

WORK=$(mktemp -d /var/tmp/vmsync-share.XXXXXX)
MNT=$WORK/mnt
DEV=
cleanup() {
    if mountpoint -q "$MNT"; then umount "$MNT" || umount -l "$MNT"; fi
    [[ -z $DEV ]] || losetup -d "$DEV" || true
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export VMSYNC_CACHE=$WORK/cache VMSYNC_HOST=share-bench

# fresh_fs FS: a new 6 GiB FS on a loop device, mounted on $MNT
fresh_fs() {
    if mountpoint -q "$MNT"; then umount "$MNT"; fi
    [[ -z $DEV ]] || losetup -d "$DEV"
    rm -f "$WORK/fs.img"
    truncate -s 6G "$WORK/fs.img"
    DEV=$(losetup -f --show "$WORK/fs.img")
    case $1 in
    xfs) mkfs.xfs -q -f -m reflink=1 "$DEV" ;;
    btrfs) mkfs.btrfs -q -f "$DEV" >/dev/null ;;
    esac
    mkdir -p "$MNT"
    mount "$DEV" "$MNT"
}

sectors_written() { awk '{ print $7 }' "/sys/block/$(basename "$DEV")/stat"; }
used() { df --output=used -B1 "$MNT" | tail -1 | tr -d ' '; }

# settled_used: the used space once it stops changing (XFS frees a removed
# file's blocks in the background)
settled_used() {
    local a b i
    sync -f "$MNT"
    b=$(used)
    for ((i = 0; i < 50; i++)); do
        sleep 0.2
        sync -f "$MNT"
        a=$b
        b=$(used)
        [[ $a != "$b" ]] || break
    done
    echo "$b"
}

# checkout SEED JSON: one checkout of t to $MNT/out.img; prints
# "wall cpu written used shared"
checkout() {
    rm -f "$MNT"/out.img*
    local s0 u0 t
    u0=$(settled_used)
    s0=$(sectors_written)
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" \
        "$VMSYNC" checkout "$WORK/repo" t -o "$MNT/out.img" --seed "$1" -q --stats-json "$2"
    sync -f "$MNT"
    read -r -a t <"$WORK/time"
    printf '%s %s %s %s %s\n' "${t[0]}" "$(awk -v u="${t[1]}" -v s="${t[2]}" 'BEGIN { print u + s }')" \
        $((($(sectors_written) - s0) * 512)) $(($(used) - u0)) \
        "$(jq -r .bytes_shared "$2")"
}

median() { sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

msg "importing $TARGET into a repository under $WORK"
"$VMSYNC" init "$WORK/repo" >/dev/null
"$VMSYNC" import "$WORK/repo" "$TARGET" --name t -q

printf '%-6s %-7s %8s %8s %12s %12s %12s\n' fs seed wall_s cpu_s written_MB used_MB shared_MB
json=()
for fs in $FSES; do
    fresh_fs "$fs"
    cp --reflink=never "$HELD" "$MNT/seed.img"
    for mode in copy shared; do
        seed=$HELD
        [[ $mode == copy ]] || seed=$MNT/seed.img
        msg "$fs, seed $mode: warming the seed's index"
        checkout "$seed" "$WORK/warm.json" >/dev/null
        : >"$WORK/runs"
        for ((i = 1; i <= RUNS; i++)); do
            msg "$fs, seed $mode: run $i of $RUNS"
            checkout "$seed" "$WORK/run.json" >>"$WORK/runs"
        done
        for k in 1 2 3 4 5; do
            m[k]=$(cut -d' ' -f"$k" "$WORK/runs" | median)
        done
        awk -v fs="$fs" -v mode="$mode" -v w="${m[1]}" -v c="${m[2]}" -v b="${m[3]}" -v u="${m[4]}" \
            -v s="${m[5]}" 'BEGIN { printf "%-6s %-7s %8.2f %8.2f %12.1f %12.1f %12.1f\n", fs, mode, w, c, b / 1e6, u / 1e6, s / 1e6 }'
        json+=("{\"fs\":\"$fs\",\"seed\":\"$mode\",\"runs\":$RUNS,\"wall_s\":${m[1]},\"cpu_s\":${m[2]},\"bytes_written\":${m[3]},\"bytes_used\":${m[4]},\"bytes_shared\":${m[5]}}")
    done
done
(IFS=,; printf '{"run_id":"%s","results":[%s]}\n' "$BENCH_RUN_ID" "${json[*]}") >"$BUILD/bench-share.json"
