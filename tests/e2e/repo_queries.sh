#!/usr/bin/env bash
# vmsync images, leases, release and audit, text and --json, on a local
# repository and over ssh://.  On the server's side the repository gets "web"
# (imported from a file whose name holds a newline, in a directory) and
# "caf\xe9" (a name that is not UTF-8, which only an older vmsync could
# import: the test renames it in the catalog), checked out by another host whose name
# holds a newline.  The client (host laptop) checks web out, then:
#   - images and leases show both leases with their holders, names quoted in
#     text and lossless in JSON (image_bytes, "lab\nbox");
#   - release of the other host's lease is refused (exit 8) naming the holder;
#     the holder's release says so and the lease is gone; a second one says
#     there is none (exit 0); an unknown image is exit 9;
#   - audit lists import, import, checkout, checkout, release oldest first;
#     NAME and --since (Unix seconds and ISO, at the boundary) filter it; a bad
#     --since is exit 2;
#   - over ssh:// the answers hold no server path (the import's detail keeps
#     its file name only), and a --read-only key may query but not release;
#   - log shows a message with a newline, over ssh:// too.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs sqlite3 jq

export VMSYNC_CACHE=$T/cache
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv"
printf 'command="%s --root %s --user reader --read-only",no-port-forwarding,no-pty %s\n' \
    "$VMSYNC_AGENT" "$T/srv" "$(ssh-keygen -q -t ed25519 -N '' -f "$T/reader_key" </dev/null &&
        cat "$T/reader_key.pub")" >>"$SSHD_DIR/authorized_keys"

mkdir -p "$T/tree/etc" "$T/images"
echo "queries" >"$T/tree/etc/motd"
NL=$'new\nline.img'
mke2fs -q -F -t ext4 -d "$T/tree" "$T/images/$NL" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
CAFE=$'caf\xe9'
OTHER=$'lab\nbox'

# json_is PREFIX FILTER WANT: jq -r FILTER of PREFIX.out is WANT
json_is() {
    local got
    got=$(jq -r "$2" "$1.out" 2>&1) || got="(not JSON: $(head -c 200 "$1.out"))"
    [[ $got == "$3" ]] || bad "${1##*/}: $2 is '$got', expected '$3'"
}

# has PREFIX TEXT: stdout holds TEXT
has() { grep -qF -- "$2" "$1.out" || bad "${1##*/}: no '$2' in: $(head -c 400 "$1.out")"; }

run() { # WHERE
    local where=$1 p me
    repo_for "$where"
    p=$T/$where
    if [[ $where == local ]]; then me=$(id -un); else me=tester; fi
    local -a c=("${opts[@]}")

    # the server's own work, on the directory itself
    VMSYNC_HOST=srv vm_ok "$p-imp1" import "$R" "$T/images/$NL" --name web -m $'two\nlines' -q
    # import refuses such a name now; one that an older vmsync stored stays
    # readable, so it is made by renaming in the catalog
    VMSYNC_HOST=srv vm_ok "$p-imp2" import "$R" "$T/images/$NL" --name cafe -q
    sqlite3 "$R/catalog.db" "update images set name = cast(x'636166e9' as text) where name = 'cafe';
        update audit set image = cast(x'636166e9' as text) where image = 'cafe'" ||
        fail "cannot rename cafe in $R/catalog.db"
    VMSYNC_HOST=$OTHER vm_ok "$p-co1" checkout "$R" "$CAFE" -o "$T/$where-other.img" -q
    # the client's
    VMSYNC_HOST=laptop vm_ok "$p-co2" checkout "$url" web -o "$T/$where-web.img" -q "${c[@]}"

    VMSYNC_HOST=laptop vm_ok "$p-images" images "$url" "${c[@]}"
    has "$p-images" "\"caf\\351\"@1  4.0 MiB  "
    has "$p-images" "lease: $(id -un)@\"lab\\nbox\" since "
    has "$p-images" "web@1  4.0 MiB  "
    has "$p-images" "lease: $me@laptop since "
    vm_ok "$p-images-json" images "$url" --json "${c[@]}"
    json_is "$p-images-json" '.images | map(.image) | join(",")' $'caf\ufffd,web'
    json_is "$p-images-json" '.images[0].image_bytes' 636166e9
    json_is "$p-images-json" '.images[0].lease.host' "$OTHER"
    json_is "$p-images-json" '.images[1] | "\(.latest) \(.size) \(.lease.user)@\(.lease.host) \(.lease.version)"' \
        "1 4194304 $me@laptop 1"

    vm_ok "$p-log" log "$url" web --json "${c[@]}" # a message is text too
    json_is "$p-log" '.message' $'two\nlines'

    vm_ok "$p-leases" leases "$url" "${c[@]}"
    [[ $(grep -c . "$p-leases.out") == 2 ]] || bad "$where: leases: $(cat "$p-leases.out")"
    has "$p-leases" "web@1  $me@laptop  since "
    vm_ok "$p-leases-json" leases "$url" --json "${c[@]}"
    json_is "$p-leases-json" '.leases | map("\(.image)@\(.version) \(.user)@\(.host)") | join(",")' \
        $'caf\ufffd'"@1 $(id -un)@$OTHER,web@1 $me@laptop"
    vm_ok "$p-leases-web" leases "$url" web --json "${c[@]}"
    json_is "$p-leases-web" '.leases | length' 1

    # release: another host's lease is refused, naming its holder
    VMSYNC_HOST=laptop vm_expect "$p-rel-other" 8 release "$url" "$CAFE" "${c[@]}"
    one_error_line "$p-rel-other" 'lab\nbox' 'checked out by' || bad "$where: release refused: $(cat "$p-rel-other.err")"
    VMSYNC_HOST=laptop vm_ok "$p-rel" release "$url" web --json "${c[@]}"
    json_is "$p-rel" '"\(.image) \(.released)"' "web true"
    VMSYNC_HOST=laptop vm_ok "$p-rel2" release "$url" web "${c[@]}"
    has "$p-rel2" "web: no lease to release"
    VMSYNC_HOST=laptop vm_expect "$p-rel3" 9 release "$url" nosuch "${c[@]}"
    vm_ok "$p-leases2" leases "$url" --json "${c[@]}"
    json_is "$p-leases2" '.leases | map(.image) | join(",")' $'caf\ufffd'

    vm_ok "$p-audit" audit "$url" --json "${c[@]}"
    json_is "$p-audit" '.entries | map(.action) | join(",")' "import,import,checkout,checkout,release"
    json_is "$p-audit" '.entries[2].host' "$OTHER"
    json_is "$p-audit" '.entries[4] | "\(.user)@\(.host) \(.image)@\(.version) \(.detail)"' \
        "$me@laptop web@1 lease given back"
    json_is "$p-audit" '[.entries[].at] | . == sort' true
    vm_ok "$p-audit-text" audit "$url" "${c[@]}"
    [[ $(grep -c . "$p-audit-text.out") == 5 ]] || bad "$where: audit text: $(cat "$p-audit-text.out")"
    has "$p-audit-text" "@srv  import  \"caf\\351\"@1  "
    has "$p-audit-text" "  $(id -un)@\"lab\\nbox\"  checkout  \"caf\\351\"@1"
    if [[ $where == ssh ]]; then
        json_is "$p-audit" '.entries[0].detail' "$NL"
        ! grep -qF "$T" "$p-audit.out" "$p-audit-text.out" "$p-images-json.out" ||
            bad "ssh: an answer shows a server path: $(grep -hF "$T" "$p-audit.out" | head -c 300)"
    else
        json_is "$p-audit" '.entries[0].detail' "$T/images/$NL"
    fi

    vm_ok "$p-audit-web" audit "$url" web --json "${c[@]}"
    json_is "$p-audit-web" '.entries | map(.action) | join(",")' "import,checkout,release"
    sqlite3 "$R/catalog.db" "UPDATE audit SET at = 1000 WHERE id = (SELECT MIN(id) FROM audit)"
    vm_ok "$p-since" audit "$url" --since 1001 --json "${c[@]}"
    json_is "$p-since" '.entries | length' 4
    vm_ok "$p-since-iso" audit "$url" --since 1970-01-01T00:16:40Z --json "${c[@]}"
    json_is "$p-since-iso" '.entries | length' 5
    vm_ok "$p-since-date" audit "$url" web --since 1970-01-02 --json "${c[@]}"
    json_is "$p-since-date" '.entries | map(.action) | join(",")' "checkout,release"
    vm_expect "$p-since-bad" 2 audit "$url" --since yesterday "${c[@]}"
    [[ ! -s $p-since-bad.out ]] || bad "$where: a bad --since printed: $(head -c 200 "$p-since-bad.out")"
}

run local
run ssh

# a --read-only key reads everything and gives nothing back
ro=(-i "$T/reader_key" --known-hosts "$SSH_KNOWN_HOSTS")
vm_ok "$T/ro-images" images "$url" --json "${ro[@]}"
json_is "$T/ro-images" '.images | length' 2
vm_ok "$T/ro-audit" audit "$url" "$CAFE" --json "${ro[@]}"
json_is "$T/ro-audit" '.entries | length' 2
vm_ok "$T/ro-leases" leases "$url" "${ro[@]}"
VMSYNC_HOST=laptop vm_expect "$T/ro-release" 12 release "$url" "$CAFE" "${ro[@]}"
vm_ok "$T/ro-leases2" leases "$url" --json "${ro[@]}"
json_is "$T/ro-leases2" '.leases | length' 1

finish
