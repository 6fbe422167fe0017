#!/usr/bin/env bash
# Trust anchors: --trust KEYFILE and [trust] in the settings file.  The
# repository "office" holds desk@1 (imported before its key: unsigned) and
# desk@2 (signed); "branch" has a key of its own.  Locally and over ssh://:
#   - with office's key trusted, desk@2 checks out and exports (its digest the
#     version's); desk@1, or desk@2 trusted under branch's key only, is refused
#     with exit 13 naming why, and nothing is written: no OUT, no
#     OUT.vmsync-part, no lease, no audit entry;
#   - without a trusted key desk@1 checks out as before;
#   - a signature with one byte flipped in the catalog (sqlite3) is refused as
#     bad; log and verify say "BAD SIGNATURE" / "bad" for it;
#   - verify shows the signature, and refuses an unsigned version when a key is
#     trusted;
#   - vmsync check reports that signature, and a signature record of the
#     wrong shape, as problems of kind signature, which do not stop gc;
#   - the settings' [trust] keys count as --trust does, for the command line;
#   - a trust file that holds no key is refused (exit 4) naming it.
# And the last link of the chain: with a key trusted, a cached manifest that
# is not the signed one is fetched again, and the checkout is right.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs sqlite3 jq

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
export HOME=$T/home XDG_CONFIG_HOME=$T/xdg
mkdir -p "$T/srv" "$HOME" "$XDG_CONFIG_HOME/vmsync"
sshd_start "$T/sshd" "$T/srv"

repo_motd_img first "$T/one.img"
repo_motd_img second "$T/two.img"

repo_init "$T/srv/branch"
vm_ok "$T/bkey" key generate "$T/srv/branch"
cp "$T/bkey.out" "$T/branch.pub"

audits() { sqlite3 "$1/catalog.db" "select count(*) from audit where action in ('checkout', 'export')"; }

# refused PREFIX REPO OUT WORD ARGS...: vmsync ARGS exits 13 naming WORD, and
# writes nothing: no OUT, no lease, no audit entry
refused() {
    local p=$1 repo=$2 out=$3 word=$4 before
    shift 4
    before=$(audits "$repo")
    vm "$p" "$@"
    refused_clean "$p" "$repo" "$out" "$word" "$before"
}

refused_clean() { # PREFIX REPO OUT WORD AUDITS_BEFORE
    local p=$1 repo=$2 out=$3 word=$4 before=$5
    ((VM_RC == 13)) || bad "${p##*/}: exit $VM_RC, expected 13: $(head -c 300 "$p.err")"
    grep -qi -- "$word" "$p.err" || bad "${p##*/}: the error does not say '$word': $(cat "$p.err")"
    [[ ! -e $out && ! -e $out.vmsync-part ]] || bad "${p##*/}: refused, but wrote $out"
    [[ $(sqlite3 "$repo/catalog.db" "select count(*) from leases") == 0 ]] || bad "${p##*/}: refused, but took a lease"
    [[ $(audits "$repo") == "$before" ]] || bad "${p##*/}: refused, but audited a checkout"
}

run() { # WHERE
    local where=$1 p
    repo_for "$where"
    p=$T/$where
    local -a c=("${opts[@]}")
    vm_ok "$p-imp1" import "$R" "$T/one.img" --name desk -q
    vm_ok "$p-key" key generate "$R"
    cp "$p-key.out" "$T/$where-office.pub"
    vm_ok "$p-imp2" import "$R" "$T/two.img" --name desk -q
    local office=(--trust "$T/$where-office.pub")

    refused "$p-unsigned" "$R" "$p-1.img" unsigned checkout "$url" desk@1 -o "$p-1.img" -q \
        "${office[@]}" "${c[@]}"
    refused "$p-exp-unsigned" "$R" "$p-1.img" unsigned export "$url" desk@1 -o "$p-1.img" -q \
        "${office[@]}" "${c[@]}"
    refused "$p-other" "$R" "$p-2.img" "not a trusted key" checkout "$url" desk@2 -o "$p-2.img" -q \
        --trust "$T/branch.pub" "${c[@]}"

    vm_ok "$p-exp2" export "$url" desk@2 -o "$p-2.img" -q "${office[@]}" --trust "$T/branch.pub" "${c[@]}"
    [[ $(repo_digest "$p-2.img") == "$(repo_version_digest "$R" desk 2)" ]] ||
        bad "$where: the trusted export of desk@2 does not have the version's digest"
    vm_ok "$p-co1" export "$url" desk@1 -o "$p-1.img" -q "${c[@]}"

    vm_ok "$p-ver2" verify "$url" desk "$p-2.img" "${office[@]}" "${c[@]}"
    grep -q "desk@2 signed by SHA256:.* (trusted)" "$p-ver2.out" || bad "$where: verify: $(cat "$p-ver2.out")"
    vm_ok "$p-ver2u" verify "$url" desk "$p-2.img" "${c[@]}"
    grep -q "desk@2 signed by SHA256:.* (not trusted)" "$p-ver2u.out" || bad "$where: verify without --trust: $(cat "$p-ver2u.out")"
    vm_ok "$p-ver1" verify "$url" desk@1 "$p-1.img" "${c[@]}"
    grep -q "desk@1 unsigned" "$p-ver1.out" || bad "$where: verify of desk@1: $(cat "$p-ver1.out")"
    vm_expect "$p-ver1t" 13 verify "$url" desk@1 "$p-1.img" "${office[@]}" "${c[@]}"

    # one byte of desk@2's signature flipped
    python3 - "$R/catalog.db" <<'PY' || fail "could not flip a byte of the signature"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
sig = bytearray(db.execute("select signature from versions where number = 2").fetchone()[0])
sig[10] ^= 0x01
db.execute("update versions set signature = ? where number = 2", (bytes(sig),))
db.commit()
PY
    refused "$p-bad" "$R" "$p-bad.img" "bad signature" checkout "$url" desk@2 -o "$p-bad.img" -q \
        "${office[@]}" "${c[@]}"
    vm_ok "$p-log" log "$url" desk --json "${office[@]}" "${c[@]}"
    [[ $(jq -r .signature "$p-log.out" | tr '\n' ,) == "unsigned,bad," ]] ||
        bad "$where: log --json --trust says $(jq -c '[.version, .signature]' "$p-log.out" | tr '\n' ' ')"
    vm_ok "$p-logt" log "$url" desk "${office[@]}" "${c[@]}"
    grep -q "^desk@2 .*(BAD SIGNATURE)$" "$p-logt.out" || bad "$where: log --trust: $(cat "$p-logt.out")"
    vm_expect "$p-verbad" 13 verify "$url" desk@2 "$p-2.img" "${office[@]}" "${c[@]}"
    if [[ $where == local ]]; then check_finds_it; fi
}

# vmsync check on the server finds the flipped signature, and a signature
# record of the wrong shape; gc goes on all the same
check_finds_it() {
    vm_expect "$T/check-bad" 5 check "$R" --json
    [[ $(jq -r '.problems[] | select(.kind == "signature") | "\(.image)@\(.version)"' "$T/check-bad.out") == desk@2 ]] ||
        bad "check does not report desk@2's signature: $(head -c 600 "$T/check-bad.out")"
    sqlite3 "$R/catalog.db" "update versions set signer = x'00' where number = 1"
    vm_expect "$T/check-shape" 5 check "$R"
    grep -q "signature: desk@1.*not a 64-byte signature" "$T/check-shape.out" ||
        bad "check does not report desk@1's signature record: $(head -c 600 "$T/check-shape.out")"
    vm_ok "$T/gc-bad" gc "$R"
}
run local
run ssh

info "the settings' [trust] keys"
repo_for settings
vm_ok "$T/s-imp1" import "$R" "$T/one.img" --name desk -q
vm_ok "$T/s-key" key generate "$R"
cp "$T/s-key.out" "$T/settings.pub"
vm_ok "$T/s-imp2" import "$R" "$T/two.img" --name desk -q
printf '[trust]\nkey = %s\n' "$T/settings.pub" >"$XDG_CONFIG_HOME/vmsync/config"
refused "$T/s-unsigned" "$R" "$T/s-1.img" unsigned checkout "$R" desk@1 -o "$T/s-1.img" -q
vm_ok "$T/s-log" log "$R" desk --json
[[ $(jq -r .signature "$T/s-log.out" | tr '\n' ,) == "unsigned,trusted," ]] ||
    bad "log with [trust] says $(jq -c .signature "$T/s-log.out" | tr '\n' ' ')"

info "the last link: a cached manifest that is not the signed one"
vm_ok "$T/s-co2" checkout "$R" desk@2 -o "$T/s-2.img" -q
id=$(sqlite3 "$R/catalog.db" "select lower(hex(manifest)) from versions where number = 2")
cached=$VMSYNC_CACHE/manifests/$id.vmsm
[[ -f $cached ]] || fail "no cached manifest at $cached"
cp "$R/manifests/$(sqlite3 "$R/catalog.db" "select lower(hex(manifest)) from versions where number = 1").vmsm" "$cached"
vm_ok "$T/s-exp2" export "$R" desk@2 -o "$T/s-2b.img" -q
cmp -s "$T/s-2.img" "$T/s-2b.img" || bad "the export with a swapped cached manifest differs"
[[ $(sha256sum "$cached" | cut -d' ' -f1) == "$id" ]] || bad "the swapped cached manifest was not fetched again"
rm -f "$XDG_CONFIG_HOME/vmsync/config"

info "a trust file with no key"
echo "# nothing" >"$T/empty.pub"
vm_expect "$T/nokey" 4 log "$R" --trust "$T/empty.pub"
grep -q "$T/empty.pub" "$T/nokey.err" || bad "the error does not name the trust file: $(cat "$T/nokey.err")"
vm_expect "$T/import-trust" 2 import "$R" "$T/one.img" --name x --trust "$T/settings.pub"
finish
