#!/usr/bin/env bash
# A bundle is read in one pass whatever the order of its objects.  The
# objects of a full bundle, reversed in their member and resealed, make a
# bundle as valid as the first: its checkout equals the first's, and opens
# the bundle as many times (a reader that hands objects over only in the
# order the checkout asks would read it again for each).  The same objects
# with one of them swapped for another's bytes, its frame otherwise the
# same, are refused naming the member.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq python3 zstd strace cmp

export VMSYNC_HOST=order-host VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
timg=$(repo_img t ext4) || fail "cannot build T"
vm_ok "$T/imp" import "$R" "$timg" --name desk
good=$T/good.vmsb
vm_ok "$T/create" bundle create "$R" desk -o "$good" --level 3 --json
objects=$(jget "$T/create.out" .objects)
((objects > 50)) || fail "the bundle holds $objects objects: too few to tell an order"

# reorder OUT: the good bundle with its objects reversed, the trailer resealed.
reorder() {
    python3 - "$good" "$1" <<'EOF2'
import hashlib, io, subprocess, sys, tarfile
src, out = sys.argv[1], sys.argv[2]
t = tarfile.open(src)
ms = t.getmembers()
data = {m.name: t.extractfile(m).read() for m in ms}
name = 'objects-000001.zst'
raw = subprocess.run(['zstd', '-dc', '--long=27'], input=data[name], capture_output=True, check=True).stdout
frames, i = [], 0
while i < len(raw):
    n = int.from_bytes(raw[i + 32:i + 36], 'little')
    frames.append(raw[i:i + 36 + n])
    i += 36 + n
data[name] = subprocess.run(['zstd', '-3', '-c'], input=b''.join(reversed(frames)),
                            capture_output=True, check=True).stdout

from agentwire import get_varint as varint

end = bytearray(data['end'][:-32])
i = 8
for _ in range(3):
    count, i = varint(end, i)
for _ in range(count):
    n, i = varint(end, i)
    n -= 1                              # a string's length is stored plus one
    if end[i:i + n].decode() == name:
        end[i + n:i + n + 32] = hashlib.sha256(data[name]).digest()
    i += n + 32
data['end'] = bytes(end) + hashlib.sha256(end).digest()
with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as o:
    for m in ms:
        i = tarfile.TarInfo(m.name)
        i.size, i.mode = len(data[m.name]), 0o644
        o.addfile(i, io.BytesIO(data[m.name]))
print(len(frames))
EOF2
}

n=$(reorder "$T/reversed.vmsb") || fail "cannot reorder the bundle"
[[ $n == "$objects" ]] || fail "reordered $n objects of $objects"
cmp -s "$good" "$T/reversed.vmsb" && fail "the reversed bundle is the good one"

# opens BUNDLE OUT: checks out from BUNDLE, setting OPENS to how often it
# was opened.  (LeakSanitizer cannot run under ptrace: a sanitizer build's
# leaks are looked for by the other checkouts.)
opens() {
    local trace=$T/trace-$(basename "$1")
    rm -rf "$T/cache"
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" timeout -k 10 "$VMSYNC_CMD_TIMEOUT" \
        strace -f -qq -e trace=open,openat -o "$trace" \
        "$VMSYNC" checkout "$1" desk -o "$2" -q >"$T/co.out" 2>"$T/co.err" ||
        fail "checkout from $(basename "$1") under strace: $(head -c 300 "$T/co.err")"
    OPENS=$(grep -c "$(basename "$1")\"" "$trace")
}
opens "$good" "$T/good.img"
good_opens=$OPENS
opens "$T/reversed.vmsb" "$T/reversed.img"
reversed_opens=$OPENS
info "the bundle was opened $good_opens times, reversed $reversed_opens times"
cmp -s "$T/good.img" "$T/reversed.img" || bad "the reversed bundle checks out to other bytes"
vm_ok "$T/verify" verify "$R" desk "$T/reversed.img"
((reversed_opens == good_opens)) ||
    bad "the reversed bundle was opened $reversed_opens times, the good one $good_opens"
finish
