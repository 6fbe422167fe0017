#!/usr/bin/env bash
# Images that point outside themselves.  A qcow2 backing file or a vmdk extent
# or parent may only be a file in the image's own folder (after realpath), or
# under a folder given with --allow-backing.  Absolute paths, ../, symlinks
# out of the folder, protocols (an nbd:// listener must never see a
# connection), json: names, loops and chains deeper than 16 are refused with
# exit 4 and one message naming the image and the reference, before qemu-nbd
# opens anything.  An ordinary overlay beside its base keeps working, with the
# digest of its flattened image.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd qemu-img qemu-nbd mke2fs python3 jq
# every refusal is immediate; a build that follows a loop hangs in qemu-nbd
VMSYNC_CMD_TIMEOUT=30

# Kills, by PID, any qemu-nbd serving one of our files: a build that follows a
# loop leaves one behind, spinning and growing.
kill_strays() {
    local p
    for p in $(pgrep -x qemu-nbd || true); do
        if grep -qF "$T/" "/proc/$p/cmdline" 2>/dev/null; then
            bad "a qemu-nbd ($p) outlived vmsync: $(tr '\0' ' ' <"/proc/$p/cmdline" | head -c 200)"
            kill -9 "$p" 2>/dev/null || true
        fi
    done
}
trap 'rc=$?; kill_strays; (exit $rc); _common_cleanup' EXIT

D=$T/images          # the folder the hostile images live in
OUT=$T/outside       # host files they must not reach
mkdir -p "$D" "$OUT" "$T/tree/etc"
printf 'base\n' >"$T/tree/etc/hostname"
head -c 300000 /dev/urandom >"$T/tree/data.bin"
mke2fs -q -t ext4 -F -d "$T/tree" -L base "$D/base.raw" 8M
printf 'secret\n' >"$T/tree/etc/hostname"
mke2fs -q -t ext4 -F -d "$T/tree" -L secret "$OUT/secret.raw" 8M

digest_of() { # digest_of PREFIX IMAGE [ARGS...]
    local p=$1
    shift
    vm "$p" manifest "$@" --json
    ((VM_RC == 0)) && jget "$p.out" .digest
}

# refused NAME IMAGE REFERENCE [ARGS...]: exit 4, nothing on stdout, one error
# (a JSON object: --json) naming the image and the reference.
refused() {
    local name=$1 image=$2 ref=$3 why
    shift 3
    vm_expect "$T/$name" 4 manifest "$image" --json "$@" || { kill_strays; return 0; }
    [[ ! -s $T/$name.out ]] || bad "$name: refused, yet printed $(head -c 100 "$T/$name.out")"
    why=$(one_error_line "$T/$name" "$image") || bad "$name: $why"
    local msg # with --json the error is JSON: its message, unescaped
    msg=$(jq -r .error.message "$T/$name.err" 2>/dev/null) || msg=$(cat "$T/$name.err")
    [[ $msg == *"$ref"* ]] || bad "$name: the message does not name '$ref': $(cat "$T/$name.err")"
    kill_strays
}

overlay() { # overlay FILE BACKING [FORMAT]: a qcow2 whose header names BACKING
    qemu-img create -q -f qcow2 -u -b "$2" -F "${3:-raw}" "$1" 8M
}

d_secret=$(digest_of "$T/secret" "$OUT/secret.raw") || fail "manifest of the outside image failed"

# -- files outside the folder
overlay "$D/abs.qcow2" "$OUT/secret.raw"
refused abs "$D/abs.qcow2" "$OUT/secret.raw"
overlay "$D/dotdot.qcow2" ../outside/secret.raw
refused dotdot "$D/dotdot.qcow2" ../outside/secret.raw
ln -s ../outside/secret.raw "$D/link.raw"
overlay "$D/symlink.qcow2" link.raw
refused symlink "$D/symlink.qcow2" link.raw
overlay "$D/etc.qcow2" /etc/passwd
refused etc "$D/etc.qcow2" /etc/passwd
overlay "$D/missing.qcow2" nothing-here.raw
refused missing "$D/missing.qcow2" nothing-here.raw

# -- protocols and json: names; the listener must never be reached
port_file=$T/port
python3 - "$port_file" "$T/connections" <<'EOF' &
import socket, sys, time
s = socket.socket()
s.bind(("127.0.0.1", 0))
s.listen(4)
s.settimeout(0.2)
open(sys.argv[1], "w").write(str(s.getsockname()[1]))
seen = 0
end = time.time() + 60
while time.time() < end:
    try:
        c, _ = s.accept()
        seen += 1
        open(sys.argv[2], "w").write(str(seen))
        c.close()
    except socket.timeout:
        pass
EOF
listener=$!
for _ in $(seq 100); do [[ -s $port_file ]] && break; sleep 0.05; done
port=$(cat "$port_file") || fail "the listener did not start"
overlay "$D/nbd.qcow2" "nbd://127.0.0.1:$port/x"
refused nbd "$D/nbd.qcow2" "nbd://127.0.0.1:$port/x"
overlay "$D/nbdcolon.qcow2" "nbd:127.0.0.1:$port"
refused nbdcolon "$D/nbdcolon.qcow2" "nbd:127.0.0.1:$port"
overlay "$D/http.qcow2" "http://127.0.0.1:$port/disk.raw"
refused http "$D/http.qcow2" "http://127.0.0.1:$port/disk.raw"
overlay "$D/file.qcow2" "file:$OUT/secret.raw"
refused file "$D/file.qcow2" "file:$OUT/secret.raw"
overlay "$D/json.qcow2" 'json:{"driver":"raw","file":{"driver":"file","filename":"/etc/passwd"}}'
refused json "$D/json.qcow2" 'json:{"driver":"raw"'
# a vmdk extent naming the listener
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 16384 FLAT "nbd://127.0.0.1:%s/x" 0\n' \
    "$port" >"$D/nbd-extent.vmdk"
refused nbd-extent "$D/nbd-extent.vmdk" "nbd://127.0.0.1:$port/x"
sleep 0.3
kill "$listener" 2>/dev/null || true
wait "$listener" 2>/dev/null || true
[[ ! -e $T/connections ]] || bad "the nbd:// listener saw $(cat "$T/connections") connection(s)"

# -- loops and depth
overlay "$D/loop-a.qcow2" loop-b.qcow2 qcow2
overlay "$D/loop-b.qcow2" loop-a.qcow2 qcow2
refused loop "$D/loop-a.qcow2" loop-a.qcow2
overlay "$D/self.qcow2" self.qcow2 qcow2
refused self "$D/self.qcow2" self.qcow2
mkdir -p "$D/chain"
cp "$D/base.raw" "$D/chain/l0.raw"
qemu-img create -q -f qcow2 -b l0.raw -F raw "$D/chain/l1.qcow2"
for i in $(seq 2 17); do
    qemu-img create -q -f qcow2 -b "l$((i - 1)).qcow2" -F qcow2 "$D/chain/l$i.qcow2"
done
refused deep "$D/chain/l17.qcow2" l0.raw
d_base=$(digest_of "$T/base" "$D/base.raw") || fail "manifest of the base image failed"
d16=$(digest_of "$T/l16" "$D/chain/l16.qcow2") ||
    bad "a chain 16 deep is refused: $(cat "$T/l16.err")"
[[ -z ${d16:-} || $d16 == "$d_base" ]] || bad "chain 16 deep: digest $d16, its base's is $d_base"

# -- vmdk: descriptor extents, an embedded descriptor, a parent
desc() { # desc FILE EXTENT-NAME [MORE-LINES]
    printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="monolithicFlat"\nRW 16384 FLAT "%s" 0\n%s' \
        "$2" "${3:-}" >"$1"
}
desc "$D/passwd.vmdk" /etc/passwd
refused vmdk-passwd "$D/passwd.vmdk" /etc/passwd
desc "$D/outside.vmdk" ../outside/secret.raw
refused vmdk-outside "$D/outside.vmdk" ../outside/secret.raw
desc "$D/second.vmdk" base.raw "RW 16384 FLAT \"$OUT/secret.raw\" 0
"
refused vmdk-second "$D/second.vmdk" "$OUT/secret.raw"
# qemu reads the type as at most 10 characters: VMFSSPARSE with its quote
# right after it still names a file
qemu-img convert -q -f raw -O vmdk "$OUT/secret.raw" "$OUT/sparse.vmdk"
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="vmfsSparse"\nRW 16384 VMFSSPARSE"%s"\n' \
    "$OUT/sparse.vmdk" >"$D/tight.vmdk"
refused vmdk-tight "$D/tight.vmdk" "$OUT/sparse.vmdk"
desc "$D/flat-ok.vmdk" base.raw
d=$(digest_of "$T/flat-ok" "$D/flat-ok.vmdk") || bad "a vmdk with its extent beside it is refused: $(cat "$T/flat-ok.err")"
[[ -z ${d:-} || $d == "$d_base" ]] || bad "vmdk with a flat extent: digest $d, expected $d_base"
# a sparse vmdk with capacity 0 reads its extents from its embedded descriptor
qemu-img convert -q -f raw -O vmdk "$D/base.raw" "$D/embedded.vmdk"
python3 - "$D/embedded.vmdk" "$OUT/secret.raw" <<'EOF'
import struct, sys
path, target = sys.argv[1], sys.argv[2]
b = bytearray(open(path, "rb").read())
off, size = struct.unpack_from("<QQ", b, 28)
text = b[off * 512:(off + size) * 512].split(b"\0")[0].decode()
lines = [l for l in text.splitlines() if not l.startswith(("RW ", "createType"))]
lines.append('createType="monolithicFlat"')
lines.append('RW 16384 FLAT "%s" 0' % target)
new = ("\n".join(lines) + "\n").encode()
assert len(new) <= size * 512
b[off * 512:(off + size) * 512] = new.ljust(size * 512, b"\0")
struct.pack_into("<Q", b, 12, 0)  # capacity 0: the descriptor lists the extents
open(path, "wb").write(b)
EOF
refused vmdk-embedded "$D/embedded.vmdk" "$OUT/secret.raw"
# qemu finds the extents of an extent's embedded descriptor beside the top
# file, not beside that extent: from sub/, ../outside is the host's folder
# (a decoy at $D/outside would take the blame otherwise)
mkdir -p "$D/sub" "$D/outside"
cp "$D/base.raw" "$D/outside/secret.raw"
python3 - "$D/embedded.vmdk" "$D/sub/nested.vmdk" "$OUT/secret.raw" <<'PY'
import sys
src, dst, old = sys.argv[1], sys.argv[2], sys.argv[3].encode()
b = open(src, "rb").read()
new = b"../outside/secret.raw"
i = b.index(old)
end = b.index(b"\0", i)  # the descriptor text ends here; keep every offset
text = b[i:end].replace(old, new, 1)
open(dst, "wb").write(b[:i] + text + b"\0" * (end - i - len(text)) + b[end:])
PY
printf '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\nRW 16384 SPARSE "sub/nested.vmdk"\n' \
    >"$D/nested.vmdk"
refused vmdk-nested "$D/nested.vmdk" ../outside/secret.raw
# extents naming extents, twenty to a descriptor, sixteen deep: no loop, but
# 20^16 files to check unless the walk is bounded as a whole
mkdir -p "$D/dag"
python3 - "$D/dag" <<'PY'
import os, struct, sys
d, n = sys.argv[1], 16
head = '# Disk DescriptorFile\nversion=1\nCID=fffffffe\nparentCID=ffffffff\ncreateType="twoGbMaxExtentSparse"\n'
for i in range(n):
    text = (head + ('RW 16384 SPARSE "L%d.vmdk"\n' % (i + 1)) * 20 * (i + 1 < n)).encode()
    sectors = (len(text) + 511) // 512
    h = bytearray(512)  # KDMV, capacity 0, the descriptor at sector 1
    h[0:4] = b'KDMV'
    struct.pack_into('<IIQQQQ', h, 4, 1, 3, 0, 128, 1, sectors)
    open(os.path.join(d, 'L%d.vmdk' % i), 'wb').write(bytes(h) + text.ljust(sectors * 512, b'\0'))
open(os.path.join(d, 'top.vmdk'), 'w').write(head + 'RW 16384 SPARSE "L0.vmdk"\n')
PY
refused vmdk-dag "$D/dag/top.vmdk" "vmdk descriptors"
# a delta disk whose parent is outside
qemu-img convert -q -f raw -O vmdk "$OUT/secret.raw" "$OUT/parent.vmdk"
desc "$D/delta.vmdk" base.raw "parentFileNameHint=\"$OUT/parent.vmdk\"
"
sed -i 's/^parentCID=ffffffff/parentCID=12345678/' "$D/delta.vmdk"
refused vmdk-parent "$D/delta.vmdk" "$OUT/parent.vmdk"

# -- every command that opens images refuses them
vm_expect "$T/inspect" 4 inspect "$D/abs.qcow2" && { why=$(one_error_line "$T/inspect" "$D/abs.qcow2") || bad "inspect: $why"; }
vm_expect "$T/diff" 4 diff "$D/base.raw" "$D/abs.qcow2"
vm_ok "$T/init" init "$T/repo"
vm_expect "$T/import" 4 import "$T/repo" "$D/abs.qcow2" --name hostile -q
vm "$T/log" log "$T/repo" hostile
[[ ! -s $T/log.out ]] || bad "a refused import recorded a version: $(cat "$T/log.out")"

# -- what the user allows
d=$(digest_of "$T/allowed" "$D/abs.qcow2" --allow-backing "$OUT") ||
    bad "--allow-backing $OUT: still refused: $(cat "$T/allowed.err")"
[[ -z ${d:-} || $d == "$d_secret" ]] || bad "--allow-backing: digest $d, its backing file's is $d_secret"
refused allowed-other "$D/etc.qcow2" /etc/passwd --allow-backing "$OUT"
vm_ok "$T/import-ok" import "$T/repo" "$D/abs.qcow2" --name allowed -q --allow-backing "$OUT"
vm_expect "$T/verify" 0 verify "$T/repo" allowed "$D/abs.qcow2" --allow-backing "$OUT" -q
vm_expect "$T/badallow" 2 manifest "$D/abs.qcow2" --allow-backing "$T/no-such-dir"

# -- an ordinary overlay: its own changes on a base beside it
printf 'changed\n' >"$T/tree/etc/hostname"
head -c 100000 /dev/urandom >"$T/tree/new.bin"
mke2fs -q -t ext4 -F -d "$T/tree" -L base "$T/changed.raw" 8M
qemu-img convert -q -f raw -O qcow2 -B base.raw -F raw "$T/changed.raw" "$D/overlay.qcow2"
[[ $(qemu-img info --output=json "$D/overlay.qcow2" | jq -r '.["backing-filename"]') == base.raw ]] ||
    fail "the overlay does not name base.raw"
qemu-img convert -q -O raw "$D/overlay.qcow2" "$T/flattened.raw"
d_flat=$(digest_of "$T/flat" "$T/flattened.raw") || fail "manifest of the flattened overlay failed"
d_ov=$(digest_of "$T/overlay" "$D/overlay.qcow2") || bad "the ordinary overlay is refused: $(cat "$T/overlay.err")"
[[ -z ${d_ov:-} || $d_ov == "$d_flat" ]] || bad "overlay digest $d_ov != flattened digest $d_flat"
[[ $d_flat != "$d_base" ]] || bad "the overlay changed nothing: the check proves nothing"
# the same in a folder whose name is not UTF-8 (qemu cannot parse it in JSON)
odd=$T/$'odd\xff'
mkdir -p "$odd"
cp "$D/base.raw" "$D/overlay.qcow2" "$odd/"
d_odd=$(digest_of "$T/odd" "$odd/overlay.qcow2") || bad "an overlay in a non-UTF-8 folder: $(cat "$T/odd.err")"
[[ -z ${d_odd:-} || $d_odd == "$d_flat" ]] || bad "overlay in a non-UTF-8 folder: digest $d_odd != $d_flat"
# and in folders whose names look like UTF-8 but that qemu's JSON parser
# refuses: an overlong form, a surrogate, a noncharacter, past U+10FFFF
for odd in over:$'\xe0\x80\xaf' surrogate:$'\xed\xa0\x80' nonchar:$'\xef\xbf\xbe' big:$'\xf4\x90\x80\x80'; do
    dir=$T/${odd%%:*}${odd#*:}
    mkdir -p "$dir"
    cp "$D/base.raw" "$D/overlay.qcow2" "$dir/"
    d_odd=$(digest_of "$T/${odd%%:*}" "$dir/overlay.qcow2") ||
        bad "an overlay in a folder named ${odd%%:*}: $(cat "$T/${odd%%:*}.err")"
    [[ -z ${d_odd:-} || $d_odd == "$d_flat" ]] || bad "overlay in folder ${odd%%:*}: digest $d_odd != $d_flat"
done
finish
