#!/usr/bin/env bash
# A repository published as a static tree (vmsync publish) and checked out
# through a real nginx on 127.0.0.1:
#   - https:// with a seed equals the local checkout byte for byte, and nginx
#     serves about what the local checkout fetched, far less than the image;
#   - publishing again after a third version adds files and changes none
#     (inode, mtime and bytes), but the top-level index;
#   - through tests/lib/relay.py cutting the connection twice, the checkout
#     resumes its ranges and completes, equal again;
#   - plain http:// is refused without a trusted key, and taken with one;
#   - a check-in is refused: the tree is read-only;
#   - hostile trees: a truncated index, an object whose bytes do not match, a
#     pack index with a huge size field, an unsigned version with a trusted
#     key: each a clear error naming the file or version, and no OUT.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/nginx.sh"
need_vmsync
need_cmd mke2fs jq cmp python3 nginx openssl curl flock

export VMSYNC_HOST=laptop-web HOME=$T/home XDG_CONFIG_HOME=$T/xdg
mkdir -p "$HOME" "$XDG_CONFIG_HOME" "$T/www"

seed=$(repo_img s ext4) || fail "cannot build S"
timg=$(repo_img t ext4) || fail "cannot build T"
R=$T/srv/office
mkdir -p "$T/srv"
repo_init "$R"
vm_ok "$T/key" key generate "$R"
cp "$T/key.out" "$T/office.pub"
vm_ok "$T/imp1" import "$R" "$seed" --name desk -q
vm_ok "$T/imp2" import "$R" "$timg" --name desk -q
W=$T/www/office
vm_ok "$T/pub1" publish "$R" "$W" --json
[[ $(jget "$T/pub1.out" .versions) == 2 && $(jget "$T/pub1.out" .packs_written) == 1 ]] ||
    bad "the first publish: $(cat "$T/pub1.out")"

nginx_start "$T/www"
export CURL_CA_BUNDLE=$NGINX_CA
url=https://127.0.0.1:$NGINX_HTTPS/office
trust=(--trust "$T/office.pub")

info "checkout over https with a seed equals the local checkout"
VMSYNC_CACHE=$T/cache-local vm_ok "$T/co-local" checkout "$R" desk -o "$T/local.img" --seed "$seed" \
    -q --stats-json "$T/local.json"
nginx_bytes_reset
VMSYNC_CACHE=$T/cache-web vm_ok "$T/co-web" checkout "$url" desk -o "$T/web.img" --seed "$seed" -q \
    --stats-json "$T/web.json" "${trust[@]}"
cmp "$T/web.img" "$T/local.img" >/dev/null || bad "the https checkout differs from the local one"
served=$(nginx_bytes)
fetched=$(repo_stat "$T/local.json" bytes_fetched_compressed)
image=$(stat -c %s "$timg")
info "nginx served $served bytes; the local checkout fetched $fetched; the image is $image"
((fetched > 0)) || bad "the local checkout fetched nothing: the seed test proves nothing"
((served <= fetched * 13 / 10 + (1 << 20))) || bad "nginx served $served bytes for $fetched fetched"
((served < image / 4)) || bad "nginx served $served bytes, a quarter of the image or more"
[[ $(repo_stat "$T/web.json" bytes_fetched_compressed) == "$fetched" ]] ||
    bad "the web checkout fetched $(repo_stat "$T/web.json" bytes_fetched_compressed), the local $fetched"

info "republishing after a third version adds files and changes none"
snapshot() { (cd "$W" && find . -type f ! -name vmsync-web ! -path './.vmsync-tmp/*' -printf '%p %i %T@ %s\n' | sort); }
sums() { (cd "$W" && find . -type f ! -name vmsync-web ! -path './.vmsync-tmp/*' -exec sha256sum {} + | sort); }
snapshot >"$T/before.list"
sums >"$T/before.sums"
vm_ok "$T/pub-again" publish "$R" "$W" --json
[[ $(jget "$T/pub-again.out" .packs_written) == 0 && $(jget "$T/pub-again.out" .manifests_written) == 0 ]] ||
    bad "publishing with nothing new wrote: $(cat "$T/pub-again.out")"
# one publish at a time: held by another, refused with nothing written
flock "$W/.vmsync-tmp/lock" "$VMSYNC" publish "$R" "$W" -q 2>"$T/pub-locked.err" && bad "a publish ran beside another" ||
    [[ $? == 8 ]] || bad "a publish beside another: $(cat "$T/pub-locked.err")"
grep -q "another vmsync publish" "$T/pub-locked.err" || bad "the refused publish says: $(cat "$T/pub-locked.err")"
echo stale >"$W/.vmsync-tmp/pack-crashed"
repo_motd_img third "$T/three.img" 300000
vm_ok "$T/imp3" import "$R" "$T/three.img" --name desk -q
vm_ok "$T/pub3" publish "$R" "$W" --json
[[ $(jget "$T/pub3.out" .versions) == 3 && $(jget "$T/pub3.out" .packs_written) == 1 &&
    $(jget "$T/pub3.out" .manifests_written) == 1 ]] || bad "the third publish: $(cat "$T/pub3.out")"
[[ ! -e $W/.vmsync-tmp/pack-crashed ]] || bad "the temporary a crashed publish left is still there"
snapshot >"$T/after.list"
sums >"$T/after.sums"
[[ -z $(comm -23 "$T/before.list" "$T/after.list") ]] ||
    bad "files changed by the republish: $(comm -23 "$T/before.list" "$T/after.list" | head -3 | tr '\n' '|')"
[[ -z $(comm -23 "$T/before.sums" "$T/after.sums") ]] || bad "bytes changed by the republish"
(($(wc -l <"$T/after.list") == $(wc -l <"$T/before.list") + 3)) ||
    bad "the republish added $(($(wc -l <"$T/after.list") - $(wc -l <"$T/before.list"))) files, not a manifest, a pack and its index"
VMSYNC_CACHE=$T/cache-web vm_ok "$T/co-three" checkout "$url" desk -o "$T/three-web.img" -q "${trust[@]}"
VMSYNC_CACHE=$T/cache-local vm_ok "$T/ex-three" export "$R" desk -o "$T/three-local.img" -q
cmp "$T/three-web.img" "$T/three-local.img" >/dev/null || bad "desk@3 over https differs from the export"

info "log, images and verify read the tree"
vm_ok "$T/log" log "$url" desk --json "${trust[@]}"
[[ $(jq -s -r '[.[] | "\(.version):\(.signature)"] | join(" ")' "$T/log.out") == "1:trusted 2:trusted 3:trusted" ]] ||
    bad "log over https: $(cat "$T/log.out")"
vm_ok "$T/images" images "$url" --json
[[ $(jq -r '[.images[] | "\(.image)@\(.latest)"] | join(" ")' "$T/images.out") == desk@3 ]] ||
    bad "images over https: $(cat "$T/images.out")"
VMSYNC_CACHE=$T/cache-web vm_ok "$T/verify" verify "$url" desk@2 "$T/web.img" -q
VMSYNC_CACHE=$T/cache-export vm_ok "$T/export" export "$url" desk@2 -o "$T/export.img" -q "${trust[@]}"
cmp "$T/export.img" "$T/local.img" >/dev/null || bad "the export over https differs from the local checkout"

info "a relay that cuts the connection twice: the checkout resumes"
rm -f "$T/relay.port"
repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/relay.port" \
    --to "127.0.0.1:$NGINX_HTTPS" --stats "$T/relay.json" --cut-after 4000000 --cut-count 2
relay_pid=$REPO_BG_PID
for _ in $(seq 100); do [[ -s $T/relay.port ]] && break; sleep 0.05; done
relay=https://127.0.0.1:$(cat "$T/relay.port")/office
VMSYNC_CACHE=$T/cache-relay vm_ok "$T/co-relay" checkout "$relay" desk@2 -o "$T/relay.img" -q \
    --stats-json "$T/relay-stats.json" "${trust[@]}"
cmp "$T/relay.img" "$T/local.img" >/dev/null || bad "the resumed checkout differs from the local one"
kill "$relay_pid" 2>/dev/null && wait "$relay_pid" 2>/dev/null || true
conns=$(jq -r .connections "$T/relay.json")
((conns >= 3)) || bad "the relay carried $conns connections: were any cut?"
# Resumed, not restarted: what the relay carried down is what the client kept
# (its bodies, wire_in) and TLS's few bytes; a range asked again from its
# start would have carried its lost part twice.
down=$(jq -r .bytes_down "$T/relay.json") kept=$(repo_stat "$T/relay-stats.json" wire_in)
info "the relay carried $down bytes down; the client kept $kept"
((down <= kept * 101 / 100 + 262144)) || bad "the relay carried $down bytes for $kept kept: not resumed?"

info "plain http:// needs a trusted key"
plain=http://127.0.0.1:$NGINX_HTTP/office
VMSYNC_CACHE=$T/cache-http vm_expect "$T/http-nokey" 2 checkout "$plain" desk -o "$T/http.img" -q &&
    { err=$(one_error_line "$T/http-nokey" "$plain" "trusted") || bad "http:// without a key: $err"; }
[[ ! -e $T/http.img ]] || bad "http:// without a key wrote OUT"
VMSYNC_CACHE=$T/cache-http vm_ok "$T/http-key" checkout "$plain" desk@2 -o "$T/http.img" -q "${trust[@]}"
cmp "$T/http.img" "$T/local.img" >/dev/null || bad "the http:// checkout differs"

info "the tree is read-only"
vm_expect "$T/checkin" 2 checkin "$url" desk "$T/web.img" -q &&
    { err=$(one_error_line "$T/checkin" "$url" "read-only (check in through ssh://)") || bad "checkin: $err"; }

info "hostile trees"
# hostile NAME: a copy of the published tree, served as /NAME
hostile() { cp -a "$W" "$T/www/$1"; }
# co_refused NAME STATUS WHAT [trust]: the checkout fails with STATUS, one line naming WHAT
co_refused() {
    local name=$1 status=$2 what=$3
    shift 3
    rm -rf "$T/cache-$name"
    VMSYNC_CACHE=$T/cache-$name vm_expect "$T/h-$name" "$status" checkout \
        "https://127.0.0.1:$NGINX_HTTPS/$name" desk@2 -o "$T/h-$name.img" -q "$@" || return 0
    err=$(one_error_line "$T/h-$name" "$what") || bad "$name: $err"
    [[ ! -e $T/h-$name.img ]] || bad "$name: OUT was written"
}
hostile truncated
truncate -s -20 "$T/www/truncated/vmsync-web"
co_refused truncated 5 "truncated/vmsync-web" "${trust[@]}"

hostile badobject
pack=$(ls -S "$T/www/badobject/packs/"*.pack | head -1) # desk@2 is in the big one
python3 - "$pack" <<'PY'
import sys
p = sys.argv[1]
b = bytearray(open(p, "rb").read())
for i in range(len(b) // 4, len(b), len(b) // 16):
    b[i] ^= 0x5a
open(p, "wb").write(b)
PY
co_refused badobject 5 "$(basename "$pack")" "${trust[@]}"

hostile hugesize
python3 - "$T/www/hugesize" <<'PY'
import glob, hashlib, os, sys
d = sys.argv[1]
idx = max(glob.glob(d + "/packs/*.idx"), key=os.path.getsize)
b = bytearray(open(idx, "rb").read())
old = hashlib.sha256(b).digest()
rec = 8 + 8 + 1024            # the first record
b[rec + 40:rec + 44] = (0xfffffff0).to_bytes(4, "little")
b[-32:] = hashlib.sha256(b[:-32]).digest()
open(idx, "wb").write(b)
top = d + "/vmsync-web"
t = bytearray(open(top, "rb").read())
assert t.count(old) == 1
t = t[:-32].replace(old, hashlib.sha256(b).digest())
t += hashlib.sha256(t).digest()
open(top, "wb").write(t)
PY
co_refused hugesize 4 ".idx" "${trust[@]}"

repo_init "$T/srv/plain"
vm_ok "$T/plain-imp" import "$T/srv/plain" "$seed" --name desk -q
vm_ok "$T/plain-imp2" import "$T/srv/plain" "$timg" --name desk -q
vm_ok "$T/plain-pub" publish "$T/srv/plain" "$T/www/unsigned" -q
co_refused unsigned 13 "unsigned" "${trust[@]}"

nginx_stop
finish
