#!/usr/bin/env bash
# A check-in over ssh sends its manifest as a delta against the checked-out
# version's (protocol 3, PUT_MANIFEST_DELTA), and the agent stores the very
# file a local check-in stores: for ext4 and NTFS, version 2's manifest id is
# the local run's, the agent's stats count one manifest from a delta and
# none whole, and the delta's bytes are fewer than the file's.  Crafted
# requests (tests/lib/agentwire.py) are refused with -ESTALE and store
# nothing, the session going on: a frame that decodes to another manifest
# than the id it names, one that is no manifest, one that does not state its
# size, a truncated one, two frames,
# an unknown base; the honest frame is accepted.  A base the repository
# cannot read is the agent's own error, not -ESTALE.  A session of protocol 2
# (an older client) may not send a delta but still stores a manifest whole.
# When the agent cannot rebuild the file (its copy of the base is gone), the
# client sends the manifest whole and the check-in succeeds.  An agent that
# speaks protocol 2 only (--max-protocol 2) refuses this client's HELLO, and
# the client greets it again in protocol 2 and sends its manifest whole.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs mkntfs wimlib-imagex jq sqlite3 zstd python3

export VMSYNC_HOST=laptop-ssh
STATS=$T/agent-stats.jsonl
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv" --stats-file "$STATS"
repo_init "$T/srv/repo"
repo_init "$T/local"
URL=$SSHD_URL_BASE/repo
SSH_OPTS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")

# manifest_id REPO NAME VERSION: the version's manifest id, in hex
manifest_id() {
    sqlite3 "$1/catalog.db" "select lower(hex(v.manifest)) from versions v join images i
        on i.id = v.image_id where i.name = '$2' and v.number = $3"
}

# last_stat KEY: KEY of the agent's last session line
last_stat() { tail -n 1 "$STATS" | jq -r --arg k "$1" '.[$k]'; }

for fs in ext4 ntfs; do
    timg=$(repo_img t "$fs") || fail "cannot build T ($fs)"
    simg=$(repo_img s "$fs") || fail "cannot build S ($fs)"
    name=t-$fs
    vm_ok "$T/imp-r-$fs" import "$URL" "$timg" --name "$name" -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
    vm_ok "$T/imp-l-$fs" import "$T/local" "$timg" --name "$name" -q --cache "$T/cache-l"
    vm_ok "$T/co-l-$fs" checkout "$T/local" "$name" -o "$T/co-l-$fs.img" -q --cache "$T/cache-l"
    vm_ok "$T/co-r-$fs" checkout "$URL" "$name" -o "$T/co-r-$fs.img" -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
    rm -f "$T/co-l-$fs.img" "$T/co-r-$fs.img"
    vm_ok "$T/ci-l-$fs" checkin "$T/local" "$name" "$simg" -m edited -q --cache "$T/cache-l"
    vm_ok "$T/ci-r-$fs" checkin "$URL" "$name" "$simg" -m edited -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
    rid=$(manifest_id "$T/srv/repo" "$name" 2)
    lid=$(manifest_id "$T/local" "$name" 2)
    [[ -n $rid && $rid == "$lid" ]] || bad "$fs: version 2's manifest over ssh ($rid) is not the local one ($lid)"
    file=$T/srv/repo/manifests/$rid.vmsm
    cmp -s "$file" "$T/local/manifests/$lid.vmsm" || bad "$fs: the stored manifests differ"
    [[ $(last_stat manifests_delta) == 1 && $(last_stat manifests_whole) == 0 ]] ||
        bad "$fs: the check-in did not send its manifest as a delta: $(tail -n 1 "$STATS")"
    sent=$(last_stat manifest_bytes_in)
    size=$(stat -c %s "$file")
    ((sent > 0 && sent < size)) || bad "$fs: the delta took $sent bytes, the manifest is $size"
    info "$fs: manifest $size bytes, its delta $sent"
done

# Crafted deltas against version 1 of t-ext4, naming version 2's manifest.
base=$(manifest_id "$T/srv/repo" t-ext4 1)
target=$(manifest_id "$T/srv/repo" t-ext4 2)
decoded() { { head -c 16 "$1"; tail -c +17 "$1" | zstd -dcq; } >"$2"; }
decoded "$T/srv/repo/manifests/$target.vmsm" "$T/target.dec"
decoded "$T/srv/repo/manifests/$base.vmsm" "$T/base.dec"
zstd -19 -q --patch-from="$T/base.dec" "$T/target.dec" -o "$T/good.zst" 2>/dev/null
printf 'not a manifest at all' >"$T/junk"
zstd -q "$T/junk" -o "$T/junk.zst"
printf 'no size' | zstd -q >"$T/nosize.zst"
head -c 16 "$T/target.dec" >"$T/other.dec"
zstd -q "$T/other.dec" -o "$T/other.zst"
zstd -q "$T/target.dec" -o "$T/plain.zst"
mv "$T/srv/repo/manifests/$target.vmsm" "$T/target.vmsm"
py - "$VMSYNC_AGENT" "$T/srv" "$base" "$target" "$T" >"$T/wire.out" 2>&1 <<'PY' || bad "crafted deltas: $(tail -c 1500 "$T/wire.out")"
import errno, os, sys
from agentwire import *
agent, root, base, target, tmp = sys.argv[1:]

ESTALE = 116
stored = os.path.join(root, 'repo', 'manifests', target + '.vmsm')

def code(body):
    _, i = get_varint(body, 0)
    z, _ = get_varint(body, i)
    return (z >> 1) ^ -(z & 1)

def put_delta(s, delta, base_id=base, named=target):
    s.send(PUT_MANIFEST_DELTA, bytes.fromhex(base_id) + bytes.fromhex(named) + put_varint(len(delta)))
    for i in range(0, len(delta), 1 << 20):
        s.send(DATA, delta[i:i + (1 << 20)])
    return s.ask(END)

def refused(s, delta, why, **kw):
    kind, body = put_delta(s, delta, **kw)
    assert kind == ERROR and code(body) == -ESTALE, (why, kind, body[:300])
    assert not os.path.exists(stored), why + ': a manifest was stored'
    kind, _ = s.ask(PING)
    assert kind == PONG, why + ': the session ended'
    print('refused:', why, '-', error(body)[1])

good = open(os.path.join(tmp, 'good.zst'), 'rb').read()
s = Session([agent, '--root', root, '--user', 'tester'], version=3)
s.open('repo')
refused(s, good, 'another id named', named=base)
refused(s, open(os.path.join(tmp, 'junk.zst'), 'rb').read(), 'not a manifest')
refused(s, open(os.path.join(tmp, 'nosize.zst'), 'rb').read(), 'a frame without its size')
refused(s, open(os.path.join(tmp, 'other.zst'), 'rb').read(), 'a bare header')
refused(s, good[:len(good) // 2], 'truncated')
refused(s, good + good, 'two frames')
refused(s, good, 'an unknown base', base_id='00' * 32)
# the repository cannot read the base (a directory in its place): the
# agent's own error, not -ESTALE (the whole manifest would not mend it)
base_file = os.path.join(root, 'repo', 'manifests', base + '.vmsm')
os.rename(base_file, base_file + '.away')
os.mkdir(base_file)
kind, body = put_delta(s, good)
os.rmdir(base_file)
os.rename(base_file + '.away', base_file)
assert kind == ERROR and code(body) == -errno.EISDIR, ('unreadable base', kind, body[:300])
assert not os.path.exists(stored), 'unreadable base: a manifest was stored'
assert s.ask(PING)[0] == PONG, 'unreadable base: the session ended'
print('failed:', 'unreadable base', '-', error(body)[1])
kind, body = put_delta(s, good)
assert kind == MANIFEST_ID and body == bytes.fromhex(target), (kind, body[:300])
assert os.path.exists(stored), 'the honest delta stored nothing'
os.unlink(stored)
kind, body = put_delta(s, open(os.path.join(tmp, 'plain.zst'), 'rb').read())
assert kind == MANIFEST_ID and body == bytes.fromhex(target), ('a frame with no reference', kind)
assert s.close() == 0
os.unlink(stored)

# protocol 2: no delta, but a whole manifest still goes in
s = Session([agent, '--root', root, '--user', 'tester'], version=2)
s.open('repo')
kind, body = put_delta(s, good)
assert kind == ERROR and 'malformed PUT_MANIFEST_DELTA' in error(body)[1], (kind, body[:300])
s.close()
s = Session([agent, '--root', root, '--user', 'tester'], version=2)
s.open('repo')
whole = open(os.path.join(tmp, 'target.vmsm'), 'rb').read()
s.send(PUT_MANIFEST, put_varint(len(whole)))
s.send(DATA, whole)
kind, body = s.ask(END)
assert kind == MANIFEST_ID and body == bytes.fromhex(target), (kind, body[:300])
assert s.close() == 0
PY
cat "$T/wire.out"
mv "$T/target.vmsm" "$T/srv/repo/manifests/$target.vmsm"

# The agent lost the base: the client's delta cannot be rebuilt, and the
# manifest goes whole.  (The diff leaves version 2's manifest in the
# client's cache first.)
cp "$(repo_img s ext4)" "$T/s3.img"
repo_add_file "$T/s3.img" third
VMSYNC_CACHE=$T/cache-r vm_ok "$T/diff" diff "$URL" t-ext4@1 t-ext4@2 "${SSH_OPTS[@]}"
vm_ok "$T/co3" checkout "$URL" t-ext4 -o "$T/co3.img" -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
rm -f "$T/co3.img"
mv "$T/srv/repo/manifests/$target.vmsm" "$T/v2.vmsm"
vm_ok "$T/ci3" checkin "$URL" t-ext4 "$T/s3.img" -m third -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
[[ $(last_stat manifests_whole) == 1 && $(last_stat manifests_delta) == 0 ]] ||
    bad "the check-in against a lost base did not fall back to the whole manifest: $(tail -n 1 "$STATS")"
v3=$(manifest_id "$T/srv/repo" t-ext4 3)
[[ -n $v3 && -s $T/srv/repo/manifests/$v3.vmsm ]] || bad "version 3 has no manifest"
mv "$T/v2.vmsm" "$T/srv/repo/manifests/$target.vmsm"

# An agent of protocol 2 (--max-protocol 2, through the key without a forced
# command) refuses this client's HELLO; the client greets it again in
# protocol 2 and sends the manifest whole.
cp "$T/s3.img" "$T/s4.img"
repo_add_file "$T/s4.img" fourth
vm_ok "$T/co4" checkout "$URL" t-ext4 -o "$T/co4.img" -q "${SSH_OPTS[@]}" --cache "$T/cache-r"
rm -f "$T/co4.img"
vm_ok "$T/ci4" checkin "$URL" t-ext4 "$T/s4.img" -m fourth -q --known-hosts "$SSH_KNOWN_HOSTS" \
    -i "$SSH_PLAIN_KEY" --cache "$T/cache-r" --agent-command \
    "$VMSYNC_AGENT --root $T/srv --user tester --max-protocol 2 --stats-file $STATS"
[[ $(last_stat manifests_whole) == 1 && $(last_stat manifests_delta) == 0 ]] ||
    bad "the check-in through a protocol-2 agent did not send its manifest whole: $(tail -n 1 "$STATS")"
[[ -n $(manifest_id "$T/srv/repo" t-ext4 4) ]] || bad "version 4 was not recorded"
finish
