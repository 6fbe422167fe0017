#!/usr/bin/env bash
# A branch reflector: vmsync-agent --upstream in front of the real agent,
# with the upstream link behind tests/lib/relay.py, which counts its bytes.
# One sshd serves both: its client key runs the upstream agent, a second key
# runs the reflector, whose upstream URL goes through the relay.
#   - 8 laptops (own caches, the same seed) export the same version at once
#     through the reflector: every image equals a direct export, and the
#     upstream link carried about one direct export's bytes (< 1.3 x);
#   - a later session (a new process: the reflector restarted) fetches
#     nothing upstream;
#   - a checkout and a check-in through the reflector: the version lands
#     upstream, recorded as the laptop's user and host through the
#     reflector's key, its manifest sent upstream as a delta;
#   - with a smaller --cache-size the cache evicts down to it;
#   - an object damaged upstream is refused, and nothing bad is cached;
#   - with --trust, an unsigned version is refused.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs jq cmp

LAPTOPS=8
sshd_start "$T/sshd" "$T/srv" --stats-file "$T/upstream-stats.jsonl"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp" import "$T/srv/repo" "$timg" --name t -q
vm_ok "$T/ref" export "$T/srv/repo" t -o "$T/ref.img" -q --cache "$T/cache-ref"
relay_start
RCACHE=$T/rcache
step() { info "$* (at ${SECONDS}s)"; }

# reflector_key ARGS...: (re)writes the reflector's key line: the agent with
# --upstream through the relay, its cache in $RCACHE, and ARGS.
reflector_key() {
    sshd_reflector_key "$T/reflect_key" "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT" "$T/kh-relay" \
        "$RCACHE" laptopuser "$@"
}
reflector_key --stats-file "$T/reflector-stats.jsonl"
RURL=$SSHD_URL_BASE/repo
RKEYS=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$T/reflect_key")
down() { jq -r .bytes_down "$T/relay.json" 2>/dev/null || echo 0; }
cache_bytes() { find "$RCACHE/objects" "$RCACHE/manifests" -type f -printf '%s\n' | awk '{s += $1} END {print s + 0}'; }

step "one direct export over the relay, for comparison"
vm_ok "$T/direct" export "ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo" t -o "$T/direct.img" \
    --seed "$simg" -q --cache "$T/cache-direct" --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY"
cmp -s "$T/direct.img" "$T/ref.img" || bad "the direct export differs from a local one"
sleep 0.3 # the relay writes its figures as the connection ends
direct=$(down)
info "a direct export brought $direct bytes down the relay"
((direct > 1000000)) || fail "the direct export took only $direct bytes: no test"

step "$LAPTOPS laptops at once through the reflector"
pids=()
for i in $(seq "$LAPTOPS"); do
    VMSYNC_HOST=laptop-$i VMSYNC_CACHE=$T/cache-$i \
        timeout 300 "$VMSYNC" export "$RURL" t -o "$T/out-$i.img" --seed "$simg" -q "${RKEYS[@]}" \
        >"$T/lap-$i.out" 2>"$T/lap-$i.err" &
    pids+=($!)
done
for i in $(seq "$LAPTOPS"); do
    rc=0
    wait "${pids[$((i - 1))]}" || rc=$?
    if ((rc != 0)); then
        bad "laptop $i exited $rc: $(head -c 300 "$T/lap-$i.err")"
    elif ! cmp -s "$T/out-$i.img" "$T/ref.img"; then
        bad "laptop $i's image differs from a direct export"
    fi
    rm -f "$T/out-$i.img"
done
sleep 0.3
up=$(($(down) - direct))
info "upstream link for $LAPTOPS laptops: $up bytes (one direct export: $direct)"
((up * 10 < direct * 13)) || bad "the reflector's upstream link carried $up bytes, not < 1.3 x $direct"
((up * 10 > direct * 5)) || bad "the reflector's upstream link carried only $up bytes: did it fetch?"

step "a new session after the others ended: served from the cache"
before=$(down)
VMSYNC_HOST=laptop-9 vm_ok "$T/again" export "$RURL" t -o "$T/again.img" --seed "$simg" -q \
    --cache "$T/cache-9" "${RKEYS[@]}"
cmp -s "$T/again.img" "$T/ref.img" || bad "the export from the cache differs"
rm -f "$T/again.img"
sleep 0.3
again=$(($(down) - before))
info "an export from the cache cost $again bytes upstream"
((again * 20 < direct)) || bad "an export of a cached version cost $again bytes upstream (direct: $direct)"

step "a checkout and a check-in through the reflector"
VMSYNC_HOST=laptop-a vm_ok "$T/co" checkout "$RURL" t -o "$T/a.img" --seed "$simg" -q \
    --cache "$T/cache-a" "${RKEYS[@]}"
[[ $(repo_lease "$T/srv/repo" t) == *laptopuser@laptop-a* ]] ||
    bad "upstream's lease names '$(repo_lease "$T/srv/repo" t)', not tester's key as laptopuser@laptop-a"
cp "$simg" "$T/a.img"
VMSYNC_HOST=laptop-a vm_ok "$T/ci" checkin "$RURL" t "$T/a.img" -m "from the branch" -q \
    --cache "$T/cache-a" "${RKEYS[@]}"
[[ $(repo_nversions "$T/srv/repo" t) == 2 ]] || bad "the check-in through the reflector did not land upstream"
deltas=$(jq -s 'map(.manifests_delta) | add' "$T/upstream-stats.jsonl")
((deltas >= 1)) || bad "the check-in's manifest reached upstream whole, not as a delta"
vm_ok "$T/log" log "$T/srv/repo" t --json
tail -1 "$T/log.out" | jq -e '.user == "tester" and .host == "laptopuser@laptop-a"' >/dev/null ||
    bad "upstream recorded the check-in as $(tail -1 "$T/log.out" | jq -c '[.user, .host]')"
vm_ok "$T/ref2" export "$T/srv/repo" t@2 -o "$T/ref2.img" -q --cache "$T/cache-ref"

step "a smaller --cache-size evicts the least recently used"
limit=$(($(cache_bytes) * 3 / 4))
reflector_key --cache-size "$limit"
VMSYNC_HOST=laptop-b vm_ok "$T/v2" export "$RURL" t@2 -o "$T/v2.img" --seed "$timg" -q \
    --cache "$T/cache-b" "${RKEYS[@]}"
cmp -s "$T/v2.img" "$T/ref2.img" || bad "version 2 through the reflector differs"
held=$(cache_bytes)
info "cache: $held bytes with --cache-size $limit"
((held <= limit)) || bad "the cache holds $held bytes, over its --cache-size $limit"
((held > limit / 4)) || bad "the cache holds only $held bytes: it evicted everything"

step "an object damaged upstream is refused"
reflector_key
uimg=$T/u-src.img
repo_motd_img damaged "$uimg" 2000000 || fail "cannot build U"
vm_ok "$T/impu" import "$T/srv/repo" "$uimg" --name u -q
pack=$(ls -t "$T/srv/repo/packs/"* | head -1)
cp "$pack" "$T/pack.orig"
size=$(stat -c %s "$pack")
printf 'XXXXXXXXXXXXXXXX' | dd of="$pack" bs=1 seek=$((size / 2)) conv=notrunc status=none
VMSYNC_HOST=laptop-c vm "$T/bad" export "$RURL" u -o "$T/u.img" -q --cache "$T/cache-c" "${RKEYS[@]}"
((VM_RC != 0)) || bad "an export of a damaged object through the reflector succeeded"
grep -qiE 'corrupt|damaged' "$T/bad.err" || bad "the refusal does not say damaged: $(head -c 300 "$T/bad.err")"
! grep -q ":$RELAY_PORT/" "$T/bad.err" || bad "the refusal shows where upstream is: $(head -c 300 "$T/bad.err")"
cp "$T/pack.orig" "$pack"
VMSYNC_HOST=laptop-c vm_ok "$T/good" export "$RURL" u -o "$T/u.img" -q --cache "$T/cache-c" "${RKEYS[@]}"
vm_ok "$T/refu" export "$T/srv/repo" u -o "$T/refu.img" -q --cache "$T/cache-ref"
cmp -s "$T/u.img" "$T/refu.img" || bad "after the repair the reflector's export differs"
rm -f "$T/u.img" "$T/refu.img"

step "with --trust, an unsigned version is refused"
vm_ok "$T/keygen" key generate "$T/srv/repo"
vm_ok "$T/keyshow" key show "$T/srv/repo"
cp "$T/keyshow.out" "$T/office.pub"
reflector_key --trust "$T/office.pub"
VMSYNC_HOST=laptop-d vm "$T/untrusted" export "$RURL" t@1 -o "$T/d.img" -q --cache "$T/cache-d" "${RKEYS[@]}"
((VM_RC == 13)) || bad "an unsigned version through a trusting reflector exited $VM_RC, not 13"
repo_motd_img signed "$T/signed-src.img" 500000 || fail "cannot build the signed image"
vm_ok "$T/imp3" import "$T/srv/repo" "$T/signed-src.img" --name signed -q
vm_ok "$T/refs" export "$T/srv/repo" signed -o "$T/refs.img" -q --cache "$T/cache-ref"
VMSYNC_HOST=laptop-d vm_ok "$T/trusted" export "$RURL" signed -o "$T/d.img" -q --cache "$T/cache-d" "${RKEYS[@]}"
cmp -s "$T/d.img" "$T/refs.img" || bad "the signed version through the reflector differs"
finish
