#!/usr/bin/env bash
# What a key of the agent may do, with a real sshd for the vmsync client and
# the agent over a pipe for crafted requests (tests/lib/agentwire.py):
#   - a --read-only key exports and reads the log, is refused a checkout, a
#     stolen lease, a release, a check-in (exit 12), and crafted requests of
#     every kind it can send change nothing in the catalog (its .dump and the
#     file's SHA-256 before and after);
#   - a lease is its holder's, the agent's --user first: another user naming
#     the holder's host cannot take it, release it, or check in over it;
#   - audit entries are the agent's own words: a client cannot write a
#     "steal" or any text of its own into the log;
#   - an idle session (through sshd) ends after --idle-timeout; until then gc gives up
#     after --wait with exit 8, naming the agent, and removes nothing;
#   - no error the client sees shows the server's root.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs sqlite3 sha256sum jq

SRV=$T/srv
mkdir -p "$SRV"
sshd_start "$T/sshd" "$SRV"
repo_init "$SRV/repo"
REPO=$SRV/repo
DB=$REPO/catalog.db
img=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp" import "$REPO" "$img" --name t -q
vm_ok "$T/local" export "$REPO" t -o "$T/local.img" -q --cache "$T/cache-local"

# more keys for the same sshd: another user, and a read-only one
add_key() { # NAME AGENT_ARGS...: DIR/NAME_key runs the agent with those arguments
    local name=$1
    shift
    ssh-keygen -q -t ed25519 -N '' -C "$name" -f "$T/${name}_key" </dev/null
    printf 'command="%s --root %s %s",no-port-forwarding,no-pty %s\n' "$VMSYNC_AGENT" "$SRV" "$*" \
        "$(cat "$T/${name}_key.pub")" >>"$SSHD_DIR/authorized_keys"
}
add_key mallory --user mallory
add_key reader --user reader --read-only
add_key idle --user tester --idle-timeout 4
URL=$SSHD_URL_BASE/repo
KH=(--known-hosts "$SSH_KNOWN_HOSTS")
as() { # KEY HOST PREFIX ARGS...: vmsync ARGS through KEY's key, as HOST
    local key=$1 host=$2
    shift 2
    VMSYNC_HOST=$host VMSYNC_CACHE=$T/cache-$key-$host vm "$1" "${@:2}" -i "$key" "${KH[@]}"
}
expect() { # PREFIX STATUS PATTERN: the last vmsync exited STATUS, saying PATTERN
    ((VM_RC == $2)) || { bad "$1: exit $VM_RC, expected $2: $(head -c 300 "$1.err")"; return 0; }
    grep -qiE -- "$3" "$1.err" || bad "$1: stderr does not match /$3/: $(head -c 300 "$1.err")"
}
snapshot() { # the catalog's content and bytes, the WAL folded in first
    sqlite3 "$DB" 'PRAGMA wal_checkpoint(TRUNCATE)' >/dev/null
    { sqlite3 "$DB" .dump; sha256sum <"$DB"; }
}
lease() { sqlite3 "$DB" "select user || '@' || host from leases"; }

info "the holder: tester@laptop-w checks out t"
as "$SSH_CLIENT_KEY" laptop-w "$T/co-w" checkout "$URL" t -o "$T/w.img" --seed "$simg" -q
((VM_RC == 0)) || fail "checkout by the holder: exit $VM_RC: $(head -c 300 "$T/co-w.err")"
[[ $(lease) == tester@laptop-w ]] || fail "the lease is $(lease), expected tester@laptop-w"
n=$(sqlite3 "$DB" "select count(*) from audit where action = 'checkout' and user = 'tester'")
((n == 1)) || bad "the agent recorded $n checkout entries for tester, expected 1"

info "a read-only key: export and log work, nothing else"
snapshot >"$T/before.dump"
as "$T/reader_key" laptop-r "$T/ro-exp" export "$URL" t -o "$T/ro.img" -q
((VM_RC == 0)) || bad "a read-only export failed: exit $VM_RC: $(head -c 300 "$T/ro-exp.err")"
cmp -s "$T/ro.img" "$T/local.img" || bad "the read-only export differs from a local export"
as "$T/reader_key" laptop-r "$T/ro-log" log "$URL" --json
((VM_RC == 0)) || bad "a read-only log failed: exit $VM_RC"
as "$T/reader_key" laptop-r "$T/ro-co" checkout "$URL" t -o "$T/ro-co.img" -q
expect "$T/ro-co" 12 "may only read.*takes a lease.*export"
[[ ! -e $T/ro-co.img ]] || bad "a refused read-only checkout wrote its output"
as "$T/reader_key" laptop-w "$T/ro-steal" checkout "$URL" t -o "$T/ro-steal.img" --steal -q
expect "$T/ro-steal" 12 "may only read"
as "$T/reader_key" laptop-w "$T/ro-ci" checkin "$URL" t "$img" -q
expect "$T/ro-ci" 12 "may only read"

info "a read-only key: crafted requests"
py - "$VMSYNC_AGENT" "$SRV" "$T/crafted-agents.err" >"$T/ro-crafted.out" 2>&1 <<'EOF' || bad "crafted read-only requests: $(tail -c 600 "$T/ro-crafted.out")"
import sys
from agentwire import *
agent, root, errfile = sys.argv[1:]
def session(kind, payload, host='laptop-w'):
    s = Session([agent, '--root', root, '--user', 'tester', '--read-only'], host=host,
                stderr=open(errfile, 'a'))
    s.open('repo')
    got = s.ask(kind, payload)
    s.close()
    return got
h = bytes(32)
crafted = {
    'take': (LEASE_TAKE, put_str('t') + put_varint(1) + b'\0'),
    'steal': (LEASE_TAKE, put_str('t') + put_varint(1) + b'\1'),
    'release': (LEASE_RELEASE, put_str('t')),
    'audit steal': (AUDIT, put_str('steal') + put_str('t') + put_varint(1) + put_str('taken from bob')),
    'audit export': (AUDIT, put_str('export') + put_str('t') + put_varint(1) + put_str('x')),
    'audit checkin': (AUDIT, put_str('checkin') + put_str('t') + put_varint(1) + put_str('x')),
    'audit release': (AUDIT, put_str('release') + put_str('t') + put_varint(1) + put_str('x')),
    'add version': (ADD_VERSION, put_str('t') + put_varint(1) + h + h + put_varint(1) + put_str('m')),
    'import': (ADD_VERSION, put_str('new') + put_varint(0) + h + h + put_varint(1) + put_str('m')),
    'put manifest': (PUT_MANIFEST, put_varint(10)),
    'offer': (OFFER, put_varint(1) + h),
    'stray put end': (PUT_END, put_varint(0)),
    # the reads it may make
    'version': (VERSION_REQ, put_str('t') + put_varint(0)),
    'list': (LIST, b'\1' + put_str('')),
    'lease get': (LEASE_GET, put_str('t')),
    'get manifest': (GET_MANIFEST, h),
    'has': (HAS, put_varint(1) + h),
    'get': (GET, put_varint(0) + put_varint(0) + put_varint(1) + h),
    'ping': (PING, b''),
    'images': (IMAGES, b''),
    'leases': (LEASES, b'\1' + put_str('')),
    'audit log': (AUDIT_LOG, b'\1' + put_str('') + put_varint(0)),
}
bad = 0
for name, (kind, payload) in crafted.items():
    got, body = session(kind, payload)
    # any answer will do: the dump shows whether anything changed
    if got is None:
        print('FAIL: %s: no reply' % name); bad += 1
    elif got == ERROR and name in ('take', 'steal', 'release') and error(body)[0] != 12:
        print('FAIL: %s: refused as kind %d, expected 12: %s' % ((name,) + error(body))); bad += 1
    elif name in ('images', 'leases', 'audit log') and got == ERROR:
        print('FAIL: %s: a read-only key may query: %s' % ((name,) + error(body))); bad += 1
    print(name, got, error(body) if got == ERROR else '')
sys.exit(1 if bad else 0)
EOF
snapshot >"$T/after.dump"
cmp -s "$T/before.dump" "$T/after.dump" ||
    bad "a read-only key changed the catalog: $(diff "$T/before.dump" "$T/after.dump" | head -c 600)"

info "another user naming the holder's host"
as "$T/mallory_key" laptop-w "$T/m-co" checkout "$URL" t -o "$T/m.img" -q
expect "$T/m-co" 8 "checked out by tester@laptop-w"
[[ $(lease) == tester@laptop-w ]] || bad "after mallory's checkout the lease is $(lease)"
cp "$simg" "$T/m-ci.img"
as "$T/mallory_key" laptop-w "$T/m-ci" checkin "$URL" t "$T/m-ci.img" -q
expect "$T/m-ci" 8 "checked out by tester@laptop-w.*nothing was recorded"
n=$(sqlite3 "$DB" "select count(*) from versions")
((n == 1)) || bad "mallory's check-in over tester's lease recorded a version ($n versions)"
py - "$VMSYNC_AGENT" "$SRV" "$T/crafted-agents.err" >"$T/m-crafted.out" 2>&1 <<'EOF' || bad "crafted requests by another user: $(tail -c 600 "$T/m-crafted.out")"
import sys
from agentwire import *
agent, root, errfile = sys.argv[1:]
s = Session([agent, '--root', root, '--user', 'mallory'], host='laptop-w',
            stderr=open(errfile, 'a'))
s.open('repo')
bad = 0
got, body = s.ask(LEASE_RELEASE, put_str('t'))  # 9: conflict on the wire
if got != ERROR or error(body)[0] != 9 or 'tester@laptop-w' not in error(body)[1]:
    print('FAIL: mallory released tester\'s lease: %r %r' % (got, body)); bad += 1
# the audit log takes no words from the client
for action, detail in (('steal', 'taken from tester@laptop-w'), ('checkin', 'forged detail'),
                       ('export', 'forged detail'), ('checkout', 'forged detail'),
                       ('release', 'forged detail')):
    got, body = s.ask(AUDIT, put_str(action) + put_str('t') + put_varint(1) + put_str(detail))
    print(action, got, error(body) if got == ERROR else '')
s.close()
sys.exit(1 if bad else 0)
EOF
[[ $(lease) == tester@laptop-w ]] || bad "after mallory's release the lease is $(lease)"
n=$(sqlite3 "$DB" "select count(*) from audit where action in ('steal', 'release') or detail like '%forged%'")
((n == 0)) || bad "a client wrote its own words into the audit log: $(sqlite3 "$DB" 'select * from audit')"
n=$(sqlite3 "$DB" "select count(*) from audit where action = 'export' and user = 'mallory'")
((n == 1)) || bad "the agent recorded $n export entries for mallory, expected 1"

info "the holder checks in and releases"
cp "$simg" "$T/w-ci.img"
as "$SSH_CLIENT_KEY" laptop-w "$T/w-ci" checkin "$URL" t "$T/w-ci.img" -q
((VM_RC == 0)) || bad "the holder's check-in failed: exit $VM_RC: $(head -c 300 "$T/w-ci.err")"
[[ -z $(lease) ]] || bad "after the holder's check-in the lease is $(lease)"
n=$(sqlite3 "$DB" "select count(*) from audit where action = 'checkin' and user = 'tester' and version = 2")
((n == 1)) || bad "the agent recorded $n check-in entries for t@2, expected 1"

info "errors show no server path"
man1=$REPO/manifests/$(sqlite3 "$DB" "select lower(hex(manifest)) from versions where number = 1").vmsm
mv "$man1" "$T/man1.keep"
as "$SSH_CLIENT_KEY" laptop-p "$T/p-img" export "$URL" nosuch -o "$T/p.img" -q
expect "$T/p-img" 9 "no image named nosuch"
as "$SSH_CLIENT_KEY" laptop-p "$T/p-ver" export "$URL" t@7 -o "$T/p.img" -q
expect "$T/p-ver" 9 "no version 7"
as "$SSH_CLIENT_KEY" laptop-p "$T/p-man" export "$URL" t@1 -o "$T/p.img" -q
expect "$T/p-man" 5 "manifest [0-9a-f]+ is not in the repository"
as "$SSH_CLIENT_KEY" laptop-p "$T/p-root" log "$SSHD_URL_BASE/"
expect "$T/p-root" 4 "not a vmsync repository"
as "$SSH_CLIENT_KEY" laptop-p "$T/p-none" log "$SSHD_URL_BASE/nothing"
expect "$T/p-none" 3 "no repository there"
mv "$T/man1.keep" "$man1"
real=$(realpath "$SRV")
for f in "$T"/p-*.err; do
    ! grep -qF -e "$SRV" -e "$real" "$f" || bad "$(basename "$f"): the server's root shows: $(head -c 300 "$f")"
done

info "an idle session through sshd ends; until then gc gives up, naming it"
ssh_idle="ssh -F none -p $SSHD_PORT -i $T/idle_key -o UserKnownHostsFile=$SSH_KNOWN_HOSTS \
-o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes -o BatchMode=yes \
-o IdentitiesOnly=yes $SSHD_USER@127.0.0.1"
py - "$ssh_idle" "$T/idle.err" >"$T/idle.out" 2>&1 <<'EOF' &
import shlex, sys, time
from agentwire import *
ssh, errfile = sys.argv[1:]
s = Session(shlex.split(ssh), stderr=open(errfile, 'w'))
s.open('repo')
print('open', flush=True)
t0 = time.monotonic()
kind, body = s.recv()  # nothing asked: what comes is the timeout
print('after %.1f s:' % (time.monotonic() - t0), kind, error(body) if kind == ERROR else body)
print('exit', s.close())
EOF
idle_py=$!
for ((i = 0; i < 100; i++)); do
    grep -q '^open' "$T/idle.out" 2>/dev/null && break
    sleep 0.1
done
grep -q '^open' "$T/idle.out" || fail "the idle session did not open: $(cat "$T/idle.out" "$T/idle.err")"
packs=$(ls "$REPO/packs" | sort)
start=$SECONDS
vm "$T/gc-busy" gc "$REPO" --wait 1
((SECONDS - start < 4)) || bad "gc --wait 1 took $((SECONDS - start)) s"
expect "$T/gc-busy" 8 "still open by pid [0-9]+ \(vmsync-agent\).*nothing was removed"
[[ $(ls "$REPO/packs" | sort) == "$packs" ]] || bad "a gc that gave up changed the packs"
wait "$idle_py" || bad "the idle session's driver failed: $(cat "$T/idle.out")"
grep -qE '^after [3-9]\.[0-9] s: 65 ' "$T/idle.out" ||
    bad "the idle session did not end with an ERROR after 4 s: $(cat "$T/idle.out")"
grep -q 'idle-timeout' "$T/idle.out" || bad "the idle ERROR does not name --idle-timeout: $(cat "$T/idle.out")"
grep -q '^exit 1' "$T/idle.out" || bad "the idle agent did not exit 1: $(cat "$T/idle.out")"
vm "$T/gc-free" gc "$REPO" --wait 10
((VM_RC == 0)) || bad "gc after the idle session ended: exit $VM_RC: $(head -c 300 "$T/gc-free.err")"
# the agents run over a pipe: their sanitizer reports, if any, are on their stderr
! grep -hE 'Sanitizer|runtime error' "$T/crafted-agents.err" ||
    bad "an agent's sanitizer report (above)"
vm "$T/gc-bad" gc "$REPO" --wait soon
((VM_RC == 2)) || bad "gc --wait soon: exit $VM_RC, expected 2"
rc=0
"$VMSYNC_AGENT" --root "$SRV" --idle-timeout -1 </dev/null >/dev/null 2>"$T/agent-idle.err" || rc=$?
((rc == 2)) || bad "vmsync-agent --idle-timeout -1: exit $rc, expected 2"
finish
