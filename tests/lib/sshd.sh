# shellcheck shell=bash
# A real OpenSSH sshd on 127.0.0.1 for the tests.  Source it after common.sh
# (and after repo.sh, if the test uses that too):
#
#   source "$(dirname "$0")/../lib/common.sh"
#   source "$TESTS_LIB/sshd.sh"
#   sshd_start "$T/sshd" "$T/root" [EXTRA_AGENT_ARGS...]
#
#   sshd_start DIR ROOT [ARGS...]
#                   makes DIR with an ed25519 host key, two client keys and an
#                   sshd_config, starts /usr/sbin/sshd -D on a free port and
#                   waits until it answers.  DIR/client_key may only run
#                   "$VMSYNC_AGENT --root ROOT --user tester ARGS..." (a forced
#                   command: whatever the client asks for, the agent runs, with
#                   the request in SSH_ORIGINAL_COMMAND); DIR/plain_key is
#                   unrestricted (rsync over ssh, ssh_plain).  Skips the test
#                   (77) when OpenSSH is missing or the account is locked.
#                   sshd is not a job of the test's shell: a bare "wait" in
#                   the test does not wait for it.
#   sshd_stop       stops sshd and every session process it started (agents
#                   included); idempotent.  Also run by the exit trap.
#   sshd_rekey DIR  new host key, sshd restarted on the same port (sessions are
#                   dropped); DIR/known_hosts keeps the OLD key, so a strict
#                   client now sees a changed host key.
#   ssh_plain CMD...  runs CMD over ssh with DIR/plain_key (strict host key
#                   checking against DIR/known_hosts, batch mode)
#
# Exported after sshd_start:
#   SSHD_PORT SSHD_PID SSHD_DIR SSHD_USER (the user running the test)
#   SSH_KNOWN_HOSTS  DIR/known_hosts: "[127.0.0.1]:PORT ssh-ed25519 AAAA..."
#   SSH_CLIENT_KEY   DIR/client_key (forced agent command)
#   SSH_PLAIN_KEY    DIR/plain_key (unrestricted)
#   SSHD_URL_BASE    ssh://USER@127.0.0.1:PORT
#   SSH_PLAIN_CMD    "ssh -F none -p PORT -i KEY -o ..." without the host, for
#                    rsync -e "$SSH_PLAIN_CMD" ... "$SSHD_USER@127.0.0.1:path"
# Input:
#   VMSYNC_AGENT     the agent binary (default $REPO/$BUILD/vmsync-agent; not
#                    checked: a test may start sshd before building/choosing it)
#   SSHD_SETENV      extra NAME=VALUE words for the sessions' environment
#                    (sshd gives sessions a clean one; ASAN_OPTIONS,
#                    UBSAN_OPTIONS and LSAN_OPTIONS are passed on when set)
# Files in DIR: sshd_config, sshd.log (sshd's own log, LogLevel VERBOSE),
# sshd.stderr, authorized_keys, host_key[.pub], client_key[.pub],
# plain_key[.pub], known_hosts.
#
# One sshd per test.  sshd_start chains an EXIT trap in front of whichever one
# is installed at that moment (common.sh's or repo.sh's), so a test must not
# replace the EXIT trap after calling sshd_start.

VMSYNC_AGENT=${VMSYNC_AGENT:-$REPO/$BUILD/vmsync-agent}
[[ $VMSYNC_AGENT == /* ]] || VMSYNC_AGENT="$PWD/$VMSYNC_AGENT"
export VMSYNC_AGENT

SSHD_BIN=${SSHD_BIN:-/usr/sbin/sshd}
SSHD_PID=
SSHD_PORT=
SSHD_DIR=
SSHD_USER=$(id -un)
export SSHD_USER
_SSHD_TRAP_SET=0
_SSHD_DIRS=()
_SSHD_PAM=no
_SSHD_PREV_EXIT=

# _sshd_q ARG: ARG quoted for a POSIX shell (single quotes unless plain).
_sshd_q() {
    if [[ $1 =~ ^[A-Za-z0-9_./:=@%+,-]+$ ]]; then
        printf '%s' "$1"
    else
        printf "'%s'" "${1//\'/\'\\\'\'}"
    fi
}

# _sshd_free_port: an unprivileged port nobody listens on right now.
_sshd_free_port() {
    python3 -c 'import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])'
}

# _sshd_tree PID: PID's descendants (not PID itself), one per line.
_sshd_tree() {
    ps -e -o pid=,ppid= | awk -v root="$1" '
        { kids[$2] = kids[$2] " " $1 }
        END {
            n = split(kids[root], q, " ")
            for (i = 1; i <= n; i++) {
                print q[i]
                m = split(kids[q[i]], more, " ")
                for (j = 1; j <= m; j++) q[++n] = more[j]
            }
        }'
}

# _sshd_alive PID...: true while one of the PIDs runs (zombies do not count).
_sshd_alive() {
    local p st
    for p in "$@"; do
        st=$(cat "/proc/$p/stat" 2>/dev/null) || continue
        st=${st##*) }
        [[ -n $st && ${st:0:1} != Z && ${st:0:1} != X ]] && return 0
    done
    return 1
}

_sshd_rc() { return "$1"; }
_sshd_exit() {
    local rc=$?
    set +e
    sshd_stop
    # the agents' sanitizer reports (their stderr went to the clients, and
    # their exit status to sshd): any report fails the test
    local d f
    for d in "${_SSHD_DIRS[@]}"; do
        for f in "$d"/sanitizer.*; do
            [[ -s $f ]] || continue
            echo "FAIL: the agent: sanitizer report in $f: $(head -c 600 "$f")"
            rc=1
        done
    done
    _sshd_rc "$rc"
    eval "$_SSHD_PREV_EXIT"
}

_sshd_prev_trap() { _SSHD_PREV_EXIT=$3; }

# _sshd_install_trap: puts sshd_stop in front of the current EXIT trap (once).
_sshd_install_trap() {
    ((_SSHD_TRAP_SET)) && return 0
    local cur
    cur=$(trap -p EXIT)
    if [[ -n $cur ]]; then
        # cur is: trap -- 'COMMAND' EXIT
        eval "_sshd_prev_trap $cur"
    fi
    trap _sshd_exit EXIT
    # a plain SIGTERM (run.sh's timeout) or ^C would skip the EXIT trap
    [[ -n $(trap -p TERM) ]] || trap 'exit 143' TERM
    [[ -n $(trap -p INT) ]] || trap 'exit 130' INT
    _SSHD_TRAP_SET=1
}

# _sshd_write_config: DIR/sshd_config for $SSHD_PORT.
_sshd_write_config() {
    local d=$SSHD_DIR
    cat >"$d/sshd_config" <<EOF
# written by tests/lib/sshd.sh
ListenAddress 127.0.0.1
Port $SSHD_PORT
HostKey $d/host_key
AuthorizedKeysFile $d/authorized_keys
PidFile $d/sshd.pid
StrictModes no
UsePAM $_SSHD_PAM
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
PubkeyAuthentication yes
PermitUserEnvironment no
UseDNS no
PrintMotd no
PrintLastLog no
ClientAliveInterval 30
ClientAliveCountMax 10
LoginGraceTime 30
MaxStartups 64
MaxSessions 64
LogLevel VERBOSE
EOF
    local v line kv=()
    # sanitizer reports to files the exit trap reads (ignored by plain builds)
    for v in ASAN_OPTIONS UBSAN_OPTIONS; do
        kv+=("$v=${!v:+${!v}:}log_path=$d/sanitizer")
    done
    [[ -z ${LSAN_OPTIONS:-} ]] || kv+=("LSAN_OPTIONS=$LSAN_OPTIONS")
    # shellcheck disable=SC2206
    kv+=(${SSHD_SETENV:-})
    # all on one line: sshd keeps only the first SetEnv line
    line=SetEnv
    for v in "${kv[@]}"; do
        line+=" ${v%%=*}=\"${v#*=}\""
    done
    echo "$line" >>"$d/sshd_config"
}

# _sshd_launch FIXED: starts sshd on $SSHD_PORT and waits until it serves our
# host key.  Returns 2 when the port is taken (and FIXED is 0: the caller picks
# another), 1 on any other failure.
_sshd_launch() {
    local fixed=$1 d=$SSHD_DIR want got i
    want=$(awk '{print $2}' "$d/host_key.pub")
    _sshd_write_config
    : >"$d/sshd.log"
    # started from a subshell, so that it is not one of the test's jobs (a
    # bare "wait" in the test must not wait for sshd)
    SSHD_PID=$(
        "$SSHD_BIN" -D -e -f "$d/sshd_config" -E "$d/sshd.log" </dev/null >>"$d/sshd.stderr" 2>&1 &
        echo $!
    )
    for ((i = 0; i < 100; i++)); do
        if ! _sshd_alive "$SSHD_PID"; then
            SSHD_PID=
            if grep -qiE 'Address already in use|Cannot bind any address' "$d/sshd.log" "$d/sshd.stderr"; then
                ((fixed)) || return 2
            fi
            return 1
        fi
        got=$(ssh-keyscan -T 2 -p "$SSHD_PORT" -t ed25519 127.0.0.1 2>/dev/null | awk '{print $3}') || true
        [[ -n $got && $got == "$want" ]] && return 0
        sleep 0.1
    done
    sshd_stop
    return 1
}

# _sshd_up FIXED: _sshd_launch with retries (another port, or the same port a
# little later when FIXED).  Fatal when sshd does not come up.
_sshd_up() {
    local fixed=$1 try rc
    for ((try = 1; try <= 8; try++)); do
        ((fixed)) || SSHD_PORT=$(_sshd_free_port)
        rc=0
        _sshd_launch "$fixed" || rc=$?
        ((rc == 0)) && return 0
        ((rc == 2)) && continue
        ((fixed)) && { sleep 0.5; continue; }
        break
    done
    fail "sshd did not start on 127.0.0.1:$SSHD_PORT: $(tail -c 600 "$SSHD_DIR/sshd.log" "$SSHD_DIR/sshd.stderr" 2>/dev/null | tr '\n' ' ')"
}

_sshd_keygen() {
    rm -f "$1" "$1.pub"
    ssh-keygen -q -t ed25519 -N '' -C "$2" -f "$1" >/dev/null </dev/null || fail "ssh-keygen $1 failed"
}

sshd_start() {
    (($# >= 2)) || fail "usage: sshd_start DIR ROOT [AGENT_ARGS...]"
    local dir=$1 root=$2 cmd a pw
    shift 2
    [[ $VMSYNC_AGENT == /* ]] || VMSYNC_AGENT="$PWD/$VMSYNC_AGENT"
    [[ -x $SSHD_BIN ]] || skip "missing tool: $SSHD_BIN"
    need_cmd ssh ssh-keygen ssh-keyscan python3
    [[ -z $SSHD_PID ]] || fail "sshd_start: sshd already running (pid $SSHD_PID)"
    for a in ${SSHD_SETENV:-}; do
        [[ $a == [A-Za-z_]*=* && $a != *'"'* ]] || fail "sshd_start: bad SSHD_SETENV word: $a"
    done
    pw=$(getent shadow "$SSHD_USER" 2>/dev/null | cut -d: -f2) || true
    # without PAM, sshd refuses accounts whose password field is locked ("!..."),
    # even for keys; with PAM it asks the account modules instead
    _SSHD_PAM=no
    [[ $pw != '!'* ]] || _SSHD_PAM=yes
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    [[ -d /run/sshd ]] || mkdir -m 0755 /run/sshd
    _sshd_install_trap
    SSHD_DIR=$dir
    _SSHD_DIRS+=("$dir")
    _sshd_keygen "$dir/host_key" vmsync-test-host
    _sshd_keygen "$dir/client_key" vmsync-test-agent
    _sshd_keygen "$dir/plain_key" vmsync-test-plain

    # the forced command goes through the user's shell: quote each word for
    # it, then escape '"' for the authorized_keys option (sshd only unescapes \")
    cmd=$(_sshd_q "$VMSYNC_AGENT")
    for a in --root "$root" --user tester "$@"; do
        cmd+=" $(_sshd_q "$a")"
    done
    cmd=${cmd//\"/\\\"}
    {
        printf 'command="%s",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty %s\n' \
            "$cmd" "$(cat "$dir/client_key.pub")"
        cat "$dir/plain_key.pub"
    } >"$dir/authorized_keys"

    _sshd_up 0
    printf '[127.0.0.1]:%s %s\n' "$SSHD_PORT" "$(awk '{print $1, $2}' "$dir/host_key.pub")" >"$dir/known_hosts"

    SSH_KNOWN_HOSTS=$dir/known_hosts
    SSH_CLIENT_KEY=$dir/client_key
    SSH_PLAIN_KEY=$dir/plain_key
    SSHD_URL_BASE=ssh://$SSHD_USER@127.0.0.1:$SSHD_PORT
    SSH_PLAIN_CMD="ssh -F none -p $SSHD_PORT -i $SSH_PLAIN_KEY -o UserKnownHostsFile=$SSH_KNOWN_HOSTS -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes -o IdentitiesOnly=yes"
    export SSHD_PORT SSHD_PID SSHD_DIR SSH_KNOWN_HOSTS SSH_CLIENT_KEY SSH_PLAIN_KEY SSHD_URL_BASE SSH_PLAIN_CMD
    info "sshd on 127.0.0.1:$SSHD_PORT (pid $SSHD_PID, agent $VMSYNC_AGENT)"
}

# _sshd_sessions PORT: processes started for a session on 127.0.0.1:PORT
# (found by SSH_CONNECTION in their environment), also those whose sshd
# parent is gone.
_sshd_sessions() {
    local f p
    for f in /proc/[0-9]*/environ; do
        p=${f#/proc/}
        p=${p%/environ}
        [[ $p != "$$" ]] || continue
        grep -qzx "SSH_CONNECTION=127\.0\.0\.1 [0-9]* 127\.0\.0\.1 $1" "$f" 2>/dev/null && echo "$p"
    done
    return 0
}

# sshd_stop: sshd -D leaves running sessions alone when it is killed (each one
# is its own session leader), so the whole process tree goes: the listener is
# frozen first so that no new session starts while we collect its children.
sshd_stop() {
    local pid=${SSHD_PID:-} kids='' i
    [[ -n $pid ]] || return 0
    SSHD_PID=
    export SSHD_PID
    if _sshd_alive "$pid"; then
        kill -STOP "$pid" 2>/dev/null || true
        kids=$(_sshd_tree "$pid")
    fi
    kids+=" $(_sshd_sessions "$SSHD_PORT")"
    # shellcheck disable=SC2086
    kill -TERM "$pid" $kids 2>/dev/null || true
    kill -CONT "$pid" 2>/dev/null || true
    for ((i = 0; i < 30; i++)); do
        # shellcheck disable=SC2086
        _sshd_alive "$pid" $kids || break
        sleep 0.1
    done
    # shellcheck disable=SC2086
    kill -KILL "$pid" $kids 2>/dev/null || true
    rm -f "$SSHD_DIR/sshd.pid"
    return 0
}

# sshd_rekey DIR: a new host key, sshd restarted on the same port.
sshd_rekey() {
    local dir=${1:-$SSHD_DIR}
    dir=$(cd "$dir" && pwd)
    [[ $dir == "$SSHD_DIR" && -n $SSHD_PORT ]] || fail "sshd_rekey: $dir is not the started sshd's directory"
    sshd_stop
    _sshd_keygen "$dir/host_key" vmsync-test-host
    _sshd_up 1
    export SSHD_PID
    info "sshd restarted on 127.0.0.1:$SSHD_PORT with a new host key (pid $SSHD_PID)"
}

# sshd_reflector_key KEY UPSTREAM_URL UPSTREAM_KNOWN_HOSTS CACHE_DIR USER [ARGS...]:
# (re)writes KEY's line in authorized_keys (KEY made first when missing):
# its sessions are a vmsync-agent --upstream UPSTREAM_URL, which logs in
# upstream with the client key, its cache in CACHE_DIR, the laptops' user
# USER, and ARGS.
sshd_reflector_key() {
    local key=$1 cmd a
    [[ -f $key ]] || _sshd_keygen "$key" vmsync-test-reflector
    cmd=$(_sshd_q "$VMSYNC_AGENT")
    for a in --upstream "$2" --cache-dir "$4" --user "$5" --upstream-identity "$SSH_CLIENT_KEY" \
        --upstream-known-hosts "$3" "${@:6}"; do
        cmd+=" $(_sshd_q "$a")"
    done
    grep -vF -- "$(awk '{print $2}' "$key.pub")" "$SSHD_DIR/authorized_keys" >"$SSHD_DIR/ak.new"
    printf 'command="%s",no-port-forwarding,no-X11-forwarding,no-agent-forwarding,no-pty %s\n' \
        "${cmd//\"/\\\"}" "$(cat "$key.pub")" >>"$SSHD_DIR/ak.new"
    mv "$SSHD_DIR/ak.new" "$SSHD_DIR/authorized_keys"
}

# ssh_plain CMD...: CMD run over ssh with the unrestricted key.
ssh_plain() {
    ssh -F none -p "$SSHD_PORT" -i "$SSH_PLAIN_KEY" -o UserKnownHostsFile="$SSH_KNOWN_HOSTS" \
        -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
        -o IdentitiesOnly=yes "$SSHD_USER@127.0.0.1" "$@"
}
