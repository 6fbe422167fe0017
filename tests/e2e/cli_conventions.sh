#!/usr/bin/env bash
# The conventions a user expects of a command line, in the order tested:
#   - -V is --version; both name the libraries, as built and as running, and
#     --version --json says the same as one object; vmsync-agent takes -V too;
#   - the top-level help names the three forms of REPO and every exit status,
#     0 to 13;
#   - checkout -n and --dry-run are --estimate: a plan, nothing written;
#   - --json: init, checkout, import and verify print JSON; an error, a usage
#     error too, is one JSON object on stderr with its kind and exit status,
#     and nothing on stdout; an unknown option before other words is called
#     unknown, not one that needs a value;
#   - import takes only names of A-Z a-z 0-9 . _ - not starting with - or .:
#     a bad one exits 2 naming the bad character, and nothing is recorded;
#     one an older vmsync stored stays readable (log, export NAME@V), and a
#     bundle of its first version is refused by bundle apply elsewhere;
#   - checkin -n: sends and records nothing, keeps the lease, and foretells
#     the objects and bytes that the real check-in then sends;
#   - an unknown image name close to one the repository holds (a letter more
#     or less, another case) gets "did you mean 'desk'?" (exit 9), locally
#     and over ssh://; a far one does not; import IMAGE REPO, swapped, fails
#     with the hint "did you mean: vmsync import REPO IMAGE";
#   - SIGINT and SIGTERM (sent by gdb, stopped in the library the phase
#     calls) end a manifest and a local import in their scan, and a checkout
#     in its fetch, with exit 7: no manifest file, no version, and the
#     checkout run again resumes (bytes_resumed > 0) to T's digest;
#   - on a terminal (script gives it a pty) the progress bar of an export
#     ends full: its last line shows the total done, ETA 0s;
#   - ssh:// to a server without the agent (--agent /nonexistent, with a key
#     that runs what it is asked) exits 12, naming the command, and does not
#     say to run it again; the same key with the real agent works.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs jq gdb sqlite3

export VMSYNC_CACHE=$T/cache VMSYNC_HOST=conv

info "-V and --version"
vm_ok "$T/V" -V
vm_ok "$T/version" --version
cmp -s "$T/V.out" "$T/version.out" || bad "-V and --version differ"
head -1 "$T/V.out" | grep -qE '^vmsync [0-9]+\.[0-9]+' || bad "-V: $(head -1 "$T/V.out")"
for lib in ext2fs ntfs-3g libnbd openssl zstd sqlite libssh libarchive; do
    grep -qE "^  $lib +built [^ ].* running " "$T/V.out" || bad "-V does not list $lib: $(cat "$T/V.out")"
done
running=$(sqlite3 :memory: 'select sqlite_version()' 2>/dev/null || true)
[[ -z $running ]] || grep -qE "^  sqlite .* running $running\$" "$T/V.out" ||
    bad "-V's running sqlite is not $running: $(grep sqlite "$T/V.out")"
vm_ok "$T/vjson" --version --json
jq -e '.version and (.libraries | length) == 8 and
       (.libraries[] | select(.name == "zstd") | .built and .running)' "$T/vjson.out" >/dev/null ||
    bad "--version --json: $(head -c 300 "$T/vjson.out")"
"$VMSYNC_AGENT" -V >"$T/agent.out" 2>&1 || bad "vmsync-agent -V failed: $(head -c 200 "$T/agent.out")"
grep -qE '^vmsync-agent [0-9]' "$T/agent.out" && grep -q '^  openssl ' "$T/agent.out" ||
    bad "vmsync-agent -V: $(head -c 200 "$T/agent.out")"

vm_ok "$T/help" --help
grep -q "REPO is a directory, an ssh://.* URL,\$" "$T/help.out" && grep -q "a bundle FILE" "$T/help.out" ||
    bad "--help does not name the forms of REPO: $(grep REPO "$T/help.out" | head -3)"
statuses=$(sed -n '/^Exit status:/,$p' "$T/help.out" | tr '\n' ' ' | grep -oE '(: |; )[0-9]+ ' | grep -oE '[0-9]+' | tr '\n' ' ')
[[ $statuses == "$(seq -s ' ' 0 13) " ]] || bad "--help lists the exit statuses $statuses, not 0 to 13"

repo_motd_img conv "$T/img"
R=$T/repo
vm_ok "$T/init" init "$R" --json
jq -e --arg r "$R" '.repository == $r' "$T/init.out" >/dev/null || bad "init --json: $(cat "$T/init.out")"
(cd "$T" && vm_expect "$T/init-none" 2 init --json)
[[ ! -e $T/--json ]] || bad "init --json with no REPO made a repository named --json"
vm_ok "$T/imp" import "$R" "$T/img" --name desk -q

info "checkout -n and --dry-run are --estimate"
vm_ok "$T/est" checkout "$R" desk -o "$T/out.img" --estimate --json
for flag in -n --dry-run; do
    vm_ok "$T/dry$flag" checkout "$R" desk -o "$T/out.img" "$flag" --json
    [[ -e $T/out.img || -e $T/out.img.vmsync-part ]] && bad "checkout $flag wrote OUT"
    jq -e '.objects_to_fetch > 0' "$T/dry$flag.out" >/dev/null ||
        bad "checkout $flag printed no plan: $(head -c 200 "$T/dry$flag.out")"
    [[ $(jq -c 'del(.planning_seconds)' "$T/dry$flag.out") == $(jq -c 'del(.planning_seconds)' "$T/est.out") ]] ||
        bad "checkout $flag's plan is not --estimate's"
done
vm_ok "$T/leases" leases "$R" --json
jq -e '.leases == []' "$T/leases.out" >/dev/null ||
    bad "a dry run took a lease: $(cat "$T/leases.out")"

info "--json results and errors"
json_error() { # PREFIX STATUS KIND ARGS...: the command fails as a JSON error
    local p=$1 status=$2 kind=$3
    shift 3
    vm_expect "$p" "$status" "$@" || return 0
    [[ ! -s $p.out ]] || bad "vmsync $*: an error, yet stdout holds $(head -c 200 "$p.out")"
    [[ $(wc -l <"$p.err") == 1 ]] && jq -e --arg k "$kind" --argjson s "$status" \
        '.error.kind == $k and .error.exit == $s and (.error.message | length > 0)' "$p.err" >/dev/null ||
        bad "vmsync $*: stderr is not one JSON error of kind $kind: $(head -c 300 "$p.err")"
}
json_error "$T/je-opt" 2 usage checkout "$R" desk --no-such-option --json
json_error "$T/je-cmd" 2 usage frobnicate --json
vm_expect "$T/unknown-q" 2 release "$R" -q desk
grep -q "^vmsync: unknown option '-q'\$" "$T/unknown-q.err" || bad "release -q: $(head -1 "$T/unknown-q.err")"
json_error "$T/je-missing" 9 "not found" checkout "$R" nosuch -o "$T/x.img" --json
json_error "$T/je-open" 3 open images "$T/no-repo" --json
vm_ok "$T/co" checkout "$R" desk -o "$T/co.img" --json
jq -e '.version == 1 and .image_size > 0' "$T/co.out" >/dev/null || bad "checkout --json: $(head -c 300 "$T/co.out")"
vm_ok "$T/ver" verify "$R" desk "$T/co.img" --json
jq -e '.matches == true and .version == 1 and .image == "desk" and .signature == "unsigned" and
       .expected == .actual' "$T/ver.out" >/dev/null || bad "verify --json: $(head -c 300 "$T/ver.out")"
vm_ok "$T/imp2" import "$R" "$T/co.img" --name desk --json
jq -e '.version == 2' "$T/imp2.out" >/dev/null || bad "import --json: $(head -c 300 "$T/imp2.out")"
vm_ok "$T/rel" release "$R" desk

info "image names"
bad_name() { # NAME WHAT: import refuses NAME, naming WHAT
    vm "$T/name" import "$R" "$T/img" --name "$1" -q
    ((VM_RC == 2)) || bad "import --name '$1' exited $VM_RC, expected 2: $(head -c 200 "$T/name.err")"
    grep -qF -- "$2" "$T/name.err" || bad "import --name '$1': the message does not name $2: $(cat "$T/name.err")"
}
bad_name 'a@2' "'@' is not allowed"
bad_name 'two words' "' ' is not allowed"
bad_name 'a/b' "'/' is not allowed"
bad_name $'caf\xe9' 'byte 0xe9'
bad_name '-rf' "may not start with '-'"
bad_name '.hidden' "may not start with '.'"
vm_ok "$T/images" images "$R" --json
[[ $(jq -r '.images | map(.image) | join(",")' "$T/images.out") == desk ]] ||
    bad "a refused name was recorded: $(cat "$T/images.out")"
vm_ok "$T/good" import "$R" "$T/img" --name Web_01.v-2 -q
vm_ok "$T/old" import "$R" "$T/img" --name old -q
sqlite3 "$R/catalog.db" "update images set name = 'old@2' where name = 'old'" || fail "cannot rename old"
vm_ok "$T/old-log" log "$R" old@2 --json
[[ $(jq -r .image "$T/old-log.out") == old@2 ]] || bad "log of a stored odd name: $(cat "$T/old-log.out")"
vm_ok "$T/old-export" export "$R" old@2@1 -o "$T/old.img" -q
vm_ok "$T/old-bundle" bundle create "$R" old@2@1 -o "$T/old.vmsb" -q
repo_init "$T/other"
vm_expect "$T/old-apply" 2 bundle apply "$T/other" "$T/old.vmsb"
grep -qF "bad image name 'old@2': '@' is not allowed" "$T/old-apply.err" || bad "bundle apply of old@2: $(cat "$T/old-apply.err")"
sqlite3 "$R/catalog.db" "delete from versions where image_id = (select id from images where name = 'old@2');
    delete from audit where image = 'old'; delete from images where name = 'old@2'" || fail "cannot drop old@2"

info "checkin --dry-run"
vm_ok "$T/dry-imp" import "$R" "$T/img" --name dry -q
vm_ok "$T/dry-co" checkout "$R" dry -o "$T/dry.img" -q
repo_motd_img changed "$T/changed.img" 300000
for flag in -n --dry-run; do
    vm_ok "$T/dry$flag" checkin "$R" dry "$T/changed.img" "$flag" --json
done
cmp -s <(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry-n.out") \
    <(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry--dry-run.out") || bad "-n and --dry-run differ"
jq -e '.objects_sent > 0 and .bytes_sent_raw >= 300000' "$T/dry-n.out" >/dev/null ||
    bad "checkin -n foresees nothing to send: $(cat "$T/dry-n.out")"
vm_ok "$T/dry-log" log "$R" dry --json
[[ $(jq -s length "$T/dry-log.out") == 1 ]] || bad "checkin -n recorded a version"
vm_ok "$T/dry-leases" leases "$R" dry --json
jq -e '.leases | length == 1' "$T/dry-leases.out" >/dev/null || bad "checkin -n let the lease go: $(cat "$T/dry-leases.out")"
vm_ok "$T/dry-real" checkin "$R" dry "$T/changed.img" --json
[[ $(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry-real.out") == $(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry-n.out") ]] ||
    bad "checkin -n foresaw $(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry-n.out"), the check-in sent $(jq -c '{objects_sent, bytes_sent_raw}' "$T/dry-real.out")"
vm_expect "$T/dry-bundle" 2 checkin --to-bundle "$T/b.vmsb" dry "$T/changed.img" -n

info "did you mean"
suggests() { # PREFIX NAME WANT: log REPO NAME fails (exit 9), suggesting WANT ("" none)
    vm_expect "$1" 9 log "${@:4}" "$2" || return 0
    if [[ -n $3 ]]; then
        grep -qF "no image named $2; did you mean '$3'?" "$1.err" || bad "log $2: $(cat "$1.err")"
    elif grep -q "did you mean" "$1.err"; then
        bad "log $2 suggests what is not close: $(cat "$1.err")"
    fi
}
suggests "$T/dym1" dsk desk "$R"
suggests "$T/dym2" desks desk "$R"
suggests "$T/dym3" DESK desk "$R"
suggests "$T/dym4" zzzz "" "$R"
vm_expect "$T/swap" 4 import "$T/img" "$R" --name desk
grep -qF "did you mean: vmsync import $R $T/img" "$T/swap.err" || bad "import IMAGE REPO: $(cat "$T/swap.err")"
vm_expect "$T/swap2" 4 import "$T/img" "$T/nothing" --name desk
grep -qF "did you mean: vmsync import $T/nothing $T/img" "$T/swap2.err" || bad "import IMAGE MISSING: $(cat "$T/swap2.err")"

info "Ctrl-C and SIGTERM: exit 7, resumable"
# at_break PREFIX FUNCTION SKIP SIGNAL ARGS...: runs vmsync ARGS under gdb,
# stops at the SKIP+1th call of FUNCTION, sends SIGNAL; the exit status is
# gdb's report.  (LeakSanitizer cannot run under a debugger.)  gdb keeps
# quiet about threads: its "[Thread ... exited]" lines, from the hashing
# workers, would land inside the program's own.
at_break() {
    local p=$1 fn=$2 skip=$3 sig=$4
    shift 4
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout -k 10 "$VMSYNC_CMD_TIMEOUT" gdb -nx -batch -q -iex 'set debuginfod enabled off' \
        -ex 'set startup-with-shell off' -ex 'set print thread-events off' \
        -ex 'set breakpoint pending on' -ex "break $fn" \
        -ex "ignore 1 $skip" -ex run -ex delete -ex "signal $sig" --args "$VMSYNC" "$@" \
        >"$p.gdb" 2>&1 </dev/null || true
    grep -q 'exited with code 07\]' "$p.gdb" ||
        bad "$sig to vmsync $1: not exit 7: $(grep -v '^\[\|^Using\|^$' "$p.gdb" | tail -c 300 | tr '\n' ' ')"
    grep -q '^vmsync: cancelled' "$p.gdb" || bad "$sig to vmsync $1: no 'cancelled': $(tail -c 300 "$p.gdb")"
}
timg=$(repo_img t ext4) || fail "cannot build T"
at_break "$T/sig-manifest" ext2fs_read_inode 0 SIGINT manifest "$timg" -o "$T/t.vmm" -q
[[ ! -e $T/t.vmm ]] || bad "a cancelled manifest left $T/t.vmm"
at_break "$T/sig-import" ext2fs_read_inode 0 SIGTERM import "$R" "$timg" --name big -q
vm_ok "$T/after-import" images "$R" --json
jq -e '[.images[].image] | index("big") == null' "$T/after-import.out" >/dev/null ||
    bad "a cancelled import recorded a version: $(cat "$T/after-import.out")"
vm_ok "$T/imp-t" import "$R" "$timg" --name t -q
at_break "$T/sig-co" ZSTD_decompressStream 40 SIGTERM checkout "$R" t -o "$T/t.img" -q
[[ ! -e $T/t.img && -e $T/t.img.vmsync-part ]] || bad "a cancelled checkout left $(ls "$T" | grep t.img)"
vm_ok "$T/co-again" checkout "$R" t -o "$T/t.img" -q --stats-json "$T/co-again.json"
(($(repo_stat "$T/co-again.json" bytes_resumed) > 0)) || bad "the checkout after SIGTERM resumed nothing"
[[ $(repo_digest "$T/t.img") == $(repo_digest "$timg") ]] || bad "the resumed checkout is not T"

info "the progress bar ends full"
need_cmd script
rm -f "$T/t.img"
VMSYNC_CACHE=$T/cache script -qec "$(printf '%q ' "$VMSYNC" export "$R" t -o "$T/t.img")" "$T/pty.out" \
    >/dev/null 2>&1 </dev/null || bad "export on a pty failed: $(tail -c 300 "$T/pty.out")"
last=$(tr '\r' '\n' <"$T/pty.out" | grep ' MiB/s ' | tail -1)
[[ $last =~ \ ([0-9.]+)\ /\ ([0-9.]+)\ MiB\ .*ETA\ 0s ]] && [[ ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]] ||
    bad "the bar's last line is not full: '$last'"

info "a missing agent"
mkdir -p "$T/srv"
sshd_start "$T/sshd" "$T/srv"
ssh_opts=(--known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_PLAIN_KEY")
vm_expect "$T/noagent" 12 images "$SSHD_URL_BASE/$R" --agent /nonexistent "${ssh_opts[@]}"
grep -q "the agent command /nonexistent was not found on 127.0.0.1" "$T/noagent.err" ||
    bad "a missing agent: $(cat "$T/noagent.err")"
grep -q -- "--agent" "$T/noagent.err" || bad "a missing agent: no word of --agent: $(cat "$T/noagent.err")"
grep -q "again" "$T/noagent.err" && bad "a missing agent: told to try again: $(cat "$T/noagent.err")"
suggests "$T/dym-ssh" Desk desk "$SSHD_URL_BASE/repo" --agent "$VMSYNC_AGENT --root $T" "${ssh_opts[@]}"
vm_ok "$T/agent" images "$SSHD_URL_BASE/repo" --agent "$VMSYNC_AGENT --root $T" --json "${ssh_opts[@]}"
[[ $(jq -r '.images | map(.image) | join(",")' "$T/agent.out") == Web_01.v-2,desk,dry,t ]] ||
    bad "the real agent over the same key: $(cat "$T/agent.out")"
finish
