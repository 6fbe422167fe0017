#!/usr/bin/env bash
# vmsync-gtk adds a local repository and lists its images.  The repository,
# made by the CLI, holds "desk" (checked out by this window's host, laptop)
# and "web" (checked out by host lab) and "spare" (nobody's).  Under Xvfb,
# through AT-SPI:
#   - a folder that does not exist is refused with the CLI's words (a toast);
#   - the repository typed into the add dialog is saved in
#     $XDG_CONFIG_HOME/vmsync/config and its images are listed with version,
#     size and state: checked out here, held by lab (who, since), not here;
#   - a second start shows it again from the file, and `vmsync-gtk REPO`
#     adds another one.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs

mkdir -p "$T/tree/etc"
echo "gui" >"$T/tree/etc/motd"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/disk.img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
mkdir -p "$T/srv"
vm_ok "$T/init" init "$R"
for n in desk web spare; do vm_ok "$T/imp-$n" import "$R" "$T/disk.img" --name "$n" -q; done
VMSYNC_HOST=laptop vm_ok "$T/co-desk" checkout "$R" desk -o "$T/desk.img" -q
VMSYNC_HOST=lab vm_ok "$T/co-web" checkout "$R" web -o "$T/web.img" -q
vm_ok "$T/init2" init "$T/srv/second"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
gui_start
GUI_REPO=$R gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os
from gui_atspi import *
repo = os.environ["GUI_REPO"]
def add(location):
    press(wait_find(app, "push button", "Add repository"))
    dlg = wait_find(app, "dialog", "Add a repository")
    set_text(wait_find(dlg, "text", "Repository location"), location)
    press(wait_find(dlg, "push button", "Add"))
    wait_gone(app, "dialog", "Add a repository")
with driving() as app:
    add(repo + "/nothing-here")
    wait_find(app, "label", repo + "/nothing-here: cannot open: No such file or directory")
    add(repo)
    wait_find(app, "list item", repo)
    wait_find(app, "label", "version 1 · 4.0 MiB · checked out here (version 1)")
    spare = wait_find(app, "label", "version 1 · 4.0 MiB · not here")
    held = wait_until("web's state", lambda: [l for l in labels(app) if l.startswith("version 1 · 4.0 MiB · held by ")])
    print("# web:", held[0])
    assert "@lab since " in held[0] and held[0].endswith(" UTC (version 1)"), held[0]
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
CFG=$XDG_CONFIG_HOME/vmsync/config
grep -qxF "url = $R" "$CFG" || bad "the config does not name $R: $(cat "$CFG")"
[[ $(grep -c '^url = ' "$CFG") == 1 ]] || bad "the config names other repositories: $(cat "$CFG")"

# again: the repository comes from the file; the command line adds another
gui_start "$T/srv/second"
GUI_REPO=$R gui_py - <<'PY' || fail "driving the window again failed (see the log)"
import os
from gui_atspi import *
repo = os.environ["GUI_REPO"]

with driving() as app:
    wait_find(app, "list item", repo)
    wait_find(app, "list item", os.path.dirname(repo) + "/second")
    wait_find(app, "label", "This repository holds no image yet.")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok "the second time"
grep -qxF "url = $T/srv/second" "$CFG" || bad "the command line's repository is not saved: $(cat "$CFG")"
finish
