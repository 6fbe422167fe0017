#!/usr/bin/env bash
# The agent speaks each protocol version in its own layout, so that clients
# older than the agent go on working (docs/protocol.md, Versioning).  With a
# signed version in the repository, a session of version 1 (a client older
# than signatures, spoken by tests/lib/agentwire.py) gets HELLO_OK 1 and the
# version's VERSION_INFO without a signature, in the layout that client
# parses to its end; a session of version 2 gets HELLO_OK 2 and the same
# reply with the signer and the signature (96 bytes more), the signer the
# key's fingerprint; version 0 and version 4 are refused naming the versions
# the agent speaks; a GET paced under 8 KiB/s is refused.  And this vmsync, over a real sshd, shows the version
# signed.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq python3

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
SRV=$T/srv
mkdir -p "$SRV"
repo_init "$SRV/repo"
vm_ok "$T/keygen" key generate "$SRV/repo" --json
repo_motd_img signed "$T/one.img"
vm_ok "$T/imp" import "$SRV/repo" "$T/one.img" --name desk
vm_ok "$T/log" log "$SRV/repo" desk --json
signer=$(jq -rs '.[0].signer' "$T/log.out")
[[ $signer == SHA256:* ]] || fail "the local log shows no signer: $(cat "$T/log.out")"

py - "$VMSYNC_AGENT" "$SRV" "$signer" >"$T/wire.out" 2>&1 <<'EOF2' || bad "the versions: $(tail -c 800 "$T/wire.out")"
import base64, sys
from agentwire import *
agent, root, signer = sys.argv[1:]

def version_info(version):
    s = Session([agent, '--root', root, '--user', 'tester'], version=version)
    s.open('repo')
    spoken, _ = get_varint(s.hello, 0)
    kind, body = s.ask(VERSION_REQ, put_str('desk') + put_varint(0))
    s.close()
    assert kind == VERSION_INFO, (version, kind, body[:200])
    return spoken, body

def refused(version):
    s = Session([agent, '--root', root, '--user', 'tester'], version=version)
    try:
        s.open('repo')
    except RuntimeError as e:
        return str(e)
    finally:
        s.close()
    raise AssertionError('version %d was accepted' % version)

def host_end(body):  # where a version-1 reply ends: after the host
    _, i = get_str(body, 0)
    for _ in range(2):
        _, i = get_varint(body, i)
    i += 64
    for _ in range(2):
        _, i = get_varint(body, i)
    for _ in range(3):
        _, i = get_str(body, i)
    return i

spoken1, old = version_info(1)
spoken2, new = version_info(2)
assert (spoken1, spoken2) == (1, 2), (spoken1, spoken2)
assert host_end(old) == len(old), 'the version-1 reply does not end after the host'
assert len(new) == len(old) + 96 and new[:len(old)] == old, (len(old), len(new))
got = 'SHA256:' + base64.b64encode(new[len(old):len(old) + 32]).decode().rstrip('=')
assert got == signer, (got, signer)
for v in (0, 4):
    msg = refused(v)
    assert 'protocols 1 to 3' in msg, msg
# A GET paced slower than a 64 kbit/s line would hold the agent for as long
# as the client likes: refused, and the session goes on.
s = Session([agent, '--root', root, '--user', 'tester'], version=2)
s.open('repo')
kind, body = s.ask(GET, put_varint(0) + put_varint(1) + put_varint(1) + bytes(32))
assert kind == ERROR and 'at least 8192' in error(body)[1], (kind, body[:200])
kind, _ = s.ask(VERSION_REQ, put_str('desk') + put_varint(0))
assert kind == VERSION_INFO, kind
s.close()
print('ok')
EOF2
grep -qx ok "$T/wire.out" || bad "the versions: $(tail -c 800 "$T/wire.out")"

sshd_start "$T/sshd" "$SRV"
vm_ok "$T/rlog" log "$SSHD_URL_BASE/repo" desk --json --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY"
[[ $(jq -rs '.[0].signer' "$T/rlog.out") == "$signer" ]] ||
    bad "over ssh:// the log shows another signer: $(cat "$T/rlog.out")"
finish
