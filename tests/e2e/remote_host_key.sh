#!/usr/bin/env bash
# A host key the known hosts file does not vouch for is the client's
# decision, through the library's host-key callback (tests/tools/host_key):
#   - unknown key, answered "refuse": refused (FSP_EK_DENIED, 12), the message
#     shows the fingerprint and names no option; the file stays empty;
#   - "once": connects, the file stays empty; asked again the next time;
#   - "remember": connects and adds the key; the next run is not asked;
#   - a changed key: the callback is told (state "changed"), and the
#     connection refused even when it answers "remember"; the file unchanged.
# The CLI adds its own hint (--accept-new) and its own notice when it adds a
# key, on stderr, and asks on a terminal; the library prints nothing.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd ssh-keygen
TOOL=$(dirname "$VMSYNC")/tools/host_key
[[ -x $TOOL ]] || fail "the test helper is not built: $TOOL"

export VMSYNC_HOST=laptop-hk VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
URL=$SSHD_URL_BASE/repo
fp=$(ssh-keygen -lf "$T/sshd/host_key.pub" | awk '{print $2}')

# ask NAME KNOWN_HOSTS ANSWER: runs the tool; its output in $T/NAME.out, status in RC
ask() {
    RC=0
    "$TOOL" "$URL" "$2" "$SSH_CLIENT_KEY" "$3" >"$T/$1.out" 2>"$T/$1.err" || RC=$?
}

info "an unknown key, refused"
: >"$T/kh"
ask refuse "$T/kh" refuse
((RC == 1)) || bad "a refused key gave status $RC: $(cat "$T/refuse.out")"
grep -q "^asked: unknown ssh-ed25519 $fp $T/kh\$" "$T/refuse.out" ||
    bad "the callback was not asked about the unknown key: $(cat "$T/refuse.out")"
grep -q "^error denied: .*unknown host key ssh-ed25519 $fp" "$T/refuse.out" ||
    bad "the refusal is not a DENIED naming the key: $(cat "$T/refuse.out")"
grep -q -- '--' "$T/refuse.out" && bad "the library's message names an option: $(cat "$T/refuse.out")"
[[ -s $T/refuse.err ]] && bad "the library wrote to stderr: $(cat "$T/refuse.err")"
[[ -s $T/kh ]] && bad "a refused key was written to the known hosts file"

info "accepted once: nothing written, asked again"
ask once "$T/kh" once
((RC == 0)) || bad "a key accepted once did not connect: $(cat "$T/once.out")"
[[ -s $T/kh ]] && bad "a key accepted once was written to the known hosts file"
ask once2 "$T/kh" refuse
grep -q '^asked: unknown' "$T/once2.out" || bad "the next run was not asked again"

info "remembered: written, not asked again"
ask remember "$T/kh" remember
((RC == 0)) || bad "a remembered key did not connect: $(cat "$T/remember.out")"
[[ -s $T/remember.err ]] && bad "the library wrote to stderr: $(cat "$T/remember.err")"
grep -q "127.0.0.1" "$T/kh" || bad "a remembered key is not in the known hosts file"
ask known "$T/kh" refuse
((RC == 0)) || bad "a known key did not connect: $(cat "$T/known.out")"
grep -q '^asked:' "$T/known.out" && bad "asked about a key the file holds: $(cat "$T/known.out")"

info "the CLI: its hint, and its notice when --accept-new adds a key"
: >"$T/kh-cli"
vm_expect "$T/cli-unknown" 12 log "$URL" -i "$SSH_CLIENT_KEY" --known-hosts "$T/kh-cli"
grep -q "unknown host key.*; then run again with --accept-new" "$T/cli-unknown.err" ||
    bad "the CLI does not add its hint: $(cat "$T/cli-unknown.err")"
vm_ok "$T/cli-accept" log "$URL" -i "$SSH_CLIENT_KEY" --known-hosts "$T/kh-cli" --accept-new
grep -q "^vmsync: adding 127.0.0.1 (ssh-ed25519 $fp) to $T/kh-cli\$" "$T/cli-accept.err" ||
    bad "the CLI does not say it adds the key: $(cat "$T/cli-accept.err")"

if command -v script >/dev/null 2>&1; then
    info "the CLI on a terminal: it asks, and y adds the key"
    : >"$T/kh-tty"
    printf 'y\n' | script -qec "'$VMSYNC' log '$URL' -i '$SSH_CLIENT_KEY' --known-hosts '$T/kh-tty'" \
        /dev/null >"$T/tty.out" 2>&1 || bad "the CLI on a terminal failed: $(cat "$T/tty.out")"
    grep -q "offers the host key ssh-ed25519 $fp" "$T/tty.out" ||
        bad "the CLI did not ask on the terminal: $(cat "$T/tty.out")"
    grep -q "127.0.0.1" "$T/kh-tty" || bad "answering y did not add the key"
fi

info "without --known-hosts: the file in \$HOME is the one read, named and written"
pw_kh="$(getent passwd "$(id -u)" | cut -d: -f6)/.ssh/known_hosts"
pw_before=$(sha256sum "$pw_kh" 2>/dev/null || echo absent)
HOME=$T/home vm_ok "$T/home-accept" log "$URL" -i "$SSH_CLIENT_KEY" --accept-new
grep -q "to $T/home/.ssh/known_hosts\$" "$T/home-accept.err" ||
    bad "the CLI does not name \$HOME's file: $(cat "$T/home-accept.err")"
grep -q "127.0.0.1" "$T/home/.ssh/known_hosts" 2>/dev/null ||
    bad "the accepted key is not in the file named, \$HOME/.ssh/known_hosts"
HOME=$T/home vm_ok "$T/home-known" log "$URL" -i "$SSH_CLIENT_KEY"
[[ $(sha256sum "$pw_kh" 2>/dev/null || echo absent) == "$pw_before" ]] ||
    bad "the key went to $pw_kh, not to the file named"

info "a changed key: told, and refused whatever the answer"
sshd_rekey "$T/sshd"
cp "$T/kh" "$T/kh-before"
ask changed "$T/kh" remember
((RC == 1)) || bad "a changed key gave status $RC: $(cat "$T/changed.out")"
grep -q '^asked: changed ssh-ed25519 ' "$T/changed.out" ||
    bad "the callback was not told about the changed key: $(cat "$T/changed.out")"
grep -q "host key has CHANGED" "$T/changed.out" || bad "the refusal does not say why: $(cat "$T/changed.out")"
cmp -s "$T/kh" "$T/kh-before" || bad "the known hosts file changed on a changed key"
finish
