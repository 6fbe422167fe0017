#!/usr/bin/env bash
# vmsync-gtk opens a real window under Xvfb and closes cleanly: the test finds
# it through AT-SPI by its accessible names, presses the header bar's close
# button as a user would, and the process exits 0 with nothing on stderr.
# --help works without a display.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_gui

DISPLAY= "$VMSYNC_GTK" --help >"$T/help.out" 2>&1 || bad "vmsync-gtk --help failed: $(head -3 "$T/help.out")"
grep -q '^usage: vmsync-gtk' "$T/help.out" || bad "--help prints no usage line"

gui_session
gui_start
gui_py - <<'PY' || fail "driving the window failed (see the log)"
from gui_atspi import *

with driving() as app:
    win = wait_find(app, "frame", "vmsync")
    wait_find(win, "label", "No repository yet")
    press(wait_find(win, "push button", "Close"))
PY
gui_exit_ok
finish
