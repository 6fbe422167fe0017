#!/usr/bin/env bash
# The command line reads the settings file that vmsync-gtk writes
# (~/.config/vmsync/config): an ssh:// repository listed there with a key
# file logs in with that key when no -i is given; -i still wins; a broken
# file is an error naming its line; local repositories never need the file.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync

export VMSYNC_HOST=laptop-cfg VMSYNC_CACHE=$T/cache
export HOME=$T/home XDG_CONFIG_HOME=$T/xdg
mkdir -p "$HOME" "$XDG_CONFIG_HOME/vmsync" "$T/srv"
sshd_start "$T/sshd" "$T/srv"
repo_init "$T/srv/repo"
URL=$SSHD_URL_BASE/repo
KH=(--known-hosts "$SSH_KNOWN_HOSTS")
CONF=$XDG_CONFIG_HOME/vmsync/config

info "no settings file: no key to log in with"
vm "$T/none" images "$URL" "${KH[@]}" --json
grep -q "refused the keys of ssh-agent and ~/.ssh" "$T/none.err" ||
    bad "with no key, not refused at login: $(cat "$T/none.err")"

info "the settings name the key for this URL"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$CONF"
vm_ok "$T/listed" images "$URL" "${KH[@]}" --json
jq -e '.images | type == "array"' "$T/listed.out" >/dev/null || bad "images --json printed no list: $(cat "$T/listed.out")"

info "another URL is not given that key"
vm "$T/other" images "$SSHD_URL_BASE/$T/srv/repo" "${KH[@]}" --json
grep -q "refused the keys of ssh-agent and ~/.ssh" "$T/other.err" ||
    bad "a URL the settings do not list got their key: $(cat "$T/other.err")"

info "-i beats the settings"
vm "$T/wrong" images "$URL" "${KH[@]}" -i "$T/sshd/host_key" --json
grep -q "refused $T/sshd/host_key for user" "$T/wrong.err" ||
    bad "-i did not beat the settings: $(cat "$T/wrong.err")"

info "a broken settings file is an error naming its line"
printf '[repository]\nurl = %s\nidentiy = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$CONF"
vm_expect "$T/broken" 2 images "$URL" "${KH[@]}" --json
grep -q "$CONF:3:" "$T/broken.err" || bad "the error does not name the file and line: $(cat "$T/broken.err")"

info "a local repository does not read the file"
vm_ok "$T/local" images "$T/srv/repo" --json
finish
