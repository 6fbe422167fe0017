# shellcheck shell=bash
# The shared third-party corpus (../shared/corpus beside the repository).
#
#   corpus_extract DEST [MAX_BYTES]
#     decompresses every e2fsprogs/*.img.gz to DEST/e2fs-NAME.img and every
#     ntfs-corrupted/*.tar.xz's ntfs.img to DEST/ntfs-NAME.img (sparse), skipping
#     images whose size exceeds MAX_BYTES.  Prints how many it made.
#
#   corpus_each JOBS FN IMAGE...
#     runs FN IMAGE for every IMAGE, JOBS at a time, and waits for them all.
#
# Needs CORPUS (set by common.sh; override with VMSYNC_CORPUS).

corpus_available() {
    [[ -d $CORPUS/e2fsprogs || -d $CORPUS/ntfs-corrupted ]]
}

corpus_extract() {
    local dest=$1 max=${2:-0} f n out tmp count=0
    mkdir -p "$dest"
    shopt -s nullglob
    for f in "$CORPUS"/e2fsprogs/*.img.gz; do
        n=$(basename "$f" .img.gz)
        out="$dest/e2fs-$n.img"
        gzip -dc "$f" >"$out"
        fallocate --dig-holes "$out" 2>/dev/null || true # keep zero runs as holes
        if ((max > 0 && $(stat -c %s "$out") > max)); then rm -f "$out"; else count=$((count + 1)); fi
    done
    for f in "$CORPUS"/ntfs-corrupted/*.tar.xz; do
        n=$(basename "$f" .tar.xz)
        tmp="$dest/.x-$n"
        mkdir -p "$tmp"
        if tar -xJf "$f" -C "$tmp" --no-same-owner ntfs.img 2>/dev/null ||
            tar -xJf "$f" -C "$tmp" --no-same-owner --wildcards '*ntfs.img' 2>/dev/null; then
            out=$(find "$tmp" -name ntfs.img -type f | head -1)
            if [[ -n $out ]] && ((max == 0 || $(stat -c %s "$out") <= max)); then
                mv "$out" "$dest/ntfs-$n.img"
                count=$((count + 1))
            fi
        else
            echo "corpus: cannot extract ntfs.img from $f" >&2
        fi
        rm -rf "$tmp"
    done
    shopt -u nullglob
    echo "$count"
}

# corpus_cmp_layout SOURCE REBUILT LAYOUT_JSON
#   compares two images block by block (sparse-aware: only where either holds
#   data).  Every 512-byte sector must be equal, or the rebuilt one zeros where
#   the layout (vmsync manifest show --json --layout of SOURCE) leaves it
#   unallocated or it is slack after a file's end.  Prints one line saying what
#   differs and returns 1 when something is lost.
corpus_cmp_layout() {
    python3 - "$@" <<'PYEOF'
import bisect, os, sys
import vmtest as V
src, out, lay = sys.argv[1:]
m = V.load(lay)
size = os.path.getsize(src)
if os.path.getsize(out) != size:
    print('size %d != source size %d' % (os.path.getsize(out), size))
    sys.exit(1)
streams = {}
for v in m.get('volumes', []):
    for e in v.get('entries', []):
        for i, st in enumerate(e.get('streams') or []):
            streams[(v.get('index'), e.get('seq'), i)] = st.get('size', 0)
runs = sorted(m.get('layout', []), key=lambda r: r['offset'])
starts = [r['offset'] for r in runs]

def allowed_zero(off):
    """Why rebuilt zeros at OFF are fine, or None."""
    i = bisect.bisect_right(starts, off) - 1
    if i < 0 or off >= runs[i]['offset'] + runs[i]['length']:
        return 'unallocated'
    r = runs[i]
    if r['kind'] == 'file':
        ssize = streams.get((r.get('volume'), r.get('entry'), r.get('stream', 0)), 0)
        if off >= r['offset'] + max(0, ssize - r['stream_offset']):
            return 'slack'
    return None

def data_segments(path):
    segs = []
    with open(path, 'rb') as f:
        fd, pos = f.fileno(), 0
        while pos < size:
            try:
                d = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            h = os.lseek(fd, d, os.SEEK_HOLE)
            segs.append((d, h))
            pos = h
    return segs

def union(a, b):
    out = []
    for lo, hi in sorted(a + b):
        if out and lo <= out[-1][1]:
            out[-1][1] = max(out[-1][1], hi)
        else:
            out.append([lo, hi])
    return out

lost, kinds, first = 0, {}, []
SECT, STEP = 512, 1 << 20
with open(src, 'rb') as fs, open(out, 'rb') as fo:
    for lo, hi in union(data_segments(src), data_segments(out)):
        for pos in range(lo - lo % SECT, hi, STEP):
            n = min(STEP, hi - pos, size - pos)
            fs.seek(pos)
            fo.seek(pos)
            a, b = fs.read(n), fo.read(n)
            if a == b:
                continue
            for k in range(0, n, SECT):
                x, y = a[k:k + SECT], b[k:k + SECT]
                if x == y:
                    continue
                # a region (slack, unallocated) can start inside a sector
                # only where a file's slack starts, and lasts to its end
                j = next(i for i in range(len(x)) if x[i] != y[i])
                zeroed = all(y[i] == 0 or y[i] == x[i] for i in range(j, len(x)))
                off = pos + k + j
                if zeroed and allowed_zero(off):
                    continue
                i = bisect.bisect_right(starts, off) - 1
                kind = runs[i]['kind'] if i >= 0 and off < runs[i]['offset'] + runs[i]['length'] else 'none'
                if not zeroed:
                    kind = 'rewritten'
                kinds[kind] = kinds.get(kind, 0) + len(x)
                lost += len(x)
                if len(first) < 4:
                    first.append(off)
if lost:
    print('%d bytes differ from the source (%s), first at offsets %s' % (
        lost, ', '.join('%s: %d' % kv for kv in sorted(kinds.items())), first))
    sys.exit(1)
PYEOF
}

corpus_each() {
    local jobs=$1 fn=$2 image running=0
    shift 2
    for image in "$@"; do
        "$fn" "$image" &
        running=$((running + 1))
        if ((running >= jobs)); then
            wait -n || true
            running=$((running - 1))
        fi
    done
    wait
}
