#!/usr/bin/env bash
# The window closed with a dialog open frees the dialog's state: the
# add-repository dialog, the checkout dialog (its fields and seed rows), and
# the plan's dialog (the plan, which keeps the output file open).  Each
# dialog goes with its parent and sends no response; its state goes with it.
# Plain, the window exits 0 with a clean stderr; in the sanitizer pass
# (build-san), LeakSanitizer fails the exit on any state left behind.  No
# file is left where the plan would have written.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs

mkdir -p "$T/tree/etc" "$T/out" "$T/seeds"
echo "gui" >"$T/tree/etc/motd"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/disk.img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
cp "$T/disk.img" "$T/seeds/old.img"
R=$T/srv/repo
mkdir -p "$T/srv"
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/disk.img" --name desk -q

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n\n[seeds]\nfolder = %s\n' "$R" "$T/seeds" >"$XDG_CONFIG_HOME/vmsync/config"

# close_with DIALOG: opens the window, then that dialog, then closes the window
close_with() {
    gui_start
    GUI_WHICH=$1 GUI_OUT=$T/out/desk.img gui_py - <<'PY' || fail "driving the window failed with the $1 dialog (see the log)"
import os
from gui_atspi import *
which = os.environ["GUI_WHICH"]

with driving() as app:
    wait_find(app, "label", "version 1 · 4.0 MiB · not here")
    if which == "add":
        press(wait_find(app, "push button", "Add repository"))
        wait_find(app, "dialog", "Add a repository")
    else:
        press(wait_find(app, "push button", "Check out desk"))
        dlg = wait_find(app, "dialog", "Check out desk")
        set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_OUT"])
        if which == "plan":
            press(wait_find(dlg, "push button", "Plan"))
            wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    print("# closing with the %s dialog open" % which)
    press(wait_find(wait_find(app, "frame", "vmsync"), "push button", "Close"))
PY
    gui_wait_exit 30
    ((GUI_RC == 0)) || bad "vmsync-gtk exited $GUI_RC with the $1 dialog: $(head -c 2000 "$T/gtk.err")"
    if grep -E 'CRITICAL|WARNING|LeakSanitizer' "$T/gtk.err"; then bad "vmsync-gtk complained on stderr ($1)"; fi
}
close_with add
close_with checkout
close_with plan
[[ ! -e $T/out/desk.img ]] || bad "the plan left $T/out/desk.img behind"
finish
