#!/usr/bin/env bash
# bundle apply records a bundle's version in another repository with
# check-in's rule.  The office holds desk@1 (image S) and desk@2 (image T); a
# branch that holds desk@1 applies a bundle of desk@2 made with --have S: it
# gets the objects it lacks from the bundle, records desk@2 with T's digest
# and the office's message, exports it byte for byte as the office does, and
# passes check --objects; applied again, it says so and adds nothing.  A
# bundle whose version record claims another digest, its trailer resealed to
# match, is refused naming the record (the digest recorded and signed is the
# manifest's), and nothing is recorded.  A
# branch whose latest is newer refuses it as a lost race (exit 8) and records
# nothing; an empty one refuses it naming an object it lacks (exit 5); a
# bundle is no target, and a directory is no bundle.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq cmp python3

# reseal IN OUT: OUT is IN with one byte of its version record's digest
# flipped and the trailer's seals computed again, so only the record's
# agreement with its manifest can tell.
reseal() {
    python3 - "$1" "$2" <<'EOF2'
import hashlib, io, sys, tarfile
t = tarfile.open(sys.argv[1])
ms = t.getmembers()
data = {m.name: bytearray(t.extractfile(m).read()) for m in ms}

def varint(b, i):
    n = shift = 0
    while True:
        n |= (b[i] & 0x7f) << shift
        shift += 7
        i += 1
        if not b[i - 1] & 0x80:
            return n, i

v = data['version']
n, i = varint(v, 8)                     # the image name
i += max(n - 1, 0)
_, i = varint(v, i)                     # number
_, i = varint(v, i)                     # parent
v[i + 32] ^= 0x01                       # past the manifest id: the digest
e = data['end']
_, i = varint(e, 8)
_, i = varint(e, i)
count, i = varint(e, i)
for _ in range(count):
    n, i = varint(e, i)
    name = bytes(e[i:i + n - 1]).decode()
    i += n - 1
    e[i:i + 32] = hashlib.sha256(data[name]).digest()
    i += 32
e[i:i + 32] = hashlib.sha256(bytes(e[:i])).digest()
with tarfile.open(sys.argv[2], 'w', format=tarfile.PAX_FORMAT) as o:
    for m in ms:
        m.size = len(data[m.name])
        o.addfile(m, io.BytesIO(bytes(data[m.name])))
EOF2
}

export VMSYNC_HOST=apply-host VMSYNC_CACHE=$T/cache
R=$T/office
repo_init "$R"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
tdig=$(repo_digest "$timg") || fail "no digest for T"
sdig=$(repo_digest "$simg") || fail "no digest for S"
vm_ok "$T/imp1" import "$R" "$simg" --name desk -m "the seed"
vm_ok "$T/imp2" import "$R" "$timg" --name desk -m "the target"
vm_ok "$T/online" export "$R" desk -o "$T/online.img"
vm_ok "$T/s.manifest" manifest "$simg" -o "$T/s.vmsm"
vm_ok "$T/have" bundle create "$R" desk -o "$T/have.vmsb" --have "$T/s.vmsm" --level 3 --json
have_objects=$(jget "$T/have.out" .objects)

B=$T/branch
repo_init "$B"
vm_ok "$T/b-imp" import "$B" "$simg" --name desk
reseal "$T/have.vmsb" "$T/lying.vmsb"
vm_ok "$T/lying-show" bundle show "$T/lying.vmsb" --json
[[ $(jget "$T/lying-show.out" .canonical_digest) != "$tdig" ]] || fail "the resealed record still says T"
vm_expect "$T/lying" 5 bundle apply "$B" "$T/lying.vmsb"
why=$(one_error_line "$T/lying" "lying.vmsb: member version" "not its manifest") || bad "a record unlike its manifest: $why"
[[ $(repo_nversions "$B" desk) == 1 ]] || bad "a record unlike its manifest was recorded"

vm_ok "$T/apply" bundle apply "$B" "$T/have.vmsb" --json
json_ok "$T/apply.out" || fail "apply --json is not JSON: $(cat "$T/apply.out")"
[[ $(jget "$T/apply.out" .version) == 2 && $(jget "$T/apply.out" .already_recorded) == false ]] ||
    bad "apply: $(cat "$T/apply.out")"
[[ $(jget "$T/apply.out" .objects_added) == "$have_objects" ]] ||
    bad "apply added $(jget "$T/apply.out" .objects_added) objects, the bundle holds $have_objects"
[[ $(repo_version_digest "$B" desk 2) == "$tdig" ]] || bad "the branch's desk@2 is not T"
vm_ok "$T/b-log" log "$B" desk --json
[[ $(jq -r 'select(.version == 2) | .message' "$T/b-log.out") == "the target" ]] ||
    bad "the branch's desk@2 lost the office's message: $(cat "$T/b-log.out")"
vm_ok "$T/b-export" export "$B" desk@2 -o "$T/branch.img"
cmp "$T/branch.img" "$T/online.img" >/dev/null || bad "the branch's desk@2 differs from the office's"
vm_ok "$T/b-check" check "$B" --objects --json
vm_ok "$T/b-audit" audit "$B" desk --json
grep -q '"action":"apply"' "$T/b-audit.out" || bad "the audit log has no apply: $(cat "$T/b-audit.out")"

vm_ok "$T/again" bundle apply "$B" "$T/have.vmsb" --json
[[ $(jget "$T/again.out" .already_recorded) == true && $(jget "$T/again.out" .objects_added) == 0 ]] ||
    bad "applied again: $(cat "$T/again.out")"
[[ $(repo_nversions "$B" desk) == 2 ]] || bad "applied again: the branch has $(repo_nversions "$B" desk) versions"

# A branch where another desk@2 was recorded first: the race is lost.
L=$T/late
repo_init "$L"
vm_ok "$T/l-imp1" import "$L" "$simg" --name desk
vm_ok "$T/l-imp2" import "$L" "$simg" --name desk -m "recorded first"
vm_expect "$T/race" 8 bundle apply "$L" "$T/have.vmsb"
[[ $(repo_nversions "$L" desk) == 2 && $(repo_version_digest "$L" desk 2) == "$sdig" ]] ||
    bad "a lost race changed the branch's versions"

# An empty repository lacks what S holds, and the bundle left it out.
E=$T/empty
repo_init "$E"
vm_expect "$T/empty-apply" 5 bundle apply "$E" "$T/have.vmsb"
why=$(one_error_line "$T/empty-apply" have.vmsb "neither the bundle nor") || bad "apply to an empty repository: $why"
grep -Eq 'object [0-9a-f]{64}' "$T/empty-apply.err" || bad "the refusal names no object"
vm_ok "$T/empty-images" images "$E" --json
[[ $(jq -c .images "$T/empty-images.out") == "[]" ]] ||
    bad "a refused apply recorded something: $(cat "$T/empty-images.out")"

vm_expect "$T/into-bundle" 2 bundle apply "$T/have.vmsb" "$T/have.vmsb"
why=$(one_error_line "$T/into-bundle" have.vmsb "read-only") || bad "apply into a bundle: $why"
vm_expect "$T/not-bundle" 2 bundle apply "$B" "$R"
why=$(one_error_line "$T/not-bundle" office "not a bundle") || bad "apply of a directory: $why"
finish
