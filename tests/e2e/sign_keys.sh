#!/usr/bin/env bash
# vmsync key generate|show on a local repository:
#   - generate writes REPO/signing-key, mode 0600, and prints the key line
#     (stdout) and its fingerprint (stderr); show prints the same line again;
#   - the fingerprint is the SHA-256 of the key's 32 bytes (computed here by
#     python from the line), written as OpenSSH writes one;
#   - a second generate is refused (exit 8) and keeps the key; --force
#     replaces it (a new fingerprint);
#   - --json holds the line, the fingerprint and the comment (the folder);
#   - show on a repository without a key is exit 9; over ssh:// generate is
#     refused before connecting (exit 2), the key being made on the server,
#     and show prints what the agent sends: the same line and fingerprint,
#     the comment the URL's last part, no key exit 9 without the server's root;
#   - no temporary key file is left in REPO/tmp.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd jq python3

R=$T/office
repo_init "$R"

vm_expect "$T/none" 9 key show "$R"
one_error_line "$T/none" "$R" "no signing key" || bad "$(one_error_line "$T/none" "$R" "no signing key")"

vm_ok "$T/gen" key generate "$R"
[[ -f $R/signing-key ]] || fail "no $R/signing-key after key generate"
mode=$(stat -c %a "$R/signing-key")
[[ $mode == 600 ]] || bad "signing-key has mode $mode, expected 600"
grep -q 'BEGIN PRIVATE KEY' "$R/signing-key" || bad "signing-key is not a PEM private key"
line=$(cat "$T/gen.out")
[[ $line =~ ^vmsync-ed25519\ [A-Za-z0-9+/]{43}=\ office$ ]] || bad "key line: '$line'"

want_fp=$(python3 - "$line" <<'PY'
import base64, hashlib, sys
key = base64.b64decode(sys.argv[1].split()[1])
assert len(key) == 32
print("SHA256:" + base64.b64encode(hashlib.sha256(key).digest()).decode().rstrip("="))
PY
)
[[ $(cat "$T/gen.err") == "$want_fp office" ]] || bad "generate's stderr: '$(cat "$T/gen.err")', expected '$want_fp office'"

vm_ok "$T/show" key show "$R"
[[ $(cat "$T/show.out") == "$line" ]] || bad "show printed '$(cat "$T/show.out")', generate '$line'"
[[ $(cat "$T/show.err") == "$want_fp office" ]] || bad "show's stderr: '$(cat "$T/show.err")'"

vm_ok "$T/json" key show "$R" --json
json_ok "$T/json.out" || bad "show --json is not JSON: $(head -c 200 "$T/json.out")"
[[ $(jget "$T/json.out" .key) == "$line" ]] || bad "--json key: $(jget "$T/json.out" .key)"
[[ $(jget "$T/json.out" .fingerprint) == "$want_fp" ]] || bad "--json fingerprint: $(jget "$T/json.out" .fingerprint)"
[[ $(jget "$T/json.out" .comment) == office ]] || bad "--json comment: $(jget "$T/json.out" .comment)"
[[ ! -s $T/json.err ]] || bad "show --json wrote to stderr: $(cat "$T/json.err")"

cp "$R/signing-key" "$T/key.before"
vm_expect "$T/again" 8 key generate "$R"
one_error_line "$T/again" "$R" "--force" || bad "$(one_error_line "$T/again" "$R" "--force")"
cmp -s "$R/signing-key" "$T/key.before" || bad "a refused generate changed the key"
vm_expect "$T/force-show" 2 key show "$R" --force

vm_ok "$T/force" key generate "$R" --force
[[ $(cat "$T/force.out") != "$line" ]] || bad "--force kept the same key"
vm_ok "$T/show2" key show "$R"
[[ $(cat "$T/show2.out") == "$(cat "$T/force.out")" ]] || bad "show after --force is not the new key"
[[ $(stat -c %a "$R/signing-key") == 600 ]] || bad "the replaced key's mode is not 600"
left=$(find "$R/tmp" -name 'key-*' | head -1)
[[ -z $left ]] || bad "a temporary key file is left: $left"

vm_expect "$T/remote-gen" 2 key generate ssh://nobody@127.0.0.1:1/office
one_error_line "$T/remote-gen" "ssh://" "stays on the server" ||
    bad "$(one_error_line "$T/remote-gen" "ssh://" "stays on the server")"

info "key show over ssh://: the agent sends the public half"
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv"
repo_init "$T/srv/branch"
ssh_opts=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY")
vm_expect "$T/r-none" 9 key show "$SSHD_URL_BASE/branch" "${ssh_opts[@]}"
grep -q "no signing key" "$T/r-none.err" || bad "over ssh://, no key: $(cat "$T/r-none.err")"
grep -qF "$T/srv" "$T/r-none.err" && bad "the agent's error shows its root: $(cat "$T/r-none.err")"
vm_ok "$T/r-gen" key generate "$T/srv/branch"
vm_ok "$T/r-show" key show "$SSHD_URL_BASE/branch" "${ssh_opts[@]}"
[[ $(cat "$T/r-show.out") == "$(cat "$T/r-gen.out")" ]] ||
    bad "key show over ssh:// printed '$(cat "$T/r-show.out")', the server's key is '$(cat "$T/r-gen.out")'"
[[ $(cat "$T/r-show.err") == "$(cat "$T/r-gen.err")" ]] || bad "over ssh://, the fingerprint: $(cat "$T/r-show.err")"
vm_ok "$T/r-json" key show "$SSHD_URL_BASE/branch" --json "${ssh_opts[@]}"
[[ $(jget "$T/r-json.out" .comment) == branch ]] || bad "over ssh://, the comment: $(cat "$T/r-json.out")"
vm_expect "$T/r-gen2" 2 key generate "$SSHD_URL_BASE/branch" "${ssh_opts[@]}"
finish
