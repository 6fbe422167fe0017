#!/usr/bin/env bash
# On a narrow link (tests/lib/relay.py at 16 Mbit/s) a 4 MiB segment takes
# two seconds, and the bar must not wait for it whole: a checkout's fetch
# and a check-in's send over ssh:// each report their bytes many times per
# segment (--progress=json, five lines a second at most), their figures
# never go back, and the last one is the phase's total.  The same holds for
# a checkout over https:// (nginx behind the relay), whose ranges of up to
# 4 MiB arrive four at a time.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/nginx.sh"
need_vmsync
need_cmd mke2fs jq nginx openssl

export VMSYNC_HOST=narrow VMSYNC_CACHE=$T/cache
random_tree() {
    mkdir -p "$1/data"
    for i in $(seq 16); do head -c $((1 << 20)) /dev/urandom >"$1/data/f$i"; done
}
random_tree "$T/tree"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 32M >/dev/null 2>&1 || fail "mke2fs -d failed"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"
relay_start --rate 16000000
URL="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
SSH_OPTS=(-i "$SSH_CLIENT_KEY" --known-hosts "$T/kh-relay")

# check_moves ERR PHASE SEGMENTS: PHASE's lines in ERR count more distinct
# figures than three per segment, rise and end at their total
check_moves() {
    local figures
    figures=$(jq -sc --arg p "$2" '[.[] | select(.phase == $p)] |
        {distinct: (map(.done) | unique | length), rising: ([.[1:], .[:-1]] | transpose |
         all(.[0].done >= .[1].done)), whole: (last | .done == .total)}' "$1")
    info "$2 over $3 segments: $figures"
    (($3 > 0)) || bad "$2: no segment went over the link"
    (($(jq .distinct <<<"$figures") > 3 * $3)) || bad "$2: the figures move once a segment or so: $figures"
    [[ $(jq .rising <<<"$figures") == true ]] || bad "$2: a figure went back: $figures"
    [[ $(jq .whole <<<"$figures") == true ]] || bad "$2: the last figure is not the total: $figures"
}

vm_ok "$T/co" checkout "$URL" desk -o "$T/w.img" --progress=json --stats-json "$T/co.json" "${SSH_OPTS[@]}"
check_moves "$T/co.err" fetch "$(jq .segments_fetched "$T/co.json")"

random_tree "$T/tree2"
mke2fs -q -F -t ext4 -d "$T/tree2" "$T/w.img" 32M >/dev/null 2>&1 || fail "mke2fs -d of the new tree failed"
vm_ok "$T/ci" checkin "$URL" desk "$T/w.img" --progress=json --stats-json "$T/ci.json" "${SSH_OPTS[@]}"
check_moves "$T/ci.err" send "$(jq '[.segments_at_level[]] | add' "$T/ci.json")"
relay_stop

mkdir -p "$T/www"
vm_ok "$T/pub" publish "$T/srv/repo" "$T/www/repo" -q
nginx_start "$T/www"
repo_bg python3 "$TESTS_LIB/relay.py" --listen 0 --port-file "$T/web-relay.port" \
    --to "127.0.0.1:$NGINX_HTTPS" --rate 16000000
for _ in $(seq 400); do [[ -s $T/web-relay.port ]] && break; sleep 0.05; done
[[ -s $T/web-relay.port ]] || fail "the relay in front of nginx did not start"
CURL_CA_BUNDLE=$NGINX_CA VMSYNC_CACHE=$T/cache-web vm_ok "$T/web" checkout \
    "https://127.0.0.1:$(cat "$T/web-relay.port")/repo" desk -o "$T/web.img" --progress=json \
    --stats-json "$T/web.json"
check_moves "$T/web.err" fetch "$(jq '(.bytes_fetched_compressed + 4194303) / 4194304 | floor' "$T/web.json")"
nginx_stop
finish
