#!/usr/bin/env bash
# What an ssh:// repository refuses, each with its exit status and a message
# that says what is wrong: an unknown host key (with its fingerprint, and
# --accept-new then adds it), a changed host key (always refused, even with
# --accept-new), a key the server does not accept, a path outside the agent's
# root (and a symlink leading out of it), a repository that is not there, a
# check-in through a --read-only key, gc from a client, and a server that is
# not listening.  Nothing is recorded by any of them.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs ssh-keygen jq

export VMSYNC_HOST=laptop-err VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv" "$T/outside"
repo_init "$T/srv/repo"
repo_init "$T/outside/repo"
ln -s "$T/outside" "$T/srv/escape"
URL=$SSHD_URL_BASE/repo
KEY=(-i "$SSH_CLIENT_KEY")
img=$(repo_img t ext4) || fail "cannot build T"

# expect NAME STATUS PATTERN ARGS...: vmsync ARGS exits STATUS and says PATTERN
expect() {
    local name=$1 status=$2 pattern=$3
    shift 3
    vm_expect "$T/$name" "$status" "$@" || return 0
    grep -qiE -- "$pattern" "$T/$name.err" ||
        bad "$name: stderr does not match /$pattern/: $(head -c 400 "$T/$name.err")"
}

# the fingerprint ssh-keygen prints for the server's key
fp=$(ssh-keygen -lf "$T/sshd/host_key.pub" | awk '{print $2}')

info "the agent's own command line"
"$VMSYNC_AGENT" --help >"$T/agent-help.out" || bad "vmsync-agent --help failed"
grep -q -- "--root DIR" "$T/agent-help.out" || bad "vmsync-agent --help does not describe --root"
rc=0
"$VMSYNC_AGENT" </dev/null >/dev/null 2>"$T/agent-noroot.err" || rc=$?
((rc == 2)) && grep -q "root is required" "$T/agent-noroot.err" ||
    bad "vmsync-agent without --root: exit $rc, $(head -c 200 "$T/agent-noroot.err")"
rc=0
"$VMSYNC_AGENT" --root "$T/srv" --cache-size lots </dev/null >/dev/null 2>"$T/agent-bad.err" || rc=$?
((rc == 2)) || bad "vmsync-agent --cache-size lots: exit $rc"

info "unknown host key"
: >"$T/kh-empty"
expect unknown 12 "unknown host key.*--accept-new" log "$URL" "${KEY[@]}" --known-hosts "$T/kh-empty"
grep -qF "$fp" "$T/unknown.err" || bad "the unknown host key message does not show the fingerprint $fp"
[[ ! -s $T/kh-empty ]] || bad "an unknown host key was written without --accept-new"

info "--accept-new adds it, then it is known"
vm_ok "$T/accept" log "$URL" "${KEY[@]}" --known-hosts "$T/kh-new" --accept-new
grep -q "127.0.0.1" "$T/kh-new" || bad "--accept-new did not add the host key to the file"
vm_ok "$T/known" log "$URL" "${KEY[@]}" --known-hosts "$T/kh-new"

info "bad key: a key the server does not know"
ssh-keygen -q -t ed25519 -N '' -f "$T/stranger_key"
expect badkey 12 "refused.*stranger_key" log "$URL" -i "$T/stranger_key" --known-hosts "$SSH_KNOWN_HOSTS"
expect nokey 12 "cannot read the private key" log "$URL" -i "$T/missing_key" --known-hosts "$SSH_KNOWN_HOSTS"

info "paths outside the root"
expect dotdot 12 "outside the agent's root" log "$SSHD_URL_BASE/../outside/repo" "${KEY[@]}" \
    --known-hosts "$SSH_KNOWN_HOSTS"
expect symlink 12 "outside the agent's root" log "$SSHD_URL_BASE/escape/repo" "${KEY[@]}" \
    --known-hosts "$SSH_KNOWN_HOSTS"
expect missing 3 "no repository there" log "$SSHD_URL_BASE/nothing-here" "${KEY[@]}" \
    --known-hosts "$SSH_KNOWN_HOSTS"
expect notrepo 4 "not a vmsync repository" log "$SSHD_URL_BASE/" "${KEY[@]}" \
    --known-hosts "$SSH_KNOWN_HOSTS"

info "gc and init are server-side operations"
expect gc 2 "gc runs on the server" gc "$URL" "${KEY[@]}" --known-hosts "$SSH_KNOWN_HOSTS"
expect init 2 "local paths only" init "$URL"

info "bad URLs"
expect url1 2 "bad port" log "ssh://127.0.0.1:99999/repo"
expect url2 2 "not an ssh URL" log "ssh://127.0.0.1"

info "a server that does not listen"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
expect refused 11 "cannot connect" log "ssh://127.0.0.1:$port/repo" "${KEY[@]}" --known-hosts "$SSH_KNOWN_HOSTS"

info "read-only keys check out but do not check in"
sshd_stop
sshd_start "$T/sshd-ro" "$T/srv" --read-only
KEY=(-i "$SSH_CLIENT_KEY")
vm_ok "$T/imp" import "$T/srv/repo" "$img" --name t -q
expect ro 12 "may only read" import "$SSHD_URL_BASE/repo" "$img" --name t2 "${KEY[@]}" \
    --known-hosts "$SSH_KNOWN_HOSTS" -q
vm_ok "$T/ro-log" log "$SSHD_URL_BASE/repo" --json "${KEY[@]}" --known-hosts "$SSH_KNOWN_HOSTS"
grep -q '"t2"' "$T/ro-log.out" && bad "a read-only key recorded an import"

info "a changed host key is refused, even with --accept-new"
cp "$SSH_KNOWN_HOSTS" "$T/kh-old"
sshd_rekey "$T/sshd-ro"
expect changed 12 "host key has CHANGED" log "$SSHD_URL_BASE/repo" "${KEY[@]}" --known-hosts "$T/kh-old"
expect changed2 12 "host key has CHANGED" log "$SSHD_URL_BASE/repo" "${KEY[@]}" --known-hosts "$T/kh-old" \
    --accept-new
cmp -s "$T/kh-old" "$SSH_KNOWN_HOSTS" || bad "the known hosts file changed on a refused key"

# every refusal left the server's repositories as they were
n=$(sqlite3 "$T/outside/repo/catalog.db" "select count(*) from versions")
((n == 0)) || bad "the repository outside the root has $n versions"
finish
