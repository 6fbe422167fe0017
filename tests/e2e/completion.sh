#!/usr/bin/env bash
# Bash completion (packaging/completion/vmsync), in a real bash that sources
# the script and calls its function as bash does, with COMP_WORDS, COMP_CWORD,
# COMP_LINE and COMP_POINT set: the commands of vmsync --help, the
# subcommands, a command's options, file names after options that take one,
# the image names and NAME@ versions of a local repository, and of an ssh://
# one through a real sshd: listed into the cache, read from it while it is
# fresh, refreshed in the background once it is old, and still read with the
# sshd stopped; an ssh:// repository that cannot be reached and has no
# listing completes nothing, at once.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync

COMPLETION=$REPO/packaging/completion/vmsync
export HOME=$T/home XDG_CACHE_HOME=$T/xdg-cache VMSYNC_CACHE=$T/cache VMSYNC_HOST=laptop-comp
mkdir -p "$HOME" "$T/srv"

# The driver: a plain bash (no rc files) that completes LINE with FUNCTION
# (default _vmsync) and prints COMPREPLY, one per line.
cat >"$T/driver.sh" <<'EOF'
source "$1"
COMP_LINE=$2
COMP_POINT=${#COMP_LINE}
read -r -a COMP_WORDS <<<"$COMP_LINE"
[[ $COMP_LINE == *' ' ]] && COMP_WORDS+=("")
COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
COMPREPLY=()
"${3:-_vmsync}"
printf '%s\n' "${COMPREPLY[@]}"
EOF

# comp LINE [FUNCTION]: the sorted replies on one line.
comp() {
    env -u BASH_ENV bash --norc --noprofile "$T/driver.sh" "$COMPLETION" "$@" | sed '/^$/d' | sort | tr '\n' ' ' | sed 's/ $//'
}

# expect WHAT LINE WANT [FUNCTION]: the replies to LINE are exactly WANT.
expect() {
    local got
    got=$(comp "$2" "${4:-_vmsync}")
    [[ $got == "$3" ]] || bad "$1: '${2#"$VMSYNC"}' completed to '$got', not '$3'"
}

# expect_has WHAT LINE WORD...: the replies to LINE include each WORD.
expect_has() {
    local what=$1 line=$2 got w
    shift 2
    got=" $(comp "$line") "
    for w in "$@"; do
        [[ $got == *" $w "* ]] || bad "$what: '${line#"$VMSYNC"}' completed to '$got', without '$w'"
    done
}

info "two small images in a local repository: desk@1, desk@2, lab.web-1@1"
repo_motd_img one "$T/a.img"
repo_motd_img two "$T/b.img"
repo_init "$T/srv/repo"
L=$T/srv/repo
vm_ok "$T/i1" import "$L" "$T/a.img" --name desk -q
vm_ok "$T/i2" import "$L" "$T/b.img" --name desk -q
vm_ok "$T/i3" import "$L" "$T/a.img" --name lab.web-1 -q

info "commands: those of vmsync --help, no more"
cd "$T" || fail "cannot enter $T"
want=$("$VMSYNC" --help | awk '/^  [a-z]/ { print $1 }' | sort -u | tr '\n' ' ' | sed 's/ $//')
[[ $want == *checkout* && $want == *bundle* ]] || fail "vmsync --help lists no commands: $want"
expect "commands" "$VMSYNC " "$want"
expect "commands by prefix" "$VMSYNC chec" "check checkin checkout"
expect "subcommands" "$VMSYNC bundle " "apply create show"
expect "subcommands" "$VMSYNC key " "generate show"
expect_has "a command with and without a subcommand" "$VMSYNC manifest " show a.img

info "options of checkout"
expect_has "checkout's options" "$VMSYNC checkout $L desk --" --output --seed --steal --trust --format --known-hosts
[[ " $(comp "$VMSYNC checkout $L desk --") " != *" --name "* ]] || bad "checkout completed import's --name"
expect_has "checkout's short options" "$VMSYNC checkout $L desk -" -o -q -i
expect "an option's prefix" "$VMSYNC checkout $L desk --st" "--stats-json --steal"
expect_has "bundle create's options" "$VMSYNC bundle create $L desk --" --have --split --base

info "file names after -o, --seed, -i and --trust; none after --format"
expect "--seed" "$VMSYNC checkout $L desk --seed $T/a" "$T/a.img"
expect "-o" "$VMSYNC checkout $L desk -o $T/b." "$T/b.img"
expect "-i" "$VMSYNC images ssh://h/r -i $T/a." "$T/a.img"
expect "--trust" "$VMSYNC verify $L desk --trust $T/a" "$T/a.img"
expect "--format" "$VMSYNC checkout $L desk --format " ""
expect "an image argument" "$VMSYNC verify $L desk $T/b" "$T/b.img"

info "image names of the local repository"
expect "names" "$VMSYNC checkout $L " "desk lab.web-1"
expect "names by prefix" "$VMSYNC checkout $L l" "lab.web-1"
expect "versions" "$VMSYNC checkout $L desk@" "desk@1 desk@2"
expect "names after an option and its argument" "$VMSYNC checkout --cache $T/cache $L " "desk lab.web-1"
expect "names for bundle create" "$VMSYNC bundle create $L d" "desk"
expect "the second version of diff" "$VMSYNC diff $L desk@1 desk@" "desk@1 desk@2"
expect "a folder that is no repository has no names" "$VMSYNC checkout $T/home " ""

info "vmsync-agent's options, and a folder for --root"
expect "vmsync-agent's options" "$(dirname "$VMSYNC")/vmsync-agent --r" "--read-only --root" _vmsync_agent
expect "vmsync-agent --root" "$(dirname "$VMSYNC")/vmsync-agent --root $T/sr" "$T/srv" _vmsync_agent

info "an ssh:// repository: listed into the cache"
sshd_start "$T/sshd" "$T/srv"
URL=$SSHD_URL_BASE/repo
SSH="--known-hosts $SSH_KNOWN_HOSTS -i $SSH_CLIENT_KEY"
CACHE_DIR=$XDG_CACHE_HOME/vmsync/completion
expect "ssh:// names" "$VMSYNC checkout $URL $SSH " "desk lab.web-1"
cached=$(find "$CACHE_DIR" -type f 2>/dev/null | head -1)
[[ -n $cached ]] || fail "no listing cached under $CACHE_DIR"
[[ $(stat -c %a "$CACHE_DIR") == 700 ]] || bad "$CACHE_DIR is mode $(stat -c %a "$CACHE_DIR"), not 700"

info "a fresh listing is read from the cache: desk@3 is not seen yet"
vm_ok "$T/i4" import "$L" "$T/a.img" --name desk -q
expect "ssh:// versions from the fresh cache" "$VMSYNC checkout $URL $SSH desk@" "desk@1 desk@2"

info "an old listing is used at once and refreshed in the background"
touch -d '-10 minutes' "$cached"
expect "ssh:// versions from the old cache" "$VMSYNC checkout $URL $SSH desk@" "desk@1 desk@2"
for ((i = 0; i < 100; i++)); do
    grep -q '"latest":3' "$cached" 2>/dev/null && break
    sleep 0.2
done
grep -q '"latest":3' "$cached" || bad "the old listing was not refreshed: $(cat "$cached")"

info "with the sshd stopped, the names come from the cache"
sshd_stop
vm "$T/down" images "$URL" --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY"
((VM_RC == 11)) || bad "vmsync images of the stopped sshd exited $VM_RC, not 11"
expect "ssh:// names, sshd stopped" "$VMSYNC release $URL $SSH " "desk lab.web-1"
expect "ssh:// versions, sshd stopped" "$VMSYNC checkout $URL $SSH desk@" "desk@1 desk@2 desk@3"

info "an unreachable repository with no listing: nothing, at once, and no listing"
start=$SECONDS
expect "unreachable ssh://" "$VMSYNC checkout $SSHD_URL_BASE/other $SSH " ""
((SECONDS - start < 10)) || bad "completing an unreachable repository took $((SECONDS - start)) s"
n=$(find "$CACHE_DIR" -type f | wc -l)
((n == 1)) || bad "$n files in $CACHE_DIR, not 1: $(ls -A "$CACHE_DIR")"
finish
