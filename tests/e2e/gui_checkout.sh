#!/usr/bin/env bash
# vmsync-gtk checks an image out, driven through AT-SPI under Xvfb: the
# repository holds "desk" (files of random data); the laptop's seed folder,
# named in the config, holds an older image sharing most of them.  The test
# finds the seed checked in the checkout dialog, reads the plan before anything moves
# ("N MiB from your disk, M MiB to download", the time unknown with no rate
# measured yet), runs it, and checks with the CLI that the file holds the
# version (vmsync verify) and that the list now says "checked out here".
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs

gui_desk_repo "$T/seeds/old-desk.img"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n\n[seeds]\nfolder = %s\n' "$R" "$T/seeds" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
GUI_OUT=$T/out/desk.img GUI_SEED=$T/seeds/old-desk.img gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os, re
from gui_atspi import *
import pyatspi

with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here")
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_OUT"])
    seed = wait_find(dlg, "check box", os.environ["GUI_SEED"])
    assert seed.getState().contains(pyatspi.STATE_CHECKED), "the seed found is not checked"
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    body = [l for l in labels(plan) if "to download" in l]
    print("# plan:", body)
    assert body and re.fullmatch(r"[0-9.]+ MiB from your disk, [0-9.]+ MiB to download; the time "
                                 r"is unknown: no rate has been measured yet", body[0]), body
    disk = float(body[0].split(" ")[0])
    assert disk >= 4, "the seed gave only %s MiB" % disk
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=40)
    wait_find(app, "label", "version 1 · 16.0 MiB · checked out here (version 1)")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
vm "$T/verify" verify "$R" desk@1 "$T/out/desk.img"
((VM_RC == 0)) || bad "vmsync verify: the window's checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
vm_ok "$T/leases" leases "$R" --json
[[ $(jq -r '.leases[0].host' "$T/leases.out") == laptop ]] || bad "the lease is not laptop's: $(cat "$T/leases.out")"
finish
