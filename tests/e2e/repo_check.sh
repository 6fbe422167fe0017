#!/usr/bin/env bash
# The repository knows its own health:
#  (a) `vmsync check` of a healthy repository: exit 0, "healthy", valid JSON,
#      and --objects reads every indexed object;
#  (b) gc's figures add up (kept + dropped = before for objects, kept +
#      rewritten + removed = before for packs, kept + freed = before for
#      bytes) and equal the store's own counts before and after, in --json and
#      in the text summary; -q silences gc and verify;
#  (c) a damaged index (160 rows deleted from the objects table, as a damaged
#      catalog once did): check lists each missing object with the version
#      that needs it and exits 5, gc refuses (5, pointing at vmsync check) and
#      changes nothing, and export of that version fails as check predicted;
#  (d) a truncated pack and a missing manifest fail the quick check (gc
#      refuses); a flipped byte inside a pack passes it, and --objects names
#      the object and its pack;
#  (e) the catalog's rules: a version whose parent is gone, a lease on a
#      version that does not exist (reported, but gc goes on); and a page of the catalog overwritten:
#      SQLite's findings, one a line, the JSON report still whole, gc refuses;
#  (f) over ssh:// check is refused without connecting: it runs on the server.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq sqlite3 python3

export VMSYNC_HOST=host-admin VMSYNC_CACHE=$T/cache
a=$(img diffa-ext4) || fail "cannot build diffa-ext4"
b=$(img diffb-ext4) || fail "cannot build diffb-ext4"
R=$T/repo
repo_init "$R"
# x@1 (b's tree) first, so that its pack holds objects a@1 shares: when x@1
# goes, gc rewrites that pack
vm_ok "$T/imp-x1" import "$R" "$b" --name x -q
vm_ok "$T/imp-a1" import "$R" "$a" --name a -q
vm_ok "$T/imp-b1" import "$R" "$a" --name b -q

q() { sqlite3 "$1/catalog.db" "$2"; }
nobjects() { q "$1" 'select count(*) from objects'; }
npacks() { find "$1/packs" -maxdepth 1 -type f -name 'pack-*.pack' | wc -l; }
store_bytes() {
    (cd "$1" && find packs manifests tmp cache/segments cache/tmp -maxdepth 1 -type f -printf '%s\n' 2>/dev/null || true) |
        awk '{ s += $1 } END { print s + 0 }'
}
# problems KIND FILE: how many problems of KIND a check --json report lists
problems() { jq --arg k "$1" '[.problems[] | select(.kind == $k)] | length' "$2"; }

# ---- (a) healthy ---------------------------------------------------------------------
info "(a) a healthy repository"
vm "$T/a-check" check "$R"
((VM_RC == 0)) || bad "(a) check of a healthy repository exited $VM_RC: $(head -c 300 "$T/a-check.out" "$T/a-check.err")"
[[ $(tail -1 "$T/a-check.out") == "check: $R: healthy: "* ]] || bad "(a) the summary does not say healthy: $(tail -1 "$T/a-check.out")"
[[ $(wc -l <"$T/a-check.out") == 1 ]] || bad "(a) check printed more than its summary: $(head -c 300 "$T/a-check.out")"
vm "$T/a-json" check "$R" --objects --json
((VM_RC == 0)) || bad "(a) check --objects --json exited $VM_RC: $(head -c 300 "$T/a-json.err")"
if json_ok "$T/a-json.out"; then
    [[ $(jget "$T/a-json.out" .healthy) == true ]] || bad "(a) --json does not say healthy"
    [[ $(jget "$T/a-json.out" '.problems | length') == 0 ]] || bad "(a) --json lists problems"
    [[ $(jget "$T/a-json.out" .versions) == 3 ]] || bad "(a) --json counts $(jget "$T/a-json.out" .versions) versions, expected 3"
    n=$(nobjects "$R")
    [[ $(jget "$T/a-json.out" .objects_indexed) == "$n" ]] || bad "(a) objects_indexed $(jget "$T/a-json.out" .objects_indexed), the index holds $n"
    [[ $(jget "$T/a-json.out" .objects_read) == "$n" ]] || bad "(a) --objects read $(jget "$T/a-json.out" .objects_read) objects of $n"
else
    bad "(a) check --json is not JSON: $(head -c 300 "$T/a-json.out")"
fi
vm "$T/a-help" check --help
grep -q -- '--objects' "$T/a-help.out" || bad "(a) check --help does not mention --objects"

# ---- (b) gc adds up; -q ------------------------------------------------------------------
info "(b) gc's figures"
# -q: nothing on stdout, nothing on stderr
vm "$T/b-gcq" gc "$R" -q
((VM_RC == 0)) || bad "(b) gc -q exited $VM_RC"
[[ ! -s $T/b-gcq.out && ! -s $T/b-gcq.err ]] || bad "(b) gc -q printed: $(head -c 200 "$T/b-gcq.out" "$T/b-gcq.err")"
vm "$T/b-verq" verify "$R" a@1 "$a" -q
((VM_RC == 0)) || bad "(b) verify -q of the same image exited $VM_RC"
[[ ! -s $T/b-verq.out ]] || bad "(b) verify -q printed: $(head -c 200 "$T/b-verq.out")"
vm "$T/b-verq-diff" verify "$R" a@1 "$b" -q
((VM_RC == 10)) || bad "(b) verify -q of another image exited $VM_RC, expected 10"
[[ ! -s $T/b-verq-diff.out ]] || bad "(b) verify -q of another image printed: $(head -c 200 "$T/b-verq-diff.out")"
# x@1 goes (its image's latest, so the catalog stays consistent): its own objects become garbage
q "$R" "delete from versions where image_id = (select id from images where name = 'x')"
cp -a "$R" "$T/repo-text"
o_before=$(nobjects "$R") p_before=$(npacks "$R") b_before=$(store_bytes "$R")
vm "$T/b-gc" gc "$R" --json
((VM_RC == 0)) || fail "(b) gc exited $VM_RC: $(head -c 300 "$T/b-gc.err")"
# the figures of the gc just run: from --json, against the store and the text summary
gc_figures() {
    o_after=$(nobjects "$R") p_after=$(npacks "$R") b_after=$(store_bytes "$R")
    g() { jget "$T/b-gc.out" ".$1"; }
    info "(b) store: $o_before -> $o_after objects, $p_before -> $p_after packs, $b_before -> $b_after bytes; gc: $(cat "$T/b-gc.out")"
    (($(g objects_dropped) > 0)) || bad "(b) gc dropped no objects although a version went"
    (($(g packs_rewritten) > 0)) || bad "(b) gc rewrote no pack although x@1's pack holds a@1's objects too"
    [[ $(g objects_before) == "$o_before" ]] || bad "(b) objects_before $(g objects_before), the index held $o_before"
    [[ $(g objects_kept) == "$o_after" ]] || bad "(b) objects_kept $(g objects_kept), the index holds $o_after"
    (($(g objects_kept) + $(g objects_dropped) == $(g objects_before))) || bad "(b) objects kept + dropped != before"
    [[ $(g packs_before) == "$p_before" ]] || bad "(b) packs_before $(g packs_before), there were $p_before pack files"
    (($(g packs_kept) + $(g packs_rewritten) + $(g packs_removed) == $(g packs_before))) || bad "(b) packs kept + rewritten + removed != before"
    (($(g packs_kept) + $(g packs_rewritten) == p_after)) || bad "(b) packs kept + rewritten = $(($(g packs_kept) + $(g packs_rewritten))), there are $p_after pack files"
    [[ $(g bytes_before) == "$b_before" ]] || bad "(b) bytes_before $(g bytes_before), the store held $b_before"
    [[ $(g bytes_kept) == "$b_after" ]] || bad "(b) bytes_kept $(g bytes_kept), the store holds $b_after"
    (($(g bytes_kept) + $(g bytes_freed) == $(g bytes_before))) || bad "(b) bytes kept + freed != before"
    # the text summary of the same gc (on the copy) adds up as printed
    vm "$T/b-gc-text" gc "$T/repo-text"
    ((VM_RC == 0)) || bad "(b) gc of the copy exited $VM_RC: $(head -c 300 "$T/b-gc-text.err")"
    info "(b) $(cat "$T/b-gc-text.out")"
    python3 - "$T/b-gc-text.out" "$T/b-gc.out" <<'EOF' || bad "(b) the text summary does not add up or differs from --json: $(cat "$T/b-gc-text.out")"
import json, re, sys
line = open(sys.argv[1]).read().strip()
j = json.load(open(sys.argv[2]))
m = re.fullmatch(r'gc: (\d+) objects: (\d+) kept, (\d+) dropped; (\d+) packs: (\d+) kept, (\d+) rewritten, '
                 r'(\d+) removed; ([\d.]+) MiB: ([\d.]+) MiB kept, ([\d.]+) MiB freed', line)
if not m:
    sys.exit('no match: ' + line)
n = [int(x) for x in m.groups()[:7]]
mib = [round(float(x) * 10) for x in m.groups()[7:]]
ok = n[1] + n[2] == n[0] and n[4] + n[5] + n[6] == n[3] and mib[1] + mib[2] == mib[0]
ok = ok and n[:3] == [j['objects_before'], j['objects_kept'], j['objects_dropped']]
ok = ok and abs(mib[0] - j['bytes_before'] / 104857.6) <= 0.5
sys.exit(0 if ok else 'does not add up')
EOF
}
if json_ok "$T/b-gc.out"; then
    gc_figures
else
    bad "(b) gc --json is not JSON: $(head -c 300 "$T/b-gc.out")"
fi

# ---- (c) a damaged index -----------------------------------------------------------------
info "(c) 160 objects dropped from the index"
D=$T/repo-damaged
cp -a "$R" "$D"
q "$D" 'select lower(hex(hash)) from objects order by hash limit 160' | sort >"$T/c-dropped"
q "$D" 'delete from objects where hash in (select hash from objects order by hash limit 160)'
vm "$T/c-check" check "$D"
((VM_RC == 5)) || bad "(c) check of the damaged repository exited $VM_RC, expected 5"
n=$(grep -c '^missing: ' "$T/c-check.out" || true)
((n == 160)) || bad "(c) check lists $n missing objects, expected 160: $(head -c 300 "$T/c-check.out")"
grep -Eq '^missing: [a-z]@1, object [0-9a-f]{64}: ' "$T/c-check.out" || bad "(c) a missing object's line does not name its version and hash: $(head -1 "$T/c-check.out")"
grep -q '^version: a@1: cannot be exported' "$T/c-check.out" || bad "(c) check does not say a@1 cannot be exported"
[[ $(tail -1 "$T/c-check.out") == "check: $D: "*" problems: "* ]] || bad "(c) the summary does not count the problems: $(tail -1 "$T/c-check.out")"
vm "$T/c-quiet" check "$D" -q
((VM_RC == 5)) || bad "(c) check -q exited $VM_RC, expected 5"
grep -Ev '^(missing|version): ' "$T/c-quiet.out" >"$T/c-quiet.other" || true
[[ -s $T/c-quiet.out && ! -s $T/c-quiet.other ]] || bad "(c) check -q printed other than the problems: $(head -c 200 "$T/c-quiet.other")"
vm "$T/c-json" check "$D" --json
((VM_RC == 5)) || bad "(c) check --json exited $VM_RC, expected 5"
if json_ok "$T/c-json.out"; then
    [[ $(jget "$T/c-json.out" .healthy) == false ]] || bad "(c) --json says healthy"
    jq -r '.problems[] | select(.kind == "missing") | .object' "$T/c-json.out" | sort >"$T/c-reported"
    cmp -s "$T/c-dropped" "$T/c-reported" || bad "(c) the missing objects reported are not the 160 dropped ($(wc -l <"$T/c-reported") reported)"
else
    bad "(c) check --json is not JSON: $(head -c 300 "$T/c-json.out")"
fi
before=$( (cd "$D" && find packs manifests -type f -printf '%p %s\n' | sort; sqlite3 catalog.db 'select count(*) from objects') )
vm "$T/c-gc" gc "$D"
((VM_RC == 5)) || bad "(c) gc of the damaged repository exited $VM_RC, expected 5 (refused)"
grep -q 'vmsync check' "$T/c-gc.err" || bad "(c) gc's refusal does not point at vmsync check: $(head -c 300 "$T/c-gc.err")"
if ! o=$(one_error_line "$T/c-gc" "$D" refused); then bad "(c) $o"; fi
[[ ! -s $T/c-gc.out ]] || bad "(c) the refused gc printed a summary: $(head -c 200 "$T/c-gc.out")"
after=$( (cd "$D" && find packs manifests -type f -printf '%p %s\n' | sort; sqlite3 catalog.db 'select count(*) from objects') )
[[ $before == "$after" ]] || bad "(c) the refused gc changed the repository"
vm "$T/c-export" export "$D" a@1 -o "$T/c-a1.img"
((VM_RC == 5)) || bad "(c) export of a@1 with objects missing exited $VM_RC, expected 5"

# ---- (d) packs and manifests ------------------------------------------------------------
info "(d) a truncated pack, a missing manifest, a flipped byte"
P=$T/repo-pack
cp -a "$R" "$P"
pack=$(cd "$P/packs" && ls -S | head -1)
truncate -s -100 "$P/packs/$pack"
vm "$T/d-check" check "$P"
((VM_RC == 5)) || bad "(d) check with a truncated pack exited $VM_RC, expected 5"
grep -q "^pack: $pack: the file has" "$T/d-check.out" || bad "(d) check does not name the truncated pack $pack: $(head -c 300 "$T/d-check.out")"
vm "$T/d-gc" gc "$P"
((VM_RC == 5)) || bad "(d) gc with a truncated pack exited $VM_RC, expected 5"

M=$T/repo-manifest
cp -a "$R" "$M"
mid=$(q "$M" "select lower(hex(manifest)) from versions where number = 1 and image_id = (select id from images where name = 'b')")
rm -f "$M/manifests/$mid.vmsm"
vm "$T/d-mcheck" check "$M"
((VM_RC == 5)) || bad "(d) check with a missing manifest exited $VM_RC, expected 5"
grep -q "^manifest: b@1: manifest $mid: missing" "$T/d-mcheck.out" || bad "(d) check does not report b@1's missing manifest: $(head -c 300 "$T/d-mcheck.out")"
vm "$T/d-mgc" gc "$M"
((VM_RC == 5)) || bad "(d) gc with a missing manifest exited $VM_RC, expected 5"

F=$T/repo-flip
cp -a "$R" "$F"
pack=$(cd "$F/packs" && ls -S | head -1)
python3 - "$F/packs/$pack" <<'EOF'
import os, sys
p = sys.argv[1]
with open(p, 'r+b') as f:
    off = os.path.getsize(p) // 2
    f.seek(off)
    b = f.read(1)
    f.seek(off)
    f.write(bytes([b[0] ^ 0x5a]))
EOF
vm "$T/d-quick" check "$F"
((VM_RC == 0)) || bad "(d) the quick check read object bytes: exit $VM_RC with a flipped byte"
vm "$T/d-objects" check "$F" --objects --json
((VM_RC == 5)) || bad "(d) check --objects with a flipped byte exited $VM_RC, expected 5"
if json_ok "$T/d-objects.out"; then
    n=$(problems object "$T/d-objects.out")
    ((n == 1)) || bad "(d) --objects reports $n damaged objects, expected 1"
    [[ $(jq -r '.problems[] | select(.kind == "object") | .pack' "$T/d-objects.out") == "$pack" ]] || bad "(d) the damaged object is not reported in $pack"
    jq -e '.problems[] | select(.kind == "object") | .object | test("^[0-9a-f]{64}$")' "$T/d-objects.out" >/dev/null || bad "(d) the damaged object's hash is not reported"
else
    bad "(d) check --objects --json is not JSON: $(head -c 300 "$T/d-objects.out")"
fi

# ---- (e) the catalog's rules ----------------------------------------------------------------
info "(e) the catalog's rules"
C=$T/repo-rules
cp -a "$T/repo-text" "$C"
vm_ok "$T/e-imp" import "$C" "$b" --name a -q
q "$C" "delete from versions where number = 1 and image_id = (select id from images where name = 'a')"
q "$C" "insert into leases select id, 7, 'bob', 'host-b', 0 from images where name = 'b'"
vm "$T/e-check" check "$C"
((VM_RC == 5)) || bad "(e) check of a catalog that breaks its rules exited $VM_RC, expected 5"
grep -q '^catalog: a@2: its parent, version 1, does not exist' "$T/e-check.out" || bad "(e) check does not report a@2's missing parent: $(head -c 400 "$T/e-check.out")"
grep -q '^lease: b@7: leased by bob@host-b, but there is no such version' "$T/e-check.out" || bad "(e) check does not report the lease on b@7: $(head -c 400 "$T/e-check.out")"
# a dangling lease alone is reported, but does not stop gc: it says nothing of the content
L=$T/repo-lease
cp -a "$R" "$L"
q "$L" "insert into leases select id, 9, 'bob', 'host-b', 0 from images where name = 'a'"
vm "$T/e-lcheck" check "$L"
((VM_RC == 5)) || bad "(e) check with a dangling lease exited $VM_RC, expected 5"
grep -q '^lease: a@9: ' "$T/e-lcheck.out" || bad "(e) check does not report the lease on a@9: $(head -c 300 "$T/e-lcheck.out")"
vm "$T/e-lgc" gc "$L"
((VM_RC == 0)) || bad "(e) gc refused a repository whose only problem is a dangling lease: exit $VM_RC: $(head -c 300 "$T/e-lgc.err")"

# a page of the object index overwritten with garbage
K=$T/repo-sqlite
cp -a "$R" "$K"
q "$K" 'pragma wal_checkpoint(TRUNCATE)' >/dev/null
page=$(q "$K" "select pageno from dbstat where name = 'objects' and pagetype = 'leaf' order by pageno limit 1" 2>/dev/null || true)
if [[ $page =~ ^[0-9]+$ ]]; then
    python3 - "$K/catalog.db" "$page" <<'EOF'
import random, sys
with open(sys.argv[1], 'r+b') as f:
    f.seek((int(sys.argv[2]) - 1) * 4096 + 100)
    f.write(random.Random(1).randbytes(2000))
EOF
    vm "$T/e-sqlite" check "$K"
    ((VM_RC == 5)) || bad "(e) check of a damaged catalog exited $VM_RC, expected 5: $(head -c 300 "$T/e-sqlite.err")"
    grep -qi '^catalog: SQLite quick_check: .*page' "$T/e-sqlite.out" || bad "(e) check does not show SQLite's findings: $(head -c 300 "$T/e-sqlite.out")"
    vm "$T/e-sqlite-json" check "$K" --json
    json_ok "$T/e-sqlite-json.out" || bad "(e) check --json of a damaged catalog is not JSON: $(head -c 300 "$T/e-sqlite-json.out")"
    vm "$T/e-sqlite-gc" gc "$K"
    ((VM_RC == 5)) || bad "(e) gc of a damaged catalog exited $VM_RC, expected 5"
    grep -q 'vmsync check' "$T/e-sqlite-gc.err" || bad "(e) gc's refusal does not point at vmsync check: $(head -c 300 "$T/e-sqlite-gc.err")"
else
    info "(e) sqlite3 has no dbstat table: the damaged page is not tried"
fi

# ---- (f) ssh:// ------------------------------------------------------------------------------
vm "$T/f-ssh" check ssh://127.0.0.1:1/repo
((VM_RC == 2)) || bad "(f) check over ssh:// exited $VM_RC, expected 2"
grep -q 'runs on the server' "$T/f-ssh.err" || bad "(f) check over ssh:// does not say it runs on the server: $(head -c 300 "$T/f-ssh.err")"
finish
