#!/usr/bin/env bash
# Versions are signed where they are recorded, locally and over ssh:// (where
# the agent holds the key and signs).  For each of local and ssh:
#   - an import before the repository has a key stays unsigned (NULL in the
#     catalog);
#   - after vmsync key generate on the repository's folder, an import and a
#     check-in are signed: the catalog's signer is the SHA-256 of the key that
#     key show prints, and the signature verifies with openssl (not vmsync)
#     over the message docs/signing.md defines, rebuilt here by python from
#     the catalog's own fields;
#   - log, text and --json, shows each version's signature state and signer
#     at the client (over ssh:// in the VERSION_INFO replies).
# And an old catalog (schema 1, no signature columns) is brought to schema 2
# when it is opened, its versions unsigned, the next one signed.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs sqlite3 openssl python3 jq

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv"

repo_motd_img first "$T/one.img"
repo_motd_img second "$T/two.img"
repo_motd_img third "$T/three.img"

sql() { sqlite3 "$1/catalog.db" "$2"; }

# signed_ok REPO NAME VERSION: the row's signature verifies with openssl
# under REPO's key, over the message rebuilt from the row.
signed_ok() {
    local repo=$1 name=$2 n=$3 row d=$T/check-$RANDOM
    mkdir -p "$d"
    row=$(sql "$repo" "select hex(v.manifest), hex(v.digest), v.parent, hex(v.signature),
        hex(v.signer) from versions v join images i on i.id = v.image_id
        where i.name = '$name' and v.number = $n")
    IFS='|' read -r man dig parent sig signer <<<"$row"
    [[ ${#sig} == 128 && ${#signer} == 64 ]] || { bad "$name@$n is not signed: '$row'"; return; }
    python3 - "$name" "$n" "$parent" "$man" "$dig" "$sig" "$d" <<'PY'
import struct, sys
name, n, parent, man, dig, sig, d = sys.argv[1:]
msg = b"vmsync signed version 1\n" + struct.pack("<H", len(name.encode())) + name.encode()
msg += struct.pack("<II", int(n), int(parent)) + bytes.fromhex(man) + bytes.fromhex(dig)
open(d + "/msg", "wb").write(msg)
open(d + "/sig", "wb").write(bytes.fromhex(sig))
PY
    openssl pkey -in "$repo/signing-key" -pubout -out "$d/pub.pem" 2>/dev/null || fail "openssl pkey failed"
    openssl pkeyutl -verify -pubin -inkey "$d/pub.pem" -rawin -in "$d/msg" -sigfile "$d/sig" \
        >/dev/null 2>&1 || bad "$name@$n: openssl does not verify the signature"
    [[ ${signer,,} == "$(key_sha256 "$repo")" ]] ||
        bad "$name@$n: signer $signer is not the SHA-256 of the key that key show prints"
}

key_sha256() { # REPO: the hex SHA-256 of the key show line's 32 bytes
    "$VMSYNC" key show "$1" 2>/dev/null | python3 -c '
import base64, hashlib, sys
print(hashlib.sha256(base64.b64decode(sys.stdin.read().split()[1])).hexdigest())'
}

run() { # WHERE
    local where=$1
    repo_for "$where"
    local -a c=("${opts[@]}")
    vm_ok "$T/$where-imp1" import "$url" "$T/one.img" --name desk -q "${c[@]}"
    [[ $(sql "$R" "select count(*) from versions where signature is null and signer is null") == 1 ]] ||
        bad "$where: a version imported before the key exists is not unsigned"
    vm_ok "$T/$where-key" key generate "$R"
    vm_ok "$T/$where-imp2" import "$url" "$T/two.img" --name desk -q "${c[@]}"
    signed_ok "$R" desk 2
    vm_ok "$T/$where-co" checkout "$url" desk -o "$T/$where-desk.img" -q "${c[@]}"
    vm_ok "$T/$where-ci" checkin "$url" desk "$T/three.img" -m "signed check-in" -q "${c[@]}"
    signed_ok "$R" desk 3
    [[ $(sql "$R" "select count(*) from versions where signature is null") == 1 ]] ||
        bad "$where: the unsigned first version changed"
    log_shows "$where" "$url" "${c[@]}"
}

# log_shows WHERE URL OPTS...: log (text and --json) carries each version's
# signature to the client: 1 unsigned, 2 and 3 by the key, not trusted.
log_shows() {
    local where=$1 url=$2 fp got
    shift 2
    fp=$("$VMSYNC" key show "$R" 2>&1 >/dev/null | cut -d' ' -f1)
    vm_ok "$T/$where-logj" log "$url" desk --json "$@"
    got=$(jq -r '[.version, .signature, (.signer // "none")] | join(" ")' "$T/$where-logj.out" | tr '\n' ,)
    [[ $got == "1 unsigned none,2 untrusted $fp,3 untrusted $fp," ]] ||
        bad "$where: log --json says '$got' (key $fp)"
    vm_ok "$T/$where-log" log "$url" desk "$@"
    grep -q '^desk@1 .*  unsigned$' "$T/$where-log.out" || bad "$where: log does not say desk@1 is unsigned"
    [[ $(grep -cF "  signed by $fp (not trusted)" "$T/$where-log.out") == 2 ]] ||
        bad "$where: log does not show two versions signed by $fp: $(head -c 600 "$T/$where-log.out")"
}
run local
run ssh

# an old catalog: schema 1 had no signature columns
O=$T/old
repo_init "$O"
vm_ok "$T/old-imp" import "$O" "$T/one.img" --name desk -q
sql "$O" "alter table versions drop column signature; alter table versions drop column signer;
    update meta set value = '1' where key = 'schema'"
[[ $(sql "$O" "select count(*) from pragma_table_info('versions') where name = 'signature'") == 0 ]] ||
    fail "could not make a schema 1 catalog"
vm_ok "$T/old-log" log "$O" desk --json
[[ $(jq -r .version "$T/old-log.out") == 1 ]] || bad "log of a migrated catalog: $(cat "$T/old-log.out")"
[[ $(sql "$O" "select value from meta where key = 'schema'") == 2 ]] || bad "the old catalog was not migrated to schema 2"
vm_ok "$T/old-key" key generate "$O"
vm_ok "$T/old-imp2" import "$O" "$T/two.img" --name desk -q
signed_ok "$O" desk 2
[[ $(sql "$O" "select count(*) from versions where signature is null") == 1 ]] ||
    bad "the migrated version 1 is not unsigned"
vm_ok "$T/old-check" check "$O"
finish
