#!/usr/bin/env bash
# Enter in the add-repository dialog's key file field presses Add, as the
# README says (real keys through xdotool, read back through AT-SPI): the
# location is typed, Tab goes to "Key file", a key path is typed, Enter;
# the dialog closes and the settings hold the url and the identity.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd xdotool

R=$T/srv/repo
mkdir -p "$T/srv"
vm_ok "$T/init" init "$R"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
CFG=$XDG_CONFIG_HOME/vmsync/config
gui_start
GUI_REPO=$R gui_py - <<'PY' || fail "driving the window with the keyboard failed (see the log)"
import os, subprocess
from gui_atspi import *
repo = os.environ["GUI_REPO"]

with driving() as app:
    win = wait_find(app, "frame", "vmsync")
    wait_find(win, "label", "No repository yet")
    # without a window manager, GTK takes keys only under the pointer
    subprocess.run(["xdotool", "mousemove", "400", "300"], check=True)
    key("ctrl+n")
    dlg = wait_find(app, "dialog", "Add a repository")
    wait_until("the focus in the location field", lambda: focused(dlg))
    type_text(repo)
    print("# Tab went through:", tab_to(dlg, "text", "Key file"))
    type_text("/home/me/.ssh/id_test")
    key("Return")
    wait_gone(app, "dialog", "Add a repository", timeout=5)
    wait_find(app, "list item", repo)
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
grep -qxF "url = $R" "$CFG" || bad "the config does not name $R: $(cat "$CFG" 2>&1)"
grep -qxF "identity = /home/me/.ssh/id_test" "$CFG" || bad "the config has no identity: $(cat "$CFG" 2>&1)"
finish
