#!/usr/bin/env bash
# Round trip through a repository: import image T, check it out against a
# different seed S (sharing most files at other offsets), for ext4 and NTFS in
# GPT, as raw and as qcow2.  The output has T's canonical digest, verifies,
# fsck finds it clean, every file equals T's source tree, the seed really
# provided the shared content, --format qcow2 verifies too, and --estimate
# writes nothing and predicts the real run's figures.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex qemu-img jq e2fsck ntfsfix sqlite3 python3

export VMSYNC_HOST=roundtrip-host VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"

ttree=$(repo_tree t) || fail "cannot build tree t"
stree=$(repo_tree s) || fail "cannot build tree s"
repo_tree_map "$ttree" "$T/t.map"
repo_tree_map "$stree" "$T/s.map"
# T's file bytes (a hard link counted once), the bytes of T's files that S holds
# too (whole, at any path), and the bytes no seed holds at all (media/setC)
read -r t_bytes shared_bytes only_t_bytes < <(python3 - "$ttree" "$T/t.map" "$T/s.map" <<'EOF'
import json, os, sys
root, t, s = sys.argv[1], json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
shas = set(s.values())
seen = set()
tb = sb = ob = 0
for p, h in t.items():
    if h == 'dir' or h.startswith('link:'):
        continue
    st = os.lstat(root + p)
    if st.st_ino in seen:
        continue
    seen.add(st.st_ino)
    tb += st.st_size
    if h in shas:
        sb += st.st_size
    if p.startswith('/media/setC/'):
        ob += st.st_size
print(tb, sb, ob)
EOF
)
info "T: $t_bytes file bytes; $shared_bytes of them also in S; $only_t_bytes only in T (media/setC)"

have_loop=0
repo_have_loop && have_loop=1
((have_loop)) || info "no loop devices: the read-only mount comparison is skipped"

lease_row() { sqlite3 "$R/catalog.db" "select l.version, l.host from leases l join images i on i.id = l.image_id where i.name = '$1'"; }

for fs in ext4 ntfs; do
    for fmt in raw qcow2; do
        name=$fs-$fmt
        info "=== $name"
        timg=$(repo_img t "$fs" "$fmt") || fail "cannot build T ($fs, $fmt)"
        simg=$(repo_img s "$fs" "$fmt") || fail "cannot build S ($fs, $fmt)"
        tdig=$(repo_digest "$timg") || fail "no digest for $timg"
        sdig=$(repo_digest "$simg") || fail "no digest for $simg"
        [[ $tdig != "$sdig" ]] || bad "$name: T and S have the same digest (test setup)"
        vm_ok "$T/$name.import" import "$R" "$timg" --name "$name" -m "T as $fmt"

        out=$T/$name.out
        # --estimate first: writes nothing, takes no lease
        lease_before=$(lease_row "$name")
        vm_ok "$T/$name.est" checkout "$R" "$name" -o "$out" --seed "$simg" --estimate --stats-json "$T/$name.est.json"
        for f in "$out" "$out.vmsync-part" "$out.vmsync-journal"; do
            [[ ! -e $f ]] || bad "$name: --estimate created $(basename "$f")"
        done
        [[ $(lease_row "$name") == "$lease_before" ]] || bad "$name: --estimate changed the lease: $(lease_row "$name")"
        json_ok "$T/$name.est.json" || bad "$name: --estimate --stats-json is not JSON"

        vm_ok "$T/$name.co" checkout "$R" "$name" -o "$out" --seed "$simg" --stats-json "$T/$name.co.json"
        st=$T/$name.co.json
        json_ok "$st" || fail "$name: --stats-json is not JSON"
        [[ -f $out ]] || fail "$name: checkout did not create $out"
        for f in "$out.vmsync-part" "$out.vmsync-journal"; do
            [[ ! -e $f ]] || bad "$name: $(basename "$f") left behind after a successful checkout"
        done
        [[ $(lease_row "$name") == "1|roundtrip-host" ]] || bad "$name: lease after checkout is '$(lease_row "$name")', expected 1|roundtrip-host"

        # digest
        odig=$(repo_digest "$out") || bad "$name: no digest for the output"
        [[ $odig == "$tdig" ]] || bad "$name: output digest $odig != T's $tdig"
        [[ $(repo_stat "$st" canonical_digest) == "$tdig" ]] || bad "$name: stats canonical_digest $(repo_stat "$st" canonical_digest) != $tdig"
        vm "$T/$name.verify" verify "$R" "$name" "$out"
        ((VM_RC == 0)) || bad "$name: vmsync verify exited $VM_RC: $(head -c 300 "$T/$name.verify.err")"

        # the seed helped
        from_seeds=$(repo_stat "$st" bytes_from_seeds)
        fetched=$(repo_stat "$st" bytes_fetched_raw)
        info "$name: from seeds $from_seeds, fetched $fetched raw ($(repo_stat "$st" bytes_fetched_compressed) compressed, $(repo_stat "$st" objects_fetched) objects)"
        ((from_seeds > 0)) || bad "$name: bytes_from_seeds=$from_seeds"
        ((from_seeds * 10 >= shared_bytes * 9)) || bad "$name: bytes_from_seeds=$from_seeds, but S holds $shared_bytes bytes of T's files whole"
        ((fetched < t_bytes / 4)) || bad "$name: bytes_fetched_raw=$fetched, not well below T's $t_bytes file bytes"
        ((fetched >= only_t_bytes)) || bad "$name: bytes_fetched_raw=$fetched < $only_t_bytes bytes that no seed holds"

        # --estimate predicted the run
        for k in version image_size bytes_from_seeds objects_from_seeds bytes_fetched_raw bytes_fetched_compressed objects_fetched canonical_digest; do
            e=$(repo_stat "$T/$name.est.json" "$k")
            r=$(repo_stat "$st" "$k")
            [[ $e == "$r" ]] || bad "$name: --estimate $k=$e but the checkout's $k=$r"
        done

        # fsck
        if ! o=$(repo_fsck "$out" "$fs"); then
            bad "$name: fsck of the output is not clean: $(tr '\n' ' ' <<<"$o" | cut -c1-400)"
        fi

        # every file equals T's tree: through vmsync's manifest ...
        manifest_json "$T/$name.m" "$out"
        repo_manifest_map "$T/$name.m.out" "$T/$name.m.map"
        repo_cmp_maps "$T/t.map" "$T/$name.m.map" "$name: manifest of the output vs T's tree" >"$T/cmp.txt" ||
            bad "$(cat "$T/cmp.txt")"
        if [[ $fs == ext4 ]]; then
            # modes, owners, link counts, symlink targets too
            python3 - "$T/$name.m.out" "$ttree" "$name" <<'EOF' || FAILS=$((FAILS + 1))
import sys
import vmtest as V
m = V.load(sys.argv[1])
errs = []
vol = V.the_fs_volume(m, 'ext', errs)
if vol is not None:
    V.compare_tree(vol, V.scan_tree(sys.argv[2]), 'ext', errs, root_extra=('/lost+found',))
sys.exit(V.report(errs, sys.argv[3] + ': output manifest vs tree: '))
EOF
        fi
        # ... and through the kernel (ext4) or ntfs-3g, read-only
        if ((have_loop)); then
            dev=$(repo_loop "$out" ro) || fail "losetup failed"
            mnt=$T/mnt-$name
            if repo_mount "$dev" "$fs" "$mnt" ro; then
                if ! diff -r --no-dereference -x lost+found -x 'System Volume Information' "$ttree" "$mnt" >"$T/diff.txt" 2>&1; then
                    bad "$name: mounted output differs from T's tree: $(head -5 "$T/diff.txt" | tr '\n' ' ')"
                fi
                repo_umount "$mnt"
            else
                bad "$name: cannot mount the output read-only"
            fi
            repo_unloop "$dev"
        fi

        # --format qcow2
        q=$T/$name.q.qcow2
        vm_ok "$T/$name.coq" checkout "$R" "$name" -o "$q" --format qcow2 --seed "$simg" --stats-json "$T/$name.coq.json"
        qfmt=$(qemu-img info --output=json "$q" | jq -r .format)
        [[ $qfmt == qcow2 ]] || bad "$name: --format qcow2 wrote a $qfmt image"
        vm "$T/$name.verifyq" verify "$R" "$name" "$q"
        ((VM_RC == 0)) || bad "$name: verify of the qcow2 output exited $VM_RC: $(head -c 300 "$T/$name.verifyq.err")"
        [[ $(repo_digest "$q") == "$tdig" ]] || bad "$name: qcow2 output digest differs from T's"
        qemu-img check -q "$q" >/dev/null 2>&1 || bad "$name: qemu-img check of the qcow2 output failed"
        rm -f "$out" "$q"
    done
done

# one log line per import
n=$(timeout 60 "$VMSYNC" log "$R" --json | grep -c '^{' || true)
((n == 4)) || bad "vmsync log shows $n versions, expected 4"
finish
