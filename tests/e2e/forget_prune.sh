#!/usr/bin/env bash
# vmsync forget, prune, gc --dry-run and stats on a local repository.  Image
# "desk" gets three imported versions and a checked-in fourth that share
# little (each its own random blob):
#   - forget of the latest (desk@4) is refused (exit 8) naming why; of a
#     version checked out (desk@2, leased by this host) too, naming the
#     holder; of a version that does not exist, exit 9;
#   - forget -n and gc -n change nothing (the catalog dump and the files are
#     the same before and after); forget desk@1 then removes it, the audit
#     log says who forgot it, check still passes, and gc -n foresees what gc
#     then drops: the same objects, and gc frees about the bytes it said;
#   - stats before and after that gc: what gc would free is the dry run's,
#     objects and bytes are the index's (sqlite3 counts them), gc's dropped
#     objects are gone, the dedup ratio is referenced / raw; image "twin",
#     imported from desk@2's image, has no objects of its own and shares all;
#   - the versions left export to the images that were imported; a bundle, a
#     read-only repository, refuses forget and prune (exit 2);
#   - image "tl" gets six versions whose times are set in the closed catalog
#     (Jan 10, Feb 3, Feb 20 10:00, Feb 20 12:00, Mar 1 08:00, Mar 1 09:00):
#     prune --keep-daily 2 -n names what it would forget and forgets nothing;
#     prune --keep-monthly 3 with tl@3 checked out forgets 2 and 5, keeping
#     3 as leased; prune without a --keep-* is exit 2.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs debugfs sqlite3 jq

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
R=$T/repo
repo_init "$R"
dump() { sqlite3 "$R/catalog.db" .dump; find "$R/packs" "$R/manifests" -type f -printf '%p %s\n' | sort; }

for i in 1 2 3; do
    repo_motd_img "desk-$i" "$T/desk$i.img" 400000
    digest[i]=$(repo_digest "$T/desk$i.img")
    vm_ok "$T/imp$i" import "$R" "$T/desk$i.img" --name desk
done
vm_ok "$T/co3" checkout "$R" desk -o "$T/desk4.img"
head -c 400000 /dev/urandom >"$T/blob4"
debugfs -w -R "write $T/blob4 /blob4" "$T/desk4.img" >/dev/null 2>&1 || fail "debugfs could not write /blob4"
digest[4]=$(repo_digest "$T/desk4.img")
vm_ok "$T/ci4" checkin "$R" desk "$T/desk4.img" -m "the fourth"

vm_expect "$T/latest" 8 forget "$R" desk@4 &&
    { grep -q "latest" "$T/latest.err" || bad "forget of the latest does not say why: $(cat "$T/latest.err")"; }
vm_ok "$T/co" checkout "$R" desk@2 -o "$T/co.img"
vm_expect "$T/leased" 8 forget "$R" desk@2 &&
    { grep -q "checked out by .*laptop" "$T/leased.err" || bad "forget of a leased version names no holder: $(cat "$T/leased.err")"; }
vm_expect "$T/dry-leased" 8 forget "$R" desk@2 -n
vm_ok "$T/rel" release "$R" desk
vm_expect "$T/none" 9 forget "$R" desk@9
vm_expect "$T/nov" 2 forget "$R" desk

before=$(dump)
vm_ok "$T/fdry" forget "$R" desk@1 -n --json
[[ $(jq -r .dry_run "$T/fdry.out") == true ]] || bad "forget -n --json: $(cat "$T/fdry.out")"
vm_ok "$T/gdry0" gc "$R" --dry-run --json
[[ $(dump) == "$before" ]] || bad "forget -n or gc -n changed the repository"
[[ $(jq -r .objects_dropped "$T/gdry0.out") == 0 ]] || bad "gc -n finds garbage before any forget: $(cat "$T/gdry0.out")"

vm_ok "$T/forget" forget "$R" desk@1
grep -q "desk@1: forgotten" "$T/forget.out" || bad "forget says: $(cat "$T/forget.out")"
[[ $(timeout 60 "$VMSYNC" log "$R" desk --json | jq -s -c 'map(.version)') == "[2,3,4]" ]] ||
    bad "after forget desk@1 the log holds: $(timeout 60 "$VMSYNC" log "$R" desk --json)"
vm_ok "$T/audit" audit "$R" desk --json
jq -e '.entries[-1] | .action == "forget" and .version == 1 and .host == "laptop"' "$T/audit.out" >/dev/null ||
    bad "the audit log does not say who forgot desk@1: $(jq -c '.entries[-1]' "$T/audit.out")"
vm_ok "$T/check" check "$R"

before=$(dump)
vm_ok "$T/gdry" gc "$R" -n --json
[[ $(dump) == "$before" ]] || bad "gc -n changed the repository"
vm_ok "$T/s1" stats "$R" --json
[[ $(jq .gc_objects "$T/s1.out") == $(jq .objects_dropped "$T/gdry.out") &&
    $(jq .gc_bytes "$T/s1.out") == $(jq .bytes_freed "$T/gdry.out") ]] ||
    bad "stats and gc -n disagree on what gc frees: $(cat "$T/s1.out")"
vm_ok "$T/gc" gc "$R" --json
want=$(jq .objects_dropped "$T/gdry.out") got=$(jq .objects_dropped "$T/gc.out")
((want > 0 && want == got)) || bad "gc -n said $want objects would go, gc dropped $got"
fwant=$(jq .bytes_freed "$T/gdry.out") fgot=$(jq .bytes_freed "$T/gc.out")
((fwant > 300000 && fgot > 300000)) || bad "gc -n foresaw $fwant bytes freed, gc freed $fgot"
((fwant * 10 >= fgot * 9 && fwant * 10 <= fgot * 11)) || bad "gc -n foresaw $fwant bytes freed, gc freed $fgot"
vm_ok "$T/gdry2" gc "$R" -n --json
vm_ok "$T/twin" import "$R" "$T/desk2.img" --name twin
vm_ok "$T/s2" stats "$R" --json
sql() { sqlite3 "$R/catalog.db" "$1"; }
[[ $(jq .objects "$T/s2.out") == $(sql "select count(*) from objects") &&
    $(jq .raw_bytes "$T/s2.out") == $(sql "select sum(len) from objects") &&
    $(jq .stored_bytes "$T/s2.out") == $(sql "select sum(stored_len) from objects") &&
    $(jq .pack_bytes "$T/s2.out") == $(find "$R/packs" -type f -printf '%s\n' | awk '{s += $1} END {print s}') ]] ||
    bad "stats disagrees with the index and the packs: $(cat "$T/s2.out")"
(($(jq .objects "$T/s1.out") - $(jq .objects_dropped "$T/gc.out") == $(jq .objects "$T/s2.out"))) ||
    bad "stats before gc, gc and stats after do not add up: $(cat "$T/s1.out" "$T/gc.out" "$T/s2.out")"
jq -e '(.referenced_bytes / .raw_bytes * 1000 | round) == (.dedup_ratio * 1000 | round) and .gc_objects == 0' \
    "$T/s2.out" >/dev/null || bad "stats: dedup ratio or gc after gc: $(cat "$T/s2.out")"
jq -e '(.images | map({(.image): .}) | add) as $i | $i.twin.unique_objects == 0 and $i.twin.shared_objects > 0
    and $i.desk.unique_objects > 0 and $i.desk.versions == 3 and $i.twin.versions == 1' "$T/s2.out" >/dev/null ||
    bad "stats per image: $(jq -c .images "$T/s2.out")"
vm_ok "$T/s2t" stats "$R"
grep -q "^  twin  1 version, its own: 0.0 MiB" "$T/s2t.out" || bad "stats text: $(cat "$T/s2t.out")"
[[ $(jq .objects_dropped "$T/gdry2.out") == 0 ]] || bad "gc -n after gc: $(cat "$T/gdry2.out")"

for i in 2 3 4; do
    vm_ok "$T/exp$i" export "$R" "desk@$i" -o "$T/exp$i.img"
    [[ $(repo_digest "$T/exp$i.img") == "${digest[i]}" ]] || bad "desk@$i does not export to what was imported"
done
vm_expect "$T/gone" 9 export "$R" desk@1 -o "$T/gone.img"
vm_ok "$T/bundle" bundle create "$R" desk@3 -o "$T/desk.vmsb"
vm_expect "$T/bforget" 2 forget "$T/desk.vmsb" desk@3 -n &&
    { grep -q "read-only" "$T/bforget.err" || bad "forget in a bundle: $(cat "$T/bforget.err")"; }
vm_expect "$T/bprune" 2 prune "$T/desk.vmsb" --keep-last 1 -n

repo_motd_img tl "$T/tl.img"
for i in 1 2 3 4 5 6; do vm_ok "$T/tl$i" import "$R" "$T/tl.img" --name tl; done
i=0
for when in 2026-01-10T12:00:00 2026-02-03T12:00:00 2026-02-20T10:00:00 2026-02-20T12:00:00 \
    2026-03-01T08:00:00 2026-03-01T09:00:00; do
    i=$((i + 1))
    sqlite3 "$R/catalog.db" "UPDATE versions SET created = strftime('%s', '$when')
        WHERE number = $i AND image_id = (SELECT id FROM images WHERE name = 'tl')"
done

vm_expect "$T/nopolicy" 2 prune "$R" tl
before=$(dump)
vm_ok "$T/pdry" prune "$R" tl --keep-daily 2 -n
[[ $(dump) == "$before" ]] || bad "prune -n changed the repository"
[[ $(grep -c "would be forgotten" "$T/pdry.out") == 4 ]] || bad "prune -n --keep-daily 2: $(cat "$T/pdry.out")"
grep -q "^tl@4 .*kept: daily$" "$T/pdry.out" || bad "prune -n does not keep tl@4 daily: $(cat "$T/pdry.out")"
grep -q "^tl@6 .*kept: daily, latest$" "$T/pdry.out" || bad "prune -n does not keep tl@6: $(cat "$T/pdry.out")"

vm_ok "$T/tlco" checkout "$R" tl@3 -o "$T/tlco.img"
vm_ok "$T/prune" prune "$R" tl --keep-monthly 3 --json
[[ $(jq -c '[.versions[] | select(.forgotten) | .version]' "$T/prune.out") == "[2,5]" ]] ||
    bad "prune --keep-monthly 3 forgot: $(cat "$T/prune.out")"
[[ $(jq -c '.versions[] | select(.version == 3) | .kept' "$T/prune.out") == '["leased"]' ]] ||
    bad "prune does not say tl@3 is kept as leased: $(cat "$T/prune.out")"
[[ $(timeout 60 "$VMSYNC" log "$R" tl --json | jq -s -c 'map(.version)') == "[1,3,4,6]" ]] ||
    bad "after prune the log holds: $(timeout 60 "$VMSYNC" log "$R" tl --json)"
vm_ok "$T/check2" check "$R"
finish
