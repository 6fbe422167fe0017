#!/usr/bin/env bash
# A cancel ends a checkout waiting on a silent link at once, and the run
# after it resumes.  The client reaches sshd through tests/lib/relay.py,
# which goes silent (--stall-after) in the middle of the objects:
#   - the library: a checkout on a second thread (tests/tools/cancel_checkout)
#     whose session's token is fired from the main thread returns
#     FSP_EK_CANCELLED within a second;
#   - the CLI: SIGINT (Ctrl-C) ends a checkout stalled the same way within a
#     second, with the cancelled exit status (7) and one line saying so, and
#     one stalled in the SSH handshake too;
#   - the checkout run again on a working link keeps what the cancelled runs
#     wrote (bytes_resumed) and equals a local export byte for byte;
#   - a check-in whose link goes silent while it sends (--stall-up-after)
#     ends at Ctrl-C within a second, records nothing, and runs again;
#   - locally, Ctrl-C ends gc's wait for the repository's other users at once.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs python3 cmp
HELPER=$(dirname "$VMSYNC")/tools/cancel_checkout

export VMSYNC_HOST=laptop-cancel VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
timg=$(repo_img t ext4) || fail "cannot build T"
vm_ok "$T/imp" import "$T/srv/repo" "$timg" --name t -q

relay_stalled() { grep -q '"stalled": [1-9]' "$T/relay.json" 2>/dev/null; }
remote() { echo "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"; }
now() { date +%s.%N; }

# wait_stalled WHAT TRIES: until the relay holds the link silent, then a
# moment more, so that WHAT is deep in its wait
wait_stalled() {
    for _ in $(seq "$2"); do relay_stalled && break; sleep 0.05; done
    relay_stalled || bad "the relay did not stall under $1"
    sleep 0.5
}

# interrupt WHAT PID ERRFILE: SIGINT to PID, which must end within a second
# with exit 7 (cancelled)
interrupt() {
    local what=$1 pid=$2 errf=$3 t0 took rc=0
    t0=$(now)
    kill -INT "$pid"
    wait "$pid" || rc=$?
    took=$(echo "$(now) - $t0" | bc)
    info "$what ended $took s after SIGINT, exit $rc"
    ((rc == 7)) || bad "Ctrl-C during $what gave exit $rc, expected 7 (cancelled): $(cat "$errf")"
    [[ $(echo "$took < 1" | bc) == 1 ]] || bad "$what took $took s to end after Ctrl-C"
}

# The wire bytes of a whole checkout, so that the stalls below fall in the
# middle of the objects, whatever the transfer compresses them to.
relay_start
vm_ok "$T/full" checkout "$(remote)" t -o "$T/full.img" -q --known-hosts "$T/kh-relay" \
    -i "$SSH_CLIENT_KEY"
relay_stop
down=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["bytes_down"])' "$T/relay.json")
info "a whole checkout is $down bytes down the link"
rm -f "$T/full.img"

info "the library: a cancel from another thread while the link is silent"
relay_start --stall-after $((down / 3))
if [[ -x $HELPER ]]; then
    "$HELPER" "$(remote)" t "$T/t.img" "$T/kh-relay" "$SSH_CLIENT_KEY" "$T/relay.json" \
        >"$T/helper.out" 2>"$T/helper.err" || bad "$(cat "$T/helper.err")"
    cat "$T/helper.out"
    relay_stalled || bad "the relay did not stall: the test proved nothing"
    [[ -e $T/t.img.vmsync-part ]] || bad "the cancelled checkout kept no partial image"
else
    bad "the test helper is not built: $HELPER"
fi
relay_stop

info "the CLI: Ctrl-C while the link is silent"
relay_start --stall-after $((down / 6))
"$VMSYNC" checkout "$(remote)" t -o "$T/t.img" -q --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY" \
    --timeout 5 >"$T/int.out" 2>"$T/int.err" &
cpid=$!
wait_stalled "the checkout" 600
interrupt "the checkout" "$cpid" "$T/int.err"
grep -q '^vmsync: cancelled' "$T/int.err" || bad "no 'cancelled' line: $(cat "$T/int.err")"
relay_stop

info "the CLI: Ctrl-C while the link is silent in the SSH handshake"
relay_start --stall-after 20
"$VMSYNC" checkout "$(remote)" t -o "$T/t.img" -q --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY" \
    --timeout 30 >"$T/hs.out" 2>"$T/hs.err" &
cpid=$!
wait_stalled "the handshake" 600
interrupt "the handshake" "$cpid" "$T/hs.err"
relay_stop

info "the checkout run again resumes"
relay_start
vm_ok "$T/co" checkout "$(remote)" t -o "$T/t.img" -q --known-hosts "$T/kh-relay" \
    -i "$SSH_CLIENT_KEY" --stats-json "$T/co.json"
resumed=$(repo_stat "$T/co.json" bytes_resumed)
info "the resumed run found $resumed bytes in place"
((resumed > 0)) || bad "the run after the cancels found nothing in place"
vm_ok "$T/exp" export "$T/srv/repo" t -o "$T/t-local.img" -q --cache "$T/cache-l"
cmp -s "$T/t.img" "$T/t-local.img" || bad "the resumed image differs from a local export"
relay_stop

info "the CLI: Ctrl-C during a check-in whose link went silent while sending"
# 40 MB the server has never seen, in the checked-out image's place
mkdir -p "$T/fresh"
for i in 1 2 3 4; do head -c 10000000 /dev/urandom >"$T/fresh/f$i"; done
rm "$T/t.img"
mke2fs -q -F -t ext4 -d "$T/fresh" "$T/t.img" 100M >/dev/null 2>&1 || fail "mke2fs failed"
rm -rf "$T/fresh"
relay_start --stall-up-after 20000000
"$VMSYNC" checkin "$(remote)" t "$T/t.img" -q --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY" \
    --timeout 30 >"$T/ci-int.out" 2>"$T/ci-int.err" &
cpid=$!
wait_stalled "the check-in" 1200
interrupt "the check-in" "$cpid" "$T/ci-int.err"
relay_stop
n=$("$VMSYNC" log "$T/srv/repo" t --json | grep -c "\"version\":")
((n == 1)) || bad "the cancelled check-in recorded a version ($n versions of t)"
relay_start
vm_ok "$T/ci" checkin "$(remote)" t "$T/t.img" -q --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY"
n=$("$VMSYNC" log "$T/srv/repo" t --json | grep -c "\"version\":")
((n == 2)) || bad "the check-in run again did not record version 2 ($n versions of t)"
relay_stop

info "gc waiting for another user of the repository: Ctrl-C"
need_cmd flock
# one process (its pid the one repo_bg kills) holds the shared lock a reader would
repo_bg bash -c 'exec 9<"$1" && flock -s 9 && exec sleep 60' _ "$T/srv/repo/lock"
for _ in $(seq 50); do flock -n -x "$T/srv/repo/lock" true || break; sleep 0.05; done
"$VMSYNC" gc "$T/srv/repo" --wait 30 -q >"$T/gc.out" 2>"$T/gc.err" &
gpid=$!
sleep 1
interrupt "gc's wait" "$gpid" "$T/gc.err"
kill "$REPO_BG_PID" 2>/dev/null
finish
