#!/usr/bin/env bash
# Bundles and ssh:// repositories, through a real sshd and vmsync-agent: an
# admin writes a bundle from an ssh:// repository (desk@1 image S, desk@2
# image T) with --have S, a laptop checks it out with --seed S, byte for byte
# the online export; a branch server reached over ssh:// applies it and
# exports the same bytes.  The way back over ssh://: a laptop checks desk@2
# out from the office, works offline and writes a check-in bundle; the
# office's admin applies it through the agent, which records desk@3 as the
# laptop's check-in (the laptop's host, the key's user), ends the laptop's
# lease and writes an apply entry naming the admin's host and the laptop.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs debugfs jq cmp

export VMSYNC_HOST=remote-bundle-host VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
tdig=$(repo_digest "$timg") || fail "no digest for T"

repo_for office
office=$url
vm_ok "$T/imp1" import "$office" "$simg" --name desk "${opts[@]}"
vm_ok "$T/imp2" import "$office" "$timg" --name desk "${opts[@]}"
vm_ok "$T/online" export "$office" desk -o "$T/online.img" "${opts[@]}"
vm_ok "$T/s.manifest" manifest "$simg" -o "$T/s.vmsm"
vm_ok "$T/create" bundle create "$office" desk -o "$T/have.vmsb" --have "$T/s.vmsm" --level 3 --json "${opts[@]}"
json_ok "$T/create.out" || fail "bundle create --json: $(cat "$T/create.out")"
(($(jget "$T/create.out" .objects) > 0 && $(jget "$T/create.out" .objects_held) > 0)) ||
    bad "the bundle from ssh:// left nothing out or holds nothing: $(cat "$T/create.out")"

vm_ok "$T/laptop" checkout "$T/have.vmsb" desk -o "$T/laptop.img" --seed "$simg"
cmp "$T/laptop.img" "$T/online.img" >/dev/null || bad "the laptop's checkout differs from the online export"

repo_for branch
vm_ok "$T/b-imp" import "$url" "$simg" --name desk "${opts[@]}"
vm_ok "$T/apply" bundle apply "$url" "$T/have.vmsb" --json "${opts[@]}"
[[ $(jget "$T/apply.out" .version) == 2 && $(jget "$T/apply.out" .canonical_digest) == "$tdig" ]] ||
    bad "apply over ssh://: $(cat "$T/apply.out")"
vm_ok "$T/b-export" export "$url" desk@2 -o "$T/branch.img" "${opts[@]}"
cmp "$T/branch.img" "$T/online.img" >/dev/null || bad "the branch's desk@2 differs from the office's"

VMSYNC_HOST=laptop-remote vm_ok "$T/l-co" checkout "$office" desk -o "$T/work.img" "${opts[@]}"
repo_add_file "$T/work.img" notes
VMSYNC_HOST=laptop-remote vm_ok "$T/tb" checkin --to-bundle "$T/back.vmsb" desk "$T/work.img" -m "offline"
[[ $(repo_lease "$T/srv/office") == "2|laptop-remote" ]] || fail "the laptop holds no lease: $(repo_lease "$T/srv/office")"
VMSYNC_HOST=office-server vm_ok "$T/back" bundle apply "$office" "$T/back.vmsb" --json "${opts[@]}"
[[ $(jget "$T/back.out" .version) == 3 ]] || bad "the check-in bundle over ssh://: $(cat "$T/back.out")"
[[ -z $(repo_lease "$T/srv/office") ]] || bad "the laptop's lease outlived its check-in: $(repo_lease "$T/srv/office")"
vm_ok "$T/log" log "$office" desk --json "${opts[@]}"
[[ $(jq -r 'select(.version == 3) | .host' "$T/log.out") == laptop-remote ]] ||
    bad "desk@3 is not the laptop's: $(cat "$T/log.out")"
vm_ok "$T/audit" audit "$office" desk --json "${opts[@]}"
jq -e '.entries[] | select(.action == "apply" and .version == 3 and .host == "office-server" and
    (.detail | contains("@laptop-remote")))' "$T/audit.out" >/dev/null ||
    bad "the agent's audit log does not say who applied for whom: $(cat "$T/audit.out")"
finish
