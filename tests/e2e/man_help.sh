#!/usr/bin/env bash
# The man pages say what --help says, no more and no less: every command of
# `vmsync --help` has its section in vmsync(1) (every subcommand, such as
# `bundle create`, its synopsis line), every option of each command's --help
# (and each subcommand's) option list is an option entry of that section or
# of the general and ssh:// ones, any other option a help names (another
# command's, the agent's) is an entry of some page, and every option entry of
# a section is in its command's --help; the same for vmsync-agent(8) and
# vmsync-gtk(1).  vmsync(1) and vmsync-agent(8) list the exit statuses that
# their --help lists, no more.  The pages render with scdoc and man without
# a warning.  Both texts are parsed, not listed here: options are the words
# that start with - or --, commands come from the indented lines of the
# top-level help, and the pages' options from the entries (lines starting
# with *-) of the scdoc sources.
#
# VMSYNC_MAN_DIR checks another folder of pages (default docs/man).  Without
# it, the test also checks itself on changed copies of docs/man: one option
# entry deleted, a made-up option, a command's section or synopsis missing, an
# exit status missing or made up: each must be found.
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
command -v scdoc >/dev/null || fail "scdoc is not installed (packaging/debian-deps.txt lists it)"

MAN_DIR=${VMSYNC_MAN_DIR:-$REPO/docs/man}
AGENT=$(dirname "$VMSYNC")/vmsync-agent
GTK=$(dirname "$VMSYNC")/vmsync-gtk
H=$T/help
mkdir -p "$H"

# The option words of a help text on stdin, one per line, sorted: -x or
# --word, wherever they stand ("[--seed", "(--json:", "--progress=auto").
help_options() {
    { grep -oE "(^|[][ (|,'\"])--?[A-Za-z][A-Za-z0-9-]*" || true; } | sed -E "s/^[][ (|,'\"]//" | sort -u
}

# The options a help text defines: those that open a line of its option list
# ("  -o, --output FILE   ...", "      --progress=M ...").
help_defined() {
    awk '/^ +-/ {
        for (i = 1; i <= NF && $i ~ /^--?[A-Za-z]/; i++) {
            o = $i; sub(/[=,].*/, "", o); print o
        }
    }' | sort -u
}

# "CMD" or "CMD SUB" lines from the top-level help's indented command lines.
help_commands() {
    grep -E '^  [a-z]' | awk '{
        print $1
        if ($2 ~ /^[a-z][a-z|]*$/) { n = split($2, s, "|"); for (i = 1; i <= n; i++) print $1 " " s[i] }
    }' | sort -u
}

# Runs BINARY ARGS... --help into FILE; a help that fails is a problem too.
save_help() {
    local file=$1
    shift
    timeout 60 "$@" --help >"$file" 2>&1 || bad "$(basename "$1") ${*:2} --help exited $?"
}

collect_help() {
    local c
    save_help "$H/top" "$VMSYNC"
    help_commands <"$H/top" >"$H/commands"
    [[ -s $H/commands ]] || bad "no command found in vmsync --help"
    while read -r c; do
        # shellcheck disable=SC2086 # "bundle create" is two words
        save_help "$H/cmd.${c// /_}" "$VMSYNC" $c
    done <"$H/commands"
    save_help "$H/agent" "$AGENT"
    if [[ -x $GTK ]]; then save_help "$H/gtk" "$GTK"; fi
}

# The entries of a scdoc page, as "FAMILY OPTION" lines: FAMILY is the "## name"
# that the entry stands under in "# COMMANDS", else "-" (general options).
page_entries() {
    awk '
        /^# / { in_cmds = ($0 == "# COMMANDS"); fam = "-"; next }
        /^## / && in_cmds { fam = $2; next }
        /^\*-/ {
            line = $0
            while (match(line, /\*--?[A-Za-z][A-Za-z0-9-]*\*/)) {
                print fam, substr(line, RSTART + 1, RLENGTH - 2)
                line = substr(line, RSTART + RLENGTH)
            }
        }' "$1" | sort -u
}

# The "## name" sections of "# COMMANDS", and the synopsis lines' "CMD SUB".
page_sections() {
    awk '/^# / { in_cmds = ($0 == "# COMMANDS") } /^## / && in_cmds { print $2 }' "$1" | sort -u
}
page_synopses() {
    { grep -oE '^\*vmsync [a-z][a-z -]*\*' "$1" || true; } | tr -d '*' |
        awk '{ if ($3 ~ /^[a-z]/) print $2 " " $3; else print $2 }' | sort -u
}

# Lines of A not in B (both sorted files).
only_in() { comm -23 "$1" "$2"; }

# Renders a page; prints what scdoc, man or groff complain of.
render_problems() {
    local page=$1 out=$T/rendered.${1##*/}
    if ! scdoc <"$page" >"$out" 2>"$out.err"; then
        echo "scdoc cannot render ${page##*/}: $(head -c 300 "$out.err")"
        return
    fi
    MANWIDTH=80 man --warnings -l "$out" 2>&1 >/dev/null | sed "s|^|${page##*/}: |"
    groff -ww -z -man "$out" 2>&1 | sed "s|^|${page##*/}: |"
}

# The help texts of FAMILY: the command's and its subcommands'.
family_help() {
    local fam=$1 f
    for f in "$H/cmd.$fam" "$H/cmd.$fam"_*; do
        if [[ -f $f ]]; then cat "$f"; fi
    done
}

# The exit statuses that a help text's "Exit status:" paragraph lists ("0
# success; 1 internal error; ...", "0 when ..., 1 on ...").
help_exit_statuses() {
    sed -n '/^[Ee]xit status:/,/^$/p' | tr '\n' ' ' | sed 's/^[Ee]xit status://' |
        { grep -oE '(^|[;,]) *[0-9]+ [A-Za-z]' || true; } | grep -oE '[0-9]+' | sort -u
}

# The "*N*" entries of a page's "# EXIT STATUS".
page_exit_statuses() {
    awk '/^# / { in_exit = ($0 == "# EXIT STATUS"); next }
        in_exit && /^\*[0-9]+\*$/ { gsub(/\*/, ""); print }' "$1" | sort -u
}

# PAGE's exit statuses against those of the help text HELP.
exit_status_problems() {
    local page=$1 help=$2 name=$3
    help_exit_statuses <"$help" >"$T/w/exit.help"
    [[ -s $T/w/exit.help ]] || echo "no exit status found in the help that $name is checked against"
    page_exit_statuses "$page" >"$T/w/exit.page"
    only_in "$T/w/exit.help" "$T/w/exit.page" | sed "s/^/$name lacks an entry for --help's exit status /"
    only_in "$T/w/exit.page" "$T/w/exit.help" | sed "s/^/$name documents an exit status that --help lacks: /"
}

# vmsync(1) against the help texts; prints one line per problem.
vmsync_page_problems() {
    local page=$1 fam w=$T/w
    mkdir -p "$w"
    page_entries "$page" >"$w/entries"
    awk '$1 == "-" { print $2 }' "$w/entries" | sort -u >"$w/general"
    awk '{ print $2 }' "$w/entries" | sort -u >"$w/all"
    grep -v ' ' "$H/commands" >"$w/families" || true
    page_sections "$page" >"$w/sections"
    only_in "$w/families" "$w/sections" | sed 's/^/vmsync(1) has no section for the command /'
    only_in "$w/sections" "$w/families" | sed 's/^/vmsync(1) has a section for a command that vmsync --help lacks: /'
    page_synopses "$page" | grep ' ' >"$w/synopses" || true
    { grep ' ' "$H/commands" || true; } | only_in - "$w/synopses" | sed 's/^/vmsync(1) has no synopsis line for vmsync /'
    only_in "$w/synopses" "$H/commands" | sed 's/^/vmsync(1) has a synopsis of a subcommand that vmsync --help lacks: /'
    while read -r fam; do
        family_help "$fam" | help_options >"$w/help.$fam"
        family_help "$fam" | help_defined >"$w/defined.$fam"
        awk -v f="$fam" '$1 == f { print $2 }' "$w/entries" >"$w/man.$fam"
        sort -u "$w/man.$fam" "$w/general" | only_in "$w/defined.$fam" - |
            sed "s/^/vmsync(1) lacks an entry for vmsync $fam --help's option /"
        only_in "$w/help.$fam" "$w/every" | sed "s/^/no page has an entry for the option that vmsync $fam --help names: /"
        only_in "$w/man.$fam" "$w/help.$fam" | sed "s/^/vmsync(1) documents an option that vmsync $fam --help lacks: /"
    done <"$w/families"
    help_defined <"$H/top" | only_in - "$w/all" | sed 's/^/vmsync(1) lacks an entry for vmsync --help'"'"'s option /'
    help_options <"$H/top" | only_in - "$w/every" | sed 's/^/no page has an entry for the option that vmsync --help names: /'
    cat "$H"/top "$H"/cmd.* | help_options | only_in "$w/general" - |
        sed 's/^/vmsync(1) documents a general option that no vmsync --help has: /'
}

# A page with no commands (vmsync-agent(8), vmsync-gtk(1)) against one help.
plain_page_problems() {
    local page=$1 help=$2 name=$3 w=$T/w
    page_entries "$page" | awk '{ print $2 }' | sort -u >"$w/plain"
    help_defined <"$help" | only_in - "$w/plain" | sed "s/^/$name lacks an entry for --help's option /"
    help_options <"$help" | only_in - "$w/every" | sed "s/^/no page has an entry for the option that $name's --help names: /"
    help_options <"$help" | only_in "$w/plain" - | sed "s/^/$name documents an option that --help lacks: /"
}

# Problems of the pages in DIR; with a second argument, the pages are not
# rendered (the self-check's copies differ from them in entries only).
man_problems() {
    local dir=$1 p
    for p in vmsync.1 vmsync-agent.8 vmsync-gtk.1; do
        [[ -f $dir/$p.scd ]] || echo "no page $dir/$p.scd"
    done
    if [[ -z ${2:-} ]]; then
        for p in "$dir"/*.scd; do render_problems "$p"; done
    fi
    mkdir -p "$T/w"
    for p in "$dir"/*.scd; do page_entries "$p"; done | awk '{ print $2 }' | sort -u >"$T/w/every"
    if [[ -f $dir/vmsync.1.scd ]]; then
        vmsync_page_problems "$dir/vmsync.1.scd"
        exit_status_problems "$dir/vmsync.1.scd" "$H/top" "vmsync(1)"
    fi
    if [[ -f $dir/vmsync-agent.8.scd ]]; then
        plain_page_problems "$dir/vmsync-agent.8.scd" "$H/agent" "vmsync-agent(8)"
        exit_status_problems "$dir/vmsync-agent.8.scd" "$H/agent" "vmsync-agent(8)"
    fi
    if [[ -f $dir/vmsync-gtk.1.scd && -f $H/gtk ]]; then
        plain_page_problems "$dir/vmsync-gtk.1.scd" "$H/gtk" "vmsync-gtk(1)"
    fi
    return 0
}

# The checker finds WANT (a problem line's start) in a copy of the pages that
# EDIT (a sed script) changed in PAGE.
self_check() {
    local page=$1 edit=$2 want=$3 copy=$T/copy
    rm -rf "$copy"
    cp -r "$REPO/docs/man" "$copy"
    sed -i -e "$edit" "$copy/$page"
    cmp -s "$REPO/docs/man/$page" "$copy/$page" && { bad "self-check: '$edit' changed nothing in $page"; return; }
    man_problems "$copy" entries-only >"$T/self"
    grep -qF -- "$want" "$T/self" ||
        bad "self-check: with '$edit' in $page, no '$want' among: $(head -c 400 "$T/self" | tr '\n' '|')"
}

info "the help texts"
collect_help
info "$(wc -l <"$H/commands") commands and subcommands in vmsync --help"

info "the pages in $MAN_DIR against them"
man_problems "$MAN_DIR" >"$T/problems"
while IFS= read -r line; do bad "$line"; done <"$T/problems"

if [[ -z ${VMSYNC_MAN_DIR:-} ]]; then
    info "self-check: the test finds a deleted entry, a made-up option, a missing section and exit status"
    # the last option entry of vmsync(1) and the first of vmsync-agent(8)
    last=$(grep -n '^\*-' "$REPO/docs/man/vmsync.1.scd" | tail -1)
    last_opt=$(grep -oE '^\*--?[A-Za-z][A-Za-z0-9-]*' <<<"${last#*:}" | tr -d '*')
    self_check vmsync.1.scd "${last%%:*}d" "option $last_opt"
    first=$(grep -n '^\*-' "$REPO/docs/man/vmsync-agent.8.scd" | head -1)
    first_opt=$(grep -oE '^\*--?[A-Za-z][A-Za-z0-9-]*' <<<"${first#*:}" | tr -d '*')
    self_check vmsync-agent.8.scd "${first%%:*}d" "option $first_opt"
    self_check vmsync.1.scd '/^## images$/a *--made-up-option*\n\tNothing.\n' "lacks: --made-up-option"
    self_check vmsync-gtk.1.scd '/^# OPTIONS$/a *-Z*\n\tNothing.\n' "lacks: -Z"
    self_check vmsync.1.scd 's/^## release$/## releasing/' "no section for the command release"
    self_check vmsync.1.scd 's/^\*13\*$/*31*/' "exit status 13"
    self_check vmsync-agent.8.scd '/^# EXIT STATUS$/a *3*\n\tNever.\n' "exit status that --help lacks: 3"
    self_check vmsync.1.scd 's/^\*vmsync key generate\*/*vmsync key make*/' "no synopsis line for vmsync key generate"
fi
finish
