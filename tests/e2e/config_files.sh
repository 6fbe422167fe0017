#!/usr/bin/env bash
# The system file ($VMSYNC_SYSTEM_CONFIG for /etc/vmsync/vmsync.conf) and the
# user's file together: the user's default repository beats the system's,
# VMSYNC_REPO beats both, -R beats it; a named remote lends its url and key;
# a word that could be REPO or NAME is refused, never guessed; a broken
# system file names its line; the [bandwidth] window in force is the rate
# the agent is asked for, below a repository's bwlimit and --bwlimit.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync

export VMSYNC_HOST=laptop-conf VMSYNC_CACHE=$T/cache
export HOME=$T/home XDG_CONFIG_HOME=$T/xdg VMSYNC_SYSTEM_CONFIG=$T/etc/vmsync.conf
mkdir -p "$HOME" "$XDG_CONFIG_HOME/vmsync" "$T/etc" "$T/srv" "$T/work"
SYS=$VMSYNC_SYSTEM_CONFIG USER_CONF=$XDG_CONFIG_HOME/vmsync/config
AGENT_STATS=$T/agent-stats.jsonl
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"
repo_init "$T/srv/office"
repo_init "$T/a"
repo_init "$T/b"
repo_motd_img desk "$T/desk.img"
repo_motd_img lab "$T/lab.img"
vm_ok "$T/imp-a" import "$T/a" "$T/desk.img" --name desk
vm_ok "$T/imp-b" import "$T/b" "$T/lab.img" --name lab
KH=(--known-hosts "$SSH_KNOWN_HOSTS")

# names IMAGES-PREFIX: the image names that images --json printed
names() { jq -r '[.images[].image] | join(",")' "$1.out"; }

info "no REPO and no default: the usage error, as before"
vm_expect "$T/none" 2 images --json
grep -q "images needs REPO" "$T/none.err" || bad "no usage error: $(cat "$T/none.err")"

cat >"$SYS" <<CONF
[defaults]
repository = $T/a

[repository]
name = office
url = $SSHD_URL_BASE/office
identity = $SSH_CLIENT_KEY
CONF
printf '[repository]\nname = mine\nurl = %s\n' "$T/b" >"$USER_CONF"

info "the system file's default"
vm_ok "$T/sysdef" images --json
[[ $(names "$T/sysdef") == desk ]] || bad "not the system default: $(cat "$T/sysdef.out")"
vm_ok "$T/log" log desk
grep -q '^desk@1' "$T/log.out" || bad "log NAME did not use the default: $(cat "$T/log.out")"
vm_ok "$T/export" export desk -o "$T/desk-out.img"
cmp -s "$T/desk.img" "$T/desk-out.img" || bad "export with the default REPO gave other bytes"

info "the user's default beats the system's, and may be a remote's name"
printf '[defaults]\nrepository = mine\n[repository]\nname = mine\nurl = %s\n' "$T/b" >"$USER_CONF"
vm_ok "$T/userdef" images --json
[[ $(names "$T/userdef") == lab ]] || bad "not the user's default: $(cat "$T/userdef.out")"

info "VMSYNC_REPO beats the files, -R beats VMSYNC_REPO"
VMSYNC_REPO=$T/a vm_ok "$T/env" images --json
[[ $(names "$T/env") == desk ]] || bad "VMSYNC_REPO lost to the files: $(cat "$T/env.out")"
VMSYNC_REPO=$T/a vm_ok "$T/opt" images -R mine --json
[[ $(names "$T/opt") == lab ]] || bad "-R lost to VMSYNC_REPO: $(cat "$T/opt.out")"
vm_ok "$T/opt2" --repo="$T/a" log desk
grep -q '^desk@1' "$T/opt2.out" || bad "--repo= was not the REPO: $(cat "$T/opt2.out")"
vm_expect "$T/twice" 2 images -R mine -R "$T/a"
vm_expect "$T/both" 2 images -R mine "$T/a"
vm_expect "$T/initR" 2 init -R "$T/c"
[[ ! -e $T/c ]] || bad "init -R created a repository"
vm_expect "$T/showR" 2 bundle show -R "$T/a" "$T/none.vmsb"
grep -q "bundle takes no -R" "$T/showR.err" || bad "bundle show -R not refused: $(cat "$T/showR.err")"
vm_ok "$T/diffR" diff -R "$T/a" desk@1 desk@1 --json
VMSYNC_REPO=$T/a vm_expect "$T/diff-images" 3 diff "$T/none1.img" "$T/none2.img"

info "a written REPO still wins over every default"
vm_ok "$T/written" images "$T/a" --json
[[ $(names "$T/written") == desk ]] || bad "the written REPO lost: $(cat "$T/written.out")"

info "one word that could be REPO or NAME is refused when it names a folder or a remote"
mkdir "$T/work/desk"
(cd "$T/work" && vm_expect "$T/amb-dir" 2 log desk)
grep -q "'desk' could be REPO or a NAME" "$T/amb-dir.err" || bad "folder not refused: $(cat "$T/amb-dir.err")"
vm_expect "$T/amb-remote" 2 leases mine
grep -q "'mine' could be REPO or a NAME" "$T/amb-remote.err" || bad "remote not refused: $(cat "$T/amb-remote.err")"
(cd "$T" && vm_ok "$T/amb-slash" log ./a --json)
vm_ok "$T/amb-path" log "$T/a"
grep -q '^desk@1' "$T/amb-path.out" || bad "a path was not the REPO: $(cat "$T/amb-path.out")"

info "a folder here named as a remote is refused, not guessed"
mkdir "$T/work/mine"
(cd "$T/work" && vm_expect "$T/clash" 2 images mine)
grep -q "'mine' is both a folder here" "$T/clash.err" || bad "clash not refused: $(cat "$T/clash.err")"

info "a named ssh:// remote of the system file logs in with its key; -i beats it"
vm_ok "$T/office" images office "${KH[@]}" --json
jq -e '.images == []' "$T/office.out" >/dev/null || bad "office: $(cat "$T/office.out")"
vm "$T/wrong" images office "${KH[@]}" -i "$T/sshd/host_key" --json
grep -q "refused $T/sshd/host_key for user" "$T/wrong.err" || bad "-i did not beat the remote's key: $(cat "$T/wrong.err")"

info "the bandwidth window in force is the rate the agent sees; bwlimit and --bwlimit beat it"
vm_ok "$T/imp-office" import "$T/srv/office" "$T/desk.img" --name desk
# last_rate: the rate the agent's last session asked for its last GET
last_rate() { tail -n 1 "$AGENT_STATS" | jq -r '.last_bwlimit'; }
# a day that is not today: its window does not hold; the first that holds wins
other_day=$(LC_ALL=C date -d '+2 days' +%a | tr A-Z a-z)
printf '[bandwidth]\nlimit = 8K %s\nlimit = 512K daily\nlimit = 16K\n' "$other_day" >"$USER_CONF"
vm_ok "$T/bw-window" export office desk -o "$T/bw1.img" "${KH[@]}" -q
[[ $(last_rate) == 524288 ]] || bad "the window's 512K did not reach the agent: $(last_rate)"
printf '[bandwidth]\nlimit = 512K\n[repository]\nname = office\nurl = %s\nidentity = %s\nbwlimit = 2M\n' \
    "$SSHD_URL_BASE/office" "$SSH_CLIENT_KEY" >"$USER_CONF"
vm_ok "$T/bw-repo" export office desk -o "$T/bw2.img" "${KH[@]}" -q
[[ $(last_rate) == 2097152 ]] || bad "the repository's bwlimit did not beat the window: $(last_rate)"
vm_ok "$T/bw-opt" export office desk -o "$T/bw3.img" "${KH[@]}" -q --bwlimit 1M
[[ $(last_rate) == 1048576 ]] || bad "--bwlimit did not beat the settings: $(last_rate)"
vm_ok "$T/bw-none" export office desk -o "$T/bw4.img" "${KH[@]}" -q --bwlimit 0
[[ $(last_rate) == 0 ]] || bad "--bwlimit 0 (no limit) did not beat the settings: $(last_rate)"
printf '[bandwidth]\nlimit = 2M weekdays 8-18\n' >"$USER_CONF"
vm_expect "$T/bw-bad" 2 images office "${KH[@]}"
grep -q "$USER_CONF:2: bad bandwidth window" "$T/bw-bad.err" || bad "bad window not named: $(cat "$T/bw-bad.err")"

info "a user's remote of the same name replaces the system's"
printf '[repository]\nname = office\nurl = %s\n' "$T/a" >"$USER_CONF"
vm_ok "$T/shadow" images office --json
[[ $(names "$T/shadow") == desk ]] || bad "the system's office won: $(cat "$T/shadow.out")"

info "a broken system file is an error naming its line"
printf '[repository]\nurl = /x\nspeed = 2M\n' >"$SYS"
vm_expect "$T/broken" 2 images office
grep -q "$SYS:3: unknown key 'speed'" "$T/broken.err" || bad "no FILE:LINE: $(cat "$T/broken.err")"
vm_ok "$T/local" images "$T/a" --json
finish
