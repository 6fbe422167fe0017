#!/usr/bin/env bash
# vmsync forget and prune over ssh:// (the agent's FORGET, docs/protocol.md),
# through the real sshd, and keys that may not take away.  Image "desk" gets
# four versions on the server; the client (host laptop) checks out desk@2:
#   - forget of desk@4 (the latest) and of desk@2 (leased) are refused, exit
#     8, naming why; desk@9 is exit 9;
#   - forget -n changes nothing on the server (catalog dump before and after);
#     forget desk@1 removes it, and the audit log names the agent's user;
#   - prune --keep-last 1 -n names desk@3 and forgets nothing; prune
#     --keep-last 1 forgets desk@3, keeping desk@2 as leased;
#   - crafted requests: LEASE_TAKE of other@99 by an --append-only key, FORGET
#     of desk@0 and of the forgotten desk@3, are each NOTFOUND naming the
#     version; check still passes and the audit log has no false forget;
#   - a key whose agent runs with --append-only may import, check out and
#     release, but forget, forget -n and prune are refused (exit 12) naming
#     --append-only, and the catalog is unchanged; a --read-only key's forget
#     is exit 12 too; gc -n over ssh:// is refused (exit 2: it runs on the
#     server);
#   - stats over ssh:// (the agent's STATS), through the --append-only key,
#     says what stats on the server's directory says, and a --read-only key
#     may ask too.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs sqlite3 jq

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv"
add_key() { # NAME OPTION
    ssh-keygen -q -t ed25519 -N '' -f "$T/$1_key" </dev/null
    printf 'command="%s --root %s --user %s %s",no-port-forwarding,no-pty %s\n' \
        "$VMSYNC_AGENT" "$T/srv" "$1" "$2" "$(cat "$T/$1_key.pub")" >>"$SSHD_DIR/authorized_keys"
}
add_key adder --append-only
add_key reader --read-only
repo_for desk
c=("${opts[@]}")
ao=(-i "$T/adder_key" --known-hosts "$SSH_KNOWN_HOSTS")
ro=(-i "$T/reader_key" --known-hosts "$SSH_KNOWN_HOSTS")
dump() { sqlite3 "$R/catalog.db" .dump; }

for i in 1 2 3 4; do
    repo_motd_img "desk-$i" "$T/desk$i.img"
    vm_ok "$T/imp$i" import "$url" "$T/desk$i.img" --name desk "${c[@]}"
done
vm_ok "$T/co" checkout "$url" desk@2 -o "$T/co.img" "${c[@]}"

vm_expect "$T/latest" 8 forget "$url" desk@4 "${c[@]}" &&
    { grep -q "latest" "$T/latest.err" || bad "forget of the latest: $(cat "$T/latest.err")"; }
vm_expect "$T/leased" 8 forget "$url" desk@2 "${c[@]}" &&
    { grep -q "checked out by .*laptop" "$T/leased.err" || bad "forget of a leased version: $(cat "$T/leased.err")"; }
grep -q "$T/srv" "$T/leased.err" && bad "the agent's refusal shows its root: $(cat "$T/leased.err")"
vm_expect "$T/none" 9 forget "$url" desk@9 "${c[@]}"

before=$(dump)
vm_ok "$T/fdry" forget "$url" desk@1 -n "${c[@]}"
grep -q "desk@1: would be forgotten" "$T/fdry.out" || bad "forget -n says: $(cat "$T/fdry.out")"
[[ $(dump) == "$before" ]] || bad "forget -n over ssh:// changed the catalog"
vm_ok "$T/forget" forget "$url" desk@1 "${c[@]}"
vm_ok "$T/audit" audit "$R" desk --json
jq -e '.entries[-1] | .action == "forget" and .version == 1' "$T/audit.out" >/dev/null ||
    bad "no forget in the audit log: $(jq -c '.entries[-1]' "$T/audit.out")"

before=$(dump)
vm_ok "$T/pdry" prune "$url" --keep-last 1 -n "${c[@]}"
grep -q "^desk@3 .*would be forgotten" "$T/pdry.out" || bad "prune -n says: $(cat "$T/pdry.out")"
[[ $(dump) == "$before" ]] || bad "prune -n over ssh:// changed the catalog"
vm_ok "$T/prune" prune "$url" --keep-last 1 "${c[@]}"
grep -q "^desk@2 .*kept: leased" "$T/prune.out" || bad "prune does not keep the leased desk@2: $(cat "$T/prune.out")"
[[ $(sqlite3 "$R/catalog.db" "select group_concat(number) from versions") == "2,4" ]] ||
    bad "after prune the server holds versions $(sqlite3 "$R/catalog.db" "select group_concat(number) from versions")"

# keys that may not take away
vm_ok "$T/ao-imp" import "$url" "$T/desk1.img" --name other "${ao[@]}"
vm_ok "$T/ao-imp2" import "$url" "$T/desk2.img" --name other "${ao[@]}"
vm_ok "$T/ao-co" checkout "$url" other -o "$T/ao.img" "${ao[@]}"
vm_ok "$T/ao-rel" release "$url" other "${ao[@]}"
# crafted requests (tests/lib/agentwire.py): a lease of a version that is not
# there (of the image no one holds now), from an --append-only key, and forgets of desk@0 and of the forgotten
# desk@3, are each NOTFOUND; the catalog stays one that check passes
py - "$VMSYNC_AGENT" "$T/srv" "${R#"$T/srv/"}" >"$T/crafted.out" 2>&1 <<'EOF' || bad "crafted requests: $(cat "$T/crafted.out")"
import sys
from agentwire import *
agent, root, path = sys.argv[1:]
FORGET = 21
asks = [('lease other@99', ['--append-only'], LEASE_TAKE, put_str('other') + put_varint(99) + b'\0'),
        ('forget desk@0', [], FORGET, put_str('desk') + put_varint(0) + b'\0'),
        ('forget desk@3', [], FORGET, put_str('desk') + put_varint(3) + b'\0')]
fails = 0
for name, extra, kind, payload in asks:
    s = Session([agent, '--root', root, '--user', 'u'] + extra, host='laptop')
    s.open(path)
    got, body = s.ask(kind, payload)
    s.close()
    if got != ERROR or error(body)[0] != 10 or name.split()[1] not in error(body)[1]:
        print('FAIL: %s: %r %r' % (name, got, error(body) if got == ERROR else body)); fails += 1
sys.exit(1 if fails else 0)
EOF
vm_ok "$T/check" check "$R"
[[ $(sqlite3 "$R/catalog.db" "select count(*) from audit where action = 'forget' and version in (0, 3)") == 1 ]] ||
    bad "the audit log tells of a forget that did not happen"

before=$(dump)
for args in "forget $url other@1" "forget $url other@1 -n" "prune $url --keep-last 1"; do
    read -ra a <<<"$args"
    if vm_expect "$T/ao-deny" 12 "${a[@]}" "${ao[@]}"; then
        grep -q -- "--append-only" "$T/ao-deny.err" || bad "$args: the refusal does not name --append-only: $(cat "$T/ao-deny.err")"
    fi
done
[[ $(dump) == "$before" ]] || bad "an --append-only key changed the catalog"
vm_expect "$T/ro-deny" 12 forget "$url" other@1 "${ro[@]}" &&
    { grep -q -- "--read-only" "$T/ro-deny.err" || bad "read-only forget: $(cat "$T/ro-deny.err")"; }
vm_expect "$T/gc" 2 gc "$url" -n "${c[@]}"
vm_ok "$T/stats" stats "$url" --json "${ao[@]}"
vm_ok "$T/stats-local" stats "$R" --json
[[ $(jq -S . "$T/stats.out") == "$(jq -S . "$T/stats-local.out")" && $(jq .versions "$T/stats.out") == 4 ]] ||
    bad "stats over ssh:// (an --append-only key) differs from stats on the server: $(cat "$T/stats.out")"
vm_ok "$T/stats-ro" stats "$url" "${ro[@]}"
grep -q "^  other  2 versions" "$T/stats-ro.out" || bad "stats over a --read-only key: $(cat "$T/stats-ro.out")"
finish
