#!/usr/bin/env bash
# Dropped links, resumed.  The client reaches sshd through tests/lib/relay.py,
# which cuts connections on cue:
#   - a checkout whose connection is cut after 8 MB, twice, then the agent
#     killed outright: each run fails with exit 11 and a message saying to run
#     it again; the run after that finishes, fetches only what it lacked, and
#     the image equals a local check-out byte for byte;
#   - an agent that stops answering: the client gives up after --timeout
#     with exit 11;
#   - a check-in whose connection is dropped in the middle of sending: no
#     version is recorded, the objects that arrived whole are kept, and the
#     same command run again sends only the rest and records version 2 with
#     the image's digest.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs python3 jq cmp

export VMSYNC_HOST=laptop-resume VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
big=$(repo_img big ext4) || fail "cannot build BIG"
timg=$(repo_img t ext4) || fail "cannot build T"
vm_ok "$T/imp-big" import "$T/srv/repo" "$big" --name big -q
vm_ok "$T/imp-t" import "$T/srv/repo" "$timg" --name t -q

source "$TESTS_LIB/relay.sh"
remote() { echo "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"; }
KEYS() { echo --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY"; }

info "checkout: the link drops twice after 8 MB"
relay_start --cut-after 8000000 --cut-count 2
# shellcheck disable=SC2046
for run in 1 2; do
    vm_expect "$T/co-$run" 11 checkout "$(remote)" big -o "$T/big.img" -q $(KEYS) ||
        continue
    grep -q "run the same command again to resume" "$T/co-$run.err" ||
        bad "run $run: the message does not say how to resume: $(cat "$T/co-$run.err")"
done
[[ -e $T/big.img.vmsync-part ]] || bad "no partial image kept for the resume"

info "checkout: the agent is killed in the middle"
# shellcheck disable=SC2046
VMSYNC_CMD_TIMEOUT=120 "$VMSYNC" checkout "$(remote)" big -o "$T/big.img" -q $(KEYS) --bwlimit 4M \
    >"$T/co-3.out" 2>"$T/co-3.err" &
cpid=$!
for _ in $(seq 100); do pgrep -f "vmsync-agent --root $T/srv" >/dev/null && break; sleep 0.1; done
sleep 2
pkill -9 -f "vmsync-agent --root $T/srv" || bad "no agent to kill"
rc=0
wait "$cpid" || rc=$?
((rc == 11)) || bad "a killed agent gave exit $rc, expected 11: $(cat "$T/co-3.err")"

info "checkout: the agent stops answering (SIGSTOP): a clear timeout"
# shellcheck disable=SC2046
"$VMSYNC" checkout "$(remote)" big -o "$T/big.img" -q $(KEYS) --bwlimit 4M --timeout 3 \
    >"$T/co-stop.out" 2>"$T/co-stop.err" &
cpid=$!
for _ in $(seq 100); do pgrep -f "vmsync-agent --root $T/srv" >/dev/null && break; sleep 0.1; done
sleep 1
pkill -STOP -f "vmsync-agent --root $T/srv" || bad "no agent to stop"
rc=0
wait "$cpid" || rc=$?
pkill -KILL -f "vmsync-agent --root $T/srv" || true
((rc == 11)) || bad "a silent agent gave exit $rc, expected 11"
grep -q "no data from the server for 3 s" "$T/co-stop.err" ||
    bad "the timeout message is unclear: $(cat "$T/co-stop.err")"

info "checkout: the last run finishes"
# shellcheck disable=SC2046
vm_ok "$T/co-4" checkout "$(remote)" big -o "$T/big.img" -q $(KEYS) --stats-json "$T/co-4.json"
resumed=$(repo_stat "$T/co-4.json" bytes_resumed)
fetched=$(repo_stat "$T/co-4.json" bytes_fetched_raw)
info "last run: $resumed bytes already in place, $fetched fetched"
((resumed >= 16000000)) || bad "the resumed run found only $resumed bytes in place"
vm_ok "$T/co-local" checkout "$T/srv/repo" big -o "$T/big-local.img" -q --steal --cache "$T/cache-l"
cmp -s "$T/big.img" "$T/big-local.img" || bad "the resumed image differs from a local check-out"
relay_stop
rm -f "$T/big.img" "$T/big-local.img"

info "check-in: the link drops while sending"
relay_start
# shellcheck disable=SC2046
vm_ok "$T/co-t" checkout "$(remote)" t -o "$T/t.img" -q $(KEYS)
# the laptop's new image: 120 MB the server has never seen
mkdir -p "$T/fresh"
for i in $(seq 12); do head -c 10000000 /dev/urandom >"$T/fresh/f$i"; done
rm "$T/t.img"
mke2fs -q -F -t ext4 -d "$T/fresh" "$T/t.img" 200M >/dev/null 2>&1 || fail "mke2fs failed"
rm -rf "$T/fresh"
# shellcheck disable=SC2046
"$VMSYNC" checkin "$(remote)" t "$T/t.img" -q $(KEYS) --bwlimit 10M >"$T/ci-1.out" 2>"$T/ci-1.err" &
cpid=$!
sleep 8
kill -USR1 "$RELAY_PID"
rc=0
wait "$cpid" || rc=$?
((rc == 11)) || bad "the cut check-in exited $rc, expected 11: $(cat "$T/ci-1.err")"
n=$("$VMSYNC" log "$T/srv/repo" t --json | jq -s 'length')
((n == 1)) || bad "a cut check-in recorded a version ($n versions of t)"
# shellcheck disable=SC2046
vm_ok "$T/ci-2" checkin "$(remote)" t "$T/t.img" -q $(KEYS) --stats-json "$T/ci-2.json"
sent=$(repo_stat "$T/ci-2.json" bytes_sent_raw)
info "the second check-in sent $sent bytes"
((sent < 100000000)) || bad "the second check-in sent $sent bytes: the first one's objects were lost"
want=$(repo_digest "$T/t.img")
got=$(repo_version_digest "$T/srv/repo" t 2)
[[ $got == "$want" ]] || bad "version 2 has digest $got, expected $want"
relay_stop
finish
