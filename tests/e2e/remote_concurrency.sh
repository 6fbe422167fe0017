#!/usr/bin/env bash
# Several clients of one sshd at once, each served by its own agent process:
#   - eight clients export the same version at once, at a fixed level so the
#     agent's segment cache is in play: all eight images equal a local export,
#     and the agents compressed each segment about once between them;
#   - leases hold across clients: a second laptop's checkout is refused,
#     naming the first, until it steals the lease;
#   - two check-ins of the same image race from two processes: one records
#     version 2, the other is refused (exit 8) and records nothing;
#   - gc on the server empties the segment cache.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq cmp

CLIENTS=8
AGENT_STATS=$T/agent-stats.jsonl
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp" import "$T/srv/repo" "$timg" --name t -q
URL=$SSHD_URL_BASE/repo
KEYS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")

info "$CLIENTS exports at once"
vm_ok "$T/local" export "$T/srv/repo" t -o "$T/local.img" -q --cache "$T/cache-local"
pids=()
for i in $(seq "$CLIENTS"); do
    VMSYNC_HOST=laptop-$i VMSYNC_CACHE=$T/cache-$i \
        timeout 300 "$VMSYNC" export "$URL" t -o "$T/out-$i.img" -q --compress-level 12 "${KEYS[@]}" \
        >"$T/exp-$i.out" 2>"$T/exp-$i.err" &
    pids+=($!)
done
for i in $(seq "$CLIENTS"); do
    rc=0
    wait "${pids[$((i - 1))]}" || rc=$?
    if ((rc != 0)); then
        bad "client $i exited $rc: $(head -c 300 "$T/exp-$i.err")"
    elif ! cmp -s "$T/out-$i.img" "$T/local.img"; then
        bad "client $i's image differs from the local export"
    fi
    rm -f "$T/out-$i.img"
done
# each agent sent every segment; the cache should have answered for most
read -r segs cached < <(jq -rs '[(map(.segments) | add), (map(.segments_cached) | add)] | @tsv' "$AGENT_STATS")
info "agents sent $segs segments, $cached of them from the cache"
((segs > 0)) || bad "the agents sent no segments"
per_client=$((segs / CLIENTS))
((segs - cached <= 2 * per_client)) ||
    bad "the agents compressed $((segs - cached)) segments for $CLIENTS clients of $per_client each"

info "leases across clients"
VMSYNC_HOST=laptop-a VMSYNC_CACHE=$T/cache-1 vm_ok "$T/co-a" checkout "$URL" t -o "$T/a.img" --seed "$simg" -q "${KEYS[@]}"
VMSYNC_HOST=laptop-b VMSYNC_CACHE=$T/cache-2 vm "$T/co-b" checkout "$URL" t -o "$T/b.img" -q "${KEYS[@]}"
((VM_RC == 8)) || bad "a second laptop's checkout exited $VM_RC, expected 8 (lease held)"
grep -q laptop-a "$T/co-b.err" || bad "the refusal does not name laptop-a: $(head -c 300 "$T/co-b.err")"
[[ ! -e $T/b.img ]] || bad "a refused checkout wrote its output"

info "two check-ins race"
mkdir -p "$T/race"
cp "$simg" "$T/race/one.img"
cp "$timg" "$T/race/two.img"
declare -A race_pid
for side in one two; do
    VMSYNC_HOST=laptop-a VMSYNC_CACHE=$T/cache-$side \
        timeout 300 "$VMSYNC" checkin "$URL" t "$T/race/$side.img" -m "$side" -q "${KEYS[@]}" \
        >"$T/ci-$side.out" 2>"$T/ci-$side.err" &
    race_pid[$side]=$!
done
rc_one=0 rc_two=0
wait "${race_pid[one]}" || rc_one=$?
wait "${race_pid[two]}" || rc_two=$?
info "check-in exits: $rc_one and $rc_two"
if ! { ((rc_one == 0 && rc_two == 8)) || ((rc_one == 8 && rc_two == 0)); }; then
    bad "the racing check-ins exited $rc_one and $rc_two, expected one 0 and one 8"
fi
loser=one
((rc_one == 8)) || loser=two
grep -qiE "another check-in|newer version|version 2" "$T/ci-$loser.err" ||
    bad "the losing check-in's message does not say why: $(head -c 300 "$T/ci-$loser.err")"
n=$("$VMSYNC" log "$T/srv/repo" t --json | jq -s 'length')
((n == 2)) || bad "t has $n versions after the race, expected 2"

info "gc empties the agent's segment cache"
[[ -n $(ls "$T/srv/repo/cache/segments") ]] || bad "the agents cached no segments"
vm_ok "$T/gc" gc "$T/srv/repo" -q
[[ -z $(ls "$T/srv/repo/cache/segments") ]] || bad "gc left cached segments behind"
finish
