#!/usr/bin/env bash
# Check-in after offline work: check T out, change the copy in place through a
# loop mount (ext4: the kernel; NTFS: ntfs-3g): add files, delete a directory,
# rename one, edit a few 4 KiB pages of the 30 MiB mbox and append 1 MiB to it.
# Check in: little is sent, unchanged files are trusted, the new version has the
# modified image's digest, its export has the modified tree, the repository diff
# lists exactly the changes, and --full-rescan records the same digest.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq e2fsck ntfsfix ntfs-3g sqlite3 python3 losetup
repo_have_loop || skip "needs root and loop devices"

export VMSYNC_HOST=laptop-1 VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"

# The changes, made through a mount at $1 (deterministic; $2 salts the new
# content, so that the two file systems' changes do not dedup in the repository)
NEW_BYTES=$((10 * 100 * 1024 + 3000))
modify_tree() {
    local m=$1 salt=$2
    mkdir -p "$m/newdocs/sub"
    python3 - "$m" "$salt" <<'EOF'
import os, random, sys
m, salt = sys.argv[1], int(sys.argv[2])
for k in range(10):
    with open(os.path.join(m, 'newdocs', 'new%d.bin' % k), 'wb') as f:
        f.write(random.Random(salt + 8000 + k).randbytes(100 * 1024))
with open(os.path.join(m, 'newdocs', 'sub', 'deep.txt'), 'wb') as f:
    f.write(random.Random(salt + 8100).randbytes(3000))
# edit five 4 KiB pages of the mbox in place, then append 1 MiB
with open(os.path.join(m, 'mail', 'mbox'), 'r+b') as f:
    r = random.Random(salt + 8200)
    for page in (3, 1000, 2500, 4000, 7000):
        f.seek(page * 4096)
        f.write(r.randbytes(4096))
    f.seek(0, 2)
    f.write(random.Random(salt + 8300).randbytes(1 << 20))
EOF
    rm -rf "$m/docs/d3"
    mv "$m/media/setB" "$m/media/setB-renamed"
}

# expected diff of v1 -> v2 (a renamed directory whose files moved with it is
# itself a move, as the README says)
cat >"$T/expected.json" <<'EOF'
{
  "added": ["/newdocs", "/newdocs/sub", "/newdocs/sub/deep.txt",
            "/newdocs/new0.bin", "/newdocs/new1.bin", "/newdocs/new2.bin", "/newdocs/new3.bin",
            "/newdocs/new4.bin", "/newdocs/new5.bin", "/newdocs/new6.bin", "/newdocs/new7.bin",
            "/newdocs/new8.bin", "/newdocs/new9.bin"],
  "removed": ["/docs/d3",
              "/docs/d3/note00.txt", "/docs/d3/note01.txt", "/docs/d3/note02.txt", "/docs/d3/note03.txt",
              "/docs/d3/note04.txt", "/docs/d3/note05.txt", "/docs/d3/note06.txt", "/docs/d3/note07.txt",
              "/docs/d3/note08.txt", "/docs/d3/note09.txt", "/docs/d3/note10.txt", "/docs/d3/note11.txt",
              "/docs/d3/note12.txt", "/docs/d3/note13.txt", "/docs/d3/note14.txt"],
  "changed": {"/mail/mbox": ["content", "size"]},
  "moved": [["/media/setB", "/media/setB-renamed"],
            ["/media/setB/b0.bin", "/media/setB-renamed/b0.bin"], ["/media/setB/b1.bin", "/media/setB-renamed/b1.bin"],
            ["/media/setB/b2.bin", "/media/setB-renamed/b2.bin"], ["/media/setB/b3.bin", "/media/setB-renamed/b3.bin"],
            ["/media/setB/b4.bin", "/media/setB-renamed/b4.bin"], ["/media/setB/b5.bin", "/media/setB-renamed/b5.bin"],
            ["/media/setB/b6.bin", "/media/setB-renamed/b6.bin"], ["/media/setB/b7.bin", "/media/setB-renamed/b7.bin"]]
}
EOF

# check_diff DIFF_JSON LABEL: the diff lists exactly the expected changes
check_diff() {
    python3 - "$T/expected.json" "$1" "$2" <<'EOF'
import json, sys
import vmtest as V
exp, label = V.load(sys.argv[1]), sys.argv[3]
try:
    d = V.load(sys.argv[2])
except Exception as e:
    print('FAIL: %s: not JSON: %s' % (label, e))
    sys.exit(1)
errs = []
def cmpset(what, got, want):
    got, want = set(got), set(want)
    if got - want:
        errs.append('%s: unexpected %s' % (what, V.show(got - want)))
    if want - got:
        errs.append('%s: missing %s' % (what, V.show(want - got)))
cmpset('added', (i.get('path') for i in d.get('added', [])), exp['added'])
cmpset('removed', (i.get('path') for i in d.get('removed', [])), exp['removed'])
cmpset('changed', (i.get('path') for i in d.get('changed', [])), exp['changed'])
cmpset('moved', ((i.get('from'), i.get('to')) for i in d.get('moved', [])), map(tuple, exp['moved']))
for i in d.get('changed', []):
    w = exp['changed'].get(i.get('path'))
    if w is not None and sorted(i.get('what') or []) != sorted(w):
        errs.append('changed %s: what=%r, expected %r' % (i.get('path'), i.get('what'), w))
sys.exit(V.report(errs, label + ': '))
EOF
}

lease_of() { sqlite3 "$R/catalog.db" "select l.version || '|' || l.host from leases l join images i on i.id = l.image_id where i.name = '$1'"; }

for fs in ext4 ntfs; do
    name=ci-$fs
    salt=0
    [[ $fs == ntfs ]] && salt=100000
    info "=== $name"
    timg=$(repo_img t "$fs") || fail "cannot build T ($fs)"
    simg=$(repo_img s "$fs") || fail "cannot build S ($fs)"
    vm_ok "$T/$name.import" import "$R" "$timg" --name "$name"
    out=$T/$name.img
    vm_ok "$T/$name.co" checkout "$R" "$name" -o "$out" --seed "$simg"

    # offline work, through a loop mount
    dev=$(repo_loop "$out") || fail "losetup failed"
    repo_mount "$dev" "$fs" "$T/mnt" || fail "cannot mount the checked-out $fs image"
    modify_tree "$T/mnt" "$salt" || fail "modifying the mounted image failed"
    repo_umount "$T/mnt"
    repo_unloop "$dev"
    if ! o=$(repo_fsck "$out" "$fs"); then
        bad "$name: the modified image is not clean before check-in (test setup): $(tr '\n' ' ' <<<"$o" | cut -c1-300)"
    fi
    mdig=$(repo_digest "$out") || fail "$name: no digest for the modified image"
    manifest_json "$T/$name.mod" "$out"
    repo_manifest_map "$T/$name.mod.out" "$T/$name.mod.map"
    file_bytes=$(jq '[.volumes[].entries[] | select(.type == "file") | .size] | add' "$T/$name.mod.out")

    # check-in
    vm_ok "$T/$name.ci" checkin "$R" "$name" "$out" -m "offline work" --stats-json "$T/$name.ci.json"
    st=$T/$name.ci.json
    json_ok "$st" || fail "$name: checkin --stats-json is not JSON"
    sent=$(repo_stat "$st" bytes_sent_raw)
    trusted=$(repo_stat "$st" files_trusted)
    rehashed=$(repo_stat "$st" files_rehashed)
    info "$name: sent $sent raw ($(repo_stat "$st" bytes_sent_compressed) compressed, $(repo_stat "$st" objects_sent) objects), files trusted $trusted, rehashed $rehashed; image file bytes $file_bytes"
    limit=$((3 * 1048576 + NEW_BYTES))
    ((sent < limit)) || bad "$name: check-in sent $sent bytes, more than $limit (3 MiB + the new files) for a $file_bytes-byte tree"
    ((sent >= NEW_BYTES)) || bad "$name: check-in sent $sent bytes, less than the $NEW_BYTES bytes of new files"
    ((trusted > 0)) || bad "$name: files_trusted=$trusted"
    ((rehashed < trusted)) || bad "$name: files_rehashed=$rehashed >= files_trusted=$trusted: unchanged files were reread"
    [[ $(repo_stat "$st" version) == 2 ]] || bad "$name: stats version $(repo_stat "$st" version), expected 2"
    [[ $(repo_stat "$st" canonical_digest) == "$mdig" ]] || bad "$name: stats canonical_digest differs from the modified image's"
    [[ -z $(lease_of "$name") ]] || bad "$name: the lease is still held after check-in: $(lease_of "$name")"
    v2=$(timeout 60 "$VMSYNC" log "$R" "$name" --json | jq -c 'select(.version == 2)')
    [[ $(jq -r .digest <<<"$v2") == "$mdig" ]] || bad "$name: v2's digest in the log is not the modified image's: $v2"
    [[ $(jq -r .parent <<<"$v2") == 1 ]] || bad "$name: v2's parent is not 1: $v2"
    [[ $(jq -r .message <<<"$v2") == "offline work" ]] || bad "$name: v2's message is lost: $v2"

    # export of v2 equals the modified image
    e=$T/$name.export.img
    vm_ok "$T/$name.export" export "$R" "$name@2" -o "$e"
    edig=$(repo_digest "$e") || bad "$name: no digest for the export"
    [[ $edig == "$mdig" ]] || bad "$name: export of v2 has digest $edig, the modified image $mdig"
    if ! o=$(repo_fsck "$e" "$fs"); then
        bad "$name: fsck of the export is not clean: $(tr '\n' ' ' <<<"$o" | cut -c1-300)"
    fi
    manifest_json "$T/$name.exp" "$e"
    repo_manifest_map "$T/$name.exp.out" "$T/$name.exp.map"
    repo_cmp_maps "$T/$name.mod.map" "$T/$name.exp.map" "$name: export's manifest vs the modified image's" >"$T/cmp.txt" ||
        bad "$(cat "$T/cmp.txt")"
    da=$(repo_loop "$out" ro) && db=$(repo_loop "$e" ro) || fail "losetup failed"
    if repo_mount "$da" "$fs" "$T/mnt-a" ro && repo_mount "$db" "$fs" "$T/mnt-b" ro; then
        diff -r --no-dereference "$T/mnt-a" "$T/mnt-b" >"$T/diff.txt" 2>&1 ||
            bad "$name: the mounted export differs from the mounted modified image: $(head -5 "$T/diff.txt" | tr '\n' ' ')"
        # the modified tree really holds the changes
        [[ -f $T/mnt-b/newdocs/sub/deep.txt && ! -e $T/mnt-b/docs/d3 && -d $T/mnt-b/media/setB-renamed ]] ||
            bad "$name: the export lacks the offline changes"
        [[ $(stat -c %s "$T/mnt-b/mail/mbox") == $(((30 << 20) + (1 << 20))) ]] || bad "$name: the exported mbox has the wrong size"
    else
        bad "$name: cannot mount the export and the modified image read-only"
    fi
    repo_umount "$T/mnt-b" 2>/dev/null || true
    repo_umount "$T/mnt-a" 2>/dev/null || true
    repo_unloop "$db"
    repo_unloop "$da"

    # the repository diff lists the changes, as the image diff does
    vm "$T/$name.rdiff" diff "$R" "$name@1" "$name@2" --json
    if ((VM_RC != 0)); then
        bad "$name: vmsync diff REPO $name@1 $name@2 --json exited $VM_RC: $(head -c 300 "$T/$name.rdiff.err")"
    else
        check_diff "$T/$name.rdiff.out" "$name: repository diff v1 v2" || FAILS=$((FAILS + 1))
    fi
    vm "$T/$name.idiff" diff "$timg" "$out" --json
    if ((VM_RC == 0)); then
        check_diff "$T/$name.idiff.out" "$name: image diff T vs modified" || FAILS=$((FAILS + 1))
    else
        bad "$name: vmsync diff T modified --json exited $VM_RC"
    fi
    vm "$T/$name.rdifft" diff "$R" "$name@1" "$name@2"
    ((VM_RC == 0)) && grep -qx 'M /mail/mbox (content,size)' "$T/$name.rdifft.out" ||
        bad "$name: text repository diff lacks 'M /mail/mbox (content,size)': $(head -c 300 "$T/$name.rdifft.out")"

    # --full-rescan: check v2 out again, check the same image in: same digest,
    # nothing trusted, nothing new to send
    vm_ok "$T/$name.co2" checkout "$R" "$name" -o "$T/$name.again.img" --seed "$out"
    [[ $(lease_of "$name") == "2|laptop-1" ]] || bad "$name: lease after the second checkout: '$(lease_of "$name")'"
    vm_ok "$T/$name.ci2" checkin "$R" "$name" "$out" --full-rescan --stats-json "$T/$name.ci2.json"
    st2=$T/$name.ci2.json
    [[ $(repo_stat "$st2" version) == 3 ]] || bad "$name: the full-rescan check-in recorded version $(repo_stat "$st2" version), expected 3"
    [[ $(repo_version_digest "$R" "$name" 3) == "$mdig" ]] || bad "$name: the full-rescan version's digest differs from the trusting check-in's"
    [[ $(repo_stat "$st2" files_trusted) == 0 ]] || bad "$name: --full-rescan trusted $(repo_stat "$st2" files_trusted) files"
    (($(repo_stat "$st2" files_rehashed) >= trusted + rehashed - 1)) ||
        bad "$name: --full-rescan rehashed $(repo_stat "$st2" files_rehashed) files, the image has about $((trusted + rehashed))"
    (($(repo_stat "$st2" bytes_sent_raw) == 0)) || bad "$name: --full-rescan of an unchanged image sent $(repo_stat "$st2" bytes_sent_raw) bytes"
    [[ $(repo_digest "$T/$name.again.img") == "$mdig" ]] || bad "$name: checkout of v2 does not have the modified image's digest"
    rm -f "$out" "$e" "$T/$name.again.img"
done
finish
