#!/usr/bin/env bash
# Every file of the reference tree is in the manifest with the right hash, type,
# size, symlink target, hard-link grouping; nothing is missing or extra.
# Images: ext4 in GPT, ext4 in MBR, bare ext4 (1 KiB blocks), NTFS in GPT and MBR.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex sfdisk

for name in ext4-gpt ext4-dos ext4-bare ext4-1k ext3-bare ntfs-gpt ntfs-dos; do
    image=$(img "$name") || fail "cannot build image $name"
    fs=$(img_info "$name" fs)
    info "$name: $(stat -c %s "$image") bytes, fs=$fs"
    vm "$T/$name" manifest "$image" --json
    if ((VM_RC != 0)); then
        bad "$name: vmsync manifest exited $VM_RC: $(head -c 400 "$T/$name.err" | tr '\n' ' ')"
        continue
    fi
    if [[ -s $T/$name.err ]]; then
        bad "$name: stderr not empty for a clean image: $(head -c 300 "$T/$name.err" | tr '\n' '|')"
    fi
    python3 - "$T/$name.out" "$(srctree "$(img_info "$name" tree)")" "$fs" "$name" \
        "$(img_info "$name" table)" "$(img_info "$name" part_start)" "$(img_info "$name" part_bytes)" \
        "$(img_info "$name" block_size)" "$(stat -c %s "$image")" "$(img_info "$name" fs_type)" <<'EOF' || FAILS=$((FAILS + 1))
import sys
import vmtest as V
mpath, root, fs, name, table, start, plen, bs, isize, want_fs_type = sys.argv[1:]
start, plen, bs, isize = int(start), int(plen), int(bs), int(isize)
errs = []
m = V.load(mpath)
V.check_manifest_shape(m, errs)
img = m.get('image', {})
if img.get('size') != isize:
    errs.append('image.size %r != %d' % (img.get('size'), isize))
if img.get('format') != 'raw':
    errs.append('image.format %r != raw' % img.get('format'))
if img.get('table') != table:
    errs.append('image.table %r != %s' % (img.get('table'), table))
if m.get('warnings'):
    errs.append('warnings for a clean image: %s' % V.show([w.get('message') for w in m['warnings']], 5))
vol = V.the_fs_volume(m, fs, errs)
if vol is not None:
    if vol.get('start') != start:
        errs.append('volume start %r != %d' % (vol.get('start'), start))
    if vol.get('length') != plen:
        errs.append('volume length %r != %d' % (vol.get('length'), plen))
    if vol.get('block_size') != bs:
        errs.append('volume block_size %r != %d' % (vol.get('block_size'), bs))
    if vol.get('label') != 'vmsync-test':
        errs.append('volume label %r != vmsync-test' % vol.get('label'))
    if vol.get('fs_type') != want_fs_type:
        errs.append('volume fs_type %r != %s' % (vol.get('fs_type'), want_fs_type))
    if table == 'none' and vol.get('index') != 0:
        errs.append('bare filesystem volume index %r != 0' % vol.get('index'))
    if table != 'none' and vol.get('index') != 1:
        errs.append('volume index %r != 1' % vol.get('index'))
    tree = V.scan_tree_cached(root)
    extra = ('/lost+found',) if fs == 'ext' else ()
    by = V.compare_tree(vol, tree, fs, errs, extra)
    # spot checks, so that a failure says plainly what broke
    many = [p for p in by if p.startswith('/many/')]
    if len(many) != sum(1 for p in tree if p.startswith('/many/')):
        errs.append('/many holds %d entries in the manifest, %d in the tree' % (
            len(many), sum(1 for p in tree if p.startswith('/many/'))))
    for p in ('/sparse.bin', '/blocks/exact4096.bin', '/big/random-20M.bin',
              '/names/emoji \U0001F600 smile.txt', '/names/\u65e5\u672c\u8a9e.txt',
              '/names/caf\u00e9.txt', '/names/-leading-dash', '/sort/a b', '/sym-long'):
        e = by.get(p)
        t = tree[p]
        if e is None:
            errs.append('%s missing' % p)
        elif t['type'] == 'file' and (e.get('sha256') != t['sha256'] or e.get('size') != t['size']):
            errs.append('%s: size %r sha256 %r, want %d %s' % (p, e.get('size'), e.get('sha256'), t['size'], t['sha256']))
    if fs == 'ext':
        for p, t in (('/special/fifo', 'fifo'), ('/special/chr-null', 'chr'),
                     ('/special/blk-loop', 'blk'), ('/special/sock', 'sock')):
            if by.get(p, {}).get('type') != t:
                errs.append('%s: type %r != %s' % (p, by.get(p, {}).get('type'), t))
    # other volumes (the junk partition) hold no entries
    for v in m.get('volumes', []):
        if v is not vol and v.get('entries'):
            errs.append('volume %r (fs %r) lists %d entries' % (v.get('index'), v.get('fs'), len(v['entries'])))
    info = '%d entries' % len(vol.get('entries', []))
    print('# %s: %s' % (name, info))
sys.exit(V.report(errs, name + ': '))
EOF
done
finish
