#!/usr/bin/env bash
# A settings file that fails to load is never saved over.  The file holds
# two repositories and a typo (an unknown key); `vmsync-gtk REPO` adds a
# third.  The window lists REPO (it works in memory), says why nothing is
# saved, naming the file and the typo's line, and the file is byte-identical
# afterwards: a save would have rewritten it whole, typo, comments and all
# (vms_config_save keeps no comment).
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui

mkdir -p "$T/srv"
for r in one two three; do vm_ok "$T/init-$r" init "$T/srv/$r"; done

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
CFG=$XDG_CONFIG_HOME/vmsync/config
mkdir -p "$(dirname "$CFG")"
cat >"$CFG" <<CONF
# my repositories
[repository]
url = $T/srv/one

[repository]
url = $T/srv/two
identty = /nowhere/key
CONF
cp "$CFG" "$T/config.before"

gui_start "$T/srv/three"
GUI_CFG=$CFG GUI_REPO=$T/srv/three gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os
from gui_atspi import *
cfg, repo = os.environ["GUI_CFG"], os.environ["GUI_REPO"]

with driving() as app:
    wait_find(app, "list item", repo)
    why = wait_until("the refusal to save", lambda: [l for l in labels(app)
                     if l.startswith(cfg + ": not saved") and (cfg + ":7: ") in l])
    print("# told:", why[0])
    assert "identty" in why[0] and "fix it" in why[0], why[0]
    wait_find(app, "label", "This repository holds no image yet.")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
cmp "$T/config.before" "$CFG" || bad "the settings file changed: $(cat "$CFG")"
finish
