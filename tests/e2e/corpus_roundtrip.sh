#!/usr/bin/env bash
# Round trips over the shared third-party corpus (damaged ext2/3/4 and NTFS).
# For each image: the manifest vmsync writes reads back (manifest show), and
# import into a repository is either refused with a documented status and one
# "vmsync: IMG: ..." line, or export of the recorded version succeeds and the
# rebuilt image equals the source on every block the source uses: each sector
# equal, or zeros where the layout leaves it unallocated or it is slack after a
# file's end.  Independent readers must agree too: for ext, `e2fsck -fn` prints
# the same on both and `debugfs rdump` extracts the same tree; where the source
# is clean (ext, e2fsck) or mounts (NTFS, ntfs-3g), the read-only mounted trees
# are equal.
#
# NTFS_KNOWN_LOSSES lists NTFS images whose losses the NTFS backend does not fix
# yet: they are reported as expected failures, and one that passes fails the
# test so that the list gets emptied.  Under a sanitizer build, images over
# VMSYNC_CORPUS_SAN_MAX bytes (default 1 GiB) are left to the plain build's
# run.  An entry a mounted damaged volume cannot stat is listed as unreadable
# on both sides rather than ending the listing.  Per-image results:
# $VMSYNC_TEST_LOGS/corpus_roundtrip.log.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/corpus.sh
source "$TESTS_LIB/corpus.sh"
# shellcheck source=tests/lib/repo.sh
source "$TESTS_LIB/repo.sh" # its exit trap undoes mounts and loop devices under $T
need_vmsync
need_cmd e2fsck debugfs python3 jq
corpus_available || skip "no corpus at $CORPUS"

NTFS_KNOWN_LOSSES=(
)

JOBS=${VMSYNC_JOBS:-2}
TMO=${VMSYNC_CORPUS_TIMEOUT:-120}
is_sanitized && TMO=${VMSYNC_CORPUS_TIMEOUT:-400}
LOG=${VMSYNC_TEST_LOGS:-$T}/corpus_roundtrip.log
mkdir -p "$(dirname "$LOG")" "$T/in" "$T/r"
# Under a sanitizer the few large sparse images (NTFS volumes of 8 to 34 GB
# whose files hold gigabytes of zeros) take many minutes each: the plain
# build's run covers them, and e2e/corpus parses them under the sanitizer.
max=0 limit=''
if is_sanitized; then
    max=${VMSYNC_CORPUS_SAN_MAX:-$((1 << 30))}
    limit=" (sanitizer build: none over $max bytes)"
fi
n=$(corpus_extract "$T/in" "$max")
info "extracted $n images from $CORPUS$limit"
((n > 0)) || skip "corpus is empty"
chmod a-w "$T"/in/*.img
can_mount=0
[[ $(id -u) == 0 ]] && can_mount=1

known_loss() {
    local k
    for k in "${NTFS_KNOWN_LOSSES[@]}"; do [[ $k == "$1" ]] && return 0; done
    return 1
}

run_vm() { # PREFIX ARGS...: like vm, with the corpus timeout; sets RC
    RC=0
    timeout -k 5 "$TMO" "$VMSYNC" "${@:2}" >"$1.out" 2>"$1.err" || RC=$?
}

# e2fsck -fn's verdict with the image name, addresses and e2fsck's own
# uninitialised figures taken out; "timeout" when it does not finish.
fsck_text() {
    local img=$1 txt=$2 rc=0
    timeout -k 5 60 e2fsck -fn "$img" >"$txt" 2>&1 || rc=$?
    ((rc == 124 || rc == 137)) && { echo timeout; return; }
    sed -e "s#$img#IMG#g" -e '/^Signal (/,$d' -e 's/should be [0-9]\{12,\}/should be N/' "$txt"
    echo "status $rc"
}

# debugfs rdump of the whole tree (files capped at 64 MiB), listed with types,
# modes, sizes, link targets and content hashes.
rdump_list() {
    local img=$1 dir=$2
    mkdir -p "$dir"
    (ulimit -f $((64 << 10)); timeout -k 5 60 debugfs -R "rdump / $dir" "$img" >/dev/null 2>&1) || true
    tree_list "$dir"
}

# tree_list DIR: every entry's type, mode, size, link target and the hash of
# its first 64 MiB (a damaged image can hold a sparse file of terabytes)
tree_list() {
    python3 - "$1" <<'PYEOF'
import hashlib, os, stat, sys
root = sys.argv[1]
out = []
for d, dirs, files in os.walk(root):
    for n in dirs + files:
        p = os.path.join(d, n)
        try:
            st = os.lstat(p)
        except OSError as e:  # a damaged volume's entry: listed, not fatal
            out.append('%s unreadable: %s' % (os.path.relpath(p, root).encode('utf-8', 'surrogateescape').hex(), e.strerror))
            continue
        line = '%o %d %s' % (st.st_mode, st.st_size, os.path.relpath(p, root).encode('utf-8', 'surrogateescape').hex())
        if stat.S_ISLNK(st.st_mode):
            line += ' -> ' + os.readlink(p).encode('utf-8', 'surrogateescape').hex()
        elif stat.S_ISREG(st.st_mode):
            try:
                with open(p, 'rb') as f:
                    line += ' ' + hashlib.sha256(f.read(64 << 20)).hexdigest()
            except OSError as e:
                line += ' unreadable: %s' % e.strerror
        out.append(line)
print('\n'.join(sorted(out)))
PYEOF
}

# mount_list IMAGE FS DIR: mounts read-only, lists, unmounts; non-zero when it
# does not mount
mount_list() {
    local img=$1 fs=$2 dir=$3 dev rc=0
    mkdir -p "$dir"
    if [[ $fs == ext ]]; then
        dev=$(losetup -r -f --show "$img") || return 1
        mount -t ext4 -o ro,noload "$dev" "$dir" 2>/dev/null || { losetup -d "$dev"; return 1; }
    else
        timeout 60 ntfs-3g -o ro "$img" "$dir" 2>/dev/null || return 1
    fi
    timeout 120 bash -c "$(declare -f tree_list); tree_list '$dir'" || rc=1
    repo_umount "$dir"
    [[ -n ${dev:-} ]] && repo_unloop "$dev"
    return $rc
}

# Compares what independent readers see in the source and the export; prints
# what differs.
compare_readers() {
    local img=$1 out=$2 p=$3 fs=$4 a b
    if [[ $fs == ext ]]; then
        a=$(fsck_text "$img" "$p.fsck-src")
        if [[ $a != timeout ]]; then
            b=$(fsck_text "$out" "$p.fsck-out")
            [[ $a == "$b" ]] || { echo "e2fsck -fn differs: $(diff <(echo "$a") <(echo "$b") | sed -n 2,3p | tr '\n' ' ' | cut -c1-160)"; return; }
        fi
        # debugfs itself dumps memory for some damaged inodes: only a tree it
        # extracts the same way twice is compared
        rdump_list "$img" "$p.rd-src" >"$p.rd-src.list"
        rdump_list "$img" "$p.rd-again" >"$p.rd-again.list"
        rdump_list "$out" "$p.rd-out" >"$p.rd-out.list"
        chmod -R u+w "$p".rd-* 2>/dev/null
        rm -rf "$p.rd-src" "$p.rd-again" "$p.rd-out"
        if cmp -s "$p.rd-src.list" "$p.rd-again.list" && ! cmp -s "$p.rd-src.list" "$p.rd-out.list"; then
            echo "debugfs rdump trees differ: $(diff "$p.rd-src.list" "$p.rd-out.list" | grep '^[<>]' | head -2 | tr '\n' ' ' | cut -c1-160)"
            return
        fi
        # the kernel mounts only what e2fsck calls clean: no damaged image meets the kernel
        [[ ${a##*status } == 0 ]] || return 0
    fi
    ((can_mount)) || return 0
    mount_list "$img" "$fs" "$p.mnt" >"$p.m-src.list" || return 0
    mount_list "$out" "$fs" "$p.mnt" >"$p.m-out.list" || { echo "the source mounts, the export does not"; return; }
    cmp -s "$p.m-src.list" "$p.m-out.list" ||
        echo "mounted trees differ: $(diff "$p.m-src.list" "$p.m-out.list" | grep '^[<>]' | head -2 | tr '\n' ' ' | cut -c1-160)"
}

# Sets REASON (empty: the image passed) and NOTE.
round_trip() {
    local img=$1 p=$2 name=$3 fs=$4
    REASON='' NOTE=''
    run_vm "$p.man" manifest "$img" -o "$p.vmm"
    if ((RC == 0)); then
        run_vm "$p.show" manifest show "$p.vmm" --json --layout
        ((RC == 0)) || { REASON="the manifest written does not read back ($RC): $(head -c 160 "$p.show.err")"; return; }
    fi
    "$VMSYNC" init "$p.repo" >/dev/null 2>&1 || { REASON="vmsync init failed"; return; }
    run_vm "$p.imp" import "$p.repo" "$img" --name img
    if ((RC != 0)); then
        if ((RC < 3 || RC > 6)); then
            REASON="import exited $RC: $(head -c 160 "$p.imp.err" | tr '\n' ' ')"
        elif ! REASON=$(one_error_line "$p.imp" "$img"); then
            :
        else
            NOTE="refused ($RC): $(grep -v '^vmsync: warning: ' "$p.imp.err" | head -1 | cut -c1-120)"
        fi
        return
    fi
    [[ -s $p.show.out ]] || { REASON="import recorded what manifest refused ($(head -c 120 "$p.man.err"))"; return; }
    run_vm "$p.exp" export "$p.repo" img -o "$p.img"
    ((RC == 0)) || { REASON="import recorded a version that export refuses ($RC): $(grep -v warning "$p.exp.err" | head -1 | cut -c1-160)"; return; }
    REASON=$(corpus_cmp_layout "$img" "$p.img" "$p.show.out") || { REASON="blocks lost: $REASON"; return; }
    REASON=$(compare_readers "$img" "$p.img" "$p" "$fs")
}

run_one() {
    local img=$1 name fs p t0=$EPOCHREALTIME res
    name=$(basename "$img" .img)
    fs=${name%%-*}
    [[ $fs == e2fs ]] && fs=ext
    p="$T/r/$name"
    round_trip "$img" "$p" "$name" "$fs"
    local secs
    secs=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    if [[ -z $REASON ]]; then
        res=PASS
        known_loss "$name" && res="XPASS (in NTFS_KNOWN_LOSSES: remove it)"
        printf '%s %s %ss %s\n' "$res" "$name" "$secs" "$NOTE" >"$p.res"
    else
        res=FAIL
        known_loss "$name" && res=XFAIL
        printf '%s %s %ss %s\n' "$res" "$name" "$secs" "$REASON" >"$p.res"
    fi
    chmod -R u+w "$p.repo" 2>/dev/null
    rm -rf "$p.repo" "$p.img" "$p.vmm" "$p.show.out" "$p".*.list "$p".fsck-*
}

corpus_each "$JOBS" run_one "$T"/in/*.img

cat "$T"/r/*.res >"$LOG"
cat "$LOG"
total=$(wc -l <"$LOG")
npass=$(grep -c '^PASS' "$LOG" || true)
nref=$(grep -c '^PASS .* refused' "$LOG" || true)
nxfail=$(grep -c '^XFAIL' "$LOG" || true)
info "corpus round trip: $total images, $npass pass ($nref of them refused at import), $nxfail expected NTFS failures; log $LOG"
while read -r line; do
    bad "$line"
done < <(grep -E '^(FAIL|XPASS)' "$LOG" | cut -c1-300)
finish
