#!/usr/bin/env bash
# The progress bar on a terminal (script gives the command a pty) is one bar
# for the whole operation, read from the screen it draws: a checkout with a
# seed (scan, copy, fetch, verify), locally and over ssh://, an import and a
# manifest.  Once the bar shows a percentage every later drawing does, the
# percentage never goes down, it spans more than one phase, and the last
# drawing is 100.0% with the shown phase's figures whole and ETA 0s.  A seed's
# scan comes before the job's size is known: a counter, no percentage.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs script

export VMSYNC_HOST=bar
timg=$(repo_img t ext4) || fail "cannot build T"
simg=$(repo_img s ext4) || fail "cannot build S"
mkdir -p "$T/srv"
repo_init "$T/srv/repo"
R=$T/srv/repo
vm_ok "$T/imp" import "$R" "$timg" --name t -q --cache "$T/cache-imp"

# on_pty PREFIX ARGS...: vmsync ARGS on a pty; the screen in PREFIX.pty, one
# drawing of the bar a line in PREFIX.frames
on_pty() {
    local p=$1
    shift
    script -qfec "$(printf '%q ' "$VMSYNC" "$@")" "$p.pty" >/dev/null 2>&1 </dev/null ||
        { bad "$p: vmsync $* failed on a pty: $(tail -c 300 "$p.pty")"; return 1; }
    tr '\r' '\n' <"$p.pty" | grep ' MiB/s ' >"$p.frames" || true
}

# one_bar PREFIX MIN_PHASES: the checks above on PREFIX.frames; the
# percentage is shown by at least MIN_PHASES phases
one_bar() {
    local p=$1 min=$2 seen=0 prev=-1 pct phases=() last
    while IFS= read -r line; do
        if [[ $line =~ \]\ +([0-9]+\.[0-9])%\  ]]; then
            pct=${BASH_REMATCH[1]}
            seen=1
            awk -v a="$pct" -v b="$prev" 'BEGIN { exit !(a + 0 >= b + 0) }' ||
                bad "$p: the bar went back from $prev% to $pct%: '$line'"
            prev=$pct
            phases+=("${line%% *}")
        elif ((seen)); then
            bad "$p: a drawing without a percentage after one with: '$line'"
        elif [[ ! $line =~ "size not known yet" ]]; then
            bad "$p: a drawing with neither a percentage nor a counter: '$line'"
        fi
    done <"$p.frames"
    ((seen)) || { bad "$p: the bar never shows a percentage: $(head -3 "$p.frames")"; return; }
    (($(printf '%s\n' "${phases[@]}" | sort -u | grep -c .) >= min)) ||
        bad "$p: the percentage spans fewer than $min phases: ${phases[*]}"
    last=$(tail -1 "$p.frames")
    [[ $last =~ \ 100\.0%\ +([0-9.]+)\ /\ ([0-9.]+)\ MiB\ .*ETA\ 0s ]] &&
        [[ ${BASH_REMATCH[1]} == "${BASH_REMATCH[2]}" ]] ||
        bad "$p: the bar's last drawing is not 100% of the whole: '$last'"
}

info "a local checkout with a seed"
on_pty "$T/co" checkout "$R" t -o "$T/co.img" --seed "$simg" --cache "$T/cache-co" &&
    one_bar "$T/co" 2
grep -q 'scan-seed .*size not known yet' "$T/co.frames" || bad "the seed's scan shows no counter"
grep -q '^verify ' "$T/co.frames" || bad "the checkout's bar never names verify"

info "an import and a manifest"
on_pty "$T/imp2" import "$R" "$simg" --name s --cache "$T/cache-imp2" && one_bar "$T/imp2" 1
on_pty "$T/man" manifest "$timg" -o "$T/t.vmm" && one_bar "$T/man" 1

info "a checkout with a seed over ssh://"
sshd_start "$T/sshd" "$T/srv"
on_pty "$T/rco" checkout "$SSHD_URL_BASE/repo" t -o "$T/rco.img" --seed "$simg" \
    --cache "$T/cache-rco" --steal --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY" &&
    one_bar "$T/rco" 2
[[ $(repo_digest "$T/rco.img") == $(repo_digest "$timg") ]] || bad "the ssh:// checkout is not T"
finish
