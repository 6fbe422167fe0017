#!/usr/bin/env bash
# What keeps a prefetch, which runs unasked, useful and harmless:
#   - the repository's URL written another way (its user left out, a trailing
#     slash) names the same prefetch: a checkout through one after a
#     prefetch through the other fetches nothing;
#   - a prefetch that would leave less than a tenth of the cache's
#     filesystem free refuses before it writes (exit 6, one error line that
#     names the cache's directory and the figures), and leaves no partial
#     image; with room made, it runs.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq

export VMSYNC_HOST=laptop-guard VMSYNC_CACHE=$T/cache
mkdir -p "$T/tree/data" "$T/srv"
for i in $(seq 16); do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 32M >/dev/null 2>&1 || fail "mke2fs -d failed"
repo_init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"
keys=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")

info "one repository, two spellings, one prefetch"
vm_ok "$T/pf" prefetch "ssh://$SSHD_USER@127.0.0.1:$SSHD_PORT/repo/" desk "${keys[@]}"
vm_ok "$T/co" checkout "ssh://127.0.0.1:$SSHD_PORT/repo" desk -o "$T/out.img" \
    --stats-json "$T/co.json" -q "${keys[@]}"
[[ $(repo_stat "$T/co.json" bytes_fetched_raw) == 0 ]] ||
    bad "the checkout through the other spelling fetched $(repo_stat "$T/co.json" bytes_fetched_raw) bytes"

info "a prefetch does not fill the disk"
mkdir -p "$T/small"
mount -t tmpfs -o size=40m tmpfs "$T/small" || fail "cannot mount a tmpfs"
export VMSYNC_CACHE=$T/small/cache
head -c $((20 << 20)) /dev/zero >"$T/small/filler"
vm_expect "$T/full" 6 prefetch "$T/srv/repo" desk
why=$(one_error_line "$T/full" "$T/small/cache/prefetch" "leaves 10% of the disk free") || bad "$why"
info "refused: $(cat "$T/full.err")"
left=$(find "$T/small/cache/prefetch" -name '*.img*' ! -name '*.lock' 2>/dev/null)
[[ -z $left ]] || bad "the refused prefetch left files: $left"
rm "$T/small/filler"
vm_ok "$T/room" prefetch "$T/srv/repo" desk --stats-json "$T/room.json"
(($(repo_stat "$T/room.json" bytes_fetched_raw) > 16 << 20)) || bad "with room made, the prefetch fetched too little"
finish
