#!/usr/bin/env bash
# Checkout through nginx against ssh:// on the same emulated link:
# bench/web.sh [BUILD]
#
# One repository holds the target image as desk@1; `vmsync publish` writes it
# as a web tree that a private nginx serves over https (tests/lib/nginx.sh),
# and a real sshd serves it to vmsync-agent (tests/lib/sshd.sh).  For each
# link of WEB_LINKS (RATE:DELAY, bits/s and one-way ms), WEB_RUNS times, ssh
# and web interleaved, each through a fresh tests/lib/relay.py and with a
# fresh client cache:
#   vmsync checkout ssh://.../repo desk -o OUT --seed HELD
#   vmsync checkout https://.../repo desk -o OUT --seed HELD
# recording the wall time (EPOCHREALTIME) and the bytes the relay carried
# down.  Medians are printed, and the outputs must equal each other.
# Images: WEB_HELD and WEB_TARGET (default: bench/sync.sh's ext4-held.img and
# ext4-target.img when it ran, else the tests' s and t ext4 images, built into
# VMSYNC_TEST_CACHE).  The table goes to stdout, the figures to
# $BUILD/bench-web.json ({run_id: $BENCH_RUN_ID, results: [...]}).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-${BUILD:-build}}
export BUILD VMSYNC=${VMSYNC:-$(realpath "$BUILD/vmsync")}
TEST_NAME=bench-web
source "$HERE/../tests/lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/nginx.sh"
need_cmd nginx openssl curl jq python3 cmp

RUNS=${WEB_RUNS:-3}
LINKS=${WEB_LINKS:-10000000:20}
sync_cache=$BUILD/bench-cache/sync # bench/sync.sh's images, when it ran
if [[ -z ${WEB_HELD:-} && -r $sync_cache/ext4-held.img && -r $sync_cache/ext4-target.img ]]; then
    WEB_HELD=$sync_cache/ext4-held.img WEB_TARGET=$sync_cache/ext4-target.img
fi
held=${WEB_HELD:-$(repo_img s ext4)}
target=${WEB_TARGET:-$(repo_img t ext4)}
export VMSYNC_HOST=bench-web

mkdir -p "$T/srv" "$T/www"
repo_init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$target" --name desk -q
vm_ok "$T/pub" publish "$T/srv/repo" "$T/www/repo" -q
sshd_start "$T/sshd" "$T/srv"
nginx_start "$T/www"
export CURL_CA_BUNDLE=$NGINX_CA

# relay TO RATE DELAY: a fresh relay in front of port TO; sets RELAY_PID, RELAY_PORT
relay() {
    rm -f "$T/relay.port" "$T/relay.json"
    repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/relay.port" --to "127.0.0.1:$1" \
        --rate "$2" --delay-ms "$3" --stats "$T/relay.json"
    RELAY_PID=$REPO_BG_PID
    for _ in $(seq 100); do [[ -s $T/relay.port ]] && break; sleep 0.05; done
    RELAY_PORT=$(cat "$T/relay.port")
}
relay_end() { kill "$RELAY_PID" 2>/dev/null; wait "$RELAY_PID" 2>/dev/null || true; }

# one KIND RATE DELAY RUN: prints "KIND RATE DELAY SECONDS BYTES_DOWN"
one() {
    local kind=$1 rate=$2 delay=$3 run=$4 url t0 t1 extra=()
    rm -rf "$T/cache" "$T/out-$kind.img"
    if [[ $kind == ssh ]]; then
        relay "$SSHD_PORT" "$rate" "$delay"
        sed "s/^\[127.0.0.1\]:$SSHD_PORT /[127.0.0.1]:$RELAY_PORT /" "$SSH_KNOWN_HOSTS" >"$T/kh-relay"
        url=ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo
        extra=(--known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY")
    else
        relay "$NGINX_HTTPS" "$rate" "$delay"
        url=https://127.0.0.1:$RELAY_PORT/repo
    fi
    t0=$EPOCHREALTIME
    VMSYNC_CACHE=$T/cache vm_ok "$T/co-$kind-$run" checkout "$url" desk -o "$T/out-$kind.img" \
        --seed "$held" -q "${extra[@]}"
    t1=$EPOCHREALTIME
    relay_end
    echo "$kind $rate $delay $(python3 -c "print(round($t1 - $t0, 3))") $(jq -r .bytes_down "$T/relay.json")"
}

: >"$T/runs.txt"
for link in $LINKS; do
    rate=${link%%:*} delay=${link##*:}
    for run in $(seq "$RUNS"); do
        one ssh "$rate" "$delay" "$run" | tee -a "$T/runs.txt" >&2
        one web "$rate" "$delay" "$run" | tee -a "$T/runs.txt" >&2
        cmp "$T/out-ssh.img" "$T/out-web.img" >/dev/null || fail "the ssh:// and https:// checkouts differ"
    done
done
python3 - "$T/runs.txt" "$BUILD/bench-web.json" "$(stat -c %s "$target")" <<'PY'
import json, os, statistics, sys
rows = [l.split() for l in open(sys.argv[1]) if l.strip()]
out = []
print("== checkout with a seed: ssh:// (vmsync-agent) against https:// (nginx), median of runs")
print("%-14s %-6s %10s %14s %5s" % ("link", "via", "seconds", "bytes down", "runs"))
for key in sorted({(r[1], r[2]) for r in rows}, key=lambda k: (int(k[0]), int(k[1]))):
    for kind in ("ssh", "web"):
        rs = [r for r in rows if (r[1], r[2]) == key and r[0] == kind]
        secs = statistics.median(float(r[3]) for r in rs)
        down = statistics.median(int(r[4]) for r in rs)
        link = "%g Mbit/%s ms" % (int(key[0]) / 1e6, key[1])
        print("%-14s %-6s %10.2f %14d %5d" % (link, kind, secs, down, len(rs)))
        out.append({"rate": int(key[0]), "delay_ms": int(key[1]), "via": kind, "seconds": secs,
                    "bytes_down": down, "runs": len(rs), "image_bytes": int(sys.argv[3])})
json.dump({"run_id": os.environ.get("BENCH_RUN_ID"), "results": out}, open(sys.argv[2], "w"), indent=1)
PY
finish
