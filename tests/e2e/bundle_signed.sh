#!/usr/bin/env bash
# A bundle carries its version's signature, and a client that trusts a key
# judges it as it judges a repository's version.  "office" has a key and
# signs desk@1 and desk@2; "plain" has none (desk@2 unsigned); "branch" and,
# over ssh://, "remote" each have a key of their own and hold desk@1.
#   - the bundle of a signed version holds version.sig and says signed; one of
#     an unsigned version does not;
#   - checkout FILE --trust office.pub equals the online export; --trust of
#     branch's key only is refused (exit 13), as is the unsigned bundle, and
#     a signature changed and resealed (bad); a byte flipped in version.sig
#     is refused naming it: each writes nothing, no OUT and no cache;
#   - bundle apply --trust office.pub refuses the unsigned bundle (exit 13)
#     and the repository is unchanged; the signed one is applied, and the
#     branch signs desk@2 with its own key, locally and over ssh://; a
#     [trust] key in the settings refuses as --trust does; without a trusted
#     key the unsigned one applies as before.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq cmp python3 sqlite3

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
export HOME=$T/home XDG_CONFIG_HOME=$T/xdg
mkdir -p "$T/srv" "$HOME" "$XDG_CONFIG_HOME"
sshd_start "$T/sshd" "$T/srv"

repo_motd_img first "$T/one.img" 300000
repo_motd_img second "$T/two.img" 300000

# newrepo NAME [key]: $T/srv/NAME holding desk@1 (one.img), signed with a key of its own with "key"
newrepo() {
    repo_init "$T/srv/$1"
    if [[ ${2:-} == key ]]; then
        vm_ok "$T/$1-key" key generate "$T/srv/$1"
        cp "$T/$1-key.out" "$T/$1.pub"
    fi
    vm_ok "$T/$1-imp1" import "$T/srv/$1" "$T/one.img" --name desk -q
}
fingerprint() { "$VMSYNC" key show "$1" 2>&1 >/dev/null | cut -d' ' -f1; }

O=$T/srv/office
newrepo office key
vm_ok "$T/office-imp2" import "$O" "$T/two.img" --name desk -q
vm_ok "$T/online" export "$O" desk -o "$T/online.img" -q
newrepo plain
vm_ok "$T/plain-imp2" import "$T/srv/plain" "$T/two.img" --name desk -q
newrepo branch key
trust_office=(--trust "$T/office.pub")

signed=$T/signed.vmsb unsigned=$T/unsigned.vmsb
vm_ok "$T/create" bundle create "$O" desk -o "$signed" --level 3
vm_ok "$T/create-plain" bundle create "$T/srv/plain" desk -o "$unsigned" --level 3

members() {
    python3 - "$1" <<'EOF'
import sys, tarfile
print(" ".join(m.name for m in tarfile.open(sys.argv[1])))
EOF
}
[[ $(members "$signed") == "vmsync-bundle version version.sig manifest objects-000001.zst end" ]] ||
    bad "the signed bundle's members: $(members "$signed")"
[[ $(members "$unsigned") == "vmsync-bundle version manifest objects-000001.zst end" ]] ||
    bad "the unsigned bundle's members: $(members "$unsigned")"
vm_ok "$T/show" bundle show "$signed" --json
[[ $(jget "$T/show.out" .signed) == true ]] || bad "show: the signed bundle is not signed: $(cat "$T/show.out")"
vm_ok "$T/show-plain" bundle show "$unsigned" --json
[[ $(jget "$T/show-plain.out" .signed) == false ]] || bad "show: the unsigned bundle says signed"

# The bundle's version is the catalog's: log reads its signature as the office's own.
vm_ok "$T/log" log "$signed" desk --json "${trust_office[@]}"
[[ $(jq -r '[.signature, .signer] | join(" ")' "$T/log.out") == "trusted $(fingerprint "$O")" ]] ||
    bad "log of the bundle: $(cat "$T/log.out")"

# The air-gapped laptop: the bundle alone, checked against the office's key.
mkdir -p "$T/ok"
vm_ok "$T/ok/co" checkout "$signed" desk -o "$T/ok/out.img" -q "${trust_office[@]}"
cmp "$T/ok/out.img" "$T/online.img" >/dev/null || bad "the trusted checkout of the bundle differs from the online export"

n=0
# refused CASE STATUS WORD BUNDLE ARGS...: checkout of BUNDLE into an empty
# folder with its own cache exits STATUS with one error line naming BUNDLE
# and WORD, and writes nothing.
refused() {
    local case=$1 status=$2 word=$3 file=$4 d=$T/case-$n why
    n=$((n + 1))
    shift 4
    mkdir -p "$d/out"
    VMSYNC_CACHE=$d/cache vm "$d/co" checkout "$file" desk -o "$d/out/out.img" -q "$@"
    ((VM_RC == status)) || bad "$case: exit $VM_RC, expected $status: $(head -c 300 "$d/co.err")"
    why=$(one_error_line "$d/co" "$(basename "$file")" "$word") || bad "$case: $why"
    [[ -z $(ls -A "$d/out") ]] || bad "$case: refused, but wrote $(ls -A "$d/out" | tr '\n' ' ')"
    [[ -z $(find "$d/cache" -type f 2>/dev/null) ]] || bad "$case: refused, but wrote to its cache"
    info "$case: $(head -c 200 "$d/co.err")"
}

# craft KIND OUT: a changed copy of the signed bundle.  flip: a byte of
# version.sig's signature, the seals left as they were; forge: the same
# byte, and the trailer's seal of version.sig and its own hash made anew,
# as someone who rewrites a bundle would.
craft() {
    python3 - "$signed" "$@" <<'EOF'
import hashlib, io, sys, tarfile
src, kind, out = sys.argv[1:4]
t = tarfile.open(src)
ms = t.getmembers()
data = {m.name: bytearray(t.extractfile(m).read()) for m in ms}
old_seal = hashlib.sha256(data['version.sig']).digest()
data['version.sig'][8 + 32 + 20] ^= 0x01       # magic, signer, then the signature
if kind == 'forge':
    end = data['end']
    at = end.index(old_seal)
    end[at:at + 32] = hashlib.sha256(data['version.sig']).digest()
    end[-32:] = hashlib.sha256(end[:-32]).digest()
with tarfile.open(out, 'w', format=tarfile.PAX_FORMAT) as o:
    for m in ms:
        i = tarfile.TarInfo(m.name)
        i.size, i.mode = len(data[m.name]), 0o644
        o.addfile(i, io.BytesIO(bytes(data[m.name])))
EOF
}
craft flip "$T/flipped.vmsb" || fail "cannot craft the flipped bundle"
craft forge "$T/forged.vmsb" || fail "cannot craft the forged bundle"

refused "another key trusted" 13 "not a trusted key" "$signed" --trust "$T/branch.pub"
refused "an unsigned bundle" 13 unsigned "$unsigned" "${trust_office[@]}"
refused "a signature byte flipped" 5 "member version.sig was changed" "$T/flipped.vmsb" "${trust_office[@]}"
refused "a signature byte flipped, no key" 5 "member version.sig was changed" "$T/flipped.vmsb"
refused "a signature forged" 13 "bad signature" "$T/forged.vmsb" "${trust_office[@]}"
vm_expect "$T/verify-forged" 13 verify "$T/forged.vmsb" desk "$T/online.img" "${trust_office[@]}"
# without a trusted key, the unsigned bundle checks out as before
vm_ok "$T/co-plain" checkout "$unsigned" desk -o "$T/plain.img" -q

# snapshot REPO: what apply may change
snapshot() {
    sqlite3 "$1/catalog.db" "select count(*) from versions; select count(*) from audit;"
    (cd "$1" && find packs manifests -type f -printf '%p %s\n' | sort)
}

# applied WHERE URL REPO OPTS...: apply refuses the unsigned bundle with
# office's key trusted, REPO unchanged; takes the signed one; and REPO signs
# desk@2 with its own key.
applied() {
    local where=$1 url=$2 repo=$3 before why
    shift 3
    before=$(snapshot "$repo")
    vm_expect "$T/$where-apply-plain" 13 bundle apply "$url" "$unsigned" "${trust_office[@]}" "$@"
    why=$(one_error_line "$T/$where-apply-plain" unsigned.vmsb unsigned) || bad "$where: apply: $why"
    [[ $(snapshot "$repo") == "$before" ]] || bad "$where: a refused apply changed the repository"
    vm_expect "$T/$where-apply-other" 13 bundle apply "$url" "$signed" --trust "$T/branch.pub" "$@"
    [[ $(snapshot "$repo") == "$before" ]] || bad "$where: a refused apply changed the repository"

    vm_ok "$T/$where-apply" bundle apply "$url" "$signed" --json "${trust_office[@]}" "$@"
    [[ $(jget "$T/$where-apply.out" .version) == 2 ]] || bad "$where: apply: $(cat "$T/$where-apply.out")"
    vm_ok "$T/$where-log" log "$url" desk --json --trust "$T/$where.pub" "$@"
    [[ $(jq -r 'select(.version == 2) | [.signature, .signer] | join(" ")' "$T/$where-log.out") == \
        "trusted $(fingerprint "$repo")" ]] ||
        bad "$where: the applied desk@2 is not signed by the branch's key: $(cat "$T/$where-log.out")"
    vm_ok "$T/$where-export" export "$url" desk@2 -o "$T/$where.img" -q --trust "$T/$where.pub" "$@"
    cmp "$T/$where.img" "$T/online.img" >/dev/null || bad "$where: the applied desk@2 differs from the office's"
}
applied branch "$T/srv/branch" "$T/srv/branch"

sshopts=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")
newrepo remote key
applied remote "$SSHD_URL_BASE/remote" "$T/srv/remote" "${sshopts[@]}"

# A bundle made over ssh:// carries the signature as well.
vm_ok "$T/create-ssh" bundle create "$SSHD_URL_BASE/office" desk -o "$T/ssh.vmsb" --level 3 "${sshopts[@]}"
[[ $(members "$T/ssh.vmsb") == "$(members "$signed")" ]] || bad "the bundle made over ssh:// has other members"
vm_ok "$T/co-ssh" checkout "$T/ssh.vmsb" desk -o "$T/ssh.img" -q "${trust_office[@]}"

# The settings' [trust] keys count for apply as --trust does.
newrepo set
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[trust]\nkey = %s\n' "$T/office.pub" >"$XDG_CONFIG_HOME/vmsync/config"
vm_expect "$T/set-apply" 13 bundle apply "$T/srv/set" "$unsigned"
[[ $(repo_nversions "$T/srv/set" desk) == 1 ]] || bad "apply refused by the settings' key recorded a version"
rm "$XDG_CONFIG_HOME/vmsync/config"

# Without a trusted key the unsigned bundle applies, as it always did.
newrepo open
vm_ok "$T/open-apply" bundle apply "$T/srv/open" "$unsigned" --json
[[ $(jget "$T/open-apply.out" .version) == 2 ]] || bad "apply without --trust: $(cat "$T/open-apply.out")"
finish
