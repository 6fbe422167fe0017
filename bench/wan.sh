#!/usr/bin/env bash
# vmsync over a narrow WAN: bench/wan.sh [BUILD]
#
# The scenario of bench/sync.sh (the laptop holds a Debian minbase image, the
# repository has T = minbase + packages + a 100 MiB mailbox; checkout with the
# held image as seed, offline work, check-in), run over ssh:// against a real
# sshd on 127.0.0.1 (tests/lib/sshd.sh; the client's key may only run
# vmsync-agent), with tests/lib/relay.py between client and sshd: a user-space
# relay that throttles each direction to a rate and adds a one-way delay.
#
# For each link of WAN_LINKS and filesystem of WAN_FS, WAN_RUNS times (medians
# reported), after restoring a pristine repository holding T as version 1
# (and emptying the agent's segment cache):
#   vmsync checkout ssh://.../repo t --seed held   (a fresh client cache each
#                    run, so the seed is indexed every time: local work that
#                    counts in the wall time, as it would for a user)
#   vmsync checkin  ssh://.../repo t mod           (same cache and host as the
#                    checkout: its lease and trusted manifest)
#   rsync checkout: T (on the server) onto a copy of held (on the laptop)
#   rsync check-in: mod (laptop) onto a copy of co (server)
#                    both with bench/sync.sh's flags (--no-whole-file -z
#                    --sparse --stats), over ssh with the unrestricted key
#                    through the same relay
# Each command gets a relay of its own (a fresh, idle link), and we record the
# wall time (EPOCHREALTIME), the bytes the relay carried each way (the ssh
# stream, everything included), the client's CPU (/usr/bin/time), the server's
# CPU (everything sshd's sessions used: sshd's reaped-children times), and for
# vmsync the agent's --stats-file line (its CPU, the last zstd level chosen).
#   ratio = wall / (bytes in the busier direction * 8 / rate)
# is 1.0 when the link never idles; the goal is at most 1.1.
#
# Then the server's CPU per client, on loopback (no relay), for
# `vmsync export ssh://.../repo t --seed held` (the agent's --stats-file lines:
# user + system CPU, segments sent, segments taken from its cache):
#   1 client, --compress-level WAN_CPU_LEVEL, segment cache emptied first
#   WAN_CLIENTS clients at once, same level, segment cache emptied first
#   WAN_CLIENTS clients at once, same level, cache as the previous case left it
#   1 client, no --compress-level (adapts; on loopback it should send the
#     stored frames as they are), segment cache emptied first
#   2 clients one after the other through a relay of WAN_CPU_LINK, no
#     --compress-level, segment cache emptied before the first only: the
#     second should take nearly every segment from the cache
# With several clients of one version, the per-client CPU should fall well
# below the single client's: the agents share compressed segments.  The
# report ends with the two figures of the agent's CPU: the cold single client
# at WAN_CPU_LEVEL (agent CPU seconds), and the second client on the link
# (its agent's CPU seconds spent compressing, of its total, and the share of
# the raw bytes it compressed again).
#
# Then the bundle, the way of a laptop off the network: `vmsync bundle create
# repo t --have held --level 19` against the protocol bytes, in and out, of
# `vmsync checkout ssh://.../repo t --seed held --compress-level 19` on
# loopback (goal: the bundle at most 1.02 times those), and against
# casync's index plus the chunks its extract --seed read (bench/sync.sh's
# figures).  A checkout from the bundle with the held image as seed must
# verify against the repository and equal T, or the run fails.  After that
# checkout, `vmsync checkin ssh://.../repo t mod --compress-level 19` on
# loopback gives the check-in's bytes at level 19.  This section runs on
# each filesystem of WAN_BUNDLE_FS.
#
# The images come from bench/sync.sh's cache, $BUILD/bench-cache/sync/
# (<fs>-held.img, -target.img, -co.img, -mod.img).  When one is missing, this
# script runs `SYNC_RUNS=1 SYNC_FS=<fs> bench/sync.sh BUILD` first to build
# them (up to an hour; that also rewrites $BUILD/bench-sync.json).  While it
# measures it holds a shared lock on that cache, so sync.sh cannot rebuild an
# image underneath it.
#
# Output: the table on stdout, every figure in $BUILD/bench-wan.json with the
# run id $BENCH_RUN_ID (bench/summary.py reads it; one is made when unset; and the
# raw samples in $BUILD/bench-wan.tsv), progress and each measured command line
# on stderr ("+ ..."; scratch paths are gone afterwards, the commands show the
# exact options).
#
# Environment:
#   WAN_LINKS    links as RATE_BITS_PER_S:ONE_WAY_DELAY_MS
#                (default "10000000:25 2000000:150": 10 Mbit/s with 50 ms RTT,
#                2 Mbit/s with 300 ms RTT)
#   WAN_FS       "ext4" (default), "ntfs" or "ext4 ntfs": the WAN and CPU runs
#   WAN_BUNDLE_FS  the filesystems of the bundle and level-19 section
#                (default "ext4 ntfs")
#   WAN_RUNS     runs of each WAN measurement (default 1)
#   WAN_CLIENTS  concurrent clients in the CPU cases (default 8; 0 leaves
#                the cases of several clients out)
#   WAN_CPU_LEVEL  the fixed zstd level of the CPU cases (default 19)
#   WAN_CPU_LINK the link of the two clients one after the other (default
#                the first of WAN_LINKS); "none" leaves that case out
#   WAN_BUNDLE_LEVEL  the zstd level of the bundle and of the ssh:// checkout
#                it is compared with (default 19, the goal's; a lower one
#                compares the two at that level, in less time)
#   WAN_SCRATCH  where the scratch directory goes (default /var/tmp; it needs
#                ~2 GB per concurrent client plus 3 repository copies)
#   WAN_SKIP_CPU=1 / WAN_SKIP_WAN=1 / WAN_SKIP_BUNDLE=1  leave out a part
#                (WAN_SKIP_WAN=1 WAN_SKIP_CPU=1: the bundle's figures alone)
# Duration, ext4, one run: about 9 minutes at 10 Mbit/s (each checkout moves
# 260 to 315 MB), 42 at 2 Mbit/s, plus the CPU cases (5 to 8 minutes: zstd -19);
# 58 minutes in all on 2 cores.  The bundle section compresses T's missing
# objects at level 19 twice per filesystem of WAN_BUNDLE_FS (the ssh:// checkout
# and the bundle), each about what the CPU case of 1 client at level 19 costs.
# shellcheck disable=SC2317  # functions run via trap
set -euo pipefail
shopt -s inherit_errexit

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
BUILD=${1:-${BUILD:-build}}
LINKS=${WAN_LINKS:-10000000:25 2000000:150}
FSES=${WAN_FS:-ext4}
BUNDLE_FSES=${WAN_BUNDLE_FS:-ext4 ntfs}
RUNS=${WAN_RUNS:-1}
CLIENTS=${WAN_CLIENTS:-8}
CPU_LEVEL=${WAN_CPU_LEVEL:-19}
CPU_LINK=${WAN_CPU_LINK:-${LINKS%% *}}
BUNDLE_LEVEL=${WAN_BUNDLE_LEVEL:-19}

msg() { printf 'wan-bench: %s\n' "$*" >&2; }
die() { printf 'wan-bench: error: %s\n' "$*" >&2; exit 1; }

[[ $RUNS =~ ^[1-9][0-9]*$ ]] || die "WAN_RUNS must be a positive integer"
[[ $CLIENTS =~ ^[0-9]+$ ]] || die "WAN_CLIENTS must be a number"
[[ $CPU_LEVEL =~ ^[0-9]+$ ]] || die "WAN_CPU_LEVEL must be 1 to 19"
((CPU_LEVEL >= 1 && CPU_LEVEL <= 19)) || die "WAN_CPU_LEVEL must be 1 to 19"
[[ $BUNDLE_LEVEL =~ ^[0-9]+$ ]] || die "WAN_BUNDLE_LEVEL must be 1 to 19"
((BUNDLE_LEVEL >= 1 && BUNDLE_LEVEL <= 19)) || die "WAN_BUNDLE_LEVEL must be 1 to 19"
for l in $LINKS ${CPU_LINK/#none/}; do
    [[ $l =~ ^[1-9][0-9]*:[0-9]+(\.[0-9]+)?$ ]] || die "WAN_LINKS: '$l' is not RATE_BITS_PER_S:DELAY_MS"
done
for fs in $FSES $BUNDLE_FSES; do
    [[ $fs == ext4 || $fs == ntfs ]] || die "WAN_FS, WAN_BUNDLE_FS: unknown filesystem $fs"
done
has() { [[ " $1 " == *" $2 "* ]]; } # LIST WORD
SKIPPED=()
for s in wan cpu bundle; do
    v=WAN_SKIP_${s^^}
    [[ ${!v:-0} != 1 ]] || SKIPPED+=("$s")
done
has "${SKIPPED[*]}" bundle && BUNDLE_FSES=
ALL_FSES=$FSES # the filesystems whose images are needed
for fs in $BUNDLE_FSES; do
    has "$ALL_FSES" "$fs" || ALL_FSES+=" $fs"
done
# The run id bench/summary.py matches (sync.sh, if run below, records it too).
export BENCH_RUN_ID=${BENCH_RUN_ID:-$(date -u +%Y%m%dT%H%M%SZ)-$$}
[[ -d $BUILD ]] || die "build directory '$BUILD' does not exist (make BUILD=$BUILD all)"
BUILD=$(cd "$BUILD" && pwd)
VMSYNC=$BUILD/vmsync
AGENT=$BUILD/vmsync-agent
[[ -x $VMSYNC && -x $AGENT ]] || die "$VMSYNC or $AGENT missing; build them first: make BUILD=$BUILD all"
[[ -x /usr/bin/time ]] || die "/usr/bin/time missing (apt-get install time)"
for c in python3 rsync ssh ssh-keygen ssh-keyscan flock cmp awk; do
    command -v "$c" >/dev/null 2>&1 || die "missing tool: $c (run packaging/install-deps.sh)"
done
[[ -x /usr/sbin/sshd ]] || die "/usr/sbin/sshd missing (apt-get install openssh-server)"
PY=/usr/bin/python3
[[ -x $PY ]] || PY=$(command -v python3)
LIB=$HERE/wan_lib.py
RELAY=$HERE/../tests/lib/relay.py
CACHE=$BUILD/bench-cache/sync

# ------------------------------------------------------------ the images

# Builds the images through bench/sync.sh when one is missing (its recipes and
# cache keys live there; one measuring run is the price of reusing them).
ensure_images() {
    local fs f missing=()
    for fs in $ALL_FSES; do
        for f in held target co mod; do
            if [[ ! -f $CACHE/$fs-$f.img || ! -f $CACHE/$fs-$f.img.key ]]; then
                missing+=("$fs")
                break
            fi
        done
    done
    ((${#missing[@]} == 0)) && return 0
    msg "images for ${missing[*]} missing from $CACHE: building them with bench/sync.sh (SYNC_RUNS=1)"
    SYNC_RUNS=1 SYNC_FS="${missing[*]}" "$HERE/sync.sh" "$BUILD" >&2 ||
        die "bench/sync.sh could not build the images"
}
ensure_images

# A shared lock on sync.sh's cache (it takes it exclusively to build).
exec 9>>"$CACHE/.lock"
flock -s -n 9 || die "bench/sync.sh is running on $CACHE (it holds $CACHE/.lock); try again later"

# ------------------------------------------------------------ sshd

WORK=$(mktemp -d "${WAN_SCRATCH:-/var/tmp}/vmsync-wan.XXXXXX")
RELAY_PID=
BG_PIDS=()

# Runs last (sshd.sh's trap stops sshd and its sessions, agents included,
# before calling this one): relays, background clients, the scratch directory.
cleanup() {
    local rc=$? p
    set +e
    relay_stop
    for p in "${BG_PIDS[@]}"; do kill "$p" 2>/dev/null; done
    for p in "${BG_PIDS[@]}"; do wait "$p" 2>/dev/null; done
    rm -rf --one-file-system "$WORK"
    ((rc == 0)) || msg "failed (exit $rc)"
    exit "$rc"
}

# sshd runs as a child subreaper (the flag survives exec): an agent that
# outlives its ssh session (it may trim its segment cache after the client has
# gone) is then reparented to sshd, which reaps it, so sshd's children's CPU
# times count every session, and sessions_gone waits for such agents too.
SSHD_BIN=$WORK/sshd-subreaper
cat >"$SSHD_BIN" <<'PY'
#!/usr/bin/python3
import ctypes, os, sys
if ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) != 0:  # PR_SET_CHILD_SUBREAPER
    sys.exit("sshd-subreaper: prctl: %s" % os.strerror(ctypes.get_errno()))
os.execv("/usr/sbin/sshd", ["/usr/sbin/sshd"] + sys.argv[1:])
PY
chmod 755 "$SSHD_BIN"
export SSHD_BIN

# tests/lib/common.sh is sshd.sh's contract: it wants BUILD, VMSYNC, and a
# scratch root; its "info" and "fail" lines go to stdout, so sshd_start's
# output is sent to stderr below.  Our own EXIT trap replaces common.sh's.
export VMSYNC_TEST_WORK=$WORK TEST_NAME=wan VMSYNC=$VMSYNC VMSYNC_AGENT=$AGENT BUILD
# shellcheck source=tests/lib/common.sh
source "$HERE/../tests/lib/common.sh"
# shellcheck source=tests/lib/sshd.sh
source "$TESTS_LIB/sshd.sh"
export LC_ALL=C
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SRV=$WORK/srv             # the agent's --root
REPO0=$WORK/repo0          # a pristine repository: T as version 1
AGENT_STATS=$WORK/agent-stats.jsonl
: >"$AGENT_STATS"
mkdir -p "$SRV"
sshd_start "$WORK/sshd" "$SRV" --stats-file "$AGENT_STATS" >&2
CLK_TCK=$(getconf CLK_TCK)

# ------------------------------------------------------------ helpers

RESULTS_TSV=$WORK/results.tsv
: >"$RESULTS_TSV"
put() { printf '%s\t%s\t%s\t%s\t%s\n' "$@" >>"$RESULTS_TSV"; } # SCOPE FS RUN METRIC VALUE
jget() { "$PY" "$LIB" get "$@"; }                                # FILE KEY
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# show [--bg] CMD...: echoes a command line so that it can be pasted into a
# shell (--bg: it runs in the background); words with spaces or shell
# characters are single-quoted.
show() {
    local line='+' amp='' w
    [[ $1 != --bg ]] || { amp=' &'; shift; }
    for w in "$@"; do
        if [[ $w =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
            line+=" $w"
        else
            line+=" '${w//\'/\'\\\'\'}'"
        fi
    done
    printf '%s%s\n' "$line" "$amp" >&2
}

# The CPU seconds of everything sshd has reaped so far (its sessions: the
# agents, rsync --server, the per-connection sshd processes doing the crypto).
server_cpu() {
    awk -v hz="$CLK_TCK" '{ printf "%.2f", ($16 + $17) / hz }' "/proc/$SSHD_PID/stat"
}

# Waits until sshd has no child left: every session over and reaped, so that
# the agents wrote their stats lines and server_cpu counts them.
sessions_gone() {
    local i
    for ((i = 0; i < 600; i++)); do
        [[ -z $(_sshd_tree "$SSHD_PID") ]] && return 0
        sleep 0.1
    done
    die "sshd's sessions did not end within 60 s: $(_sshd_tree "$SSHD_PID" | tr '\n' ' ')"
}

# relay_start RATE DELAY_MS: a relay in front of sshd; sets RELAY_PORT,
# RELAY_STATS and RELAY_KH (known_hosts naming the relay's port).
relay_start() {
    local rate=$1 delay=$2 i
    RELAY_STATS=$WORK/relay.json
    RELAY_KH=$WORK/known_hosts-relay
    rm -f "$WORK/relay.port" "$RELAY_STATS"
    local cmd=("$PY" "$RELAY" --listen 0 --port-file "$WORK/relay.port" --to "127.0.0.1:$SSHD_PORT"
        --rate "$rate" --delay-ms "$delay" --stats "$RELAY_STATS")
    show --bg "${cmd[@]}"
    "${cmd[@]}" </dev/null 2>>"$WORK/relay.log" &
    RELAY_PID=$!
    for ((i = 0; i < 200; i++)); do
        [[ -s $WORK/relay.port ]] && break
        kill -0 "$RELAY_PID" 2>/dev/null || die "the relay exited: $(tail -c 400 "$WORK/relay.log")"
        sleep 0.05
    done
    RELAY_PORT=$(<"$WORK/relay.port") || die "the relay did not start"
    sed "s/^\[127.0.0.1\]:$SSHD_PORT /[127.0.0.1]:$RELAY_PORT /" "$SSH_KNOWN_HOSTS" >"$RELAY_KH"
}

# relay_stop: SIGTERM makes the relay write its final stats.
relay_stop() {
    [[ -n $RELAY_PID ]] || return 0
    kill -TERM "$RELAY_PID" 2>/dev/null || true
    wait "$RELAY_PID" 2>/dev/null || true
    RELAY_PID=
}

# measure SCOPE FS RUN M CMD...: runs CMD (its output in $WORK/M.out and
# .err) and records M_s (wall), M_cpu (client, user + system), M_srv_cpu
# (server, once its sessions ended) and, for vmsync, M_agent_cpu, M_level,
# M_segments and M_segments_cached from the agent's stats line(s).
measure() {
    local scope=$1 fs=$2 run=$3 m=$4 t0 t1 rc=0 c0 n0 a
    shift 4
    c0=$(server_cpu)
    n0=$(wc -l <"$AGENT_STATS")
    show "$@"
    t0=$EPOCHREALTIME
    /usr/bin/time -f '%U %S' -o "$WORK/time" "$@" >"$WORK/$m.out" 2>"$WORK/$m.err" || rc=$?
    t1=$EPOCHREALTIME
    if ((rc != 0)); then
        tail -n 20 "$WORK/$m.err" >&2
        die "$m exited $rc (command above)"
    fi
    sessions_gone
    put "$scope" "$fs" "$run" "${m}_s" "$(secs "$t0" "$t1")"
    put "$scope" "$fs" "$run" "${m}_cpu" "$(awk '{ printf "%.2f", $1 + $2 }' "$WORK/time")"
    put "$scope" "$fs" "$run" "${m}_srv_cpu" "$(awk -v a="$c0" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')"
    if [[ $m == vm_* ]]; then
        a=$("$PY" "$LIB" agent-stats "$AGENT_STATS" "$n0")
        local k
        for k in agent_cpu level segments segments_cached segments_stored sessions; do
            put "$scope" "$fs" "$run" "${m}_$k" "$("$PY" "$LIB" get - "$k" <<<"$a")"
        done
    fi
    msg "$m: $(secs "$t0" "$t1") s"
}

# put_relay SCOPE FS RUN M: the relay's byte counts for M.
put_relay() {
    put "$1" "$2" "$3" "${4}_up" "$(jget "$RELAY_STATS" bytes_up)"
    put "$1" "$2" "$3" "${4}_down" "$(jget "$RELAY_STATS" bytes_down)"
    msg "$4: relay carried $(jget "$RELAY_STATS" bytes_up) bytes up, $(jget "$RELAY_STATS" bytes_down) down"
}

# restore_repo: the repository as imported (T as version 1, no lease, no
# cached segments), under the agent's root as "repo".
restore_repo() {
    rm -rf "$SRV/repo"
    cp -a "$REPO0" "$SRV/repo"
    rm -rf "$SRV/repo/cache/segments"
}

prime() { cat "$@" >/dev/null; } # warm the page cache, as bench/sync.sh does
prime_dir() { find "$1" -type f -exec cat {} + >/dev/null; }

# The ssh command rsync runs: the unrestricted key, through the relay.
rsync_ssh() {
    printf 'ssh -F none -p %s -i %s -o UserKnownHostsFile=%s -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes' \
        "$RELAY_PORT" "$SSH_PLAIN_KEY" "$RELAY_KH"
}

# rsync_run LINK FS RUN KEY BASIS EXPECT SRC DEST: rsync SRC to DEST through a
# fresh relay, DEST's file ($dst) starting as a copy of BASIS; checks the result
# against EXPECT on the first run.
rsync_run() {
    local link=$1 fs=$2 run=$3 key=$4 basis=$5 expect=$6 src=$7 dest=$8
    local rate=${link%%:*} delay=${link#*:}
    rm -f "$dst"
    cp --sparse=always "$basis" "$dst"
    prime "$expect"
    relay_start "$rate" "$delay"
    msg "$fs, $(link_name "$link"), run $run of $RUNS: rsync ${key#rs_}"
    measure "$link" "$fs" "$run" "$key" rsync --no-whole-file -z --sparse --stats \
        -e "$(rsync_ssh)" "$src" "$dest"
    relay_stop
    put_relay "$link" "$fs" "$run" "$key"
    put_rsync_stats "$link" "$fs" "$run" "$key"
    if [[ $run == 1 ]]; then
        cmp "$dst" "$expect" || die "rsync's ${key#rs_} differs from $expect"
    fi
}

# ------------------------------------------------------------ the WAN runs

# wan_run LINK FS RUN: one run of the four transfers over one link.
wan_run() {
    local link=$1 fs=$2 run=$3 rate=${1%%:*} delay=${1#*:}
    local held=$CACHE/$fs-held.img T=$CACHE/$fs-target.img co=$CACHE/$fs-co.img mod=$CACHE/$fs-mod.img
    local cache=$WORK/client-cache out=$WORK/co-out.img dst=$WORK/rsync-dst.img st=$WORK/stats.json
    local vmopts url
    # vmsync checkout, then check-in
    restore_repo
    prime_dir "$SRV/repo"
    rm -rf "$cache" "$out" "$out.vmsync-part"
    relay_start "$rate" "$delay"
    url=ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo
    vmopts=(--known-hosts "$RELAY_KH" -i "$SSH_CLIENT_KEY" --cache "$cache" --host laptop -q --stats-json "$st")
    msg "$fs, $(link_name "$link"), run $run of $RUNS: vmsync checkout"
    measure "$link" "$fs" "$run" vm_co "$VMSYNC" checkout "$url" t -o "$out" --seed "$held" "${vmopts[@]}"
    relay_stop
    put_relay "$link" "$fs" "$run" vm_co
    put "$link" "$fs" "$run" vm_co_fetched_c "$(jget "$st" bytes_fetched_compressed)"
    put "$link" "$fs" "$run" vm_co_from_seeds "$(jget "$st" bytes_from_seeds)"
    put "$link" "$fs" "$run" vm_co_wire_in "$(jget "$st" wire_in)"
    put "$link" "$fs" "$run" vm_co_engine_s "$(jget "$st" seconds)"
    if [[ $run == 1 ]] && ! cmp -s "$out" "$co"; then
        msg "note: the checkout over ssh is not byte-identical to the cached $fs-co.img (vmsync changed since it was built?)"
    fi
    rm -f "$out"

    relay_start "$rate" "$delay"
    url=ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo
    vmopts=(--known-hosts "$RELAY_KH" -i "$SSH_CLIENT_KEY" --cache "$cache" --host laptop -q --stats-json "$st")
    msg "$fs, $(link_name "$link"), run $run of $RUNS: vmsync checkin"
    measure "$link" "$fs" "$run" vm_ci "$VMSYNC" checkin "$url" t "$mod" "${vmopts[@]}"
    relay_stop
    put_relay "$link" "$fs" "$run" vm_ci
    put "$link" "$fs" "$run" vm_ci_sent_c "$(jget "$st" bytes_sent_compressed)"
    put "$link" "$fs" "$run" vm_ci_wire_out "$(jget "$st" wire_out)"
    put "$link" "$fs" "$run" vm_ci_engine_s "$(jget "$st" seconds)"
    rm -rf "$cache"

    # rsync checkout: pull T from the server onto a copy of the held image;
    # rsync check-in: push mod onto a copy of co on the server
    rsync_run "$link" "$fs" "$run" rs_co "$held" "$T" "$SSHD_USER@127.0.0.1:$T" "$dst"
    rsync_run "$link" "$fs" "$run" rs_ci "$co" "$mod" "$mod" "$SSHD_USER@127.0.0.1:$dst"
    rm -f "$dst"
}

put_rsync_stats() { # SCOPE FS RUN M: rsync's own --stats (payload, before ssh)
    local j k
    j=$("$PY" "$HERE/sync_lib.py" rsync-stats "$WORK/$4.out")
    for k in literal sent received; do
        put "$1" "$2" "$3" "${4}_$k" "$("$PY" "$LIB" get - "$k" <<<"$j")"
    done
}

link_name() { # RATE:DELAY
    awk -v r="${1%%:*}" -v d="${1#*:}" 'BEGIN { printf "%g Mbit/s, %g ms RTT", r / 1e6, 2 * d }'
}

# ------------------------------------------------------------ server CPU

# cpu_case FS NAME N [LEVEL] [warm] [LINK]: N exports at once over loopback
# (through a relay of LINK when given); the segment cache is emptied first
# unless "warm".
cpu_case() {
    local fs=$1 name=$2 n=$3 level=${4:-} warm=${5:-} link=${6:-}
    local held=$CACHE/$fs-held.img url=$SSHD_URL_BASE/repo kh=$SSH_KNOWN_HOSTS
    local i t0 t1 c0 n0 rc a k pids=() lv=()
    [[ -z $level ]] || lv=(--compress-level "$level")
    [[ $warm == warm ]] || rm -rf "$SRV/repo/cache/segments"
    if [[ -n $link ]]; then
        relay_start "${link%%:*}" "${link#*:}"
        url=ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo kh=$RELAY_KH
    fi
    for ((i = 1; i <= n; i++)); do
        rm -rf "$WORK/cpu-cache-$i" "$WORK/cpu-out-$i.img"
    done
    msg "$fs: server CPU, $name"
    c0=$(server_cpu)
    n0=$(wc -l <"$AGENT_STATS")
    t0=$EPOCHREALTIME
    for ((i = 1; i <= n; i++)); do
        local cmd=("$VMSYNC" export "$url" t -o "$WORK/cpu-out-$i.img" --seed "$held"
            "${lv[@]}" --known-hosts "$kh" -i "$SSH_CLIENT_KEY"
            --cache "$WORK/cpu-cache-$i" --host "laptop-$i" -q)
        show --bg "${cmd[@]}"
        "${cmd[@]}" >"$WORK/cpu-$i.out" 2>"$WORK/cpu-$i.err" &
        pids+=($!)
        BG_PIDS+=($!)
    done
    for ((i = 1; i <= n; i++)); do
        rc=0
        wait "${pids[$((i - 1))]}" || rc=$?
        ((rc == 0)) || die "export $i of $n exited $rc: $(tail -c 400 "$WORK/cpu-$i.err")"
    done
    t1=$EPOCHREALTIME
    BG_PIDS=()
    relay_stop
    sessions_gone
    put cpu "$fs" "$name" clients "$n"
    put cpu "$fs" "$name" wall_s "$(secs "$t0" "$t1")"
    put cpu "$fs" "$name" srv_cpu "$(awk -v a="$c0" -v b="$(server_cpu)" 'BEGIN { printf "%.2f", b - a }')"
    a=$("$PY" "$LIB" agent-stats "$AGENT_STATS" "$n0")
    for k in agent_cpu level level_min level_max segments segments_cached segments_stored \
        segments_compressed compress_cpu raw_bytes_sent raw_bytes_compressed sessions failed; do
        put cpu "$fs" "$name" "$k" "$("$PY" "$LIB" get - "$k" <<<"$a")"
    done
    cmp -s "$WORK/cpu-out-1.img" "$CACHE/$fs-target.img" ||
        msg "note: the export differs from $fs-target.img"
    for ((i = 1; i <= n; i++)); do
        rm -rf "$WORK/cpu-cache-$i" "$WORK/cpu-out-$i.img"
    done
    msg "$fs: $name: $(secs "$t0" "$t1") s; agents: $(cut -c1-200 <<<"$a")"
}

cpu_cases() { # FS
    local fs=$1
    restore_repo
    prime_dir "$SRV/repo"
    cpu_case "$fs" "1 client, level $CPU_LEVEL, cold cache" 1 "$CPU_LEVEL"
    if ((CLIENTS > 0)); then
        cpu_case "$fs" "$CLIENTS clients, level $CPU_LEVEL, cold cache" "$CLIENTS" "$CPU_LEVEL"
        cpu_case "$fs" "$CLIENTS clients, level $CPU_LEVEL, warm cache" "$CLIENTS" "$CPU_LEVEL" warm
    fi
    cpu_case "$fs" "1 client, adaptive level, cold cache" 1 ""
    if [[ $CPU_LINK != none ]]; then
        local on="$(link_name "$CPU_LINK")"
        cpu_case "$fs" "first client on $on, adaptive" 1 "" "" "$CPU_LINK"
        cpu_case "$fs" "second client on $on, adaptive" 1 "" warm "$CPU_LINK"
    fi
}

# ------------------------------------------------------------ the bundle

# checkin19 FS: the offline work checked in over ssh:// on loopback at
# WAN_BUNDLE_LEVEL, from the client cache (lease, trusted manifest) of the
# checkout at that level; the protocol bytes are the figure.  --timeout 600:
# on a loaded machine one level-19 segment can take the client over the
# default 60 s to compress, and that check-in then gave up ("the server took
# nothing for 60 s").
checkin19() {
    local fs=$1
    local mod=$CACHE/$fs-mod.img cache=$WORK/bundle-cache st=$WORK/stats.json k
    msg "$fs: vmsync checkin over ssh:// on loopback at --compress-level $BUNDLE_LEVEL"
    measure bundle "$fs" 1 vm_ci19 "$VMSYNC" checkin "$SSHD_URL_BASE/repo" t "$mod" --timeout 600 \
        --compress-level "$BUNDLE_LEVEL" --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY" --cache "$cache" \
        --host laptop -q --stats-json "$st"
    for k in wire_in wire_out bytes_sent_compressed objects_sent; do
        put bundle "$fs" 1 "vm_ci19_$k" "$(jget "$st" "$k")"
    done
}

# bundle_case FS: the offline laptop's way.  The bundle of T with the held
# image as --have against what the same checkout moves over ssh:// at the
# same level, WAN_BUNDLE_LEVEL (loopback, no relay: the bytes, not the
# time, are the figure) and against casync (its index plus the chunks its
# extract --seed read, from bench/sync.sh's cached peers).  The bundle's
# size counts only once a checkout from it with the held image as seed
# matches the version: verify against the repository, then T byte for byte.
bundle_case() {
    local fs=$1
    local held=$CACHE/$fs-held.img T=$CACHE/$fs-target.img peers=$CACHE/$fs-peers/static.json
    local b=$WORK/t.vmsb out=$WORK/bundle-out.img cache=$WORK/bundle-cache st=$WORK/stats.json k
    restore_repo
    prime_dir "$SRV/repo"
    rm -rf "$cache" "$out"
    msg "$fs: vmsync checkout over ssh:// on loopback at --compress-level $BUNDLE_LEVEL"
    measure bundle "$fs" 1 vm_co19 "$VMSYNC" checkout "$SSHD_URL_BASE/repo" t -o "$out" --seed "$held" \
        --compress-level "$BUNDLE_LEVEL" --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY" --cache "$cache" \
        --host laptop -q --stats-json "$st"
    for k in wire_in wire_out bytes_fetched_compressed objects_fetched; do
        put bundle "$fs" 1 "vm_co19_$k" "$(jget "$st" "$k")"
    done
    rm -f "$out"
    checkin19 "$fs"
    rm -rf "$cache"
    msg "$fs: vmsync bundle create t --have $fs-held.img"
    measure bundle "$fs" 1 bn_create "$VMSYNC" bundle create "$REPO0" t -o "$b" --have "$held" \
        --level "$BUNDLE_LEVEL" --cache "$cache" --json
    put bundle "$fs" 1 bn_bytes "$(stat -c %s "$b")"
    put bundle "$fs" 1 level "$BUNDLE_LEVEL"
    put bundle "$fs" 1 bn_objects "$(jget "$WORK/bn_create.out" objects)"
    rm -rf "$cache"
    msg "$fs: vmsync checkout from the bundle with the held image as seed"
    measure bundle "$fs" 1 bn_co "$VMSYNC" checkout "$b" t -o "$out" --seed "$held" --cache "$cache" -q
    measure bundle "$fs" 1 bn_verify "$VMSYNC" verify "$REPO0" t "$out" --cache "$cache" -q
    cmp "$out" "$T" || die "the checkout from the bundle differs from $fs-target.img"
    rm -rf "$cache" "$out" "$b"
    if [[ -f $peers ]]; then
        put bundle "$fs" 1 ca_co_bytes "$(jget "$peers" ca_co_bytes)"
        put bundle "$fs" 1 ca_T_index "$(jget "$peers" ca_T_index)"
    else
        msg "note: no $peers (bench/sync.sh builds it): the bundle is not compared with casync"
    fi
}

# ------------------------------------------------------------ main

T_START=$SECONDS
LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
for fs in $ALL_FSES; do
    msg "$fs: importing $fs-target.img as t into a fresh repository (local, once)"
    rm -rf "$REPO0"
    "$VMSYNC" init "$REPO0" >/dev/null
    "$VMSYNC" import "$REPO0" "$CACHE/$fs-target.img" --name t -q --cache "$WORK/import-cache" --host bench
    rm -rf "$WORK/import-cache"
    prime "$CACHE/$fs-held.img" "$CACHE/$fs-target.img" "$CACHE/$fs-co.img" "$CACHE/$fs-mod.img"
    if [[ ${WAN_SKIP_WAN:-0} != 1 ]] && has "$FSES" "$fs"; then
        for link in $LINKS; do
            for ((run = 1; run <= RUNS; run++)); do
                wan_run "$link" "$fs" "$run"
            done
        done
    fi
    [[ ${WAN_SKIP_CPU:-0} == 1 ]] || ! has "$FSES" "$fs" || cpu_cases "$fs"
    ! has "$BUNDLE_FSES" "$fs" || bundle_case "$fs"
done
LOAD_AFTER=$(cut -d' ' -f1-3 /proc/loadavg)

cp "$RESULTS_TSV" "$BUILD/bench-wan.tsv"
WAN_META=$("$PY" - "$CACHE" "$ALL_FSES" "$FSES" "$BUNDLE_FSES" "${SKIPPED[*]}" <<EOF
import json, os, sys
cache, fses = sys.argv[1], sys.argv[2].split()
print(json.dumps({
    "run_id": "$BENCH_RUN_ID", "wan_fs": sys.argv[3].split(), "bundle_fs": sys.argv[4].split(),
    "skipped": sys.argv[5].split(), "links": "$LINKS".split(),
    "cpus": os.cpu_count(), "load_average_before_after": "$LOAD_BEFORE / $LOAD_AFTER",
    "runs": $RUNS, "clients": $CLIENTS, "cpu_level": $CPU_LEVEL,
    "vmsync": "$(git -C "$HERE/.." describe --always --dirty 2>/dev/null || echo unknown)",
    "rsync": "$(rsync --version | head -n1 | awk '{print $3}')",
    "openssh": "$(ssh -V 2>&1 | cut -d, -f1)",
    "image_keys": {fs + "-" + k: open("%s/%s-%s.img.key" % (cache, fs, k)).read()
                   for fs in fses for k in ("held", "target", "co", "mod")},
}))
EOF
)
export WAN_META
"$PY" "$LIB" report "$RESULTS_TSV" "$BUILD/bench-wan.json"
msg "results in $BUILD/bench-wan.json; total $((SECONDS - T_START)) s"
