#!/usr/bin/env bash
# vmsync-gtk used with the keyboard alone: every step is a real key event
# (xdotool, through the X server), and the results are read through AT-SPI
# and in the config file.  The pointer only rests over the window (no click),
# as where focus follows the mouse.
#   - Ctrl+N opens "Add a repository" with the focus in its location field;
#     the path typed and Enter (the default button) add it, and it is saved;
#   - Tab reaches the image's "Check out desk" button, Space opens its dialog,
#     whose fields Tab goes through; Escape closes it;
#   - the button's mnemonic (Alt+H) opens it again, Enter in the output field
#     asks for the plan (the default), and Escape on the plan moves nothing:
#     no file, no lease;
#   - Ctrl+W closes the window (exit 0); started again, the repository is
#     there from the file, and Ctrl+Q closes it.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs

mkdir -p "$T/tree/etc" "$T/srv"
echo "keys" >"$T/tree/etc/motd"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/disk.img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/disk.img" --name desk -q

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
CFG=$XDG_CONFIG_HOME/vmsync/config
gui_start
GUI_REPO=$R GUI_CFG=$CFG gui_py - <<'PY' || fail "driving the window with the keyboard failed (see the log)"
import os, subprocess
from gui_atspi import *
repo = os.environ["GUI_REPO"]

with driving() as app:
    win = wait_find(app, "frame", "vmsync")
    wait_find(win, "label", "No repository yet")
    subprocess.run(["xdotool", "mousemove", "400", "300"], check=True)
    screenshot("start")
    key("ctrl+n")
    dlg = wait_find(app, "dialog", "Add a repository")
    where = wait_until("the focus in the location field", lambda: focused(dlg))
    assert name_matches(where.name, "Repository location"), "the focus is on %r" % where.name
    type_text(repo)
    screenshot("add-typed")
    key("Return")
    wait_gone(app, "dialog", "Add a repository")
    wait_find(app, "list item", repo)
    assert ("url = " + repo) in open(os.environ["GUI_CFG"]).read().splitlines(), "not saved"
    wait_find(app, "push button", "Check out desk")
    print("# Tab went through:", tab_to(win, "push button", "Check out desk"))
    screenshot("focus-checkout")
    key("space")
    dlg = wait_find(app, "dialog", "Check out desk")
    inside = tab_to(dlg, "push button", "Plan")
    print("# in the dialog:", inside)
    for want in ("Output file", "Format", "Add seed"):
        assert any(want in s for s in inside), "Tab skipped %s: %s" % (want, inside)
    screenshot("checkout-dialog")
    key("Escape")
    wait_gone(app, "dialog", "Check out desk")
    key("alt+h")
    dlg = wait_find(app, "dialog", "Check out desk")
    tab_to(dlg, "text", "Output file")
    key("Return")
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    screenshot("plan")
    key("Escape")
    wait_gone(app, "dialog", "Check out desk@1?")
    key("ctrl+w")
PY
gui_exit_ok "after Ctrl+W"
[[ ! -e $HOME/desk.img ]] || bad "Escape on the plan still checked desk out to $HOME/desk.img"
vm_ok "$T/leases" leases "$R" --json
[[ $(jq '.leases | length' "$T/leases.out") == 0 ]] || bad "a lease was taken: $(cat "$T/leases.out")"
grep -qxF "url = $R" "$CFG" || bad "the config does not name $R: $(cat "$CFG")"

gui_start
GUI_REPO=$R gui_py - <<'PY' || fail "closing with Ctrl+Q failed (see the log)"
import os, subprocess
from gui_atspi import *

with driving() as app:
    wait_find(app, "list item", os.environ["GUI_REPO"])
    wait_find(app, "push button", "Check out desk")
    subprocess.run(["xdotool", "mousemove", "400", "300"], check=True)
    key("ctrl+q")
PY
gui_exit_ok "after Ctrl+Q"
finish
