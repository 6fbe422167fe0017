#!/usr/bin/env bash
# Repository failure modes:
#  (a) a byte flipped inside a pack: export of the image that uses it fails
#      with "corrupt" (status 5), writes no output, and the rest of the
#      repository still works;
#  (b) disk full during checkout (a 20 MiB tmpfs): status 6, an error naming
#      the lack of space, no OUT, the repository untouched; and an import into
#      a repository whose disk is full: status 6, nothing recorded;
#  (c) leases: a second host is refused (status 8, naming the holder), --steal
#      takes over and is audited;
#  (d) check-in races: the host that lost its lease cannot check in (status 8),
#      and a check-in based on an old version loses to the newer one;
#  (e) damaged manifests: `manifest show` of a truncated manifest and an export
#      whose stored manifest is truncated fail with status 5;
#  and verify of a different image exits 10.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq sqlite3 python3
[[ $(id -u) == 0 ]] || skip "needs root (tmpfs mount)"

export VMSYNC_HOST=host-admin VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
victim=$(img diffa-ext4) || fail "cannot build diffa-ext4"
other=$(repo_img t ext4) || fail "cannot build T"
seedimg=$(repo_img s ext4) || fail "cannot build S"
odig=$(repo_digest "$other") || fail "no digest for $other"

vm_ok "$T/imp-victim" import "$R" "$victim" --name victim -q
find "$R/packs" -name '*.pack' -printf '%s %f\n' >"$T/packs-victim"
vm_ok "$T/imp-other" import "$R" "$other" --name other -q

# ---- (a) a corrupt object ----------------------------------------------------------
info "(a) corrupt pack"
pack=$(sort -rn "$T/packs-victim" | head -1 | cut -d' ' -f2)
[[ -n $pack ]] || fail "no pack written by the first import"
psize=$(stat -c %s "$R/packs/$pack")
off=$((psize / 2))
info "flipping the byte at $off of $pack ($psize bytes)"
python3 - "$R/packs/$pack" "$off" <<'EOF'
import sys
p, off = sys.argv[1], int(sys.argv[2])
with open(p, 'r+b') as f:
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x5a]))
EOF
vm "$T/a-export" export "$R" victim -o "$T/victim.img"
if ((VM_RC == 0)); then
    bad "(a) export of an image whose pack is corrupt succeeded"
else
    ((VM_RC == 5)) || bad "(a) export with a corrupt object exited $VM_RC, expected 5 (corrupt content)"
    grep -qi corrupt "$T/a-export.err" || bad "(a) the export's error does not say 'corrupt': $(head -c 300 "$T/a-export.err")"
    grep -q "$pack" "$T/a-export.err" || info "(a) the error does not name the pack: $(head -c 300 "$T/a-export.err")"
fi
[[ ! -e $T/victim.img ]] || bad "(a) the failed export left $T/victim.img"
# the rest of the repository works
vm "$T/a-log" log "$R"
((VM_RC == 0)) || bad "(a) vmsync log exited $VM_RC after the corruption"
vm "$T/a-other" export "$R" other -o "$T/other.img"
((VM_RC == 0)) || bad "(a) export of the undamaged image exited $VM_RC: $(head -c 300 "$T/a-other.err")"
vm "$T/a-verify" verify "$R" other "$T/other.img"
((VM_RC == 0)) || bad "(a) verify of the undamaged export exited $VM_RC"
# the victim can still be checked out when a seed holds what is damaged
vm "$T/a-seeded" checkout "$R" victim -o "$T/victim-seeded.img" --seed "$victim"
((VM_RC == 0)) || bad "(a) checkout of the victim with its original as seed exited $VM_RC: $(head -c 300 "$T/a-seeded.err")"
rm -f "$T/victim-seeded.img"
vm "$T/a-import" import "$R" "$seedimg" --name after-corruption -q
((VM_RC == 0)) || bad "(a) import after the corruption exited $VM_RC: $(head -c 300 "$T/a-import.err")"

# verify of a different image
vm "$T/verify-diff" verify "$R" other "$seedimg"
((VM_RC == 10)) || bad "verify of a different image exited $VM_RC, expected 10"

# ---- (b) disk full -------------------------------------------------------------------
info "(b) disk full"
small=$T/small
mkdir -p "$small"
mount -t tmpfs -o size=20m tmpfs "$small" || fail "cannot mount a tmpfs"
_REPO_MOUNTS+=("$small")
snapshot() {
    {
        timeout 60 "$VMSYNC" log "$R" --json
        (cd "$R" && find packs manifests -type f -printf '%p %s %T@\n' | sort)
        sqlite3 "$R/catalog.db" 'select * from versions' | md5sum
        sqlite3 "$R/catalog.db" 'select count(*) from objects'
    } 2>&1
}
snapshot >"$T/snap-before"
vm "$T/b-co" checkout "$R" other -o "$small/out.img"
if ((VM_RC == 0)); then
    bad "(b) checkout of a 50 MiB image into a 20 MiB tmpfs succeeded"
else
    ((VM_RC == 6)) || bad "(b) checkout into a full disk exited $VM_RC, expected 6"
    grep -qi 'space' "$T/b-co.err" || bad "(b) the error does not mention space: $(head -c 300 "$T/b-co.err")"
    if ! o=$(one_error_line "$T/b-co" "$small/out.img"); then bad "(b) $o"; fi
fi
[[ ! -e $small/out.img ]] || bad "(b) $small/out.img exists after the failed checkout"
left=$(find "$small" -mindepth 1 ! -name out.img.vmsync-part ! -name out.img.vmsync-journal -printf '%f ')
[[ -z $left ]] || bad "(b) unexpected files left in the full filesystem: $left"
snapshot >"$T/snap-after"
diff "$T/snap-before" "$T/snap-after" >"$T/snap.diff" || bad "(b) the repository changed: $(head -c 400 "$T/snap.diff" | tr '\n' ' ')"
vm "$T/b-verify" verify "$R" other "$T/other.img"
((VM_RC == 0)) || bad "(b) verify of the earlier export exited $VM_RC after the failed checkout"
info "(b) lease after the failed checkout: '$(sqlite3 "$R/catalog.db" "select host, version from leases l join images i on i.id = l.image_id where i.name = 'other'")'"
repo_umount "$small"

# (b2) the repository's own disk full: an import fails with status 6, records
# nothing, leaves no temporary pack, and the repository still serves what it had
info "(b2) repository disk full"
rsmall=$T/rsmall
mkdir -p "$rsmall"
mount -t tmpfs -o size=30m tmpfs "$rsmall" || fail "cannot mount a tmpfs"
_REPO_MOUNTS+=("$rsmall")
R2=$rsmall/repo
repo_init "$R2"
vm_ok "$T/b2-imp1" import "$R2" "$victim" --name fits -q
vm "$T/b2-imp2" import "$R2" "$other" --name toobig -q
((VM_RC == 6)) || bad "(b2) import into a full repository exited $VM_RC, expected 6: $(head -c 300 "$T/b2-imp2.err")"
grep -qi 'space' "$T/b2-imp2.err" || bad "(b2) the error does not mention space: $(head -c 300 "$T/b2-imp2.err")"
n=$(timeout 60 "$VMSYNC" log "$R2" --json | grep -c '^{' || true)
((n == 1)) || bad "(b2) the full repository shows $n versions, expected 1"
left=$(find "$R2/tmp" -mindepth 1 -printf '%f ')
[[ -z $left ]] || bad "(b2) temporary files left in the repository: $left"
vm "$T/b2-export" export "$R2" fits -o "$T/fits.img"
((VM_RC == 0)) || bad "(b2) export from the full repository exited $VM_RC: $(head -c 300 "$T/b2-export.err")"
[[ $(repo_digest "$T/fits.img") == $(repo_digest "$victim") ]] || bad "(b2) the export from the full repository has the wrong digest"
[[ $(sqlite3 "$R2/catalog.db" 'pragma integrity_check') == ok ]] || bad "(b2) the catalog is damaged"
rm -f "$T/fits.img"
repo_umount "$rsmall"

# ---- (c) leases ------------------------------------------------------------------------
info "(c) leases"
vm_ok "$T/imp-leased" import "$R" "$other" --name leased -q
VMSYNC_HOST=host-alpha vm "$T/c-a" checkout "$R" leased -o "$T/alpha.img" --seed "$other"
((VM_RC == 0)) || fail "(c) host-alpha's checkout exited $VM_RC: $(head -c 300 "$T/c-a.err")"
VMSYNC_HOST=host-bravo vm "$T/c-b" checkout "$R" leased -o "$T/bravo.img" --seed "$other"
((VM_RC == 8)) || bad "(c) host-bravo's checkout of an image host-alpha holds exited $VM_RC, expected 8"
grep -q 'host-alpha' "$T/c-b.err" || bad "(c) the refusal does not name host-alpha: $(head -c 300 "$T/c-b.err")"
grep -q 'checked out by .*host-alpha.*; use --steal to take it over$' "$T/c-b.err" ||
    bad "(c) the refusal does not end with the CLI's hint: $(head -c 300 "$T/c-b.err")"
[[ ! -e $T/bravo.img && ! -e $T/bravo.img.vmsync-part ]] || bad "(c) the refused checkout wrote output"
VMSYNC_HOST=host-bravo vm "$T/c-steal" checkout "$R" leased -o "$T/bravo.img" --seed "$other" --steal
((VM_RC == 0)) || bad "(c) host-bravo's checkout --steal exited $VM_RC: $(head -c 300 "$T/c-steal.err")"
lease=$(sqlite3 "$R/catalog.db" "select l.host || '@' || l.version from leases l join images i on i.id = l.image_id where i.name = 'leased'")
[[ $lease == host-bravo@1 ]] || bad "(c) after the steal the lease is '$lease', expected host-bravo@1"
steals=$(sqlite3 "$R/catalog.db" "select host || '|' || image || '|' || coalesce(detail, '') from audit where action = 'steal'")
[[ $steals == host-bravo\|leased\|*host-alpha* ]] || bad "(c) the audit log does not show host-bravo stealing leased from host-alpha: '$steals'"

# ---- (d) check-in races ------------------------------------------------------------------
info "(d) check-in races"
VMSYNC_HOST=host-alpha vm "$T/d-a1" checkin "$R" leased "$T/alpha.img"
((VM_RC == 8)) || bad "(d) host-alpha checked in after its lease was stolen: exit $VM_RC, expected 8"
grep -q 'host-bravo' "$T/d-a1.err" || bad "(d) the refusal does not name host-bravo: $(head -c 300 "$T/d-a1.err")"
VMSYNC_HOST=host-bravo vm "$T/d-b" checkin "$R" leased "$T/bravo.img" -m "bravo's work"
((VM_RC == 0)) || bad "(d) host-bravo's check-in exited $VM_RC: $(head -c 300 "$T/d-b.err")"
VMSYNC_HOST=host-alpha vm "$T/d-a2" checkin "$R" leased "$T/alpha.img"
((VM_RC == 8)) || bad "(d) host-alpha checked in after host-bravo's check-in: exit $VM_RC, expected 8"
n=$(repo_nversions "$R" leased)
((n == 2)) || bad "(d) leased has $n versions, expected 2 (import + host-bravo's check-in)"
# a check-in based on an old version loses to the newer one
VMSYNC_HOST=host-alpha vm "$T/d-old" checkout "$R" leased@1 -o "$T/alpha-old.img" --seed "$other"
if ((VM_RC == 0)); then
    VMSYNC_HOST=host-alpha vm "$T/d-a3" checkin "$R" leased "$T/alpha-old.img"
    ((VM_RC == 8)) || bad "(d) a check-in of a copy of v1 while v2 exists exited $VM_RC, expected 8 (another check-in won)"
    n=$(repo_nversions "$R" leased)
    ((n == 2)) || bad "(d) leased has $n versions after the stale check-in, expected 2"
else
    bad "(d) checkout of leased@1 exited $VM_RC: $(head -c 300 "$T/d-old.err")"
fi
rm -f "$T/alpha.img" "$T/bravo.img" "$T/alpha-old.img"

# ---- (e) damaged manifests -----------------------------------------------------------------
info "(e) damaged manifests"
vm_ok "$T/e-m" manifest "$other" -o "$T/m.vmsm" -q
msize=$(stat -c %s "$T/m.vmsm")
for cut in 24 $((msize / 2)) $((msize - 1)); do
    head -c "$cut" "$T/m.vmsm" >"$T/m-cut.vmsm"
    vm "$T/e-show-$cut" manifest show "$T/m-cut.vmsm"
    ((VM_RC == 5)) || bad "(e) manifest show of a manifest cut to $cut of $msize bytes exited $VM_RC, expected 5"
    vm "$T/e-showj-$cut" manifest show "$T/m-cut.vmsm" --json
    ((VM_RC == 5)) || bad "(e) manifest show --json of a manifest cut to $cut of $msize bytes exited $VM_RC, expected 5"
done
# a truncated manifest in the repository (a fresh cache, so it is read from there)
mid=$(cd "$R/manifests" && for f in *; do
    if cmp -s <(timeout 60 "$VMSYNC" manifest show "$f" --json 2>/dev/null | jq -r .digest) <(echo "$odig"); then echo "$f"; break; fi
done)
if [[ -n $mid ]]; then
    mf=$R/manifests/$mid
    truncate -s $(($(stat -c %s "$mf") / 2)) "$mf"
    VMSYNC_CACHE=$T/cache2 vm "$T/e-export" export "$R" other -o "$T/other2.img"
    ((VM_RC == 5)) || bad "(e) export of a version whose stored manifest is truncated exited $VM_RC, expected 5: $(head -c 300 "$T/e-export.err")"
    [[ ! -e $T/other2.img ]] || bad "(e) the export with a truncated manifest wrote $T/other2.img"
else
    bad "(e) cannot find the manifest of 'other' in $R/manifests"
fi
finish
