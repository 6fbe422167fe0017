#!/usr/bin/env bash
# vmsync sync benchmark: bench/sync.sh [BUILD]
#
# Checkout and check-in of a Debian image, as ext4 and as NTFS in 2.5 GB GPT
# disks, against the peers the issue names (zstd -3 of the whole image, rsync
# delta, casync with a seed).  The scenario:
#
#   held     the laptop's image: debootstrap --variant=minbase $SUITE
#   target   T, in the repository: the same minbase tree plus SYNC_PACKAGES
#            (chroot apt-get) and /home/user with a ~100 MiB mailbox
#            (bench/sync_lib.py gen-home)
#   co       T checked out by vmsync with the held image as seed
#   mod      co after offline work through a loop mount (ext4) or ntfs-3g
#            (NTFS): ~20 MB of new documents, a dozen 4 KiB pages of the
#            mailbox rewritten, 1 MiB appended, a directory deleted, one
#            renamed (bench/sync_lib.py offline-work)
#
# Measured on every run (SYNC_RUNS, default 3; medians reported), after a
# fresh copy of a repository holding T as version 1:
#   vmsync checkout t@1 --seed held   bytes_fetched_compressed, time
#   vmsync checkin t mod              bytes_sent_compressed, time
#   casync extract --seed=held        time
#   rsync --no-whole-file -z --sparse --stats: T onto a copy of held
#   (checkout) and mod onto a copy of co (check-in), through a remote shell
#   that runs `rsync --server` locally, so the delta protocol and -z really
#   run; "Total bytes sent" + "Total bytes received" (sent alone shown too)
# Times are wall seconds (EPOCHREALTIME) and cpu seconds (user + sys with
# children, from /usr/bin/time), with the page cache warm and vmsync's seed
# cache warm (a cold checkout runs first and is reported apart).
# Measured once and cached (deterministic): zstd -3 sizes, casync chunk
# bytes (see "casync byte counts" below), and the design's reference: the
# file contents T has and the held tree lacks, as one zstd stream.
#
# Everything is cached under $BUILD/bench-cache/sync/, keyed by its recipe.
# The table goes to stdout, the figures to $BUILD/bench-sync.json, progress to
# stderr.  Environment: SYNC_RUNS (3), SYNC_FS ("ext4 ntfs"), SYNC_PACKAGES,
# BENCH_SUITE (bookworm), BENCH_MIRROR (from /etc/apt/sources*).
#
# casync byte counts: `casync make --store=store-T T.caibx T.img` once; then
# `strace -f -e trace=openat casync extract --store=store-T --seed=held.img
# T.caibx out.img`, and the chunk files it opened successfully are summed
# (each distinct chunk once: what a client would download).  The result is
# cross-checked against the set difference "chunks of store-T absent from a
# store made from held.img with the same chunker" and the extract's output
# against T.  Check-in: `casync make --store=store-mod mod.caibx mod.img`,
# summing the chunks of store-mod absent from store-T.
# shellcheck disable=SC2317  # functions run via trap and cached()
set -euo pipefail
shopt -s inherit_errexit
export LC_ALL=C

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=bench/lib.sh
source "$HERE/lib.sh"
BUILD=${1:-${BUILD:-build}}
RUNS=${SYNC_RUNS:-3}
FSES=${SYNC_FS:-ext4 ntfs}
SUITE=${BENCH_SUITE:-bookworm}
PACKAGES=${SYNC_PACKAGES:-libreoffice-writer-nogui gimp-data python3-numpy git}
HOME_RECIPE="home v1"        # bump when gen-home changes
WORK_RECIPE="offline-work v2" # bump when offline-work changes

msg() { printf 'sync-bench: %s\n' "$*" >&2; }
die() { printf 'sync-bench: error: %s\n' "$*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "SYNC_RUNS must be a positive integer"
[[ -d $BUILD ]] || die "build directory '$BUILD' does not exist (make BUILD=$BUILD $BUILD/vmsync)"
BUILD=$(cd "$BUILD" && pwd)
VMSYNC=$BUILD/vmsync
[[ -x $VMSYNC ]] || die "$VMSYNC not found; build it first: make BUILD=$BUILD $BUILD/vmsync"
CACHE=$BUILD/bench-cache/sync
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3 || true)
[[ -n $PY ]] || die "python3 is needed (apt-get install python3)"
LIB=$HERE/sync_lib.py

[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"
need sfdisk mke2fs e2fsck truncate dd flock awk sort zstd rsync casync strace losetup mount umount \
    mkntfs ntfs-3g ntfsfix wimlib-imagex sha256sum cmp
[[ $(id -u) == 0 ]] || die "needs root (debootstrap, loop mounts)"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock -n 9 || die "another sync bench run holds $CACHE/.lock"

WORK=$(mktemp -d "$CACHE/work.XXXXXX.tmp") # on disk, next to the images
MNT=$WORK/mnt
LOOPDEV=
NTFSPID=
MOUNTED=


# Unmounts what offline_work mounted and detaches its loop device.
release_mount() {
    if [[ -n $MOUNTED ]]; then
        umount "$MOUNTED" 2>/dev/null || umount -l "$MOUNTED" || true
        MOUNTED=
    fi
    if [[ -n $NTFSPID ]]; then # ntfs-3g writes back until it exits
        wait "$NTFSPID" 2>/dev/null || true
        NTFSPID=
    fi
    if [[ -n $LOOPDEV ]]; then
        losetup -d "$LOOPDEV" 2>/dev/null || true
        LOOPDEV=
    fi
}

STEP=
cleanup() {
    local rc=$?
    [[ $rc == 0 || -z $STEP ]] || msg "error: $STEP failed (exit $rc)"
    release_mount
    unmount_below "$CACHE"
    rm -rf --one-file-system "$WORK"
    rm -rf --one-file-system "$CACHE"/*.tmp 2>/dev/null || true
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM



# ---------------------------------------------------------------- the trees


build_minbase() {
    local dir=$1 mirror log=$CACHE/debootstrap.log
    mirror=$(detect_mirror)
    need debootstrap chroot
    msg "building the minbase tree (first run only, a few minutes): $SUITE from $mirror, log $log"
    debootstrap --variant=minbase "$SUITE" "$dir" "$mirror" >"$log" 2>&1 ||
        { unmount_below "$dir"; tail -n 20 "$log" >&2; return 1; }
    unmount_below "$dir"
}

build_target_tree() {
    local dir=$1 log=$CACHE/apt.log
    msg "building the target tree: minbase + $PACKAGES (first run only), log $log"
    cp -a "$CACHE/tree-minbase" "$dir"
    printf '#!/bin/sh\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    # shellcheck disable=SC2086
    chroot "$dir" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C \
        DEBIAN_FRONTEND=noninteractive sh -c \
        "apt-get -q update && apt-get -q -y install --no-install-recommends $PACKAGES && apt-get clean" \
        >"$log" 2>&1 || { unmount_below "$dir"; tail -n 20 "$log" >&2; return 1; }
    rm -f "$dir/usr/sbin/policy-rc.d"
    unmount_below "$dir"
    msg "writing /home/user (mailbox, reports, old-project)"
    "$PY" "$LIB" gen-home "$dir"
}

# ---------------------------------------------------------------- the images

SECTOR=512
PART_START=2048 # sectors: 1 MiB
DISK_MIB=2500
PART_BYTES=$(((DISK_MIB * 2048 - 2 * PART_START) * SECTOR))
GPT_LINUX=0FC63DAF-8483-4772-B47D-E4DE47E47DB9
GPT_BASIC=EBD0A0A2-B9E5-4433-87C0-68B6B72699C7

mkdisk() { # FILE TYPE (as bench/run.sh)
    local f=$1 type=$2
    rm -f "$f"
    truncate -s "${DISK_MIB}M" "$f"
    printf 'label: gpt\nlabel-id: 5F3F0B4C-6A3B-4E0A-9D5B-0000BE4C0001\nunit: sectors\nstart=%d, size=%d, type=%s, uuid=5F3F0B4C-6A3B-4E0A-9D5B-0000BE4C0101, name="bench"\n' \
        "$PART_START" "$((PART_BYTES / SECTOR))" "$type" | sfdisk -q --no-reread --no-tell-kernel "$f" >/dev/null
}

build_ext4() { # IMG TREE
    local img=$1 tree=$2
    msg "building $(basename "${img%.tmp}") (2.5 GB GPT disk, ext4)"
    mkdisk "$img" "$GPT_LINUX"
    E2FSPROGS_FAKE_TIME=1609459200 mke2fs -F -q -t ext4 -b 4096 -L bench \
        -U 6b1c3a1e-0000-4000-8000-0000be4c0e40 \
        -E "offset=$((PART_START * SECTOR)),hash_seed=6b1c3a1e-0000-4000-8000-0000be4c00aa" \
        -d "$tree" "$img" "$((PART_BYTES / 1024))k" >/dev/null
}

build_ntfs() { # IMG TREE
    local img=$1 tree=$2
    msg "building $(basename "${img%.tmp}") (2.5 GB GPT disk, NTFS via wimlib; a few minutes)"
    mkdisk "$img" "$GPT_BASIC"
    ntfs_partition "$img" "$tree" "$PART_BYTES" "$WORK"
}

build_image() { # IMG FS TREE
    if [[ $2 == ext4 ]]; then build_ext4 "$1" "$3"; else build_ntfs "$1" "$3"; fi
}

# The checked-out copy: vmsync checkout of T with the held image as seed.
build_co() { # OUT FS
    local out=$1 fs=$2 repo=$WORK/co-repo
    msg "checking $fs T out with vmsync (the copy the offline work modifies)"
    rm -rf "$repo"
    "$VMSYNC" init "$repo" >/dev/null
    VMSYNC_CACHE=$WORK/co-cache "$VMSYNC" import "$repo" "$CACHE/$fs-target.img" --name t -q
    VMSYNC_CACHE=$WORK/co-cache "$VMSYNC" checkout "$repo" t -o "$out" --seed "$CACHE/$fs-held.img" -q
    rm -rf "$repo" "$WORK/co-cache"
}

# The offline work, through the kernel's ext4 on a loop device or ntfs-3g.
build_mod() { # OUT FS
    local out=$1 fs=$2
    msg "offline work on a copy of $fs-co.img through a $([[ $fs == ext4 ]] && echo loop mount || echo ntfs-3g mount)"
    cp --sparse=always "$CACHE/$fs-co.img" "$out"
    mkdir -p "$MNT"
    LOOPDEV=$(losetup -f --show -o $((PART_START * SECTOR)) --sizelimit "$PART_BYTES" "$out")
    if [[ $fs == ext4 ]]; then
        mount -t ext4 "$LOOPDEV" "$MNT"
    else
        ntfs-3g -o no_detach "$LOOPDEV" "$MNT" >"$WORK/ntfs-3g.log" 2>&1 &
        NTFSPID=$!
        local i
        for ((i = 0; i < 100; i++)); do
            mountpoint -q "$MNT" && break
            kill -0 "$NTFSPID" 2>/dev/null || die "ntfs-3g failed to mount $LOOPDEV"
            sleep 0.1
        done
        mountpoint -q "$MNT" || die "ntfs-3g did not mount $LOOPDEV"
    fi
    MOUNTED=$MNT
    "$PY" "$LIB" offline-work "$MNT" >"$CACHE/$fs-offline-work.json"
    sync
    umount "$MNT"
    MOUNTED=
    release_mount
    if [[ $fs == ext4 ]]; then
        e2fsck -fn "$out?offset=$((PART_START * SECTOR))" >"$WORK/fsck.log" 2>&1 ||
            { cat "$WORK/fsck.log" >&2; die "e2fsck finds $out damaged after the offline work"; }
    else
        LOOPDEV=$(losetup -f --show -r -o $((PART_START * SECTOR)) --sizelimit "$PART_BYTES" "$out")
        ntfsfix -n "$LOOPDEV" >"$WORK/fsck.log" 2>&1 ||
            { cat "$WORK/fsck.log" >&2; die "ntfsfix -n finds $out damaged after the offline work"; }
        release_mount
    fi
    msg "offline work: $(cut -c1-160 "$CACHE/$fs-offline-work.json")"
}

# ------------------------------------------------------- the peers, once

jq_n() { "$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$1" "$2"; }

# Deterministic figures: zstd -3 sizes and casync chunk bytes (see the header).
build_peers() { # DIR FS
    local d=$1 fs=$2 t0 t1
    local held=$CACHE/$fs-held.img T=$CACHE/$fs-target.img mod=$CACHE/$fs-mod.img
    mkdir -p "$d"
    msg "$fs: zstd -3 of T and of mod"
    local zt zm
    zt=$(zstd -3 -T0 -c -q "$T" | wc -c)
    zm=$(zstd -3 -T0 -c -q "$mod" | wc -c)
    msg "$fs: casync make of T, held and mod (64 KiB average chunks, the default)"
    t0=$EPOCHREALTIME
    casync make --store="$d/store-T" "$d/T.caibx" "$T" >/dev/null
    t1=$EPOCHREALTIME
    casync make --store="$d/store-held" "$d/held.caibx" "$held" >/dev/null
    casync make --store="$d/store-mod" "$d/mod.caibx" "$mod" >/dev/null
    local make_s
    make_s=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f", b - a }')
    msg "$fs: casync extract --seed under strace, to see which chunk files it reads"
    rm -f "$WORK/ca-out.img"
    strace -f -qq -e trace=openat -o "$WORK/strace.log" \
        casync extract --store="$d/store-T" --seed="$held" "$d/T.caibx" "$WORK/ca-out.img"
    cmp "$WORK/ca-out.img" "$T" || die "casync extract's output differs from T"
    rm -f "$WORK/ca-out.img"
    local st co ci
    st=$("$PY" "$LIB" strace-chunks "$WORK/strace.log" "$d/store-T")
    co=$("$PY" "$LIB" store-diff "$d/store-T" "$d/store-held")
    ci=$("$PY" "$LIB" store-diff "$d/store-mod" "$d/store-T")
    rm -f "$WORK/strace.log"
    [[ $(jq_n "$st" bytes) == $(jq_n "$co" bytes_new) ]] ||
        msg "warning: $fs: casync extract read $(jq_n "$st" bytes) chunk bytes, the store difference says $(jq_n "$co" bytes_new)"
    "$PY" - "$d/static.json" <<EOF
import json, os, sys
st, co, ci = json.loads('$st'), json.loads('$co'), json.loads('$ci')
json.dump({
    "zstd_T": $zt, "zstd_M": $zm,
    "ca_co_bytes": st["bytes"], "ca_co_chunks": st["chunks"], "ca_co_opens": st["opens"],
    "ca_co_storediff": co["bytes_new"], "ca_co_storediff_chunks": co["chunks_new"],
    "ca_T_store": co["bytes_store"], "ca_T_chunks": co["chunks"],
    "ca_ci_bytes": ci["bytes_new"], "ca_ci_chunks": ci["chunks_new"],
    "ca_T_index": os.path.getsize("$d/T.caibx"), "ca_M_index": os.path.getsize("$d/mod.caibx"),
    "ca_make_T_s": $make_s,
}, open(sys.argv[1], "w"))
EOF
    msg "$fs peers: $(cat "$d/static.json")"
}

# The design's reference: the file contents T has and the held tree lacks
# (each content once), as one solid zstd stream.  What a file-level sync with
# perfect matching and solid compression would move.  Same for ext4 and NTFS.
build_missing_ref() { # DIR
    local d=$1 j z3 z19
    mkdir -p "$d"
    msg "reference: the contents only T has, as one zstd stream (-3; -19 --long: first run only, minutes)"
    j=$("$PY" "$LIB" missing-list "$CACHE/tree-minbase" "$CACHE/tree-target" "$d/missing.lst")
    tar -C "$CACHE/tree-target" --no-recursion --verbatim-files-from -cf "$WORK/missing.tar" -T "$d/missing.lst"
    z3=$(zstd -3 -T0 -q -c "$WORK/missing.tar" | wc -c)
    z19=$(zstd -19 --long=27 -T0 -B128MiB -q -c "$WORK/missing.tar" | wc -c)
    rm -f "$WORK/missing.tar"
    "$PY" -c 'import json, sys
j = json.loads(sys.argv[1])
print(json.dumps({"missing_files": j["files"], "missing_raw": j["bytes"],
                  "missing_zstd3": int(sys.argv[2]), "missing_zstd19_long": int(sys.argv[3])}))' \
        "$j" "$z3" "$z19" >"$d/static.json"
    msg "reference: $(cat "$d/static.json")"
}

# ------------------------------------------------------------- measuring

RESULTS_TSV=$WORK/results.tsv
: >"$RESULTS_TSV"
put() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >>"$RESULTS_TSV"; } # FS RUN METRIC VALUE
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f", b - a }'; }
# timed FS RUN METRIC CMD...: runs CMD (stdout to $WORK/timed.out), records
# METRIC_s (wall) and METRIC_cpu (user + system, children included).
timed() {
    local fs=$1 run=$2 m=$3 t0 t1
    shift 3
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$WORK/time" "$@" >"$WORK/timed.out"
    t1=$EPOCHREALTIME
    put "$fs" "$run" "${m}_s" "$(secs "$t0" "$t1")"
    put "$fs" "$run" "${m}_cpu" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")"
}
jget() { "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

# A remote shell that runs the command locally, so rsync speaks its protocol
# over a pipe (delta transfer, -z, and the stats of what crossed).
LRSH=$WORK/lrsh
# shellcheck disable=SC2016  # the $ are for the script
printf '#!/bin/sh\n# rsync -e: [-l USER] HOST COMMAND...\nwhile [ "$1" = -l ]; do shift 2; done\nshift\nexec "$@"\n' >"$LRSH"
chmod 755 "$LRSH"

# rsync_run FS RUN PREFIX SRC BASIS: rsync SRC onto a copy of BASIS.
rsync_run() {
    local fs=$1 run=$2 p=$3 src=$4 basis=$5 dst=$WORK/rsync-dst.img j
    rm -f "$dst"
    cp --sparse=always "$basis" "$dst"
    timed "$fs" "$run" "$p" rsync --no-whole-file -z --sparse --stats -e "$LRSH" "$src" "localhost:$dst"
    j=$("$PY" "$LIB" rsync-stats "$WORK/timed.out")
    local k
    for k in literal sent received; do
        put "$fs" "$run" "${p}_${k/received/recv}" "$("$PY" -c 'import json,sys; print(json.loads(sys.argv[1])[sys.argv[2]])' "$j" "$k")"
    done
    put "$fs" "$run" "${p}_total" "$("$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); print(d["sent"]+d["received"])' "$j")"
    if [[ $run == 1 ]]; then
        cmp "$dst" "$src" || die "rsync's copy differs from $src"
    fi
    rm -f "$dst"
}

prime() { cat "$@" >/dev/null; } # warm the page cache
prime_dir() { find "$1" -type f -exec cat {} + >/dev/null; }

measure() { # FS
    local fs=$1
    local held=$CACHE/$fs-held.img T=$CACHE/$fs-target.img co=$CACHE/$fs-co.img
    local mod=$CACHE/$fs-mod.img peers=$CACHE/$fs-peers repo0=$WORK/$fs-repo0 repo=$WORK/$fs-repo
    local out=$WORK/$fs-out.img st=$WORK/stats.json i
    export VMSYNC_HOST=laptop VMSYNC_CACHE=$WORK/$fs-vmcache
    msg "$fs: vmsync import of T into a fresh repository"
    "$VMSYNC" init "$repo0" >/dev/null
    timed "$fs" 0 vm_import "$VMSYNC" import "$repo0" "$T" --name t -q --stats-json "$st"
    put "$fs" 0 vm_repo_bytes "$(du -sb "$repo0" | cut -f1)"
    prime "$held" "$T" "$co" "$mod"
    prime_dir "$peers"
    msg "$fs: cold vmsync checkout (empty seed cache)"
    cp -a "$repo0" "$repo"
    timed "$fs" 0 vm_co_cold "$VMSYNC" checkout "$repo" t@1 -o "$out" --seed "$held" -q --stats-json "$st"
    rm -rf "$repo" "$out"
    for ((i = 1; i <= RUNS; i++)); do
        msg "$fs: run $i of $RUNS"
        rm -rf "$repo"
        cp -a "$repo0" "$repo"
        prime_dir "$repo"
        # checkout
        rm -f "$out"
        timed "$fs" "$i" vm_co "$VMSYNC" checkout "$repo" t@1 -o "$out" --seed "$held" -q --stats-json "$st"
        put "$fs" "$i" vm_co_fetched_c "$(jget "$st" bytes_fetched_compressed)"
        put "$fs" "$i" vm_co_fetched_raw "$(jget "$st" bytes_fetched_raw)"
        put "$fs" "$i" vm_co_objects "$(jget "$st" objects_fetched)"
        put "$fs" "$i" vm_co_from_seeds "$(jget "$st" bytes_from_seeds)"
        put "$fs" "$i" vm_co_engine_s "$(jget "$st" seconds)"
        if [[ $i == 1 ]] && ! cmp -s "$out" "$co"; then
            msg "note: this checkout is not byte-identical to the cached $fs-co.img (vmsync changed?)"
        fi
        rm -f "$out"
        # check-in
        timed "$fs" "$i" vm_ci "$VMSYNC" checkin "$repo" t "$mod" -q --stats-json "$st"
        put "$fs" "$i" vm_ci_sent_c "$(jget "$st" bytes_sent_compressed)"
        put "$fs" "$i" vm_ci_sent_raw "$(jget "$st" bytes_sent_raw)"
        put "$fs" "$i" vm_ci_objects "$(jget "$st" objects_sent)"
        put "$fs" "$i" vm_ci_rehashed "$(jget "$st" files_rehashed)"
        put "$fs" "$i" vm_ci_trusted "$(jget "$st" files_trusted)"
        rm -rf "$repo"
        # casync extract with the held image as seed
        rm -f "$WORK/ca-out.img"
        timed "$fs" "$i" ca_ex casync extract --store="$peers/store-T" --seed="$held" "$peers/T.caibx" "$WORK/ca-out.img"
        rm -f "$WORK/ca-out.img"
        # rsync: checkout (T onto the held image) and check-in (mod onto co)
        rsync_run "$fs" "$i" rs_co "$T" "$held"
        rsync_run "$fs" "$i" rs_ci "$mod" "$co"
    done
    rm -rf "$repo0" "$VMSYNC_CACHE"
    "$PY" - "$peers/static.json" "$WORK/static-$fs.json" "$T" "$CACHE/missing-ref/static.json" <<'EOF'
import json, os, sys
d = json.load(open(sys.argv[1]))
d.update(json.load(open(sys.argv[4])))
st = os.stat(sys.argv[3])
d["image_bytes"] = st.st_size
d["target_alloc"] = st.st_blocks * 512
json.dump(d, open(sys.argv[2], "w"))
EOF
}

# ------------------------------------------------------------------- main

T_START=$SECONDS
cached tree-minbase "v1 $SUITE minbase" build_minbase
cached tree-target "v1 $(keyof tree-minbase) + $PACKAGES + $HOME_RECIPE" build_target_tree
cached missing-ref "v1 $(keyof tree-minbase) / $(keyof tree-target)" build_missing_ref
msg "trees: minbase $(du -sh --apparent-size "$CACHE/tree-minbase" | cut -f1), target $(du -sh --apparent-size "$CACHE/tree-target" | cut -f1)"
for fs in $FSES; do
    [[ $fs == ext4 || $fs == ntfs ]] || die "SYNC_FS: unknown filesystem $fs"
    cached "$fs-held.img" "v1 ${DISK_MIB}M gpt $fs / $(keyof tree-minbase)" build_image "$fs" "$CACHE/tree-minbase"
    cached "$fs-target.img" "v1 ${DISK_MIB}M gpt $fs / $(keyof tree-target)" build_image "$fs" "$CACHE/tree-target"
    cached "$fs-co.img" "v1 co of $(keyof "$fs-target.img") seed $(keyof "$fs-held.img")" build_co "$fs"
    cached "$fs-mod.img" "v1 $WORK_RECIPE on $(keyof "$fs-co.img")" build_mod "$fs"
    cached "$fs-peers" "v1 zstd casync $(keyof "$fs-held.img") $(keyof "$fs-target.img") $(keyof "$fs-mod.img")" build_peers "$fs"
done
unmount_below "$CACHE"
msg "images ready after $((SECONDS - T_START))s"

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
if awk -v l="${LOAD_BEFORE%% *}" 'BEGIN { exit !(l > 0.5) }'; then
    msg "warning: load average is $LOAD_BEFORE before measuring; wall times will be noisy (see the cpu seconds)"
fi
for fs in $FSES; do
    measure "$fs"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)
export SYNC_LOAD="$LOAD_BEFORE / $LOAD_AFTER"
"$PY" - "$WORK"/static-*.json >"$WORK/static.json" <<'EOF'
import json, os, sys
print(json.dumps({os.path.basename(p)[7:-5]: json.load(open(p)) for p in sys.argv[1:]}))
EOF
cp "$RESULTS_TSV" "$BUILD/bench-sync.tsv"
echo "vmsync checkout / check-in vs zstd, rsync and casync: median of $RUNS runs; $(nproc) CPUs, load average $LOAD_BEFORE before, $LOAD_AFTER after; $(rsync --version | head -n1 | awk '{print "rsync", $3}'), casync $(casync --version | awk '{print $2}'), zstd $(zstd --version | grep -o 'v[0-9.]*[0-9]')"
"$PY" "$LIB" report "$RESULTS_TSV" "$WORK/static.json" "$BUILD/bench-sync.json"
msg "results in $BUILD/bench-sync.json; total $((SECONDS - T_START))s"
