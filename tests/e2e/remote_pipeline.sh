#!/usr/bin/env bash
# A check-in over ssh:// sends the requests of its tail back to back: the
# objects' PUT_END goes out with the manifest, ADD_VERSION next, the lease
# release and the audit entry together after it.
#   - a check-in that sends objects waits for the agent at most 6 times after
#     the connection (LEASE_GET, VERSION, OFFER, then the tail three times:
#     the manifest's delta, whose answer it waits for so that an agent that
#     cannot rebuild it gets the file whole, ADD_VERSION, and the release with
#     the audit entry; its --stats-json round_trips), where one request at a
#     time waits 8 times (PUT_END too is answered on its own); the agent's
#     --stats-file counts the requests it answered: 9 with HELLO and OPEN,
#     PUT_END being part of its OFFER;
#   - when the agent cannot store the objects (its files may not grow past
#     1 MiB: ulimit -f), the error of that step is the one reported, though
#     the manifest and ADD_VERSION were already on their way; no version is
#     recorded, the lease stays this host's, and the same check-in run again
#     once the limit is gone records version 2 with the image's digest;
#   - over a link of 1.2 s round trip (tests/lib/relay.py), the command line's
#     check-in ends its session with its last requests (the lease release and
#     the audit entry), so its close does not wait one more round trip for the
#     agent: the process ends within 0.6 s of the check-in's own end (its
#     --stats-json seconds), where waiting after the last answer takes 1.2 s.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs debugfs jq

export VMSYNC_HOST=laptop-pipe VMSYNC_CACHE=$T/cache
AGENT_STATS=$T/agent-stats.jsonl
# the agent, limited to files of the size in $T/limit (KiB) while it exists;
# SIGXFSZ ignored, so a write past it fails with EFBIG instead
REAL_AGENT=$VMSYNC_AGENT
VMSYNC_AGENT=$T/agent.sh
cat >"$VMSYNC_AGENT" <<EOF
#!/bin/bash
if [[ -e $T/limit ]]; then trap '' XFSZ; ulimit -f "\$(cat $T/limit)"; fi
exec "$REAL_AGENT" "\$@"
EOF
chmod +x "$VMSYNC_AGENT"
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
URL=$SSHD_URL_BASE/repo
SSH_OPTS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")
timg=$(repo_img t ext4) || fail "cannot build T"
vm_ok "$T/imp" import "$T/srv/repo" "$timg" --name t -q

# add_random IMG NAME KIB: a file of random bytes (objects nobody has) into IMG
add_random() {
    head -c "$(($3 * 1024))" /dev/urandom >"$T/$2.bin"
    debugfs -w -R "write $T/$2.bin /$2.bin" "$1?offset=$REPO_PART_START" >/dev/null 2>&1 ||
        fail "debugfs could not write /$2.bin into $1"
}

info "a check-in's tail: requests sent back to back"
vm_ok "$T/co" checkout "$URL" t -o "$T/w.img" -q "${SSH_OPTS[@]}"
add_random "$T/w.img" work 512
: >"$AGENT_STATS"
vm_ok "$T/ci" checkin "$URL" t "$T/w.img" -q "${SSH_OPTS[@]}" --stats-json "$T/ci.json"
waits=$(repo_stat "$T/ci.json" round_trips)
sent=$(repo_stat "$T/ci.json" objects_sent)
requests=$(jq -s 'map(.requests) | add' "$AGENT_STATS")
info "check-in: $sent objects sent, $requests requests answered, $waits waits for an answer"
((sent > 0)) || bad "the check-in sent no objects"
((requests >= 9)) || bad "the agent answered only $requests requests"
((waits <= 6)) || bad "the check-in waited $waits times for the agent (at most 6 expected)"
(($(repo_nversions "$T/srv/repo" t) == 2)) || bad "the check-in did not record version 2"

info "a failure in the tail is the one reported, and nothing is recorded"
vm_ok "$T/co2" checkout "$URL" t -o "$T/w2.img" -q "${SSH_OPTS[@]}"
add_random "$T/w2.img" more 4096
echo 1024 >"$T/limit"
vm "$T/ci2" checkin "$URL" t "$T/w2.img" -q "${SSH_OPTS[@]}"
rm -f "$T/limit"
((VM_RC != 0)) || bad "a check-in whose objects the agent could not store succeeded"
grep -q "File too large" "$T/ci2.err" ||
    bad "the error does not name the failed write: $(head -c 400 "$T/ci2.err")"
if grep -q "lacks" "$T/ci2.err"; then
    bad "the later step's refusal hid the first error: $(head -c 400 "$T/ci2.err")"
fi
(($(repo_nversions "$T/srv/repo" t) == 2)) || bad "a version was recorded after the failure"
[[ $(repo_lease "$T/srv/repo") == *laptop-pipe* ]] ||
    bad "the lease is no longer this host's: $(repo_lease "$T/srv/repo")"

info "the same check-in again, with room"
vm_ok "$T/ci3" checkin "$URL" t "$T/w2.img" -q "${SSH_OPTS[@]}" --stats-json "$T/ci3.json"
(($(repo_nversions "$T/srv/repo" t) == 3)) || bad "the retry did not record version 3"
[[ $(repo_version_digest "$T/srv/repo" t 3) == "$(jq -r .canonical_digest "$T/ci3.json")" ]] ||
    bad "version 3 does not have the image's digest"

info "the last requests end the session: no round trip after the last answer"
vm_ok "$T/co4" checkout "$URL" t -o "$T/w4.img" -q "${SSH_OPTS[@]}"
add_random "$T/w4.img" last 64
relay_start --delay-ms 600
t0=$EPOCHREALTIME
vm_ok "$T/ci4" checkin "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo" t "$T/w4.img" -q \
    -i "$SSH_CLIENT_KEY" --known-hosts "$T/kh-relay" --stats-json "$T/ci4.json"
t1=$EPOCHREALTIME
relay_stop
(($(repo_nversions "$T/srv/repo" t) == 4)) || bad "the check-in through the relay did not record version 4"
[[ $(repo_lease "$T/srv/repo") != *laptop-pipe* ]] ||
    bad "the lease is still held after the check-in: $(repo_lease "$T/srv/repo")"
after=$(awk -v a="$t0" -v b="$t1" -v s="$(jq .seconds "$T/ci4.json")" 'BEGIN { printf "%.2f", b - a - s }')
info "the process outlived its check-in by $after s (round trip 1.2 s)"
awk -v x="$after" 'BEGIN { exit !(x < 0.6) }' ||
    bad "the check-in waited $after s after its end: its close waited a round trip for the agent"
finish
