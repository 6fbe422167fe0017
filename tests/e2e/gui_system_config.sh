#!/usr/bin/env bash
# vmsync-gtk reads the system file ($VMSYNC_SYSTEM_CONFIG for
# /etc/vmsync/vmsync.conf) beside the user's: its repository is listed, with
# its images; a repository added from the command line is saved in the
# user's file, and the system's repository and seed folder are not.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_gui

mkdir -p "$T/srv" "$T/etc"
repo_init "$T/srv/office"
repo_init "$T/srv/mine"
repo_motd_img desk "$T/desk.img"
vm_ok "$T/imp" import "$T/srv/office" "$T/desk.img" --name desk -q
export VMSYNC_SYSTEM_CONFIG=$T/etc/vmsync.conf VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
printf '[repository]\nname = office\nurl = %s\n\n[seeds]\nfolder = /var/lib/images\n' \
    "$T/srv/office" >"$VMSYNC_SYSTEM_CONFIG"

gui_session
gui_start
GUI_SYS=$T/srv/office gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os
from gui_atspi import *
with driving() as app:
    wait_find(app, "list item", os.environ["GUI_SYS"])
    wait_find(app, "label", "version 1 · 4.0 MiB · not here")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
[[ ! -e $XDG_CONFIG_HOME/vmsync/config ]] || bad "the window wrote the user's file unasked: $(cat "$XDG_CONFIG_HOME/vmsync/config")"

# the command line's repository is added, and the user's file saved
gui_start "$T/srv/mine"
GUI_SYS=$T/srv/office GUI_MINE=$T/srv/mine gui_py - <<'PY' || fail "driving the window again failed (see the log)"
import os
from gui_atspi import *
with driving() as app:
    wait_find(app, "list item", os.environ["GUI_MINE"])
    wait_find(app, "list item", os.environ["GUI_SYS"])
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok "the second time"
CFG=$XDG_CONFIG_HOME/vmsync/config
grep -qxF "url = $T/srv/mine" "$CFG" || bad "the added repository is not saved: $(cat "$CFG")"
! grep -q "office\|/var/lib/images" "$CFG" || bad "the system file's entries were saved in the user's: $(cat "$CFG")"
cmp -s "$VMSYNC_SYSTEM_CONFIG" <(printf '[repository]\nname = office\nurl = %s\n\n[seeds]\nfolder = /var/lib/images\n' "$T/srv/office") ||
    bad "the system file changed"
finish
