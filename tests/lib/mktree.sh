#!/usr/bin/env bash
# Builds the deterministic reference trees used by the end-to-end tests.
#
#   tests/lib/mktree.sh [--ext] [--small] DIR
#
# DIR must not exist (or be empty).  --ext adds the ext-only extras (fifo, device
# nodes, socket, xattrs, odd owners); NTFS images made through wimlib cannot hold
# those, so they are kept out of the common tree.  --small makes the "many"
# directory hold 200 files instead of 20,000 (used by the diff trees).
#
# The script can also be sourced: it then only defines mktree_common,
# mktree_ext_extras and mktree_diff_b.

# Fixed timestamp for every path (2021-01-01T00:00:00Z) so the tree is identical
# on every run.
MKTREE_EPOCH=1609459200

# The long symlink target (> 60 bytes, so ext4 stores it in a block, not inline).
MKTREE_LONG_TARGET='./dir1/../dir1/dir2/../dir2/dir3/../dir3/./deep-file-with-a-long-name.txt'

# mktree_common DIR [NMANY]
mktree_common() {
    local d=$1 nmany=${2:-20000}
    mkdir -p "$d"
    python3 - "$d" "$nmany" <<'EOF'
import os, random, sys
root, nmany = sys.argv[1], int(sys.argv[2])
def w(rel, data, mode=0o644):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    with open(p, 'wb') as f:
        f.write(data)
    os.chmod(p, mode)
# nested directories
w('dir1/dir2/dir3/deep-file-with-a-long-name.txt', b'deep file\n' * 10)
w('dir1/dir2/mid.txt', b'middle\n')
w('dir1/top.txt', b'top\n' * 1000)
os.makedirs(os.path.join(root, 'dir1/dir2/dir3/dir4/dir5/dir6'), exist_ok=True)
w('dir1/dir2/dir3/dir4/dir5/dir6/bottom.bin', bytes(range(256)) * 17)
os.makedirs(os.path.join(root, 'emptydir'), exist_ok=True)
# empty files
w('empty', b'')
w('dir1/empty2', b'')
# exact block sizes and neighbours
r = random.Random(4096)
w('blocks/exact4096.bin', bytes(r.getrandbits(8) for _ in range(4096)))
w('blocks/exact8192.bin', bytes(r.getrandbits(8) for _ in range(8192)))
w('blocks/size4095.bin', bytes(r.getrandbits(8) for _ in range(4095)))
w('blocks/size4097.bin', bytes(r.getrandbits(8) for _ in range(4097)))
w('blocks/one-byte', b'x')
w('blocks/zeros-64k.bin', b'\0' * 65536)
# 20 MB of deterministic random data
r = random.Random(20240501)
w('big/random-20M.bin', r.randbytes(20 * 1000 * 1000))
# a 1.5 MiB file (crosses the chunking threshold)
w('big/medium-1536k.bin', random.Random(1536).randbytes(1536 * 1024))
# names
w('names/name with spaces.txt', b'spaces\n')
w('names/caf\u00e9.txt', b'cafe with e-acute (NFC)\n')
w('names/\u65e5\u672c\u8a9e.txt', b'nihongo\n')
w('names/emoji \U0001F600 smile.txt', b'emoji\n')
w('names/-leading-dash', b'dash\n')
w('names/.hidden', b'hidden\n')
w('names/..double-dot-prefix', b'dots\n')
w('names/\u00fcn\u00efc\u00f6d\u00e9 dir/\u65e5\u672c\u8a9e/inner file.txt', b'inner\n')
w('names/' + 'L' * 255, b'max length name\n')
for n in ['a-b', 'a.b', 'a b', 'a_b', 'ab', 'A', 'B', 'a~', 'Z-last']:
    w('sort/' + n, ('sort ' + n + '\n').encode())
# modes
w('modes/private', b'private\n', 0o600)
w('modes/exec.sh', b'#!/bin/sh\necho hi\n', 0o755)
w('modes/readonly', b'ro\n', 0o444)
# hard-link sources (links made by the shell part)
w('links/hl2-a', b'two links\n')
w('links/hl3-a', b'three links\n' * 500)
w('links/target.txt', b'symlink target\n')
# the many-files directory
many = os.path.join(root, 'many')
os.makedirs(many, exist_ok=True)
for i in range(nmany):
    with open(os.path.join(many, 'f%05d.txt' % i), 'wb') as f:
        f.write(b'small file %d\n' % i)
EOF
    # a sparse file: 10 MiB, a few blocks written in the middle
    truncate -s 10M "$d/sparse.bin"
    printf 'sparse block one' | dd of="$d/sparse.bin" bs=4096 seek=700 conv=notrunc status=none
    head -c 8192 "$d/blocks/exact8192.bin" | dd of="$d/sparse.bin" bs=4096 seek=1300 conv=notrunc status=none
    printf 'unaligned' | dd of="$d/sparse.bin" bs=1 seek=$((5 * 1048576 + 123)) conv=notrunc status=none
    # hard links: 2 and 3 links, across directories
    ln "$d/links/hl2-a" "$d/links/hl2-b"
    ln "$d/links/hl3-a" "$d/links/hl3-b"
    ln "$d/links/hl3-a" "$d/dir1/hl3-c"
    # symlinks: fast, long, dangling, to a directory
    ln -s target.txt "$d/links/sym-short"
    ln -s "$MKTREE_LONG_TARGET" "$d/sym-long"
    ln -s does/not/exist "$d/links/sym-dangling"
    ln -s ../dir1/dir2 "$d/links/sym-dir"
    mktree_fix_times "$d"
}

# Ext-only extras: fifo, character and block devices, a socket, xattrs, owners.
mktree_ext_extras() {
    local d=$1
    mkdir -p "$d/special"
    mkfifo "$d/special/fifo"
    mknod "$d/special/chr-null" c 1 3
    mknod "$d/special/blk-loop" b 7 0
    python3 - "$d" <<'EOF'
import os, socket, sys
root = sys.argv[1]
s = socket.socket(socket.AF_UNIX)
s.bind(os.path.join(root, 'special/sock'))
s.close()
p = os.path.join(root, 'special/xattr-file')
with open(p, 'wb') as f:
    f.write(b'has xattrs\n')
os.setxattr(p, 'user.vmsync', b'test-value')
os.setxattr(p, 'user.big', b'v' * 300)
p = os.path.join(root, 'special/owned')
with open(p, 'wb') as f:
    f.write(b'owned by 1234:5678\n')
os.chown(p, 1234, 5678)
os.chmod(p, 0o640)
EOF
    mktree_fix_times "$d"
}

# Sets every timestamp in DIR to the fixed epoch (symlinks themselves too).
mktree_fix_times() {
    find "$1" -depth -exec touch -h -d "@$MKTREE_EPOCH" {} +
}

# mktree_diff_b A B: makes tree B from tree A with known changes (see
# tests/e2e/diff.sh for the expected result).  A must be a --small tree.
mktree_diff_b() {
    local a=$1 b=$2
    cp -a "$a" "$b"
    # 3 added
    printf 'added one\n' >"$b/added-1.txt"
    printf 'added two\n' >"$b/dir1/added-2.txt"
    mkdir -p "$b/newdir"
    printf 'added three\n' >"$b/newdir/added-3.txt"
    # 2 removed
    rm "$b/blocks/one-byte" "$b/names/.hidden"
    # 2 content-changed: one same size, one different size
    printf 'TOP\n' | dd of="$b/dir1/top.txt" bs=1 seek=0 conv=notrunc status=none
    printf 'middle changed and longer\n' >"$b/dir1/dir2/mid.txt"
    # 2 moved into another directory, same content
    mv "$b/blocks/size4095.bin" "$b/dir1/dir2/size4095.bin"
    mv "$b/big/medium-1536k.bin" "$b/blocks/medium-1536k.bin"
    # a directory renamed (dir5 holds only dir6, which holds bottom.bin): the
    # file and both directories count as moved
    mv "$b/dir1/dir2/dir3/dir4/dir5" "$b/dir1/dir2/dir3/dir4/dir5-renamed"
    mktree_fix_times "$b"
}

if [[ ${BASH_SOURCE[0]} == "$0" ]]; then
    set -euo pipefail
    ext=0 small=0
    while [[ $# -gt 1 ]]; do
        case $1 in
        --ext) ext=1 ;;
        --small) small=1 ;;
        *) echo "usage: $0 [--ext] [--small] DIR" >&2; exit 2 ;;
        esac
        shift
    done
    [[ $# -eq 1 ]] || { echo "usage: $0 [--ext] [--small] DIR" >&2; exit 2; }
    if [[ $small == 1 ]]; then mktree_common "$1" 200; else mktree_common "$1"; fi
    if [[ $ext == 1 ]]; then mktree_ext_extras "$1"; fi
fi
