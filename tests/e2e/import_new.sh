#!/usr/bin/env bash
# import --new: NAME must not exist yet.  On a local repository and over
# ssh://: the first import records version 1; a second is refused (exit 8,
# "already exists") and records nothing; without --new the same import adds
# version 2.  Two --new imports of one new name started together: exactly
# one wins, because the refusal is made in the step that records.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq

export VMSYNC_HOST=laptop-new VMSYNC_CACHE=$T/cache
mkdir -p "$T/tree" "$T/srv"
echo "new" >"$T/tree/motd"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
sshd_start "$T/sshd" "$T/srv"

versions() { # PREFIX NAME: how many versions NAME has
    vm_ok "$1" log "$url" "$2" --json "${opts[@]}"
    jq -s length "$1.out"
}

run() { # WHERE
    local p=$T/$1 a b
    repo_for "$1"
    vm_ok "$p-first" import "$url" "$T/img" --name desk --new -q "${opts[@]}"
    vm_expect "$p-again" 8 import "$url" "$T/img" --name desk --new -q "${opts[@]}"
    grep -q "desk: already exists (version 1 " "$p-again.err" ||
        bad "$1: the refusal does not say why: $(cat "$p-again.err")"
    [[ $(versions "$p-log1" desk) == 1 ]] || bad "$1: a refused --new import recorded a version"
    vm_ok "$p-next" import "$url" "$T/img" --name desk -q "${opts[@]}"
    [[ $(versions "$p-log2" desk) == 2 ]] || bad "$1: an import without --new did not add version 2"

    info "$1: two --new imports of one new name at once"
    "$VMSYNC" import "$url" "$T/img" --name race --new -q "${opts[@]}" 2>"$p-race-a.err" & a=$!
    "$VMSYNC" import "$url" "$T/img" --name race --new -q "${opts[@]}" 2>"$p-race-b.err" & b=$!
    local won=0
    wait "$a" && won=$((won + 1))
    wait "$b" && won=$((won + 1))
    ((won == 1)) || bad "$1: $won of two racing --new imports won: $(cat "$p-race-a.err" "$p-race-b.err")"
    [[ $(versions "$p-log3" race) == 1 ]] || bad "$1: the race recorded $(versions "$p-log4" race) versions"
}

run local
run ssh
finish
