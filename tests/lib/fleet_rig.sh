# shellcheck shell=bash
# A rollout rig for vmsync fleet run (tests/e2e/fleet_run.sh, bench/fleet.sh):
# desk@1 (8 MiB of random files) and desk@2 (half of them kept, 6 MiB new) in
# a repository behind the test's sshd; the server's uplink and an office's
# line as tests/lib/relay.py relays, the office's in front of the uplink's;
# and FLEET.json for 8 laptops, four at headquarters (behind the uplink
# only) and four in the office, two of each holding desk@1 (their seed),
# two nothing.  Each laptop's "run" command exports desk@2 with its own
# cache into $T/lap/NAME/desk.img.  Needs repo.sh, sshd.sh and relay.sh.
#
#   fleet_rig UPLINK_BITS UPLINK_DELAY_MS OFFICE_BITS OFFICE_DELAY_MS
#
# writes $T/fleet.json and sets FLEET_WANT (desk@2's digest) and
# FLEET_SSH_OPTS (the options that reach the sshd directly, for the plan).

_fleet_random_files() { # DIR FROM TO: files of 1 MiB
    mkdir -p "$1/data"
    for i in $(seq "$2" "$3"); do head -c $((1 << 20)) /dev/urandom >"$1/data/f$i"; done
}

_fleet_images() {
    _fleet_random_files "$T/v1" 1 8
    mkdir -p "$T/v2/data"
    cp "$T/v1/data/f"[1-4] "$T/v2/data/"
    _fleet_random_files "$T/v2" 11 16
    for v in v1 v2; do
        mke2fs -q -F -t ext4 -d "$T/$v" "$T/$v.img" 24M >/dev/null 2>&1 || fail "mke2fs -d $v failed"
    done
    mkdir -p "$T/srv"
    repo_init "$T/srv/repo"
    vm_ok "$T/i1" import "$T/srv/repo" "$T/v1.img" --name desk -q
    vm_ok "$T/i2" import "$T/srv/repo" "$T/v2.img" --name desk -q
    FLEET_WANT=$(repo_digest "$T/v2.img")
}

_fleet_words() { python3 -c 'import json, sys; print(json.dumps(sys.argv[1:]))' "$@"; }

# _fleet_laptop NAME BRANCH PORT SEED|- RTT_MS: its FLEET.json entry
_fleet_laptop() {
    local d=$T/lap/$1 seed=() holds='[]' run
    mkdir -p "$d"
    [[ $4 == - ]] || { seed=(--seed "$4"); holds='["desk@1"]'; }
    run=$(_fleet_words env "VMSYNC_CACHE=$d/cache" "VMSYNC_HOST=$1" "$VMSYNC" export \
        "ssh://$SSHD_USER@127.0.0.1:$3/repo" desk -o "$d/desk.img" "${seed[@]}" -q \
        -i "$SSH_CLIENT_KEY" --known-hosts "$T/kh-relay")
    jq -nc --arg n "$1" --arg b "$2" --argjson holds "$holds" --argjson rtt "$5" --argjson run "$run" \
        '{name: $n, branch: $b, versions: $holds, run: $run} +
         (if $b == "hq" then {link: {rate: "10Gbit", rtt_ms: $rtt}} else {} end)'
}

fleet_rig() {
    local up_bits=$1 up_delay=$2 office_bits=$3 office_delay=$4 office i seed
    _fleet_images
    sshd_start "$T/sshd" "$T/srv"
    relay_start --rate "$up_bits" --delay-ms "$up_delay"
    repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/office.port" \
        --to "127.0.0.1:$RELAY_PORT" --rate "$office_bits" --delay-ms "$office_delay"
    for _ in $(seq 400); do [[ -s $T/office.port ]] && break; sleep 0.05; done
    office=$(cat "$T/office.port") || fail "the office's relay did not start"
    sed "s/^\[127.0.0.1\]:$RELAY_PORT /[127.0.0.1]:$office /" "$T/kh-relay" >>"$T/kh-relay"
    for i in 1 2 3 4; do
        seed=-
        ((i > 2)) || seed=$T/v1.img
        _fleet_laptop "hq-$i" hq "$RELAY_PORT" "$seed" $((2 * up_delay))
        _fleet_laptop "office-$i" office "$office" "$seed" $((2 * (up_delay + office_delay)))
    done | jq -s --arg repo "$SSHD_URL_BASE/repo" --arg up "$up_bits" --arg office "$office_bits" \
        --argjson rtt $((2 * (up_delay + office_delay))) \
        '{repository: $repo, image: "desk", server: {uplink: "\($up)bit"},
          branches: [{name: "hq"}, {name: "office", link: {rate: "\($office)bit", rtt_ms: $rtt}}],
          laptops: .}' >"$T/fleet.json" || fail "cannot write the fleet file"
    FLEET_SSH_OPTS=(-i "$SSH_CLIENT_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
}
