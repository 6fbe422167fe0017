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
# writes $T/fleet.json, where the office's laptops cross its line, and
# $T/fleet-reflector.json, where they reach a vmsync-agent --upstream on
# loopback (its cache $T/rcache) whose upstream crosses the line, and the
# office's "warm" command exports desk@2 through it.  Sets FLEET_WANT
# (desk@2's digest) and FLEET_SSH_OPTS (the options that reach the sshd
# directly, for the plan).

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

# _fleet_export NAME PORT KEY KNOWN_HOSTS [--seed IMAGE]: the words of a
# laptop's export of desk@2 into $T/lap/NAME/desk.img, with its own cache
_fleet_export() {
    local d=$T/lap/$1
    _fleet_words env "VMSYNC_CACHE=$d/cache" "VMSYNC_HOST=$1" "$VMSYNC" export \
        "ssh://$SSHD_USER@127.0.0.1:$2/repo" desk -o "$d/desk.img" "${@:5}" -q -i "$3" --known-hosts "$4"
}

# _fleet_laptop NAME BRANCH PORT SEED|- RTT_MS [KEY KNOWN_HOSTS]: its FLEET.json entry
_fleet_laptop() {
    local seed=() holds='[]' run
    mkdir -p "$T/lap/$1"
    [[ $4 == - ]] || { seed=(--seed "$4"); holds='["desk@1"]'; }
    run=$(_fleet_export "$1" "$3" "${6:-$SSH_CLIENT_KEY}" "${7:-$T/kh-relay}" "${seed[@]}")
    jq -nc --arg n "$1" --arg b "$2" --argjson holds "$holds" --argjson rtt "$5" --argjson run "$run" \
        '{name: $n, branch: $b, versions: $holds, run: $run} +
         (if $b == "hq" then {link: {rate: "10Gbit", rtt_ms: $rtt}} else {} end)'
}

# _fleet_file OUT BRANCHES_JSON: FLEET.json of the laptops' entries on stdin
_fleet_file() {
    jq -s --arg repo "$SSHD_URL_BASE/repo" --arg up "$FLEET_UP_BITS" --argjson branches "$2" \
        '{repository: $repo, image: "desk", server: {uplink: "\($up)bit"}, branches: $branches,
          laptops: .}' >"$1" || fail "cannot write $1"
}

fleet_rig() {
    local up_bits=$1 up_delay=$2 office_bits=$3 office_delay=$4 office i seed line warm
    _fleet_images
    sshd_start "$T/sshd" "$T/srv"
    relay_start --rate "$up_bits" --delay-ms "$up_delay"
    repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/office.port" \
        --to "127.0.0.1:$RELAY_PORT" --rate "$office_bits" --delay-ms "$office_delay"
    for _ in $(seq 400); do [[ -s $T/office.port ]] && break; sleep 0.05; done
    office=$(cat "$T/office.port") || fail "the office's relay did not start"
    sed "s/^\[127.0.0.1\]:$RELAY_PORT /[127.0.0.1]:$office /" "$T/kh-relay" >>"$T/kh-relay"
    sshd_reflector_key "$T/reflect_key" "ssh://$SSHD_USER@127.0.0.1:$office" "$T/kh-relay" "$T/rcache" laptop
    FLEET_UP_BITS=$up_bits
    line=$(jq -nc --arg b "$office_bits" --argjson rtt $((2 * (up_delay + office_delay))) \
        '{name: "office", link: {rate: "\($b)bit", rtt_ms: $rtt}}')
    warm=$(_fleet_export warm "$SSHD_PORT" "$T/reflect_key" "$SSH_KNOWN_HOSTS")
    for i in 1 2 3 4; do
        seed=-
        ((i > 2)) || seed=$T/v1.img
        _fleet_laptop "hq-$i" hq "$RELAY_PORT" "$seed" $((2 * up_delay))
        _fleet_laptop "office-$i" office "$office" "$seed" $((2 * (up_delay + office_delay)))
    done | _fleet_file "$T/fleet.json" "[{\"name\": \"hq\"}, $line]"
    for i in 1 2 3 4; do
        seed=-
        ((i > 2)) || seed=$T/v1.img
        _fleet_laptop "hq-$i" hq "$RELAY_PORT" "$seed" $((2 * up_delay))
        _fleet_laptop "office-$i" office "$SSHD_PORT" "$seed" 0 "$T/reflect_key" "$SSH_KNOWN_HOSTS"
    done | _fleet_file "$T/fleet-reflector.json" \
        "[{\"name\": \"hq\"}, $(jq -c --argjson warm "$warm" '. + {reflector: true, warm: $warm}' <<<"$line")]"
    FLEET_SSH_OPTS=(-i "$SSH_CLIENT_KEY" --known-hosts "$SSH_KNOWN_HOSTS")
}
