#!/usr/bin/env bash
# A rebuild on one host shares the seed's blocks.  On an XFS and on a btrfs
# filesystem (loop devices), a checkout of T with seed S on the same
# filesystem gives the bytes of a clean export (cmp, vmsync verify), reports
# bytes_shared, and its output shares extents with the seed (filefrag shows
# them "shared"); the filesystem's used space grows by far less than the
# output holds.  On ext4, which shares no blocks, the same checkout copies:
# identical bytes, bytes_shared 0, no shared extent.  Then, on XFS and btrfs,
# a checkout killed (SIGKILL, under gdb) at its last journal sync resumes
# with what the first run placed and gives the same bytes again; and a seed
# overwritten (under gdb) after its bytes were read and checked, just before
# they are shared, gives an image that does not verify: the checkout says so,
# rebuilds it from scratch, and installs the right bytes.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq cmp losetup filefrag gdb mkfs.xfs mkfs.btrfs
repo_have_loop || skip "needs root and loop devices"

export VMSYNC_HOST=laptop-share VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/import" import "$R" "$timg" --name t -q
vm_ok "$T/export" export "$R" t -o "$T/clean.img" -q

# fs_mount FS DIR: a new 512 MiB FS on a loop device over a file in $T,
# mounted on DIR (the exit trap unmounts and detaches it)
fs_mount() {
    local fs=$1 dir=$2 dev
    truncate -s 512M "$T/$fs.fs"
    dev=$(losetup -f --show "$T/$fs.fs") || fail "losetup $T/$fs.fs failed"
    case $fs in
    xfs) mkfs.xfs -q -f -m reflink=1 "$dev" ;;
    btrfs) mkfs.btrfs -q -f "$dev" >/dev/null ;;
    ext4) mke2fs -q -F -t ext4 "$dev" ;;
    esac || fail "mkfs.$fs $dev failed"
    mkdir -p "$dir"
    mount "$dev" "$dir" || fail "cannot mount $dev ($fs) on $dir"
    _REPO_MOUNTS+=("$dir")
}

used() { sync; df --output=used -B1 "$1" | tail -1 | tr -d ' '; }
shared_extents() { filefrag -v "$1" | grep -c shared || true; }

# kill_at_last_sync PREFIX ARGS...: runs vmsync ARGS under gdb and SIGKILLs it
# at the second journal sync, the one after every object was placed: the
# journal holds only what the first sync recorded.
kill_at_last_sync() {
    local p=$1
    shift
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout -k 10 "$VMSYNC_CMD_TIMEOUT" gdb -nx -batch -q -iex 'set debuginfod enabled off' \
        -iex 'set print thread-events off' \
        -ex 'set startup-with-shell off' -ex 'break sync_journal' -ex 'ignore 1 1' -ex run -ex kill \
        --args "$VMSYNC" "$@" >"$p.gdb" 2>&1 </dev/null || true
}

# write_seed_at_share PREFIX SEED ARGS...: runs vmsync ARGS under gdb; when
# it is about to share a range of SEED, overwrites a block of that range with
# random bytes, then lets it go on.
write_seed_at_share() {
    local p=$1 seed=$2
    shift 2
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout -k 10 "$VMSYNC_CMD_TIMEOUT" gdb -nx -batch -q -iex 'set debuginfod enabled off' \
        -iex 'set print thread-events off' \
        -ex 'set startup-with-shell off' -ex 'break vms_share_flush if sh->pending != 0' -ex run \
        -ex "eval \"shell dd if=/dev/urandom of=$seed bs=4096 count=1 seek=%lu conv=notrunc status=none\", (sh->src + 4095) / 4096" \
        -ex delete -ex continue --args "$VMSYNC" "$@" >"$p.gdb" 2>&1 </dev/null || true
}

for fs in xfs btrfs ext4; do
    mnt=$T/mnt-$fs
    fs_mount "$fs" "$mnt"
    cp --reflink=never "$simg" "$mnt/seed.img"
    before=$(used "$mnt")
    out=$mnt/out.img
    vm_ok "$T/$fs.co" checkout "$R" t -o "$out" --seed "$mnt/seed.img" --stats-json "$T/$fs.json" -q
    grew=$(($(used "$mnt") - before))
    cmp -s "$out" "$T/clean.img" || bad "$fs: the checkout differs from a clean export"
    vm_ok "$T/$fs.verify" verify "$R" t "$out" -q
    from_seeds=$(repo_stat "$T/$fs.json" bytes_from_seeds)
    shared=$(repo_stat "$T/$fs.json" bytes_shared)
    alloc=$(($(stat -c %b "$out") * 512))
    info "$fs: $from_seeds bytes from the seed, $shared shared, output allocates $alloc, used space grew $grew"
    ((from_seeds > 20 << 20)) || bad "$fs: only $from_seeds bytes came from the seed"
    if [[ $fs == ext4 ]]; then
        ((shared == 0)) || bad "ext4: bytes_shared=$shared on a filesystem that cannot share"
        (($(shared_extents "$out") == 0)) || bad "ext4: the output has shared extents"
        ((grew >= alloc)) || bad "ext4: used space grew by $grew, less than the $alloc the copy holds"
        continue
    fi
    ((shared > from_seeds / 2)) || bad "$fs: only $shared of the $from_seeds bytes from the seed were shared"
    (($(shared_extents "$out") > 0)) || bad "$fs: filefrag shows no shared extent: $(filefrag -v "$out" | head -20)"
    (($(shared_extents "$mnt/seed.img") > 0)) || bad "$fs: the seed shows no shared extent"
    ((grew < alloc - shared / 2)) ||
        bad "$fs: used space grew by $grew, as a copy of the $alloc bytes the output holds would"

    info "$fs: a checkout killed at its last journal sync resumes"
    rm -f "$out"
    kill_at_last_sync "$T/$fs.kill" checkout "$R" t -o "$out" --seed "$mnt/seed.img" --force -q
    grep -q 'Breakpoint 1, sync_journal' "$T/$fs.kill.gdb" ||
        bad "$fs: gdb did not stop at the journal sync: $(tail -c 300 "$T/$fs.kill.gdb")"
    [[ ! -e $out && -e $out.vmsync-part ]] || bad "$fs: the killed checkout left no partial image only"
    vm_ok "$T/$fs.resume" checkout "$R" t -o "$out" --seed "$mnt/seed.img" --force \
        --stats-json "$T/$fs.resume.json" -q
    resumed=$(repo_stat "$T/$fs.resume.json" bytes_resumed)
    ((resumed > 0)) || bad "$fs: the resumed checkout reused nothing (bytes_resumed=$resumed)"
    (($(repo_stat "$T/$fs.resume.json" bytes_shared) > 0)) || bad "$fs: the resumed checkout shared nothing"
    cmp -s "$out" "$T/clean.img" || bad "$fs: the resumed checkout differs from a clean export"
    vm_ok "$T/$fs.verify2" verify "$R" t "$out" -q

    info "$fs: a seed written to after its bytes were read, before they are shared"
    rm -f "$out"
    cp --reflink=never "$simg" "$mnt/seed2.img"
    write_seed_at_share "$T/$fs.race" "$mnt/seed2.img" checkout "$R" t -o "$out" --seed "$mnt/seed2.img" --force
    grep -q 'exited normally' "$T/$fs.race.gdb" ||
        bad "$fs: the checkout with a seed written to failed: $(tail -c 400 "$T/$fs.race.gdb")"
    grep -q 'a seed changed after it was read; rebuilding it from scratch' "$T/$fs.race.gdb" ||
        bad "$fs: the checkout did not notice the seed's change: $(tail -c 400 "$T/$fs.race.gdb")"
    cmp -s "$out" "$T/clean.img" || bad "$fs: the checkout with a seed written to differs from a clean export"
done
finish
