#!/usr/bin/env bash
# The way back: a laptop that checked desk@1 out works offline, then writes
# its check-in to a bundle (checkin --to-bundle, no repository: it is moved
# away meanwhile).  The bundle carries desk@2 with parent 1 and only a few
# objects; applied at the server it records the very version an online
# check-in of the same image records in a copy of the repository (digest,
# export byte for byte).  Applied after another check-in won, it is refused.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs debugfs jq cmp

export VMSYNC_HOST=laptop-offline VMSYNC_CACHE=$T/cache
R=$T/office
repo_init "$R"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp" import "$R" "$simg" --name desk -m "golden"
vm_ok "$T/co" checkout "$R" desk -o "$T/laptop.img"
repo_add_file "$T/laptop.img" notes
cp -a "$R" "$T/online-copy"
cp -a "$R" "$T/raced"

mv "$R" "$R.away" # the laptop is offline
vm_ok "$T/tb" checkin --to-bundle "$T/back.vmsb" desk "$T/laptop.img" -m "offline work" --stats-json "$T/tb.json"
vm_expect "$T/tb-again" 8 checkin --to-bundle "$T/back.vmsb" desk "$T/laptop.img"
vm_expect "$T/tb-noimage" 8 checkin --to-bundle "$T/other.vmsb" desk "$simg"
[[ ! -e $T/other.vmsb ]] || bad "a refused check-in bundle was written"
mv "$R.away" "$R"

vm_ok "$T/show" bundle show "$T/back.vmsb" --json
j=$T/show.out
[[ $(jget "$j" .version) == 2 && $(jget "$j" .parent) == 1 && $(jget "$j" .needs.base) == 1 ]] ||
    bad "the check-in bundle: $(cat "$j")"
[[ $(jget "$j" .message) == "offline work" && $(jget "$j" .host) == laptop-offline ]] || bad "its record: $(cat "$j")"
objects=$(jget "$j" .objects)
((objects > 0 && objects < 50)) || bad "the check-in bundle holds $objects objects (a file was added)"
[[ $(repo_stat "$T/tb.json" objects_sent) == "$objects" ]] || bad "--stats-json says $(repo_stat "$T/tb.json" objects_sent) objects"

vm_ok "$T/apply" bundle apply "$R" "$T/back.vmsb" --json
[[ $(jget "$T/apply.out" .version) == 2 ]] || bad "apply: $(cat "$T/apply.out")"
vm_ok "$T/online" checkin "$T/online-copy" desk "$T/laptop.img"
online_digest=$(repo_version_digest "$T/online-copy" desk 2)
[[ -n $online_digest && $(repo_version_digest "$R" desk 2) == "$online_digest" ]] ||
    bad "the applied desk@2 is not the online check-in's ($(repo_version_digest "$R" desk 2) vs $online_digest)"
vm_ok "$T/x1" export "$R" desk@2 -o "$T/applied.img"
vm_ok "$T/x2" export "$T/online-copy" desk@2 -o "$T/online.img"
cmp "$T/applied.img" "$T/online.img" >/dev/null || bad "the applied version exports other bytes than the online one"
vm_ok "$T/check" check "$R" --objects

# Another check-in won at the server: the bundle is refused, nothing recorded.
vm_ok "$T/won" import "$T/raced" "$simg" --name desk -m "someone else"
vm_expect "$T/lost" 8 bundle apply "$T/raced" "$T/back.vmsb"
[[ $(repo_nversions "$T/raced" desk) == 2 ]] || bad "a lost race recorded a version"
finish
