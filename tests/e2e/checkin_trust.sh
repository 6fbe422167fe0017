#!/usr/bin/env bash
# Check-in trusts a file whose inode details equal the checked-out version's,
# but only on that very filesystem.  Image A (mke2fs -d) is imported and
# checked out; image B is another mke2fs -d of a tree with the same paths,
# sizes and times but other bytes: mke2fs gives its files the same inode
# numbers, generation 0, and mtime and ctime from the source tree (seconds,
# set here with debugfs sif so that the two agree whatever the clock does).
# Checking B in under A's lease must record B: the export of the new version
# is B byte for byte, and nothing is trusted.  Then within one filesystem: a
# file of the checkout rewritten in place offline (debugfs write, same size,
# mtime set back) moves its ctime and is reread, the others are trusted; one
# written to other blocks with its mtime and ctime set back is reread for
# its extents.
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd mke2fs debugfs jq cmp

export VMSYNC_HOST=laptop-trust VMSYNC_CACHE=$T/cache
FILES=(one two three four)

# same_tree DIR: FILES with fresh random bytes, all of one size and mtime.
same_tree() {
    mkdir -p "$1"
    local f
    for f in "${FILES[@]}"; do head -c 6000 /dev/urandom >"$1/$f"; done
    touch -d '2024-01-02 03:04:05' "${FILES[@]/#/$1/}"
}

# fixed_ctimes IMAGE: every file's ctime set to one second, as mke2fs -d
# gives two trees made within the same second.
fixed_ctimes() {
    local f
    for f in "${FILES[@]}"; do
        debugfs -w -R "sif /$f ctime 20240102030405" "$1" >/dev/null 2>&1 || fail "debugfs sif on $1"
    done
}

make_image() {
    same_tree "$T/tree-$1"
    mke2fs -q -F -t ext4 -d "$T/tree-$1" "$T/$1.img" 8M >/dev/null 2>&1 || fail "mke2fs $1"
    fixed_ctimes "$T/$1.img"
}

# exported_is R NAME@V IMAGE WHAT: the export of NAME@V is IMAGE, and verifies.
exported_is() {
    vm_ok "$T/export-$4" export "$1" "$2" -o "$T/$4.export"
    cmp -s "$T/$4.export" "$3" || bad "$4: the export of $2 differs from the image checked in"
    vm_ok "$T/verify-$4" verify "$1" "$2" "$3"
}

R=$T/repo
vm_ok "$T/init" init "$R"
make_image a
make_image b
vm_ok "$T/import" import "$R" "$T/a.img" --name t
vm_ok "$T/co" checkout "$R" t -o "$T/work.img" -q

# Another filesystem with the same inode details: nothing of it is trusted.
vm_ok "$T/ci-b" checkin "$R" t "$T/b.img" -m other-fs --stats-json "$T/ci-b.json"
trusted=$(jget "$T/ci-b.json" .files_trusted)
info "another filesystem: files trusted $trusted, rehashed $(jget "$T/ci-b.json" .files_rehashed)"
((trusted == 0)) || bad "another filesystem: $trusted files trusted from A's manifest"
exported_is "$R" t@2 "$T/b.img" other-fs

# The same filesystem: only the file rewritten in place is reread.
vm_ok "$T/co2" checkout "$R" t -o "$T/work.img" -q
head -c 6000 /dev/urandom >"$T/new-two"
debugfs -w -R "rm /two" "$T/work.img" >/dev/null 2>&1 || fail "debugfs rm"
debugfs -w -R "write $T/new-two /two" "$T/work.img" >/dev/null 2>&1 || fail "debugfs write"
debugfs -w -R "sif /two mtime 20240102030405" "$T/work.img" >/dev/null 2>&1 || fail "debugfs sif mtime"
cp --sparse=always "$T/work.img" "$T/work.copy"
vm_ok "$T/ci-w" checkin "$R" t "$T/work.img" -m in-place --stats-json "$T/ci-w.json"
trusted=$(jget "$T/ci-w.json" .files_trusted)
rehashed=$(jget "$T/ci-w.json" .files_rehashed)
info "the same filesystem, one file rewritten: files trusted $trusted, rehashed $rehashed"
((trusted >= ${#FILES[@]} - 1)) || bad "the same filesystem: only $trusted files trusted"
((rehashed >= 1)) || bad "the same filesystem: the rewritten file was not reread"
exported_is "$R" t@3 "$T/work.copy" in-place

# An offline tool that also sets ctime back defeats the times; a file it
# wrote to other blocks is still reread: its extents moved.  debugfs writes
# the bytes as /x, gives /three that inode (copy_inode) and then the times.
vm_ok "$T/co3" checkout "$R" t -o "$T/work.img" -q
head -c 6000 /dev/urandom >"$T/new-three"
debugfs -w -f - "$T/work.img" >/dev/null 2>&1 <<DEBUGFS || fail "debugfs copy_inode"
write $T/new-three /x
copy_inode /x /three
unlink /x
sif /three mtime 20240102030405
sif /three ctime 20240102030405
DEBUGFS
cp --sparse=always "$T/work.img" "$T/work.copy"
vm_ok "$T/ci-m" checkin "$R" t "$T/work.img" -m moved --stats-json "$T/ci-m.json"
rehashed=$(jget "$T/ci-m.json" .files_rehashed)
info "the same filesystem, one file moved: files trusted $(jget "$T/ci-m.json" .files_trusted), rehashed $rehashed"
((rehashed >= 1)) || bad "the same filesystem: the moved file was not reread"
exported_is "$R" t@4 "$T/work.copy" moved

finish
