#!/usr/bin/env bash
# The hashing workers change the speed of a scan, nothing else.  The manifests
# of real ext4 (extents), ext3 (block maps) and NTFS images are byte-identical
# with one thread (VMSYNC_HASH_THREADS=1) and with several: files of hundreds of
# chunks, a sparse chunked file, zero blocks, 20,000 small files, hard links,
# resident NTFS data.  A read error in the middle of the scan stops it with the
# same messages and exit status either way: a qcow2 copy of the image with the
# compressed cluster under /sparse.bin (a sparse chunked file) broken, which
# qemu-nbd fails to read and then drops the connection (on ext4 the cluster
# also holds a directory block, which fails first).
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
# shellcheck source=tests/lib/images.sh
source "$TESTS_LIB/images.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex sfdisk qemu-img qemu-nbd cmp python3

# threads_run THREADS PREFIX ARGS...: vmsync ARGS with THREADS hashing threads.
threads_run() {
    local threads=$1
    shift
    VMSYNC_HASH_THREADS=$threads vm "$@"
}

# same_manifest NAME IMAGE: one thread and four give the same bytes.
same_manifest() {
    local name=$1 image=$2 t
    for t in 1 4; do
        threads_run "$t" "$T/$name-$t" manifest "$image" -q -o "$T/$name-$t.vmm"
        ((VM_RC == 0)) || { bad "$name: manifest with $t thread(s) exited $VM_RC: $(head -c 300 "$T/$name-$t.err")"; return; }
        threads_run "$t" "$T/$name-$t-json" manifest "$image" --json --layout
    done
    cmp -s "$T/$name-1.vmm" "$T/$name-4.vmm" || bad "$name: the binary manifest differs between 1 and 4 threads"
    cmp -s "$T/$name-1-json.out" "$T/$name-4-json.out" ||
        bad "$name: the JSON manifest differs between 1 and 4 threads: $(diff "$T/$name-1-json.out" "$T/$name-4-json.out" | head -c 300)"
}

# The comparison means something only if the files that stress the pipeline
# are there and hashed: many chunks, a sparse chunked file, many small files.
check_coverage() {
    python3 - "$T/$1-4-json.out" "$1" <<'EOF' || FAILS=$((FAILS + 1))
import sys
import vmtest as V
m = V.load(sys.argv[1])
errs = []
by = {e['path']: e for v in m['volumes'] for e in v.get('entries', [])}
def stream(path):
    s = by.get(path, {}).get('streams') or [{}]
    return s[0]
if stream('/big/random-20M.bin').get('chunks', 0) < 200:
    errs.append('/big/random-20M.bin has %r chunks' % stream('/big/random-20M.bin').get('chunks'))
sp = stream('/sparse.bin')
if sp.get('chunks', 0) < 2 or not sp.get('sha256'):
    errs.append('/sparse.bin: %r' % sp)
small = sum(1 for p in by if p.startswith('/many/'))
if small < 1000:
    errs.append('only %d small files under /many' % small)
if m.get('warnings'):
    errs.append('warnings: %s' % V.show([w.get('message') for w in m['warnings']], 3))
sys.exit(V.report(errs, sys.argv[2] + ': '))
EOF
}

# The pool really runs: four threads start four more threads than one.
check_workers() {
    local image=$1 n1 n4
    command -v strace >/dev/null 2>&1 || { info "no strace: the thread count is not checked"; return; }
    # LeakSanitizer cannot run under ptrace
    local asan=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 t
    for t in 1 4; do
        ASAN_OPTIONS=$asan VMSYNC_HASH_THREADS=$t strace -f -qq -e trace=clone,clone3 -o "$T/clone-$t" \
            "$VMSYNC" manifest "$image" -q -o "$T/c$t.vmm" || bad "manifest under strace with $t thread(s) failed"
    done
    n1=$(grep -c clone "$T/clone-1" || true)
    n4=$(grep -c clone "$T/clone-4" || true)
    ((n4 >= n1 + 2)) || bad "4 hashing threads started $n4 threads, 1 started $n1: no workers?"
}

# corrupt_stream_cluster QCOW2 JSON PATH: breaks the compressed cluster that holds
# the first on-disk bytes of PATH (as the layout of the raw image's manifest
# JSON places them); prints the cluster's guest offset and size.
corrupt_stream_cluster() {
    python3 - "$@" <<'EOF'
import struct, sys
import vmtest as V
qcow, mpath, path = sys.argv[1:]
m = V.load(mpath)
seq = [e['seq'] for v in m['volumes'] for e in v.get('entries', []) if e['path'] == path][0]
runs = [r for r in m['layout'] if r['kind'] == 'file' and str(r.get('entry')) == str(seq)]
guest = runs[0]['offset']
with open(qcow, 'r+b') as f:
    hdr = f.read(48)
    cluster_bits = struct.unpack('>I', hdr[20:24])[0]
    l1_off = struct.unpack('>Q', hdr[40:48])[0]
    csize = 1 << cluster_bits
    l1_index = guest >> (2 * cluster_bits - 3)
    l2_index = (guest >> cluster_bits) & (csize // 8 - 1)
    f.seek(l1_off + 8 * l1_index)
    l2_off = struct.unpack('>Q', f.read(8))[0] & 0x00fffffffffffe00
    f.seek(l2_off + 8 * l2_index)
    entry = struct.unpack('>Q', f.read(8))[0]
    if not entry & (1 << 62):
        sys.exit('%s: the cluster at %d is not compressed (entry %#x)' % (qcow, guest, entry))
    host = entry & ((1 << (62 - (cluster_bits - 8))) - 1)
    f.seek(host)
    f.write(b'\xff' * 64)  # BTYPE 11: no deflate stream starts like that
print(guest // csize * csize, csize)
EOF
}

# same_read_error NAME RAW_IMAGE
same_read_error() {
    local name=$1 raw=$2 q=$T/$1-broken.qcow2 where msg
    qemu-img convert -q -c -f raw -O qcow2 "$raw" "$q" || { bad "$name: qemu-img convert failed"; return; }
    where=$(corrupt_stream_cluster "$q" "$T/$name-1-json.out" /sparse.bin) || { bad "$name: $where"; return; }
    info "$name: corrupted the cluster at ${where% *} (${where#* } bytes) under /sparse.bin"
    threads_run 1 "$T/$name-err-1" manifest "$q" -q -o "$T/$name-err-1.vmm"
    local rc1=$VM_RC
    threads_run 4 "$T/$name-err-4" manifest "$q" -q -o "$T/$name-err-4.vmm"
    ((rc1 != 0)) || { bad "$name: a corrupt cluster went unnoticed"; return; }
    ((VM_RC == rc1)) || bad "$name: exit status $rc1 with 1 thread, $VM_RC with 4"
    cmp -s "$T/$name-err-1.err" "$T/$name-err-4.err" ||
        bad "$name: stderr differs: 1 thread: $(head -c 300 "$T/$name-err-1.err") 4 threads: $(head -c 300 "$T/$name-err-4.err")"
    msg=$(one_error_line "$T/$name-err-4" "$q" "read") || bad "$name: $msg"
    [[ ! -e $T/$name-err-4.vmm ]] || bad "$name: a manifest was written despite the read error"
    info "$name: $(head -c 300 "$T/$name-err-4.err")"
}

for name in ext4-gpt ext3-bare ntfs-gpt; do
    image=$(img "$name") || fail "cannot build image $name"
    same_manifest "$name" "$image"
    [[ $name == ext3-bare ]] || check_coverage "$name"
done
check_workers "$(img ext4-gpt)"
for name in ext4-gpt ntfs-gpt; do
    same_read_error "$name" "$(img "$name")"
done
finish
