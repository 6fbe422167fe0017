# A tests/lib/relay.py in front of the test's sshd (tests/lib/sshd.sh), for
# narrow, cut or counted links.  Needs repo.sh (repo_bg).
# shellcheck shell=bash

RELAY_PID=
# relay_start ARGS...: a relay in front of sshd (relay.py options); sets
# RELAY_PORT, and $T/kh-relay, a known_hosts for it.  Its figures go to
# $T/relay.json (relay_connections reads them).
relay_start() {
    rm -f "$T/relay.port" "$T/relay.json"
    repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/relay.port" \
        --to "127.0.0.1:$SSHD_PORT" --stats "$T/relay.json" "$@"
    RELAY_PID=$REPO_BG_PID
    for _ in $(seq 400); do [[ -s $T/relay.port ]] && break; sleep 0.05; done # python is slow to start on a loaded box
    RELAY_PORT=$(cat "$T/relay.port") || fail "the relay did not start"
    sed "s/^\[127.0.0.1\]:$SSHD_PORT /[127.0.0.1]:$RELAY_PORT /" "$SSH_KNOWN_HOSTS" >"$T/kh-relay"
}
relay_stop() {
    [[ -n $RELAY_PID ]] && kill "$RELAY_PID" 2>/dev/null && wait "$RELAY_PID" 2>/dev/null
    RELAY_PID=
}
# relay_connections: how many connections the relay has carried and closed.
relay_connections() { jq -r .connections "$T/relay.json"; }
