"""Python helpers for the vmsync end-to-end tests (imported from heredocs).

Everything here reads files and returns lists of problems (strings); the shell
side prints them as FAIL lines.
"""
import hashlib
import json
import os
import re
import stat
import subprocess

MAX_SHOWN = 12

ENTRY_TYPES = {'file', 'dir', 'symlink', 'chr', 'blk', 'fifo', 'sock'}
LAYOUT_KINDS = {'file', 'raw', 'zero'}


def load(path):
    with open(path, 'rb') as f:
        return json.loads(f.read().decode('utf-8'))


def show(items, n=MAX_SHOWN):
    items = sorted(items, key=str)
    s = ', '.join(repr(i) for i in items[:n])
    if len(items) > n:
        s += ', ... (%d in all)' % len(items)
    return s


def sha256_file(path):
    h = hashlib.sha256()
    with open(path, 'rb') as f:
        while True:
            b = f.read(1 << 20)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


# ---- source trees ---------------------------------------------------------

def _type_of(mode):
    if stat.S_ISREG(mode):
        return 'file'
    if stat.S_ISDIR(mode):
        return 'dir'
    if stat.S_ISLNK(mode):
        return 'symlink'
    if stat.S_ISCHR(mode):
        return 'chr'
    if stat.S_ISBLK(mode):
        return 'blk'
    if stat.S_ISFIFO(mode):
        return 'fifo'
    if stat.S_ISSOCK(mode):
        return 'sock'
    return '?'


def scan_tree(root):
    """Returns {"/rel/path": info} for everything below ROOT (ROOT excluded)."""
    out = {}
    root = os.path.abspath(root)

    def walk(d, rel):
        with os.scandir(d) as it:
            for de in it:
                p = rel + '/' + de.name
                st = os.lstat(de.path)
                t = _type_of(st.st_mode)
                info = {'type': t, 'perm': stat.S_IMODE(st.st_mode), 'uid': st.st_uid,
                        'gid': st.st_gid, 'nlink': st.st_nlink,
                        'key': (st.st_dev, st.st_ino), 'size': st.st_size,
                        'mtime': '%d.%09d' % divmod(st.st_mtime_ns, 10**9)}
                if t == 'file':
                    info['sha256'] = sha256_file(de.path)
                    try:
                        info['xattrs'] = {n: len(os.getxattr(de.path, n, follow_symlinks=False))
                                          for n in os.listxattr(de.path, follow_symlinks=False)}
                    except OSError:
                        info['xattrs'] = {}
                elif t == 'symlink':
                    info['target'] = os.readlink(de.path)
                out[p] = info
                if t == 'dir':
                    walk(de.path, p)
    walk(root, '')
    return out


def scan_tree_cached(root):
    """scan_tree, saved beside ROOT (ROOT.scan.json) for the rest of the run:
    the cached trees never change within a run."""
    cache = os.path.abspath(root).rstrip('/') + '.scan.json'
    try:
        with open(cache, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        pass
    tree = scan_tree(root)
    tmp = '%s.%d.tmp' % (cache, os.getpid())
    with open(tmp, 'w', encoding='utf-8') as f:
        json.dump(tree, f)
    os.replace(tmp, cache)
    return tree


def hardlink_groups(tree):
    groups = {}
    for p, i in tree.items():
        if i['type'] == 'file' and i['nlink'] > 1:
            groups.setdefault(tuple(i['key']), []).append(p)
    return [sorted(g) for g in groups.values()]


# ---- manifests --------------------------------------------------------------

def fs_volumes(m, fs):
    return [v for v in m.get('volumes', []) if v.get('fs') == fs]


def the_fs_volume(m, fs, errs):
    vols = fs_volumes(m, fs)
    if len(vols) != 1:
        errs.append('expected exactly one volume with fs=%s, got %d (volumes: %s)' % (
            fs, len(vols), [(v.get('index'), v.get('fs'), v.get('start')) for v in m.get('volumes', [])]))
        return None
    return vols[0]


def entries_by_path(vol, errs):
    by = {}
    dups = set()
    for e in vol.get('entries', []):
        p = e.get('path')
        if p in by:
            dups.add(p)
        by[p] = e
    if dups:
        errs.append('duplicate entry paths: ' + show(dups))
    return by


def check_manifest_shape(m, errs):
    """Checks the stable top-level JSON shape."""
    if m.get('format') != 'vmsync-manifest':
        errs.append('format is %r' % m.get('format'))
    if m.get('version') != 1:
        errs.append('version is %r' % m.get('version'))
    for k in ('image', 'volumes', 'warnings', 'summary', 'digest'):
        if k not in m:
            errs.append('top-level key %r missing' % k)
    d = m.get('digest', '')
    if not (isinstance(d, str) and re.fullmatch(r'[0-9a-f]{64}', d)):
        errs.append('digest is not 64 hex digits: %r' % (d,))
    seqs = []
    n = 0
    for v in m.get('volumes', []):
        for e in v.get('entries', []):
            n += 1
            seqs.append(e.get('seq'))
            t = e.get('type')
            if t not in ENTRY_TYPES:
                errs.append('entry %r has type %r' % (e.get('path'), t))
            p = e.get('path')
            if not isinstance(p, str) or not p.startswith('/'):
                errs.append('entry path %r does not start with /' % (p,))
            s = e.get('sha256')
            if s is not None and not re.fullmatch(r'[0-9a-f]{64}', s):
                errs.append('entry %r sha256 %r is not hex' % (p, s))
            mt = e.get('mtime')
            if mt is not None and not re.fullmatch(r'-?[0-9]+\.[0-9]{9}', str(mt)):
                errs.append('entry %r mtime %r is not SEC.NSEC' % (p, mt))
    if len(set(seqs)) != len(seqs):
        errs.append('entry seq numbers are not unique')
    summ = m.get('summary', {})
    if summ.get('entries') != n:
        errs.append('summary.entries=%r but %d entries listed' % (summ.get('entries'), n))
    if summ.get('warnings') != len(m.get('warnings', [])):
        errs.append('summary.warnings=%r but %d warnings listed' % (
            summ.get('warnings'), len(m.get('warnings', []))))


def compare_tree(vol, tree, fs, errs, root_extra=()):
    """Compares a manifest volume with a scanned source tree.

    fs is 'ext' or 'ntfs'.  root_extra: extra paths the filesystem itself adds
    (ext: /lost+found)."""
    by = entries_by_path(vol, errs)
    got = set(by) - {'/'}
    want = set(tree) | set(root_extra)
    missing = want - got
    extra = got - want
    if missing:
        errs.append('%d paths missing from the manifest: %s' % (len(missing), show(missing)))
    if extra:
        errs.append('%d unexpected paths in the manifest: %s' % (len(extra), show(extra)))
    bad = {'type': [], 'size': [], 'sha256': [], 'symlink': [], 'perm': [], 'owner': [],
           'nlink': [], 'xattrs': [], 'stream': [], 'mtime': []}
    for p in sorted(want & got):
        if p in root_extra:
            continue
        t, e = tree[p], by[p]
        if e.get('type') != t['type']:
            bad['type'].append('%s: %r != %r' % (p, e.get('type'), t['type']))
            continue
        if 'mtime' in t and e.get('mtime') != t['mtime']:
            bad['mtime'].append('%s: %r != %r' % (p, e.get('mtime'), t['mtime']))
        if t['type'] == 'file':
            if e.get('size') != t['size']:
                bad['size'].append('%s: %r != %r' % (p, e.get('size'), t['size']))
            if e.get('sha256') != t['sha256']:
                bad['sha256'].append('%s: %r' % (p, e.get('sha256')))
            streams = e.get('streams') or []
            unnamed = [s for s in streams if s.get('name') is None]
            if streams and (len(unnamed) != 1 or unnamed[0].get('sha256') != t['sha256']
                            or unnamed[0].get('size') != t['size']):
                bad['stream'].append(p)
            if fs == 'ext':
                wantx = t.get('xattrs', {})
                gotx = {x.get('name'): x.get('size') for x in e.get('xattrs') or []}
                for n, sz in wantx.items():
                    if gotx.get(n) != sz:
                        bad['xattrs'].append('%s: %s want size %d got %r' % (p, n, sz, gotx.get(n)))
        if t['type'] == 'symlink':
            tgt = e.get('symlink')
            if fs == 'ntfs' and isinstance(tgt, str):
                tgt = tgt.replace('\\', '/')
            if tgt != t['target']:
                bad['symlink'].append('%s: %r != %r' % (p, e.get('symlink'), t['target']))
        if fs == 'ext':
            mode = e.get('mode')
            if not isinstance(mode, int) or (mode & 0o7777) != t['perm']:
                bad['perm'].append('%s: %r != %o' % (p, mode, t['perm']))
            if (e.get('uid'), e.get('gid')) != (t['uid'], t['gid']):
                bad['owner'].append('%s: %r:%r != %d:%d' % (p, e.get('uid'), e.get('gid'), t['uid'], t['gid']))
            if t['type'] != 'dir' and e.get('nlink') != t['nlink']:
                bad['nlink'].append('%s: %r != %r' % (p, e.get('nlink'), t['nlink']))
    for k, v in bad.items():
        if v:
            errs.append('%s mismatch for %d entries: %s' % (k, len(v), show(v, 6)))
    # hard links: all names present, one inode, n-1 of them flagged
    for g in hardlink_groups(tree):
        es = [by.get(p) for p in g]
        if any(x is None for x in es):
            continue  # already reported as missing
        inos = {x.get('ino') for x in es}
        if len(inos) != 1:
            errs.append('hard link group %s has inode numbers %s' % (g, sorted(map(str, inos))))
        flagged = sum(1 for x in es if 'hardlink' in (x.get('flags') or []))
        if flagged != len(g) - 1:
            errs.append('hard link group %s: %d entries flagged "hardlink", expected %d' % (g, flagged, len(g) - 1))
        nl = {x.get('nlink') for x in es}
        if nl != {len(g)}:
            errs.append('hard link group %s: nlink %s, expected %d' % (g, sorted(map(str, nl)), len(g)))
    # nothing in a clean image is damaged
    dmg = [e.get('path') for e in vol.get('entries', []) if 'damaged' in (e.get('flags') or [])]
    if dmg:
        errs.append('entries flagged damaged in a clean image: ' + show(dmg))
    return by


# ---- independent allocation bitmaps ------------------------------------------

def ext_bitmap(fs_image):
    """Reads an ext filesystem image with dumpe2fs.  Returns (block_size,
    blocks_count, first_data_block, used) with used a sorted list of
    (first, last) inclusive block ranges."""
    out = subprocess.run(['dumpe2fs', fs_image], check=True, capture_output=True).stdout.decode()
    bs = int(re.search(r'^Block size:\s+(\d+)', out, re.M).group(1))
    count = int(re.search(r'^Block count:\s+(\d+)', out, re.M).group(1))
    first = int(re.search(r'^First block:\s+(\d+)', out, re.M).group(1))
    used = []
    cur = None
    for line in out.splitlines():
        m = re.match(r'^Group \d+: \(Blocks (\d+)-(\d+)\)', line)
        if m:
            cur = (int(m.group(1)), int(m.group(2)))
            continue
        m = re.match(r'^\s+Free blocks:\s*(.*)$', line)
        if m and cur is not None:
            free = []
            for part in m.group(1).split(','):
                part = part.strip()
                if not part:
                    continue
                a, _, b = part.partition('-')
                free.append((int(a), int(b or a)))
            free.sort()
            pos = cur[0]
            for a, b in free:
                if a > pos:
                    used.append((pos, a - 1))
                pos = b + 1
            if pos <= cur[1]:
                used.append((pos, cur[1]))
            cur = None
    return bs, count, first, used


def ntfs_bitmap(fs_image):
    """Reads $Bitmap (inode 6) with ntfscat and the geometry with ntfsinfo.
    Returns (cluster_size, clusters, used ranges as above)."""
    info = subprocess.run(['ntfsinfo', '-m', fs_image], check=True, capture_output=True).stdout.decode()
    cs = int(re.search(r'Cluster Size:\s+(\d+)', info).group(1))
    nc = int(re.search(r'Volume Size in Clusters:\s+(\d+)', info).group(1))
    bm = subprocess.run(['ntfscat', '-i', '6', fs_image], check=True, capture_output=True).stdout
    used = []
    start = None
    for c in range(nc):
        bit = (bm[c >> 3] >> (c & 7)) & 1 if (c >> 3) < len(bm) else 0
        if bit and start is None:
            start = c
        elif not bit and start is not None:
            used.append((start, c - 1))
            start = None
    if start is not None:
        used.append((start, nc - 1))
    return cs, nc, used


# ---- layout -------------------------------------------------------------------

def check_layout_shape(m, image_size, errs):
    """Runs sorted, non-overlapping, inside the image, sane kinds and entries."""
    runs = m.get('layout')
    if not isinstance(runs, list):
        errs.append('no "layout" array in the --layout JSON')
        return []
    seqs = {}
    for v in m.get('volumes', []):
        for e in v.get('entries', []):
            seqs[(v.get('index'), e.get('seq'))] = e
    end = -1
    prev_end = 0
    bad_kind, bad_entry, overlaps, outside, empty = [], [], [], [], []
    for r in runs:
        off, ln, k = r.get('offset'), r.get('length'), r.get('kind')
        if not isinstance(off, int) or not isinstance(ln, int):
            errs.append('run without integer offset/length: %r' % (r,))
            return []
        if ln <= 0:
            empty.append(r)
        if off < prev_end:
            overlaps.append((off, ln))
        if off + ln > image_size or off < 0:
            outside.append((off, ln))
        prev_end = max(prev_end, off + ln)
        end = max(end, off + ln)
        if k not in LAYOUT_KINDS:
            bad_kind.append(k)
        if k == 'file':
            # a stream of an existing entry (NTFS directories may have named
            # streams too)
            e = seqs.get((r.get('volume'), r.get('entry')))
            st = r.get('stream', 0)
            if e is None or e.get('type') not in ('file', 'dir') or \
                    (e.get('streams') is not None and not (isinstance(st, int) and 0 <= st < len(e['streams']))):
                bad_entry.append((off, r.get('volume'), r.get('entry')))
    if empty:
        errs.append('%d runs with length <= 0: %s' % (len(empty), show(empty, 3)))
    if overlaps:
        errs.append('%d runs overlap or are out of order, at: %s' % (len(overlaps), show(overlaps, 5)))
    if outside:
        errs.append('%d runs lie outside the image (size %d): %s' % (len(outside), image_size, show(outside, 5)))
    if bad_kind:
        errs.append('runs with unknown kind: ' + show(set(map(str, bad_kind))))
    if bad_entry:
        errs.append('%d file runs name no entry stream (offset, volume, entry): %s' % (
            len(bad_entry), show(bad_entry, 5)))
    summ = m.get('summary', {})
    tot = {'file': 0, 'raw': 0, 'zero': 0}
    for r in runs:
        if r.get('kind') in tot:
            tot[r['kind']] += r['length']
    for k in tot:
        if summ.get(k + '_bytes') != tot[k]:
            errs.append('summary.%s_bytes=%r but the runs hold %d' % (k, summ.get(k + '_bytes'), tot[k]))
    if summ.get('allocated_bytes') != sum(tot.values()):
        errs.append('summary.allocated_bytes=%r but the runs hold %d' % (summ.get('allocated_bytes'), sum(tot.values())))
    return runs


def clip(runs, lo, hi):
    """Run intervals [a, b) intersected with [lo, hi), sorted (runs are sorted)."""
    out = []
    for r in runs:
        a, b = max(r['offset'], lo), min(r['offset'] + r['length'], hi)
        if a < b:
            out.append((a, b, r))
    return out


def compare_region_bitmap(runs, region_start, unit, first_unit, n_units, used, errs, what):
    """Inside [region_start + first_unit*unit, region_start + n_units*unit) the
    runs must cover exactly the used units, each unit whole."""
    lo = region_start + first_unit * unit
    hi = region_start + n_units * unit
    covered = {}  # unit -> bytes covered
    for a, b, _ in clip(runs, lo, hi):
        u0 = (a - region_start) // unit
        u1 = (b - 1 - region_start) // unit
        for u in range(u0, u1 + 1):
            ua = region_start + u * unit
            covered[u] = covered.get(u, 0) + min(b, ua + unit) - max(a, ua)
    partial = [u for u, n in covered.items() if n != unit]
    got = set(u for u, n in covered.items() if n == unit)
    want = set()
    for a, b in used:
        want.update(range(a, b + 1))
    missing = want - got - set(partial)
    extra = got - want
    if partial:
        errs.append('%s: %d units only partly covered by runs: %s' % (what, len(partial), show(partial)))
    if missing:
        errs.append('%s: %d allocated units not in the layout: %s' % (what, len(missing), show(missing)))
    if extra:
        errs.append('%s: %d free units in the layout: %s' % (what, len(extra), show(extra)))
    return len(want)


def check_outside(runs, image_path, regions, image_size, errs, what='outside filesystems'):
    """Outside the filesystem regions ([lo, hi) list): runs are raw or zero,
    zero runs read as zeros, and every non-zero 4 KiB block (aligned to the
    image) is covered by runs in full."""
    regions = sorted(regions)
    gaps = []
    pos = 0
    for lo, hi in regions:
        if lo > pos:
            gaps.append((pos, lo))
        pos = max(pos, hi)
    if pos < image_size:
        gaps.append((pos, image_size))
    uncovered, file_runs = [], []
    with open(image_path, 'rb') as f:
        for glo, ghi in gaps:
            cl = clip(runs, glo, ghi)
            for a, b, r in cl:
                if r.get('kind') == 'file':
                    file_runs.append((a, b))
            # coverage as an interval list
            cov = [(a, b) for a, b, _ in cl]
            blk = (glo // 4096) * 4096
            ci = 0
            while blk < ghi:
                a, b = max(blk, glo), min(blk + 4096, ghi)
                f.seek(a)
                data = f.read(b - a)
                if data.count(0) != len(data):
                    # is [a, b) fully covered?
                    while ci < len(cov) and cov[ci][1] <= a:
                        ci += 1
                    p, j = a, ci
                    while j < len(cov) and cov[j][0] <= p and p < b:
                        p = max(p, cov[j][1])
                        j += 1
                    if p < b:
                        uncovered.append(a)
                blk += 4096
    if file_runs:
        errs.append('%s: %d file runs outside any filesystem: %s' % (what, len(file_runs), show(file_runs, 5)))
    if uncovered:
        errs.append('%s: %d non-zero 4 KiB blocks not covered by the layout, at: %s' % (
            what, len(uncovered), show(uncovered)))


def check_zero_runs(runs, image_path, errs):
    nonzero = []
    with open(image_path, 'rb') as f:
        for r in runs:
            if r.get('kind') != 'zero':
                continue
            f.seek(r['offset'])
            left = r['length']
            while left > 0:
                b = f.read(min(left, 1 << 20))
                if not b:
                    break
                if b.count(0) != len(b):
                    nonzero.append(r['offset'])
                    break
                left -= len(b)
    if nonzero:
        errs.append('%d "zero" runs hold non-zero bytes, at: %s' % (len(nonzero), show(nonzero)))


def report(errs, prefix=''):
    for e in errs:
        print('FAIL: ' + prefix + e)
    return 1 if errs else 0


def fingerprint(path):
    """A sparse-aware SHA-256 of a file: size plus every data extent (offset and
    bytes) found with SEEK_DATA/SEEK_HOLE.  Equal to a plain hash for the purpose
    of "was this file modified", without reading terabytes of holes."""
    h = hashlib.sha256()
    size = os.path.getsize(path)
    h.update(b'size %d\n' % size)
    fd = os.open(path, os.O_RDONLY)
    try:
        pos = 0
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break  # no more data
            e = os.lseek(fd, d, os.SEEK_HOLE)
            h.update(b'extent %d %d\n' % (d, e - d))
            os.lseek(fd, d, os.SEEK_SET)
            left = e - d
            while left > 0:
                b = os.read(fd, min(left, 1 << 20))
                if not b:
                    break
                h.update(b)
                left -= len(b)
            pos = e
    finally:
        os.close(fd)
    return h.hexdigest()


if __name__ == '__main__':
    import sys
    if len(sys.argv) >= 3 and sys.argv[1] == 'fingerprint':
        for p in sys.argv[2:]:
            print(fingerprint(p) + '  ' + p)
    else:
        sys.stderr.write('usage: vmtest.py fingerprint FILE...\n')
        sys.exit(2)
