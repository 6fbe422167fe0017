#!/usr/bin/env bash
# NTFS volumes whose $Bitmap and MFT disagree lose nothing in a round trip
# (import, export).  One image holds four kinds of damage:
#   - $Bitmap marks free the index blocks (INDX) of a directory of 1000 files;
#   - ... and the data clusters of a file;
#   - a file's initialized size ends two clusters in, before its data does,
#     and the clusters past it still hold bytes;
#   - pagefile.sys (volatile: zero-filled by default) has its run moved onto
#     the directory's first index block.
# The exported image must list the same tree with the same file hashes, and
# equal the source in every cluster that the source's MFT records or its
# $Bitmap say is used (read by tests/lib/ntfsmap.py, not by libntfs-3g).
# A second image has an MFT record torn by an interrupted write: the MFT then
# cannot be trusted, and a free cluster holding bytes must survive too.  In a
# third, $MFT's data size is cut short before the record of a file whose
# clusters $Bitmap calls free: they must survive as well.  In a fourth, a
# deleted record that $MFT's bitmap still marks used is damaged: that alone
# does not make the MFT untrusted.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/mktree.sh
source "$TESTS_LIB/mktree.sh"
# shellcheck source=tests/lib/mkimage.sh
source "$TESTS_LIB/mkimage.sh"
need_vmsync
need_cmd mkntfs wimlib-imagex ntfsls ntfscp

tree="$T/tree"
python3 - "$tree" <<'EOF'
import os, random, sys
root = sys.argv[1]
r = random.Random(8)
os.makedirs(root + '/many')
os.makedirs(root + '/data')
for i in range(1000):
    with open(root + '/many/entry-with-a-longer-name-%04d.txt' % i, 'w') as f:
        f.write('entry %d\n' % i)
for name, size in (('blob.bin', 300000), ('prealloc.bin', 65536), ('keep.bin', 40000)):
    with open(root + '/data/' + name, 'wb') as f:
        f.write(r.randbytes(size))
with open(root + '/../pagefile.sys', 'wb') as f:
    f.write(r.randbytes(4096))
EOF
mktree_fix_times "$tree"
base="$T/base.img" clean="$T/clean.img"
mkimg_ntfs_part "$base" $((32 << 20)) "$tree" 0 || fail "cannot make the NTFS image"
cp --sparse=always "$base" "$clean"
# wimlib leaves pagefile.sys out of what it applies
ntfscp -q "$clean" "$T/pagefile.sys" /pagefile.sys || fail "ntfscp cannot add pagefile.sys"

map() { python3 -m ntfsmap "$@"; }

# A clean volume: no disagreement to report.
vm_ok "$T/clean" manifest "$clean" -o "$T/clean.vmm"
if grep -qE 'Bitmap marks|cannot be walked|shares clusters' "$T/clean.err"; then
    bad "a clean volume gets a warning: $(head -c 300 "$T/clean.err")"
fi

src="$T/src.img"
cp --sparse=always "$clean" "$src"
many=$(map lookup "$src" /many)
indx=$(map runs "$src" "$many" a0 | head -1 | cut -d' ' -f1)
[[ -n $indx ]] || fail "/many has no index allocation: the test tree is too small"
map free "$src" "$many" a0 >/dev/null
map free "$src" "$(map lookup "$src" /data/blob.bin)" 80 >/dev/null
map set-init "$src" /data/prealloc.bin 8192
map point "$src" /pagefile.sys "$indx"
info "/many (record $many) has its first index block at cluster $indx"

# roundtrip IMAGE LABEL: import into a new repository and export to $T/LABEL.out.img
roundtrip() {
    local image=$1 label=$2
    vm_ok "$T/$label.init" init "$T/$label.repo"
    vm_ok "$T/$label.import" import "$T/$label.repo" "$image" --name "$label"
    vm_ok "$T/$label.export" export "$T/$label.repo" "$label" -o "$T/$label.out.img"
}

# same_tree A B: the same names, types and file hashes, as vmsync and as ntfsls list them
same_tree() {
    local a=$1 b=$2 side
    for side in a b; do
        local img=${!side}
        vm_ok "$T/tree-$side" manifest "$img" --json
        jq -r '.volumes[].entries[] | [.path, .type, (.sha256 // "")] | @tsv' "$T/tree-$side.out" |
            sort >"$T/tree-$side.list"
        ntfsls -R -a -l "$img" 2>&1 | sort >"$T/ls-$side.list"
    done
    [[ $(grep -c '^/many/' "$T/tree-a.list") == 1000 ]] ||
        bad "the source manifest lists $(grep -c '^/many/' "$T/tree-a.list") of 1000 files in /many"
    diff -q "$T/tree-a.list" "$T/tree-b.list" >/dev/null ||
        bad "the exported image's files differ: $(diff "$T/tree-a.list" "$T/tree-b.list" | grep -c '^[<>]') lines, $(diff "$T/tree-a.list" "$T/tree-b.list" | head -4 | tr '\n' '|')"
    diff -q "$T/ls-a.list" "$T/ls-b.list" >/dev/null ||
        bad "ntfsls -R lists the two images differently: $(diff "$T/ls-a.list" "$T/ls-b.list" | head -4 | tr '\n' '|')"
}

roundtrip "$src" damaged
grep -q 'filesystem (ntfs): \$Bitmap marks [0-9]* clusters free' "$T/damaged.import.err" ||
    bad "import does not warn, naming the volume, that \$Bitmap disagrees: $(head -c 300 "$T/damaged.import.err")"
grep -q '/pagefile.sys: ntfs: data stream (unnamed) shares clusters' "$T/damaged.import.err" ||
    bad "import does not warn that pagefile.sys shares the index's clusters: $(head -c 300 "$T/damaged.import.err")"
same_tree "$src" "$T/damaged.out.img"
diffs=$(map compare "$src" "$T/damaged.out.img") || bad "used clusters differ after the round trip: $diffs"
vm "$T/damaged.verify" verify "$T/damaged.repo" damaged "$T/damaged.out.img"
((VM_RC == 0)) || bad "verify of the exported image exited $VM_RC"

# The torn record: every cluster is kept, free ones holding bytes too.  (No
# pagefile.sys here: its clusters are zero-filled, as they should be.)
torn="$T/torn.img"
cp --sparse=always "$base" "$torn"
map tear "$torn" /data/keep.bin
junk=$(( $(stat -c %s "$torn") / 4096 - 64 ))
map used "$torn" lenient | awk -v j="$junk" '$1 <= j && j < $1 + $2 { exit 1 }' ||
    fail "cluster $junk of the test image is in use; pick another"
head -c 4096 /dev/urandom | dd of="$torn" bs=4096 seek="$junk" conv=notrunc status=none
roundtrip "$torn" torn
grep -q 'filesystem (ntfs): the MFT cannot be walked (MFT record [0-9]*: its update sequence does not match' "$T/torn.import.err" ||
    bad "import does not say that the torn MFT cannot be walked: $(head -c 300 "$T/torn.import.err")"
cmp -s <(dd if="$torn" bs=4096 skip="$junk" count=1 status=none) \
    <(dd if="$T/torn.out.img" bs=4096 skip="$junk" count=1 status=none) ||
    bad "a free cluster of the volume whose MFT cannot be walked is lost"
diffs=$(map compare "$torn" "$T/torn.out.img" lenient) || bad "torn: used clusters differ: $diffs"

# A record past the end of $MFT's data, in its clusters.
cut="$T/cut.img"
cp --sparse=always "$base" "$cut"
ntfscp -q "$cut" "$tree/data/blob.bin" /last.bin || fail "ntfscp cannot add /last.bin"
last=$(map lookup "$cut" /last.bin)
map free "$cut" "$last" 80 >/dev/null
map cut-mft "$cut" "$last"
roundtrip "$cut" cut
diffs=$(map compare "$cut" "$T/cut.out.img") ||
    bad "the clusters of a record past the end of \$MFT's data are lost: $diffs"

# A damaged record that its header calls free.
wiped="$T/wiped.img"
cp --sparse=always "$base" "$wiped"
map wipe "$wiped" /data/keep.bin
roundtrip "$wiped" wiped
if grep -q 'cannot be walked' "$T/wiped.import.err"; then
    bad "a deleted, damaged record makes the MFT untrusted: $(grep 'cannot be walked' "$T/wiped.import.err")"
fi
diffs=$(map compare "$wiped" "$T/wiped.out.img") || bad "wiped: used clusters differ: $diffs"
finish
