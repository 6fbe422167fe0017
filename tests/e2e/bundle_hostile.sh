#!/usr/bin/env bash
# Hostile bundles are refused before anything is written, with one error line
# naming the member: a byte flipped in the data of each member in turn and in
# a member's tar header, truncations, a member ../x (before the trailer and
# after it), an absolute path, a link where the manifest goes, members out of
# order, an absurd member size, an absurd object count, an objects member
# with no object (a stream of them would grow without end), and a header that
# announces a signature the bundle does not hold (e2e/bundle_signed changes
# a signature that is there).  Each is tried as a checkout
# into an empty folder with its own cache: the folder and the cache hold no
# file afterwards, and no x appears beside it.  bundle show refuses them too.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq python3 zstd

export VMSYNC_HOST=hostile-host VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp" import "$R" "$timg" --name desk
vm_ok "$T/s.manifest" manifest "$simg" -o "$T/s.vmsm"
good=$T/good.vmsb
vm_ok "$T/create" bundle create "$R" desk -o "$good" --have "$T/s.vmsm" --level 3

# The untouched bundle checks out: the refusals below are the changes'.
mkdir -p "$T/ok"
vm_ok "$T/ok/run" checkout "$good" desk -o "$T/ok/out.img" --seed "$simg"

members=$(python3 - "$good" <<'EOF2'
import sys, tarfile
print(" ".join(m.name for m in tarfile.open(sys.argv[1])))
EOF2
)
[[ $members == "vmsync-bundle version manifest objects-000001.zst end" ]] || fail "members: $members"

# craft KIND OUT [ARG]: writes a changed copy of the good bundle.
craft() {
    python3 - "$good" "$@" <<'EOF2'
import io, sys, tarfile
src, kind, out = sys.argv[1], sys.argv[2], sys.argv[3]
arg = sys.argv[4] if len(sys.argv) > 4 else None
raw = bytearray(open(src, 'rb').read())
t = tarfile.open(src)
ms = t.getmembers()
data = {m.name: t.extractfile(m).read() for m in ms}

from agentwire import put_varint as varint

def info(name, size, type_=tarfile.REGTYPE, link=''):
    i = tarfile.TarInfo(name)
    i.size, i.type, i.linkname, i.mode = size, type_, link, 0o644
    return i

def write(entries):  # [(TarInfo, bytes)]
    with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as o:
        for i, d in entries:
            o.addfile(i, io.BytesIO(d) if d is not None else None)

def plain():
    return [(info(m.name, len(data[m.name])), data[m.name]) for m in ms]

def header(objects, flags):
    return (b'VMSYNCBH' + varint(1) + varint(flags) + varint(5) + b'desk' + varint(1) + varint(0)
            + varint(0) + varint(0) + varint(objects) + varint(0))

if kind == 'flip':                      # the middle byte of member ARG's data
    m = next(m for m in ms if m.name == arg)
    raw[m.offset_data + m.size // 2] ^= 0x01
    open(out, 'wb').write(raw)
elif kind == 'flip-tar-header':         # a byte of member ARG's tar header
    m = next(m for m in ms if m.name == arg)
    raw[m.offset + 5] ^= 0x01
    open(out, 'wb').write(raw)
elif kind == 'cut':                     # the first ARG bytes (negative: all but)
    n = int(arg)
    open(out, 'wb').write(raw[:n] if n > 0 else raw[:len(raw) + n])
elif kind == 'cut-after':               # up to the end of member ARG's data
    m = next(m for m in ms if m.name == arg)
    open(out, 'wb').write(raw[:m.offset_data + m.size])
elif kind == 'insert':                  # a member named ARG after the manifest
    e = plain()
    e.insert(3, (info(arg, 4), b'evil'))
    write(e)
elif kind == 'append':                  # a member named ARG after the trailer
    write(plain() + [(info(arg, 4), b'evil')])
elif kind == 'first':                   # a member named ARG before everything
    write([(info(arg, 4), b'evil')] + plain())
elif kind == 'symlink':                 # the manifest as a link to ARG
    e = plain()
    e[2] = (info('manifest', 0, tarfile.SYMTYPE, arg), None)
    write(e)
elif kind == 'swap':                    # version and manifest swapped
    e = plain()
    e[1], e[2] = e[2], e[1]
    write(e)
elif kind == 'huge':                    # the header claims ARG bytes
    i = info('vmsync-bundle', int(arg))
    buf = i.tobuf(tarfile.PAX_FORMAT)
    open(out, 'wb').write(buf + data['vmsync-bundle'] + b'\0' * 4096)
elif kind == 'count':                   # a header with ARG objects
    e = plain()
    e[0] = (info('vmsync-bundle', 0), header(int(arg), 0))
    e[0][0].size = len(e[0][1])
    write(e)
elif kind == 'empty':                   # an objects member ARG with no object
    import subprocess
    e = plain()
    z = subprocess.run(['zstd', '-c'], input=b'', capture_output=True, check=True).stdout
    e.insert(4, (info(arg, len(z)), z))
    write(e)
elif kind == 'signed':                  # a header that announces a signature, and no version.sig
    h = bytearray(data['vmsync-bundle'])
    h[9] |= 1                           # flags: after the magic and the format
    e = plain()
    e[0] = (info('vmsync-bundle', len(h)), bytes(h))
    write(e)
EOF2
}

n=0
# refused CASE MEMBER KIND [ARG]: the crafted bundle is refused naming MEMBER.
refused() {
    local case=$1 member=$2 d=$T/case-$n
    n=$((n + 1))
    shift 2
    mkdir -p "$d/out" "$d/logs"
    craft "$1" "$d/bad.vmsb" "${@:2}" 2>"$d/logs/craft.err" >/dev/null ||
        { bad "$case: cannot craft: $(cat "$d/logs/craft.err")"; return; }
    VMSYNC_CACHE=$d/cache vm "$d/logs/co" checkout "$d/bad.vmsb" desk -o "$d/out/out.img" --seed "$simg"
    if ((VM_RC != 4 && VM_RC != 5)); then
        bad "$case: checkout exited $VM_RC, expected 4 or 5: $(head -c 300 "$d/logs/co.err")"
    fi
    local why
    why=$(one_error_line "$d/logs/co" "$member") || bad "$case: $why"
    [[ -z $(ls -A "$d/out") ]] || bad "$case: the refused checkout wrote $(ls -A "$d/out" | tr '\n' ' ')"
    [[ -z $(find "$d/cache" -type f 2>/dev/null) ]] || bad "$case: the refused checkout wrote to its cache"
    [[ ! -e $d/x && ! -e $T/x ]] || bad "$case: a member was written as a file"
    VMSYNC_CACHE=$d/cache vm "$d/logs/show" bundle show "$d/bad.vmsb"
    ((VM_RC == 4 || VM_RC == 5)) || bad "$case: bundle show exited $VM_RC"
    info "$case: $(head -c 200 "$d/logs/co.err")"
}

for m in $members; do
    refused "a byte flipped in $m" "$m" flip "$m"
done
# a member's header is the tar's: its checksum fails, and the member before it is named
refused "a byte flipped in version's tar header" "after member vmsync-bundle" flip-tar-header version
refused "cut inside the objects" objects-000001.zst cut -100000
refused "cut after the objects" objects-000001.zst cut-after objects-000001.zst
refused "cut inside the version" version cut 1600
refused "a member ../x before the trailer" ../x insert ../x
refused "a member ../x after the trailer" ../x append ../x
refused "an absolute path first" /etc/x first /etc/x
refused "the manifest as a link" manifest symlink /etc/passwd
refused "members out of order" manifest swap
refused "an absurd member size" vmsync-bundle huge $((3 << 30))
refused "an absurd object count" vmsync-bundle count $((1 << 30))
refused "an objects member with no object" objects-000002.zst empty objects-000002.zst
# refused as it comes, not at the trailer: a pipe of them has no trailer
grep -q "holds no object" "$T/case-$((n - 1))/logs/co.err" ||
    bad "an empty objects member was not refused as empty: $(head -c 300 "$T/case-$((n - 1))/logs/co.err")"
refused "a signature announced, none there" version.sig signed
finish
