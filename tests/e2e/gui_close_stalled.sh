#!/usr/bin/env bash
# Closing the window while an ssh:// checkout runs over a link gone silent
# (tests/lib/relay.py --stall-after, past the listing and the plan, inside
# the fetch; the relay is then stopped with SIGSTOP, so that a new
# connection gets no answer either): the close cancels the checkout, and no
# job starts after it (a checkout's end lists the images again, which would
# wait on the silent link with no window to show it).  The process exits
# within a few seconds, and cleanly.  Before that, Refresh while the
# checkout holds the repository is refused with a toast and keeps the list.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs

mkdir -p "$T/tree/data" "$T/srv" "$T/out"
for i in $(seq 8); do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
vm_ok "$T/init" init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"
relay_start --stall-after 1500000

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh"
cp "$T/kh-relay" "$HOME/.ssh/known_hosts"
URL="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
PY_RC=0
GUI_OUT=$T/out/desk.img GUI_STATS=$T/relay.json GUI_RELAY=$RELAY_PID gui_py - <<'PY' || PY_RC=$?
import json, os, signal
from gui_atspi import *
def stalled():
    try:
        return json.load(open(os.environ["GUI_STATS"])).get("stalled", 0) > 0
    except (OSError, ValueError):
        return False
with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here", timeout=30)
    plan = plan_checkout(app, "desk", os.environ["GUI_OUT"])
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "push button", "Cancel checkout")
    wait_until("the link stalled", stalled, timeout=30)
    print("# the link stalled inside the checkout")
    os.kill(int(os.environ["GUI_RELAY"]), signal.SIGSTOP)
    # Refresh while the checkout holds the slot: refused, and the list stays
    press(wait_find(app, "push button", "Refresh images"))
    wait_find(app, "label", "The repository is busy: try again when its operation ends.", timeout=5)
    wait_find(app, "label", "version 1 · 16.0 MiB · being downloaded", timeout=2)
    press(wait_find(wait_find(app, "frame", "vmsync"), "push button", "Close"))
PY
# (not gui_wait_exit: the relay must go on, whatever happens, to be ended)
start=$SECONDS exited=0
timeout 10 tail --pid="$GUI_PID" -f "$T/gui-never-written" 2>/dev/null && exited=1
kill -CONT "$RELAY_PID"
((PY_RC == 0)) || fail "driving the window failed (see the log)"
((exited)) || fail "vmsync-gtk did not exit within 10 s of the close"
echo "# exited after $((SECONDS - start)) s"
GUI_RC=0
wait "$GUI_PID" || GUI_RC=$?
((GUI_RC == 0)) || bad "vmsync-gtk exited $GUI_RC: $(head -c 400 "$T/gtk.err")"
if grep -E 'CRITICAL|WARNING' "$T/gtk.err"; then bad "vmsync-gtk complained on stderr"; fi
finish
