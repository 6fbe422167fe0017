#!/usr/bin/env bash
# Chained segments over ssh:// (protocol 3): at a narrow link's level each
# SEGMENT after a transfer's first is compressed with the one before as its
# prefix.  The image holds a 3 MiB random block five times, each copy with a
# byte changed every 16 KiB (so no chunk repeats) and a MiB of it new, so
# matches reach across the 4 MiB segments and each segment costs bytes:
#   - a checkout at --compress-level 19 shows chained segments in its
#     --stats-json, gives the image a local check-out gives, byte for byte,
#     and verify finds it equal; at level 6 (a fast link), with the agent's
#     segment cache emptied (its level-19 segments serve any lower level),
#     none is chained;
#   - the same checkout with the link cut after the first segment exits 11,
#     and run again fetches only what it lacked, starting a new chain, and
#     gives the same image;
#   - clients of protocols 2 and 3 (tests/lib/agentwire.py) asking for 24
#     similar small files at level 19: the old one gets SOLID segments only,
#     each decoding alone; the new one chained segments after the first, and
#     fewer bytes.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs python3 jq cmp zstd

export VMSYNC_HOST=laptop-chain VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv" "$T/tree"
repo_init "$T/srv/repo"
python3 - "$T/tree/blocks" <<'EOF'
import os, sys
block = bytearray(os.urandom(3 << 20))
with open(sys.argv[1], 'wb') as f:
    for copy in range(5):
        for at in range(copy * 97, len(block), 16384):
            block[at] ^= 0xff
        fresh = (copy % 3) << 20
        block[fresh:fresh + (1 << 20)] = os.urandom(1 << 20)
        f.write(block)
base = bytearray(os.urandom(512 << 10))
os.mkdir(os.path.join(os.path.dirname(sys.argv[1]), 'small'))
for i in range(24):  # whole-file objects (under 1 MiB), in three segments
    base[(i % 4) << 17:((i % 4) + 1) << 17] = os.urandom(128 << 10)
    with open(os.path.join(os.path.dirname(sys.argv[1]), 'small', 'f%02d' % i), 'wb') as f:
        f.write(base)
EOF
mke2fs -q -F -t ext4 -d "$T/tree" "$T/t.img" 40M >/dev/null 2>&1 || fail "mke2fs failed"
vm_ok "$T/imp" import "$T/srv/repo" "$T/t.img" --name t -q
vm_ok "$T/co-local" export "$T/srv/repo" t -o "$T/local.img" -q
KEYS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")

info "checkout at level 19: chained, identical"
vm_ok "$T/co19" checkout "$SSHD_URL_BASE/repo" t -o "$T/co19.img" -q "${KEYS[@]}" \
    --compress-level 19 --stats-json "$T/co19.json"
chained=$(repo_stat "$T/co19.json" segments_chained)
segments=$(repo_stat "$T/co19.json" segments_fetched)
fetched19=$(repo_stat "$T/co19.json" bytes_fetched_compressed)
info "level 19: $segments segments, $chained chained, $fetched19 bytes"
((segments >= 3 && chained == segments - 1)) ||
    bad "level 19: $chained of $segments segments chained, expected all but the first"
cmp -s "$T/co19.img" "$T/local.img" || bad "the chained checkout differs from a local export"
vm_ok "$T/verify" verify "$SSHD_URL_BASE/repo" t "$T/co19.img" "${KEYS[@]}"

info "checkout at level 6 on a cold segment cache: no chain"
rm -rf "$T/srv/repo/cache/segments" # the level-19 segments would serve it
vm_ok "$T/co6" checkout "$SSHD_URL_BASE/repo" t -o "$T/co6.img" -q "${KEYS[@]}" --steal \
    --compress-level 6 --stats-json "$T/co6.json"
[[ $(repo_stat "$T/co6.json" segments_chained) == 0 ]] ||
    bad "level 6 chained segments: $(cat "$T/co6.json")"
cmp -s "$T/co6.img" "$T/local.img" || bad "the level-6 checkout differs from a local export"

info "checkout at level 19, the link cut after the first segment"
relay_start --cut-after 4500000
remote="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
RELAY_KEYS=(--known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY")
vm_expect "$T/cut" 11 checkout "$remote" t -o "$T/cut.img" -q "${RELAY_KEYS[@]}" --steal \
    --compress-level 19
[[ -e $T/cut.img.vmsync-part ]] || bad "no partial image kept for the resume"
vm_ok "$T/resume" checkout "$remote" t -o "$T/cut.img" -q "${RELAY_KEYS[@]}" --steal \
    --compress-level 19 --stats-json "$T/resume.json"
relay_stop
resumed=$(repo_stat "$T/resume.json" bytes_resumed)
raw=$(repo_stat "$T/resume.json" bytes_fetched_raw)
info "resumed: $resumed bytes in place, $raw fetched, $(repo_stat "$T/resume.json" segments_chained) chained"
all=$(repo_stat "$T/co19.json" bytes_fetched_raw)
((resumed > 0 && raw < all)) || bad "the resumed run fetched $raw of $all bytes, $resumed in place"
cmp -s "$T/cut.img" "$T/local.img" || bad "the resumed chained checkout differs from a local export"

info "clients of protocols 2 and 3 at level 19: SOLID segments only, and chained ones"
vm_ok "$T/manifest" manifest "$T/t.img" --json
jq -r '.. | objects | select((.path | type) == "string" and (.path | startswith("/small/")))
    | .sha256' "$T/manifest.out" >"$T/hashes"
(($(wc -l <"$T/hashes") == 24)) || fail "the manifest lists no small files: $(head -c 400 "$T/manifest.out")"
py - "$VMSYNC_AGENT" "$T/srv" "$T/hashes" >"$T/wire.out" 2>&1 <<'EOF' ||
import subprocess, sys
from agentwire import *
SEGMENT = 74
agent, root, hashes = sys.argv[1:]
hashes = [bytes.fromhex(h) for h in open(hashes).read().split()]

def fetch(version):
    s = Session([agent, '--root', root, '--user', 'tester'], version=version)
    s.open('repo')
    s.send(GET, put_varint(19) + put_varint(0) + put_varint(len(hashes)) + b''.join(hashes))
    got, wire, codecs = 0, 0, []
    while got < len(hashes):
        kind, body = s.recv()
        assert kind == SEGMENT, (kind, body[:200])
        codec, i = get_varint(body, 0)
        _, i = get_varint(body, i)
        n, i = get_varint(body, i)
        codecs.append(codec)
        for _ in range(n):
            _, i = get_varint(body, i)
        zlen, i = get_varint(body, i)
        if codec == 1:  # decodes alone
            subprocess.run(['zstd', '-d', '-q', '-c'], input=body[i:i + zlen],
                           stdout=subprocess.DEVNULL, check=True)
        got, wire = got + n, wire + zlen
    s.close()
    return codecs, wire

old, old_wire = fetch(2)
new, new_wire = fetch(3)
assert set(old) == {1} and len(old) >= 3, old
assert new[0] == 1 and set(new[1:]) == {3}, new
assert new_wire < old_wire, (new_wire, old_wire)
print('ok: protocol 2', old_wire, 'bytes in', old, '; protocol 3', new_wire, 'bytes in', new)
EOF
    bad "protocols 2 and 3: $(tail -c 800 "$T/wire.out")"
info "$(cat "$T/wire.out")"
finish
