#!/usr/bin/env bash
# One client handle, one SSH connection.  tests/tools/one_client, a client
# built with only the public headers, lists an image's versions, asks who
# holds it, checks it out and asks again, all on one handle; vmsync diff of two versions fetches both manifests on
# one handle.  The relay in front of sshd counts the connections.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
need_vmsync
need_cmd mke2fs jq cmp
ONE_CLIENT=$BUILD/tools/one_client
[[ -x $ONE_CLIENT ]] || fail "missing $ONE_CLIENT (make all builds it)"

export VMSYNC_HOST=laptop-one
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
vm_ok "$T/imp1" import "$T/srv/repo" "$timg" --name t -q
vm_ok "$T/imp2" import "$T/srv/repo" "$simg" --name t -q
vm_ok "$T/ref" export "$T/srv/repo" t -o "$T/ref.img" -q --cache "$T/cache-ref"

relay_start
url="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
VMSYNC_CACHE=$T/cache "$ONE_CLIENT" "$url" t "$T/out.img" --seed "$timg" \
    --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY" >"$T/one.json" 2>"$T/one.err" ||
    fail "one_client failed: $(head -c 300 "$T/one.err")"
relay_stop
n=$(relay_connections)
((n == 1)) || bad "one handle for log, lease queries and checkout made $n SSH connections, not 1"
[[ $(jq -r .versions "$T/one.json") == 2 ]] || bad "one_client saw $(jq -r .versions "$T/one.json") versions, not 2"
[[ $(jq -r .holder "$T/one.json") == tester@laptop-one ]] ||
    bad "after the checkout the lease query named '$(jq -r .holder "$T/one.json")', not tester@laptop-one"
cmp -s "$T/out.img" "$T/ref.img" || bad "the checkout on the shared handle differs from an export"
(($(jq -r .bytes_from_seeds "$T/one.json") > 0)) || bad "the checkout on the shared handle used no seed"

relay_start
url="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
vm_ok "$T/diff" diff "$url" t@1 t@2 --known-hosts "$T/kh-relay" -i "$SSH_CLIENT_KEY"
relay_stop
n=$(relay_connections)
((n == 1)) || bad "diff of two versions made $n SSH connections, not 1"
[[ -s $T/diff.out ]] || bad "diff of two different versions printed nothing"
finish
