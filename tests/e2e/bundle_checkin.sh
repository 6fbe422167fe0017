#!/usr/bin/env bash
# The way back: a laptop that checked desk@1 out works offline, then writes
# its check-in to a bundle (checkin --to-bundle, no repository: it is moved
# away meanwhile).  The bundle carries desk@2 with parent 1 and only a few
# objects; applied at the server it records the very version an online
# check-in of the same image records in a copy of the repository (digest,
# export byte for byte).  The server's admin applies it, not the laptop: the
# version is the laptop's (its user and host), the laptop's lease is gone as
# after an online check-in, so another host checks out and the laptop's own
# online check-in of the same image says it is recorded already, and the
# audit entry names the applier and on whose behalf.  Applied after another
# check-in won, it is refused; applied while another host holds the lease
# (stolen meanwhile), it is refused as that check-in would be (exit 8).
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
cp -a "$R" "$T/stolen"
laptop_user=${USER:-$(id -un)}

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

[[ $(repo_lease "$R") == "1|laptop-offline" ]] || fail "the laptop holds no lease: $(repo_lease "$R")"
VMSYNC_HOST=office-server vm_ok "$T/apply" bundle apply "$R" "$T/back.vmsb" --json
[[ $(jget "$T/apply.out" .version) == 2 ]] || bad "apply: $(cat "$T/apply.out")"
[[ -z $(repo_lease "$R") ]] || bad "the laptop's lease outlived its applied check-in: $(repo_lease "$R")"
vm_ok "$T/log" log "$R" desk --json
[[ $(jq -r 'select(.version == 2) | .user + "@" + .host' "$T/log.out") == "$laptop_user@laptop-offline" ]] ||
    bad "the applied desk@2 is not the laptop's: $(cat "$T/log.out")"
vm_ok "$T/audit" audit "$R" desk --json
jq -e --arg who "$laptop_user@laptop-offline" \
    '.entries[] | select(.action == "apply" and .host == "office-server" and (.detail | contains("on behalf of " + $who)))' \
    "$T/audit.out" >/dev/null || bad "the audit log does not say who applied for whom: $(cat "$T/audit.out")"
vm_ok "$T/laptop-online" checkin "$R" desk "$T/laptop.img"
grep -q "already recorded as desk@2" "$T/laptop-online.out" ||
    bad "the laptop's online check-in after the apply: $(cat "$T/laptop-online.out")"
[[ $(repo_nversions "$R" desk) == 2 ]] || bad "the laptop's online check-in recorded desk@3"
VMSYNC_HOST=other-desk vm_ok "$T/other-co" checkout "$R" desk -o "$T/other.img"
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

# Another host took the laptop's lease meanwhile: refused as the laptop's own
# check-in would be, nothing recorded, the thief's lease kept.
VMSYNC_HOST=thief vm_ok "$T/steal" checkout "$T/stolen" desk -o "$T/thief.img" --steal
vm_expect "$T/stolen-apply" 8 bundle apply "$T/stolen" "$T/back.vmsb"
why=$(one_error_line "$T/stolen-apply" back.vmsb "checked out by") || bad "apply over another's lease: $why"
[[ $(repo_nversions "$T/stolen" desk) == 1 && $(repo_lease "$T/stolen") == "1|thief" ]] ||
    bad "apply over another's lease changed the repository"
finish
