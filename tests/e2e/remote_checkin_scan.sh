#!/usr/bin/env bash
# A check-in over ssh:// scans on a thread of its own and sends what the scan
# found while it reads on (the link does not wait for the whole scan):
#   - with 6 MiB of new objects in an early inode of the image, through a
#     relay of 16 Mbit/s, --progress=json shows the scan still reading (a
#     scan-image event short of its total) after the first send event; the
#     version is recorded with the image's digest, and every event came on
#     the command's one thread of callbacks (the json lines are whole);
#   - when the link is cut while objects go out during the scan, the check-in
#     fails naming the network, records nothing and keeps the lease; run
#     again, it records the version;
#   - when the image cannot be scanned (cut short: its backup GPT is gone),
#     the check-in fails naming the image, records nothing and keeps the
#     lease.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs debugfs jq truncate

export VMSYNC_HOST=laptop-scan VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
URL=$SSHD_URL_BASE/repo
SSH_OPTS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")
timg=$(repo_img t ext4) || fail "cannot build T"
vm_ok "$T/imp" import "$T/srv/repo" "$timg" --name t -q

# replace_early IMG KIB: the image's first regular file under /docs/d0 gives
# way to KIB of random bytes, which take its (early) inode: the scan finds
# them before most of the image
replace_early() {
    local first
    first=$(debugfs -R "ls -p /docs/d0" "$1?offset=$REPO_PART_START" 2>/dev/null |
        awk -F/ '$3 ~ /^100/ { print $6; exit }')
    [[ -n $first ]] || fail "no regular file in /docs/d0 of $1"
    head -c "$(($2 * 1024))" /dev/urandom >"$T/new.bin"
    debugfs -w -R "rm /docs/d0/$first" "$1?offset=$REPO_PART_START" >/dev/null 2>&1 &&
        debugfs -w -R "write $T/new.bin /docs/d0/$first" "$1?offset=$REPO_PART_START" >/dev/null 2>&1 ||
        fail "debugfs could not replace /docs/d0/$first in $1"
}
relay_url() { printf 'ssh://%s@127.0.0.1:%s/repo' "$SSHD_USER" "$RELAY_PORT"; }

info "objects go out while the scan reads on"
vm_ok "$T/co" checkout "$URL" t -o "$T/w.img" -q "${SSH_OPTS[@]}"
replace_early "$T/w.img" 6144
relay_start --rate 16000000
vm_ok "$T/ci" checkin "$(relay_url)" t "$T/w.img" --progress=json -i "$SSH_CLIENT_KEY" \
    --known-hosts "$T/kh-relay" --stats-json "$T/ci.json"
relay_stop
jq -c . "$T/ci.err" >/dev/null || bad "the event lines are not whole JSON lines"
order=$(jq -rs '(map(.phase == "send") | index(true)) as $s |
    (to_entries | map(select(.value.phase == "scan-image" and .value.done < .value.total)) |
     last | .key) as $l | "\($s) \($l)"' "$T/ci.err")
info "first send event, last scan event short of its total: $order"
read -r first_send last_scan <<<"$order"
[[ $first_send != null ]] || bad "the check-in reported no sending"
[[ $last_scan != null && $first_send != null ]] && ((first_send < last_scan)) ||
    bad "nothing went out before the scan ended (first send $first_send, last scan $last_scan)"
(($(repo_nversions "$T/srv/repo" t) == 2)) || bad "the check-in did not record version 2"
[[ $(repo_version_digest "$T/srv/repo" t 2) == "$(jq -r .canonical_digest "$T/ci.json")" ]] ||
    bad "version 2 does not have the image's digest"

info "a link cut while objects go out during the scan"
vm_ok "$T/co2" checkout "$URL" t -o "$T/w2.img" -q "${SSH_OPTS[@]}"
replace_early "$T/w2.img" 6144
relay_start --rate 16000000 --stall-up-after $((2 << 20))
vm "$T/cut" checkin "$(relay_url)" t "$T/w2.img" -q -i "$SSH_CLIENT_KEY" \
    --known-hosts "$T/kh-relay" --timeout 3
relay_stop
((VM_RC != 0)) || bad "a check-in whose link went silent succeeded"
grep -qiE "link|network|connection" "$T/cut.err" ||
    bad "the error does not name the link: $(head -c 400 "$T/cut.err")"
(($(repo_nversions "$T/srv/repo" t) == 2)) || bad "a version was recorded after the cut"
[[ $(repo_lease "$T/srv/repo") == *laptop-scan* ]] ||
    bad "the lease is no longer this host's: $(repo_lease "$T/srv/repo")"
vm_ok "$T/again" checkin "$URL" t "$T/w2.img" -q "${SSH_OPTS[@]}"
(($(repo_nversions "$T/srv/repo" t) == 3)) || bad "the check-in run again did not record version 3"

info "a scan that fails"
vm_ok "$T/co3" checkout "$URL" t -o "$T/w3.img" -q "${SSH_OPTS[@]}"
replace_early "$T/w3.img" 1024
truncate -s $((REPO_PART_START + REPO_PART_BYTES / 2)) "$T/w3.img"
vm "$T/bad" checkin "$URL" t "$T/w3.img" -q "${SSH_OPTS[@]}"
((VM_RC != 0)) || bad "the check-in of an image cut short succeeded"
grep -q "w3.img" "$T/bad.err" || bad "the error does not name the image: $(head -c 400 "$T/bad.err")"
(($(repo_nversions "$T/srv/repo" t) == 3)) || bad "a version was recorded after the failed scan"
[[ $(repo_lease "$T/srv/repo") == *laptop-scan* ]] ||
    bad "the lease is no longer this host's: $(repo_lease "$T/srv/repo")"
finish
