"""An NTFS reader of its own for the tests, independent of libntfs-3g: which
clusters the volume's MFT records reference (every attribute's runlist of
every record in use), which ones $Bitmap marks used, and where a record's
attributes lie.  It is for images the tests make: damage shows up as a
ValueError, unless the Volume is made with strict=False, which skips what it
cannot parse (for the damaged images of the corpus).

Command line:
  python3 -m ntfsmap used IMG [lenient]         prints the referenced clusters as ranges
  python3 -m ntfsmap runs IMG RECORD TYPE       prints the runs of attribute TYPE (hex)
  python3 -m ntfsmap free IMG RECORD TYPE       clears the $Bitmap bits of those runs
  python3 -m ntfsmap lookup IMG PATH            prints the record number of PATH
  python3 -m ntfsmap set-init IMG PATH BYTES    sets the initialized size of PATH's data
  python3 -m ntfsmap point IMG PATH LCN         moves the one run of PATH's data to LCN
  python3 -m ntfsmap tear IMG PATH              breaks the update sequence of PATH's record
  python3 -m ntfsmap cut-mft IMG RECORDS        ends $MFT's data after RECORDS records
  python3 -m ntfsmap wipe IMG PATH              PATH's record: deleted, attributes zeroed,
                                                still in $MFT's bitmap
  python3 -m ntfsmap compare SRC COPY [lenient] exit 1 when COPY differs from SRC in a
                                                cluster that SRC uses (its records or
                                                $Bitmap say so) or in the backup boot
                                                sector; prints what differs
"""
import bisect
import os
import struct
import sys

AT_FILE_NAME = 0x30
AT_DATA = 0x80
AT_INDEX_ALLOCATION = 0xA0
AT_BITMAP = 0xB0
AT_END = 0xFFFFFFFF


class Volume:
    def __init__(self, path, offset=0, strict=True, writable=False):
        self.f = open(path, 'r+b' if writable else 'rb')
        self.offset = offset
        self.strict = strict
        self.damaged = 0
        boot = self.pread(0, 512)
        if boot[3:11] != b'NTFS    ':
            raise ValueError('no NTFS boot sector')
        self.sector = struct.unpack_from('<H', boot, 0x0B)[0]
        spc = boot[0x0D]
        spc = 1 << (256 - spc) if spc > 0x80 else spc
        self.cluster = self.sector * spc
        self.total_sectors = struct.unpack_from('<Q', boot, 0x28)[0]
        self.nr_clusters = self.total_sectors * self.sector // self.cluster
        mft_lcn = struct.unpack_from('<Q', boot, 0x30)[0]
        cpr = struct.unpack_from('<b', boot, 0x40)[0]
        self.record_size = 1 << -cpr if cpr < 0 else cpr * self.cluster
        rec0 = self.fixup(self.pread(mft_lcn * self.cluster, self.record_size))
        self.mft_runs = [r for a in self.attributes(rec0) if a['type'] == AT_DATA
                         for r in a.get('runs', [])]

    def close(self):
        self.f.close()

    def pread(self, off, n):
        self.f.seek(self.offset + off)
        b = self.f.read(n)
        if len(b) != n:
            raise ValueError('short read at %d' % off)
        return b

    def pwrite(self, off, b):
        self.f.seek(self.offset + off)
        self.f.write(b)

    def fixup(self, rec):
        rec = bytearray(rec)
        usa_ofs, usa_count = struct.unpack_from('<HH', rec, 4)
        usn = rec[usa_ofs:usa_ofs + 2]
        for i in range(1, usa_count):
            end = i * 512
            if rec[end - 2:end] != usn and self.strict:
                raise ValueError('fixup mismatch in sector %d' % i)
            rec[end - 2:end] = rec[usa_ofs + 2 * i:usa_ofs + 2 * i + 2]
        return bytes(rec)

    @staticmethod
    def decode_runs(a, mp_off, length):
        runs, pos, lcn = [], mp_off, 0
        while pos < length and a[pos]:
            lb, ob = a[pos] & 15, a[pos] >> 4
            n = int.from_bytes(a[pos + 1:pos + 1 + lb], 'little')
            if ob:
                lcn += int.from_bytes(a[pos + 1 + lb:pos + 1 + lb + ob], 'little', signed=True)
                runs.append((lcn, n))
            pos += 1 + lb + ob
        return runs

    def attributes(self, rec):
        out = []
        pos = struct.unpack_from('<H', rec, 0x14)[0]
        while pos + 8 <= len(rec):
            typ, length = struct.unpack_from('<II', rec, pos)
            if typ == AT_END or length == 0:
                break
            a = rec[pos:pos + length]
            d = {'type': typ, 'nonres': a[8], 'at': pos}
            if a[8]:
                mp_off = struct.unpack_from('<H', a, 0x20)[0]
                d['alloc'], d['size'], d['init'] = struct.unpack_from('<qqq', a, 0x28)
                d['runs'] = self.decode_runs(a, mp_off, length)
            elif typ == AT_FILE_NAME:
                v = a[struct.unpack_from('<H', a, 0x14)[0]:]
                d['parent'] = struct.unpack_from('<Q', v, 0)[0] & ((1 << 48) - 1)
                d['name'] = v[66:66 + 2 * v[64]].decode('utf-16-le')
            out.append(d)
            pos += length
        return out

    def mft_bytes(self):
        """The $MFT's bytes, record by record: (number, raw record)."""
        no = 0
        for lcn, n in self.mft_runs:
            data = self.pread(lcn * self.cluster, n * self.cluster)
            for i in range(0, len(data) - self.record_size + 1, self.record_size):
                yield no, data[i:i + self.record_size]
                no += 1

    def records(self):
        """(number, attributes) of every record in use."""
        for no, rec in self.mft_bytes():
            if rec[:4] != b'FILE' or not struct.unpack_from('<H', rec, 0x16)[0] & 1:
                continue
            try:
                yield no, self.attributes(self.fixup(rec))
            except (ValueError, struct.error, IndexError, UnicodeDecodeError):
                if self.strict:
                    raise
                self.damaged += 1

    def attribute(self, record, typ):
        for no, attrs in self.records():
            if no == record:
                return [a for a in attrs if a['type'] == typ]
        raise ValueError('record %d is not in use' % record)

    def record_offset(self, no):
        """Where record NO starts, in bytes from the volume start."""
        for lcn, n in self.mft_runs:
            count = n * self.cluster // self.record_size
            if no < count:
                return lcn * self.cluster + no * self.record_size
            no -= count
        raise ValueError('record beyond $MFT')

    def raw_record(self, no):
        return self.fixup(self.pread(self.record_offset(no), self.record_size))

    def patch(self, no, at, data):
        """Writes DATA at byte AT of record NO, which must not touch a sector's
        update sequence bytes."""
        for end in range(512, self.record_size + 1, 512):
            if at < end and at + len(data) > end - 2:
                raise ValueError('patch over the update sequence of sector %d' % (end // 512))
        self.pwrite(self.record_offset(no) + at, data)

    def set_init_size(self, no, size):
        """Sets the initialized size of record NO's unnamed $DATA."""
        a = [a for a in self.attributes(self.raw_record(no)) if a['type'] == AT_DATA][0]
        self.patch(no, a['at'] + 0x38, struct.pack('<q', size))

    def point(self, no, lcn):
        """Moves the single run of record NO's $DATA to LCN (same length)."""
        rec = self.raw_record(no)
        a = [a for a in self.attributes(rec) if a['type'] == AT_DATA][0]
        if len(a['runs']) != 1:
            raise ValueError('record %d: $DATA has %d runs' % (no, len(a['runs'])))
        mp = a['at'] + struct.unpack_from('<H', rec, a['at'] + 0x20)[0]
        lb, ob = rec[mp] & 15, rec[mp] >> 4
        self.patch(no, mp + 1 + lb, lcn.to_bytes(ob, 'little', signed=True))

    def cut_mft(self, records):
        """Ends $MFT's data (and initialized) size after RECORDS records, in
        $MFT's record 0 and in its copy in $MFTMirr, leaving its clusters."""
        a = [a for a in self.attributes(self.raw_record(0)) if a['type'] == AT_DATA][0]
        size = struct.pack('<qq', records * self.record_size, records * self.record_size)
        self.patch(0, a['at'] + 0x30, size)
        mirror = struct.unpack_from('<Q', self.pread(0, 512), 0x38)[0] * self.cluster
        self.pwrite(mirror + a['at'] + 0x30, size)

    def wipe(self, no):
        """Makes record NO look deleted (its in-use flag cleared) and damaged
        (its attributes zeroed), leaving its bit in $MFT's bitmap set."""
        rec = self.raw_record(no)
        flags = struct.unpack_from('<H', rec, 0x16)[0] & ~1
        self.patch(no, 0x16, struct.pack('<H', flags))
        self.patch(no, struct.unpack_from('<H', rec, 0x14)[0], bytes(16))

    def tear(self, no):
        """Makes record NO look half written: its last sector's update
        sequence number no longer matches."""
        off = self.record_offset(no) + self.record_size - 2
        b = self.pread(off, 2)
        self.pwrite(off, bytes([b[0] ^ 0xff, b[1]]))

    def lookup(self, path):
        """The record number of PATH ("/a/b"), through the FILE_NAME parents."""
        names = {}
        for no, attrs in self.records():
            for a in attrs:
                if 'name' in a:
                    names[(a['parent'], a['name'])] = no
        no = 5
        for part in [p for p in path.split('/') if p]:
            no = names[(no, part)]
        return no

    def used(self):
        """Sorted, merged (first, count) cluster ranges that the records use,
        cluster 0 (the boot sectors) always."""
        rs = [(0, max(1, 8192 // self.cluster))]
        for _, attrs in self.records():
            for a in attrs:
                rs.extend(a.get('runs', []))
        return merge(rs)

    def bitmap(self):
        """$Bitmap's bytes: bit c of it says whether cluster c is used."""
        return b''.join(self.pread(lcn * self.cluster, n * self.cluster) for lcn, n in self.bitmap_runs())

    def bitmap_runs(self):
        return [r for a in self.attribute(6, AT_DATA) for r in a['runs']]

    def clear_bits(self, ranges):
        """Marks the clusters of RANGES free in $Bitmap, writing its clusters in place."""
        bm_runs = self.bitmap_runs()
        for first, n in ranges:
            for c in range(first, first + n):
                byte = c >> 3
                for lcn, cnt in bm_runs:  # the byte's place in the bitmap's own runs
                    if byte < cnt * self.cluster:
                        off = lcn * self.cluster + byte
                        b = self.pread(off, 1)[0] & ~(1 << (c & 7))
                        self.pwrite(off, bytes([b]))
                        break
                    byte -= cnt * self.cluster


def merge(ranges):
    out = []
    for first, n in sorted(r for r in ranges if r[1] > 0):
        if out and first <= out[-1][0] + out[-1][1]:
            end = max(out[-1][0] + out[-1][1], first + n)
            out[-1] = (out[-1][0], end - out[-1][0])
        else:
            out.append((first, n))
    return out


def data_regions(path):
    """(offset, length) of the parts of PATH that are not holes."""
    fd = os.open(path, os.O_RDONLY)
    try:
        size, pos, out = os.fstat(fd).st_size, 0, []
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end - start))
            pos = end
        return out
    finally:
        os.close(fd)


def differing_clusters(a, b, cluster):
    """Cluster numbers (from offset 0) where files A and B differ; holes read as zeros."""
    regions = merge([(o // cluster, -(-(o + n) // cluster) - o // cluster)
                     for o, n in data_regions(a) + data_regions(b)])
    out = []
    with open(a, 'rb') as fa, open(b, 'rb') as fb:
        for first, n in regions:
            for c0 in range(first, first + n, 256):
                k = min(256, first + n - c0)
                fa.seek(c0 * cluster)
                fb.seek(c0 * cluster)
                da, db = fa.read(k * cluster), fb.read(k * cluster)
                if da == db:
                    continue
                da, db = da.ljust(k * cluster, b'\0'), db.ljust(k * cluster, b'\0')
                out.extend(c0 + i for i in range(k)
                           if da[i * cluster:(i + 1) * cluster] != db[i * cluster:(i + 1) * cluster])
    return out


def in_ranges(c, ranges):
    i = bisect.bisect_right(ranges, (c, float('inf'))) - 1
    return i >= 0 and ranges[i][0] <= c < ranges[i][0] + ranges[i][1]


def compare(src, copy, strict=True):
    """What differs between SRC and COPY in the clusters SRC uses: a list of texts."""
    v = Volume(src, strict=strict)
    refs, bitmap = v.used(), v.bitmap()
    diff = differing_clusters(src, copy, v.cluster)
    bad = {'referenced, marked free in $Bitmap': [], 'marked used in $Bitmap': [],
           'past the clusters (backup boot sector)': []}
    backup = v.total_sectors * v.sector // v.cluster
    for c in diff:
        if c >= v.nr_clusters:
            if c == backup:
                bad['past the clusters (backup boot sector)'].append(c)
        elif c >> 3 < len(bitmap) and bitmap[c >> 3] >> (c & 7) & 1:
            bad['marked used in $Bitmap'].append(c)
        elif in_ranges(c, refs):
            bad['referenced, marked free in $Bitmap'].append(c)
    v.close()
    return ['%d clusters %s differ (the first: %s)' % (len(cs), what, cs[:5])
            for what, cs in bad.items() if cs]


def main(argv):
    cmd, path = argv[1], argv[2]
    if cmd == 'compare':
        errs = compare(path, argv[3], strict=len(argv) < 5 or argv[4] != 'lenient')
        if errs:
            print('\n'.join(errs))
        sys.exit(1 if errs else 0)
    if cmd == 'used':
        v = Volume(path, strict=len(argv) < 4 or argv[3] != 'lenient')
        for first, n in v.used():
            print(first, n)
    elif cmd == 'lookup':
        v = Volume(path)
        print(v.lookup(argv[3]))
    elif cmd == 'wipe':
        v = Volume(path, writable=True)
        v.wipe(v.lookup(argv[3]))
    elif cmd == 'cut-mft':
        v = Volume(path, writable=True)
        v.cut_mft(int(argv[3]))
    elif cmd in ('set-init', 'point', 'tear'):
        v = Volume(path, writable=True)
        no = v.lookup(argv[3])
        if cmd == 'set-init':
            v.set_init_size(no, int(argv[4]))
        elif cmd == 'point':
            v.point(no, int(argv[4]))
        else:
            v.tear(no)
    elif cmd in ('runs', 'free'):
        v = Volume(path, writable=cmd == 'free')
        runs = [r for a in v.attribute(int(argv[3]), int(argv[4], 16)) for r in a.get('runs', [])]
        if cmd == 'free':
            v.clear_bits(runs)
        for first, n in runs:
            print(first, n)
    else:
        sys.exit('usage: ntfsmap used|runs|free|lookup|set-init|point|tear|cut-mft|wipe|compare IMG ...')
    v.close()


if __name__ == '__main__':
    main(sys.argv)
