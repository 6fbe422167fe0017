#!/usr/bin/env bash
# The --layout map against the filesystems' own allocation bitmaps, read
# independently (dumpe2fs for ext, ntfscat of $Bitmap for NTFS): inside a
# filesystem the runs cover exactly the allocated blocks; outside, every
# non-zero 4 KiB block is covered; runs are sorted, disjoint, inside the image;
# zero runs read as zeros; single-run files hold their content at the offset.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd dumpe2fs ntfscat ntfsinfo

for name in ext4-gpt ext4-dos ext4-bare ext4-1k ext3-bare ntfs-gpt ntfs-dos; do
    image=$(img "$name") || fail "cannot build image $name"
    fs=$(img_info "$name" fs)
    start=$(img_info "$name" part_start)
    plen=$(img_info "$name" part_bytes)
    vm "$T/$name" manifest "$image" --json --layout
    if ((VM_RC != 0)); then
        bad "$name: vmsync manifest --json --layout exited $VM_RC: $(head -c 400 "$T/$name.err" | tr '\n' ' ')"
        continue
    fi
    json_ok "$T/$name.out" || { bad "$name: output is not JSON"; continue; }
    # the test's own copy of the filesystem, for the independent readers
    part="$T/$name.part"
    dd if="$image" of="$part" bs=1M iflag=skip_bytes,count_bytes skip="$start" count="$plen" \
        conv=sparse status=none
    python3 - "$T/$name.out" "$image" "$part" "$fs" "$start" "$name" <<'EOF' || FAILS=$((FAILS + 1))
import hashlib, os, sys
import vmtest as V
mpath, image, part, fs, start, name = sys.argv[1:]
start = int(start)
isize = os.path.getsize(image)
errs = []
m = V.load(mpath)
runs = V.check_layout_shape(m, isize, errs)
vol = V.the_fs_volume(m, fs, errs)
if vol is not None and runs:
    if fs == 'ext':
        unit, count, first, used = V.ext_bitmap(part)
        if vol.get('fs_length') != count * unit:
            errs.append('fs_length %r != blocks_count*block_size %d' % (vol.get('fs_length'), count * unit))
    else:
        unit, count, used = V.ntfs_bitmap(part)
        first = 0
        fl = vol.get('fs_length')
        if not isinstance(fl, int) or fl < count * unit or fl > vol.get('length', 0):
            errs.append('fs_length %r not within [clusters*cluster_size %d, partition length %r]' % (
                fl, count * unit, vol.get('length')))
    if vol.get('block_size') != unit:
        errs.append('block_size %r != %d' % (vol.get('block_size'), unit))
    n_used = V.compare_region_bitmap(runs, start, unit, first, count, used, errs,
                                     'inside the %s filesystem' % fs)
    region = (start + first * unit, start + count * unit)
    V.check_outside(runs, image, [region], isize, errs)
    V.check_zero_runs(runs, image, errs)
    # files: run bytes per entry, and content of single-run files
    entries = {e['seq']: e for e in vol.get('entries', [])}
    per = {}
    for r in runs:
        if r.get('kind') == 'file' and r.get('volume') == vol.get('index'):
            per.setdefault(r.get('entry'), []).append(r)
    badlen, badsha, nfiles = [], [], 0
    with open(image, 'rb') as f:
        for seq, rs in per.items():
            e = entries.get(seq)
            if e is None or e.get('type') != 'file':
                continue
            size = e.get('size', 0)
            tot = sum(r['length'] for r in rs)
            if fs == 'ext' and e.get('path') != '/sparse.bin' and tot != -(-size // unit) * unit:
                badlen.append('%s: runs %d bytes, size %d' % (e.get('path'), tot, size))
            if len(rs) == 1 and rs[0]['length'] >= size and e.get('sha256'):
                f.seek(rs[0]['offset'])
                if hashlib.sha256(f.read(size)).hexdigest() != e['sha256']:
                    badsha.append(e.get('path'))
                nfiles += 1
    if badlen:
        errs.append('%d files whose file runs do not add up to their allocation: %s' % (len(badlen), V.show(badlen, 5)))
    if badsha:
        errs.append('%d single-run files whose run bytes do not hash to the entry sha256: %s' % (len(badsha), V.show(badsha, 5)))
    big = [e for e in entries.values() if e.get('path') == '/big/random-20M.bin']
    if big and big[0]['seq'] not in per:
        errs.append('/big/random-20M.bin has no file runs')
    print('# %s: %d runs, %d allocated units of %d bytes, %d single-run files checked' % (
        name, len(runs), n_used, unit, nfiles))
sys.exit(V.report(errs, name + ': '))
EOF
    rm -f "$part"
done
finish
