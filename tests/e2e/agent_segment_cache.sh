#!/usr/bin/env bash
# The agent's segment cache and level controller, from its --stats-file lines:
#   - a client at --compress-level 12 on a cold cache compresses every
#     segment at 12 or above;
#   - a second client at --compress-level 10, then one at the store's level,
#     take every segment from the cache (compressed at 12 serves 10 and less)
#     and compress nothing;
#   - a second client with no --compress-level on a narrow link (a relay),
#     whose controller climbs above the cached level, still takes every
#     segment from the cache and compresses nothing;
#   - a damaged cache file is not served: that segment is compressed again,
#     and the image is still right;
#   - on loopback with a cold cache and no --compress-level, the agent stays
#     at pass-through: every segment as stored, level range 9 to 9, nothing
#     compressed;
#   - the client's --stats-json names the range of levels it received.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs jq cmp python3

AGENT_STATS=$T/agent-stats.jsonl
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
URL=$SSHD_URL_BASE/repo

# 40 files of 1 MiB of words (compressible, distinct): about ten segments
mkdir -p "$T/tree"
python3 - "$T/tree" <<'PY'
import random, sys
rnd = random.Random(7)
words = ["".join(rnd.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rnd.randint(2, 9)))
         for _ in range(5000)]
for i in range(40):
    out, n = [], 0
    while n < 1 << 20:
        w = rnd.choice(words)
        out.append(w)
        n += len(w) + 1
    with open("%s/doc-%02d.txt" % (sys.argv[1], i), "w") as fh:
        fh.write(" ".join(out)[: 1 << 20])
PY
mke2fs -q -t ext4 -F -d "$T/tree" "$T/t.img" 64M || fail "mke2fs failed"
vm_ok "$T/imp" import "$T/srv/repo" "$T/t.img" --name t -q
vm_ok "$T/local" export "$T/srv/repo" t -o "$T/local.img" -q --cache "$T/cache-local"
CACHE_DIR=$T/srv/repo/cache/segments

# export_one N [--url URL --known-hosts FILE] OPTIONS...: one export over ssh;
# its agent's stats line in $T/stats-N.json
export_one() {
    local n=$1 url=$URL kh=$SSH_KNOWN_HOSTS
    shift
    if [[ ${1:-} == --url ]]; then
        url=$2 kh=$4
        shift 4
    fi
    vm_ok "$T/exp-$n" export "$url" t -o "$T/out-$n.img" -q --cache "$T/cache-$n" \
        --stats-json "$T/client-$n.json" "$@" --known-hosts "$kh" -i "$SSH_CLIENT_KEY"
    cmp -s "$T/out-$n.img" "$T/local.img" || bad "export $n differs from the local export"
    rm -f "$T/out-$n.img"
    tail -n 1 "$AGENT_STATS" >"$T/stats-$n.json"
    info "export $n: $(jq -c '{segments, segments_cached, segments_stored, segments_compressed,
        level_min, level_max, segments_at_level, recompressed, link_rate}' "$T/stats-$n.json")"
}
field() { jq -r ".$2" "$T/stats-$1.json"; }

info "a cold cache at --compress-level 12"
export_one 1 --compress-level 12
segs=$(field 1 segments)
((segs >= 8)) || bad "the agent sent $segs segments, expected about ten"
[[ $(field 1 segments_compressed) == "$segs" ]] || bad "the first export compressed $(field 1 segments_compressed) of $segs segments"
(($(field 1 level_min) >= 12)) || bad "the first export went below the level asked: $(field 1 level_min)"
jq -e '.recompressed == 1' "$T/stats-1.json" >/dev/null || bad "recompressed: $(field 1 recompressed), expected 1"
ls "$CACHE_DIR"/*.seg >/dev/null 2>&1 || bad "nothing cached in $CACHE_DIR"
(($(jq -r .level_min "$T/client-1.json") >= 12)) ||
    bad "the client saw levels from $(jq -r .level_min "$T/client-1.json"), expected 12 or more"
[[ $(jq -r '.segments_at_level | add' "$T/client-1.json") == "$segs" ]] ||
    bad "the client counted $(jq -c .segments_at_level "$T/client-1.json") segments by level, expected $segs"

for lv in 10 3; do
    info "a second client at --compress-level $lv: all from the cache"
    export_one "$lv" --compress-level "$lv"
    [[ $(field "$lv" segments_cached) == "$segs" ]] ||
        bad "level $lv: $(field "$lv" segments_cached) of $segs segments came from the cache"
    [[ $(field "$lv" segments_compressed) == 0 ]] || bad "level $lv compressed $(field "$lv" segments_compressed) segments"
    jq -e '.recompressed == 0' "$T/stats-$lv.json" >/dev/null || bad "level $lv: recompressed $(field "$lv" recompressed)"
    (($(field "$lv" level_min) >= 12)) || bad "level $lv was sent below the cached level: $(field "$lv" level_min)"
done

info "a second client on a narrow link, adaptive: all from the cache, whatever level its link picks"
relay_start --rate "${SEGCACHE_NARROW_RATE:-4000000}" --delay-ms 10
export_one narrow --url "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo" --known-hosts "$T/kh-relay"
relay_stop
[[ $(field narrow segments_cached) == "$segs" ]] ||
    bad "narrow link: $(field narrow segments_cached) of $segs segments came from the cache"
jq -e '.segments_compressed == 0 and .recompressed == 0' "$T/stats-narrow.json" >/dev/null ||
    bad "narrow link: compressed $(field narrow segments_compressed) segments again ($(field narrow recompressed) of the bytes)"

info "a damaged cache file is not served"
victim=$(ls "$CACHE_DIR"/*.seg | head -n 1)
# flip the byte's bits: setting it to a fixed value leaves it unchanged when
# it already held that value, one run in 256 with the tree's random data
python3 -c 'import os, sys
with open(sys.argv[1], "r+b") as f:
    f.seek(os.path.getsize(sys.argv[1]) - 100); b = f.read(1); f.seek(-1, 1); f.write(bytes([b[0] ^ 0xff]))' "$victim"
export_one 4 --compress-level 12
[[ $(field 4 segments_compressed) == 1 ]] ||
    bad "after damaging one cache file the agent compressed $(field 4 segments_compressed) segments, expected 1"
[[ $(field 4 segments_cached) == $((segs - 1)) ]] || bad "cached: $(field 4 segments_cached), expected $((segs - 1))"

info "loopback, cold cache, adaptive level: pass-through"
rm -rf "$CACHE_DIR"
export_one 5
[[ $(field 5 segments_stored) == "$segs" ]] || bad "only $(field 5 segments_stored) of $segs segments went as stored"
[[ $(field 5 segments_compressed) == 0 ]] || bad "loopback compressed $(field 5 segments_compressed) segments"
[[ $(field 5 level_min)-$(field 5 level_max) == 9-9 ]] ||
    bad "loopback's levels ranged $(field 5 level_min) to $(field 5 level_max), expected 9 to 9"
[[ $(jq -c .segments_at_level "$T/client-5.json") == "{\"9\":$segs}" ]] ||
    bad "the client saw $(jq -c .segments_at_level "$T/client-5.json"), expected {\"9\":$segs}"
finish
