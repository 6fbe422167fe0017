#!/usr/bin/env bash
# vmsync prefetch: the latest version fetched ahead of time, into the cache.
#   - over ssh:// through tests/lib/relay.py, which cuts the link twice: the
#     prefetch tries again by itself (saying so) and finishes, exit 0;
#   - the checkout that follows, with the same seed, fetches nothing, and its
#     image equals a local checkout byte for byte;
#   - a second prefetch of the same version fetches nothing;
#   - a prefetched image damaged behind the cache's back (its mtime kept, so
#     the cached scan still stands): the checkout fetches the damaged object
#     and still equals the local export;
#   - that image with its record removed is built again (a warning), not
#     refused at every run;
#   - a new version is built from the last prefetch: it fetches less than the
#     first did, and takes bytes from it;
#   - a second prefetch of an image being prefetched does nothing (exit 0,
#     JSON says it is running) and the first finishes;
#   - --snooze: a snoozed prefetch does nothing (exit 0, says until when; JSON
#     says so); --snooze off lets it go on;
#   - usage errors exit 2.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs python3 jq cmp debugfs

export VMSYNC_HOST=laptop-prefetch VMSYNC_CACHE=$T/cache
seed=$(repo_img s ext4) || fail "cannot build S"
timg=$(repo_img t ext4) || fail "cannot build T"
mkdir -p "$T/srv"
R=$T/srv/repo
repo_init "$R"
vm_ok "$T/imp1" import "$R" "$seed" --name desk -q
vm_ok "$T/imp2" import "$R" "$timg" --name desk -q
sshd_start "$T/sshd" "$T/srv"
relay_start --cut-after 3000000 --cut-count 2
url="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
keys=(--known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY")

info "a prefetch through a link cut twice tries again and finishes"
vm_ok "$T/pf1" prefetch "$url" desk --stats-json "$T/pf1.json" "${keys[@]}"
cuts=$(jq -r .cut "$T/relay.json")
tries=$(grep -c 'trying again in' "$T/pf1.err" || true)
((cuts == 2)) || bad "the relay cut $cuts connections, not 2: the test proves less than it says"
((tries == cuts)) || bad "the prefetch said it tried again $tries times for $cuts cuts: $(cat "$T/pf1.err")"
grep -q "prefetched desk@2 into $T/cache/prefetch/" "$T/pf1.out" ||
    bad "the summary does not say where the image went: $(cat "$T/pf1.out")"
[[ $(repo_stat "$T/pf1.json" version) == 2 ]] || bad "the prefetch did not take the latest version"
first=$(repo_stat "$T/pf1.json" bytes_fetched_raw)
((first > 3000000)) || bad "the first prefetch fetched only $first bytes"
vm_ok "$T/leases" leases "$R" --json
jq -e '.leases | length == 0' "$T/leases.out" >/dev/null || bad "a prefetch took a lease: $(cat "$T/leases.out")"

info "the checkout after it fetches nothing, and equals a local one"
vm_ok "$T/co" checkout "$url" desk -o "$T/out.img" --seed "$seed" --stats-json "$T/co.json" -q "${keys[@]}"
[[ $(repo_stat "$T/co.json" bytes_fetched_raw) == 0 ]] ||
    bad "the checkout after a prefetch fetched $(repo_stat "$T/co.json" bytes_fetched_raw) bytes"
VMSYNC_CACHE=$T/cache-local vm_ok "$T/local" export "$R" desk -o "$T/local.img" -q
cmp -s "$T/out.img" "$T/local.img" || bad "the checkout after a prefetch differs from a local export"

info "a second prefetch of the same version fetches nothing"
vm_ok "$T/pf2" prefetch "$url" desk --stats-json "$T/pf2.json" "${keys[@]}"
grep -q "already holds desk@2: nothing to fetch" "$T/pf2.out" || bad "the second prefetch: $(cat "$T/pf2.out")"
[[ $(repo_stat "$T/pf2.json" bytes_fetched_raw) == 0 ]] || bad "the second prefetch fetched bytes"

info "a prefetched image changed behind the cache's back: the checkout still writes the version"
pimg=$(echo "$T"/cache/prefetch/*-desk.img)
[[ -f $pimg ]] || fail "no prefetched image under $T/cache/prefetch"
big=$(timeout 60 "$VMSYNC" manifest "$pimg" --json -q | jq -r '[.volumes[0].entries[] | select(.type == "file")] | max_by(.size) | .path')
block=$(debugfs -R "blocks $big" "$pimg?offset=1048576" 2>/dev/null | awk '{print $1}')
[[ $block =~ ^[0-9]+$ ]] || fail "no block of $big in $pimg"
touch -r "$pimg" "$T/mtime" # the cached scan's key stays as it was
dd if=/dev/urandom of="$pimg" bs=4096 seek=$((256 + block)) count=1 conv=notrunc status=none
touch -r "$T/mtime" "$pimg"
vm_ok "$T/co-bad" checkout "$url" desk -o "$T/out2.img" --stats-json "$T/co-bad.json" -q "${keys[@]}"
cmp -s "$T/out2.img" "$T/local.img" || bad "a damaged prefetched image made a checkout differ from a local export"
(($(repo_stat "$T/co-bad.json" bytes_fetched_raw) > 0)) || bad "the damaged object was not fetched again"

info "a prefetched image that lost its record is built again, not refused at every run"
rm -f "$pimg.vmsync-record"
vm_ok "$T/pf-norecord" prefetch "$url" desk --stats-json "$T/pf-norecord.json" "${keys[@]}"
grep -q "the cache's own copy, so it is built again" "$T/pf-norecord.err" ||
    bad "a prefetch over its own unrecorded image did not say it builds it again: $(cat "$T/pf-norecord.err")"
(($(repo_stat "$T/pf-norecord.json" bytes_fetched_raw) > 0)) ||
    bad "the rebuilt prefetch did not fetch the damaged object again"

info "a new version is built from the last prefetch"
vm_ok "$T/imp3" import "$R" "$seed" --name desk -q
vm_ok "$T/pf3" prefetch "$url" desk --stats-json "$T/pf3.json" "${keys[@]}"
third=$(repo_stat "$T/pf3.json" bytes_fetched_raw)
from=$(repo_stat "$T/pf3.json" bytes_from_seeds)
info "the first prefetch fetched $first bytes, the one of desk@3 $third, taking $from from the last"
((from > 0 && third < first)) || bad "desk@3's prefetch did not build on desk@2's: $third fetched, $from from seeds"

info "one prefetch of an image at a time"
vm_ok "$T/imp-slow" import "$R" "$timg" --name slow -q
"$VMSYNC" prefetch "$SSHD_URL_BASE/repo" slow --bwlimit 8M -q --known-hosts "$SSH_KNOWN_HOSTS" \
    -i "$SSH_CLIENT_KEY" >"$T/slow.out" 2>"$T/slow.err" &
slow=$!
for _ in $(seq 200); do compgen -G "$T/cache/prefetch/*-slow.img.vmsync-part" >/dev/null && break; sleep 0.1; done
vm_ok "$T/pf-both" prefetch "$SSHD_URL_BASE/repo" slow --json --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY"
jq -e '.skipped == "running"' "$T/pf-both.out" >/dev/null ||
    bad "a second prefetch of an image being prefetched said: $(cat "$T/pf-both.out")"
rc=0
wait "$slow" || rc=$?
((rc == 0)) || bad "the first of two prefetches failed (exit $rc): $(cat "$T/slow.err")"

info "--snooze: nothing is done until it ends"
vm_ok "$T/snooze" prefetch --snooze 2h
grep -q "prefetching is snoozed until" "$T/snooze.out" || bad "--snooze said: $(cat "$T/snooze.out")"
vm_ok "$T/imp4" import "$R" "$timg" --name desk -q
before=$(relay_connections)
vm_ok "$T/pf4" prefetch "$url" desk --json "${keys[@]}"
jq -e '.skipped == "snoozed" and .snoozed_until > now' "$T/pf4.out" >/dev/null ||
    bad "a snoozed prefetch said: $(cat "$T/pf4.out")"
sleep 0.5 # a connection's end reaches the relay's figures at once, but not in no time
[[ $(relay_connections) == "$before" ]] || bad "a snoozed prefetch connected to the server"
vm_ok "$T/unsnooze" prefetch --snooze off
vm_ok "$T/pf5" prefetch "$url" desk --stats-json "$T/pf5.json" -q "${keys[@]}"
[[ $(repo_stat "$T/pf5.json" version) == 4 ]] || bad "after the snooze the prefetch did not take desk@4"

info "usage errors"
vm_expect "$T/u1" 2 prefetch "$url"
vm_expect "$T/u2" 2 prefetch --snooze soon
vm_expect "$T/u3" 2 prefetch --snooze 1h "$url" desk
vm_expect "$T/u4" 2 prefetch "$url" desk --retries many
relay_stop
finish
