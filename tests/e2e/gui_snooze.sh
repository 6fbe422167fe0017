#!/usr/bin/env bash
# vmsync-gtk's "Downloads ahead" button pauses the prefetch timer's work, as
# `vmsync prefetch --snooze` does, driven through AT-SPI under Xvfb:
#   - it says that downloads run on their schedule; "Pause for 1 hour" says
#     until when (a toast), and `vmsync prefetch --json` then does nothing,
#     saying it is snoozed until that time, an hour from the press;
#   - a snooze the CLI sets meanwhile is what the button shows next;
#   - "Go on now" ends it: the prefetch then runs and brings the version.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs jq

gui_desk_repo "$T/seeds/old-desk.img"
export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n' "$R" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
GUI_T=$T GUI_REPO=$R GUI_VMSYNC=$VMSYNC gui_py - <<'PY' || fail "driving the window failed (see the log)"
import json, os, subprocess, time
from gui_atspi import *
T, R, VMSYNC = os.environ["GUI_T"], os.environ["GUI_REPO"], os.environ["GUI_VMSYNC"]

def prefetch():
    p = subprocess.run([VMSYNC, "prefetch", R, "desk", "--json"], capture_output=True, text=True)
    assert p.returncode == 0, "vmsync prefetch exited %d: %s" % (p.returncode, p.stderr)
    return json.loads(p.stdout)

def state_shows(app, want):
    """Opens the button's popover, which must say WANT (a toast may say another)."""
    # the menu button's own node has no action: its inner button does
    press(wait_until("the button", lambda: find_all(app, "push button", "Downloads ahead")[1:])[-1])
    wait_until(repr(want), lambda: want in labels(app), timeout=10)

def utc(t):
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(t))

with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here", timeout=30)
    state_shows(app, "Downloads ahead run on their schedule")
    before = time.time()
    press(wait_find(app, "push button", "Pause for 1 hour"))
    toast = wait_until("the toast", lambda: [l for l in labels(app) if l.startswith("Downloads ahead are paused until ")])[0]
    print("# toast:", toast)
    got = prefetch()
    print("# prefetch:", got)
    assert got.get("skipped") == "snoozed", got
    assert before + 3600 - 5 <= got["snoozed_until"] <= time.time() + 3600 + 5, got
    assert toast == "Downloads ahead are paused until " + utc(got["snoozed_until"]), toast
    key("Escape")
    subprocess.run([VMSYNC, "prefetch", "--snooze", "3h", "-q"], check=True)
    later = prefetch()["snoozed_until"]
    state_shows(app, "Downloads ahead are paused until " + utc(later))
    press(wait_find(app, "push button", "Go on now"))
    wait_until("the toast", lambda: "Downloads ahead run on their schedule" in labels(app), timeout=10)
    got = prefetch()
    print("# prefetch:", got)
    assert "skipped" not in got and got.get("version") == 1, got
    key("ctrl+q")
PY
gui_exit_ok
finish
