#!/usr/bin/env bash
# vmsync-gtk caps its ssh:// transfers as the command line does: the
# settings' [bandwidth] window in force is the rate its checkout asks the
# agent for (the agent's --stats-file says which), and the repository's own
# timeout and key apply.  The checkout is driven through AT-SPI under Xvfb.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs jq

gui_desk_repo "$T/seeds/old-desk.img"
AGENT_STATS=$T/agent-stats.jsonl
sshd_start "$T/sshd" "$T/srv" --stats-file "$AGENT_STATS"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh"
cp "$SSH_KNOWN_HOSTS" "$HOME/.ssh/known_hosts"
URL=$SSHD_URL_BASE/repo
# a day that is not today: its window does not hold; the first that holds wins
other_day=$(LC_ALL=C date -d '+2 days' +%a | tr A-Z a-z)
printf '[repository]\nurl = %s\nidentity = %s\ntimeout = 30\n\n[bandwidth]\nlimit = 8K %s\nlimit = 8M\n' \
    "$URL" "$SSH_CLIENT_KEY" "$other_day" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
GUI_OUT=$T/out/desk.img gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os
from gui_atspi import *

with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here")
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_OUT"])
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=60)
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
rates=$(jq -r 'select(.objects_sent > 0) | .last_bwlimit' "$AGENT_STATS" | sort -u | tr '\n' ' ')
[[ $rates == "8388608 " ]] || bad "the window's sessions that fetched did not ask 8M: '$rates'"
vm "$T/verify" verify "$R" desk@1 "$T/out/desk.img"
((VM_RC == 0)) || bad "the window's checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
