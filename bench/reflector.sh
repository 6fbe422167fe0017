#!/usr/bin/env bash
# Bytes on a branch's upstream line: bench/reflector.sh [BUILD]
#
# REFLECT_LAPTOPS laptops (default 8), each with its own client cache and the
# held image as seed, export the target version at once, in two set-ups:
#   direct     every laptop is an ssh:// client of the server, through a relay
#              (tests/lib/relay.py) of REFLECT_LINK (RATE_BITS_PER_S:DELAY_MS,
#              default 100000000:10): the branch's line
#   reflector  every laptop is a client of one vmsync-agent --upstream (a fresh
#              cache), on loopback; only the reflector's upstream sessions
#              cross the relay
# The relay counts what crossed it each way (the ssh streams, everything
# included); every image is compared with a local export.
#
# The images are bench/sync.sh's ext4-held.img and ext4-target.img in
# REFLECT_IMAGES (default $BUILD/bench-cache/sync; read only), or the files
# REFLECT_HELD and REFLECT_TARGET.  Output: a table on stdout, and
# $BUILD/bench-reflector.json with the run id $BENCH_RUN_ID.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-${BUILD:-build}}
BUILD=$(cd "$BUILD" && pwd)
LAPTOPS=${REFLECT_LAPTOPS:-8}
LINK=${REFLECT_LINK:-100000000:10}
IMAGES=${REFLECT_IMAGES:-$BUILD/bench-cache/sync}
HELD=${REFLECT_HELD:-$IMAGES/ext4-held.img}
TARGET=${REFLECT_TARGET:-$IMAGES/ext4-target.img}
export BENCH_RUN_ID=${BENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}
msg() { printf 'reflector-bench: %s\n' "$*" >&2; }
[[ -r $HELD && -r $TARGET ]] || { msg "missing $HELD or $TARGET: run bench/sync.sh first"; exit 1; }
[[ $LINK =~ ^([1-9][0-9]*):([0-9]+)$ ]] || { msg "REFLECT_LINK: not RATE:DELAY_MS: $LINK"; exit 1; }
RATE=${BASH_REMATCH[1]} DELAY=${BASH_REMATCH[2]}

export VMSYNC=$BUILD/vmsync VMSYNC_AGENT=$BUILD/vmsync-agent
TEST_NAME=bench-reflector
source "$HERE/../tests/lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"

sshd_start "$T/sshd" "$T/srv" >&2
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
msg "importing $TARGET"
vm_ok "$T/imp" import "$T/srv/repo" "$TARGET" --name t -q
vm_ok "$T/ref" export "$T/srv/repo" t -o "$T/ref.img" -q --cache "$T/cache-ref"
relay_start --rate "$RATE" --delay-ms "$DELAY"

sshd_reflector_key "$T/reflect_key" "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT" "$T/kh-relay" "$T/rcache" laptop

down() { sleep 0.5; jq -r '.bytes_down + .bytes_up' "$T/relay.json" 2>/dev/null || echo 0; }

# laptops NAME URL KNOWN_HOSTS KEY: the laptops' exports at once; prints the
# wall seconds.
laptops() {
    local name=$1 url=$2 kh=$3 key=$4 pids=() i rc start=$EPOCHREALTIME
    for i in $(seq "$LAPTOPS"); do
        VMSYNC_HOST=$name-$i timeout 3600 nice "$VMSYNC" export "$url" t -o "$T/out-$i.img" \
            --seed "$HELD" -q --cache "$T/cache-$name-$i" --known-hosts "$kh" -i "$key" \
            >"$T/$name-$i.out" 2>"$T/$name-$i.err" &
        pids+=($!)
    done
    for i in $(seq "$LAPTOPS"); do
        rc=0
        wait "${pids[$((i - 1))]}" || rc=$?
        # (stdout is the caller's figure: the reasons go to stderr)
        ((rc == 0)) || { msg "$name laptop $i exited $rc: $(head -c 300 "$T/$name-$i.err")"; exit 1; }
        cmp -s "$T/out-$i.img" "$T/ref.img" || { msg "$name laptop $i's image differs"; exit 1; }
        rm -f "$T/out-$i.img"
    done
    awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'
}

msg "$LAPTOPS direct laptops over the relay ($RATE bit/s, $DELAY ms)"
t_direct=$(laptops direct "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo" "$T/kh-relay" "$SSH_CLIENT_KEY")
b_direct=$(down)
msg "$LAPTOPS laptops behind one reflector"
t_reflect=$(laptops reflect "$SSHD_URL_BASE/repo" "$SSH_KNOWN_HOSTS" "$T/reflect_key")
b_reflect=$(($(down) - b_direct))

printf '%-34s %16s %10s\n' "$LAPTOPS laptops, exports with a seed" "upstream bytes" "wall s"
printf '%-34s %16s %10s\n' "direct ssh:// clients" "$b_direct" "$t_direct" "behind one reflector" "$b_reflect" "$t_reflect"
jq -n --arg run "$BENCH_RUN_ID" --argjson laptops "$LAPTOPS" --arg link "$LINK" \
    --argjson bd "$b_direct" --argjson br "$b_reflect" --argjson td "$t_direct" --argjson tr "$t_reflect" \
    '{run_id: $run, laptops: $laptops, link: $link, direct: {upstream_bytes: $bd, wall_s: $td},
      reflector: {upstream_bytes: $br, wall_s: $tr}}' >"$BUILD/bench-reflector.json"
msg "results in $BUILD/bench-reflector.json"
finish
