#!/usr/bin/env bash
# Damaged ext4 round trips: every block the filesystem's own structures use
# comes back, whatever the block bitmap says.  From one mke2fs -d image (1 KiB
# blocks, four groups), each case damages a copy with debugfs -w:
#   free-file, free-dir, free-itable, free-gdt-copy, free-extent-leaf: the
#     blocks of a file, of a directory (with its extent block), of group 0's
#     inode table, of group 1's superblock and descriptor copy (its bitmap made
#     all free), of a file's extent leaf are marked free (freeb);
#   past-eof: a file keeps its three blocks but its size is cut to 100 bytes;
#   unwritten: a file's extent is flagged unwritten over blocks holding data;
#   claims-gdt: a file's extent points at group 1's descriptor copy, past the
#     file's end (two claims on one block: metadata wins).
# Each is imported into a repository and exported.  The named blocks must be
# byte-equal in the export, every other block equal or zero where the layout
# leaves it unallocated or it is slack; e2fsck -fn prints the same on both, and
# debugfs rdump extracts the same tree.  Freed blocks cost a warning naming
# the filesystem.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/corpus.sh
source "$TESTS_LIB/corpus.sh"
need_vmsync
need_cmd mke2fs debugfs dumpe2fs e2fsck python3

tree=$T/tree
mkdir -p "$tree"
python3 - "$tree" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(8)
def w(rel, data):
    p = os.path.join(root, rel)
    os.makedirs(os.path.dirname(p), exist_ok=True)
    open(p, 'wb').write(data)
for i in range(5):
    w('docs/n%d.txt' % i, r.randbytes(3000 + 1000 * i))
for i in range(150):  # a directory of several blocks, with an extent block
    w('dir/entry-with-a-long-name-%03d' % i, b'x')
with open(os.path.join(root, 'frag'), 'wb') as f:  # 12 extents: a leaf block
    for k in range(12):
        f.seek(k * 8192)
        f.write(r.randbytes(1024))
for name, size in (('big', 200 << 10), ('eof', 3072), ('unw', 2048), ('gdt', 1024)):
    w(name, r.randbytes(size))
EOF
base=$T/base.img
mke2fs -q -F -t ext4 -b 1024 -E root_owner=0:0 -d "$tree" "$base" 32M >/dev/null 2>&1 ||
    fail "mke2fs -d failed"

dfs() { debugfs -R "$1" "$2" 2>/dev/null; }
# blocks IMAGE PATH: data blocks, one per line
blocks() { dfs "blocks $2" "$1" | tr ' ' '\n' | grep -E '^[0-9]+$'; }
# extent_blocks IMAGE PATH: the extent tree's own blocks (ETB)
extent_blocks() { dfs "stat $2" "$1" | grep -o '(ETB[0-9]*):[0-9]*' | cut -d: -f2; }
# group_field GROUP REGEX: "A" or "A-B" from dumpe2fs
group_field() {
    dumpe2fs "$base" 2>/dev/null | awk -v g="Group $1:" '$0 ~ "^"g {p=1; next} /^Group/ {p=0} p' |
        grep -oE "$2 [0-9]+(-[0-9]+)?" | head -1 | awk '{print $NF}'
}
range_list() { # A or A-B -> the block numbers
    local a=${1%-*} b=${1#*-}
    seq "$a" "$b"
}

itable=$(group_field 0 'Inode table at')
sb1=$(group_field 1 'Backup superblock at')
gdt1=$(group_field 1 'Group descriptors at')
[[ -n $itable && -n $sb1 && -n $gdt1 ]] || fail "cannot read the group layout with dumpe2fs"

# case NAME: damages $T/NAME.img and prints the blocks that must survive
damage() {
    local name=$1 img=$T/$1.img b list
    cp --sparse=always "$base" "$img"
    case $name in
    free-file) list=$(blocks "$img" /big) ;;
    free-dir) list=$(blocks "$img" /dir; extent_blocks "$img" /dir) ;;
    free-itable) list=$(range_list "$itable") ;;
    free-gdt-copy)
        list=$(range_list "$sb1"; range_list "$gdt1")
        # group 1 is BLOCK_UNINIT (its bitmap is computed, freeb cannot
        # change it): clearing the flag makes its zeroed bitmap the truth
        printf 'set_bg 1 flags 0\nset_bg 1 checksum calc\n' | debugfs -w -f - "$img" >/dev/null 2>&1 ;;
    free-extent-leaf) list=$(extent_blocks "$img" /frag) ;;
    past-eof)
        list=$(blocks "$img" /eof | tail -n +2) # the first block's tail is slack
        debugfs -w -R "sif /eof size 100" "$img" >/dev/null 2>&1 ;;
    unwritten)
        list=$(blocks "$img" /unw)
        # i_block[4] holds the first extent's length: above 32768 it is unwritten
        debugfs -w -R "sif /unw block[4] $((32768 + 2))" "$img" >/dev/null 2>&1 ;;
    claims-gdt)
        list=$(range_list "$gdt1")
        # i_block[5] is the first extent's start; size 0 puts it past the end
        debugfs -w -R "sif /gdt block[5] ${gdt1%-*}" "$img" >/dev/null 2>&1
        debugfs -w -R "sif /gdt size 0" "$img" >/dev/null 2>&1 ;;
    esac
    if [[ $name == free-* && $name != free-gdt-copy ]]; then
        for b in $list; do
            debugfs -w -R "freeb $b" "$img" >/dev/null 2>&1 || return 1
        done
    fi
    [[ -n $list ]] || return 1
    echo "$list"
}

# same_blocks A B BLOCKS...: the 1 KiB blocks are equal in both images
same_blocks() {
    python3 - "$@" <<'EOF'
import sys
a, b, blocks = sys.argv[1], sys.argv[2], [int(x) for x in sys.argv[3:]]
bad = []
with open(a, 'rb') as fa, open(b, 'rb') as fb:
    for n in blocks:
        fa.seek(n * 1024)
        fb.seek(n * 1024)
        x, y = fa.read(1024), fb.read(1024)
        if x != y:
            bad.append('%d%s' % (n, ' (zeros)' if not any(y) else ''))
if bad:
    print('%d of %d blocks differ: %s' % (len(bad), len(blocks), ' '.join(bad[:8])))
    sys.exit(1)
EOF
}

fsck_text() { # IMAGE: e2fsck -fn's output without the image name, and its status
    local rc=0 out
    out=$(e2fsck -fn "$1" 2>&1) || rc=$?
    sed "s#$1#IMG#g" <<<"$out"
    echo "status $rc"
}

tree_of() { # IMAGE DIR: debugfs rdump, listed with modes, sizes and hashes
    mkdir -p "$2"
    debugfs -R "rdump / $2" "$1" >/dev/null 2>&1 || true
    (cd "$2" && find . -mindepth 1 -printf '%y %m %s %l %p\n' | sort &&
        find . -type f -print0 | sort -z | xargs -0r sha256sum)
}

export VMSYNC_HOST=damaged-host
for name in free-file free-dir free-itable free-gdt-copy free-extent-leaf past-eof unwritten claims-gdt; do
    p=$T/$name
    list=$(damage "$name") || { bad "$name: cannot make the damaged image"; continue; }
    img=$p.img
    repo_dir=$p.repo
    vm_ok "$p.init" init "$repo_dir"
    vm "$p.imp" import "$repo_dir" "$img" --name "$name"
    ((VM_RC == 0)) || { bad "$name: import exited $VM_RC: $(head -c 300 "$p.imp.err")"; continue; }
    vm "$p.exp" export "$repo_dir" "$name" -o "$p.out"
    ((VM_RC == 0)) || { bad "$name: export exited $VM_RC: $(grep -v warning "$p.exp.err" | head -c 300)"; continue; }
    # shellcheck disable=SC2086
    why=$(same_blocks "$img" "$p.out" $list) || bad "$name: blocks the filesystem uses are lost: $why"
    vm_ok "$p.lay" manifest "$img" --json --layout
    why=$(corpus_cmp_layout "$img" "$p.out" "$p.lay.out") || bad "$name: export differs from the source: $why"
    [[ $(fsck_text "$img") == "$(fsck_text "$p.out")" ]] ||
        bad "$name: e2fsck -fn differs: $(diff <(fsck_text "$img") <(fsck_text "$p.out") | grep '^[<>]' | head -2 | tr '\n' ' ')"
    cmp -s <(tree_of "$img" "$p.t1") <(tree_of "$p.out" "$p.t2") ||
        bad "$name: debugfs rdump trees differ"
    if [[ $name == free-* ]] && ! grep -q 'filesystem (ext4): .* marked free in its bitmap' "$p.imp.err"; then
        bad "$name: no warning that used blocks are marked free: $(head -c 300 "$p.imp.err")"
    fi
    info "$name: $(wc -w <<<"$list") blocks checked; $(grep -c 'warning' "$p.imp.err") warnings"
    rm -rf "$repo_dir" "$p.t1" "$p.t2" "$p.out"
done
finish
