#!/usr/bin/env bash
# vmsync-gtk checks an image out as qcow2 with a seed the user picks.  The
# seed, an older image sharing most of the files, lies outside every seed
# folder (the config names none), so only the file chooser can offer it.
# Under Xvfb, through AT-SPI and real keys (xdotool):
#   - "Add seed…" opens the chooser (GTK's own dialog: no portal here); the
#     path is typed into its location field (Ctrl+L) and Enter picks it; the
#     dialog then shows the seed as a checked row;
#   - Format is set to qcow2 with the keyboard;
#   - the plan counts MiB from the disk (the picked seed);
#   - after the run, qemu-img says the file is qcow2 and vmsync verify says
#     it holds desk@1.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs qemu-img

gui_desk_repo "$T/elsewhere/old-desk.img"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n' "$R" >"$XDG_CONFIG_HOME/vmsync/config"
# the file chooser brings libcloudproviders' leak (gui-lsan.supp): under ASan
# its stack must reach that library for the suppression to match
GUI_FULL_LEAK_STACKS=1 gui_start
GUI_OUT=$T/out/desk.qcow2 GUI_SEED=$T/elsewhere/old-desk.img gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os, re, subprocess
from gui_atspi import *
import pyatspi
seed_path = os.environ["GUI_SEED"]

with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here")
    subprocess.run(["xdotool", "mousemove", "400", "300"], check=True)
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    assert not find_all(dlg, "check box"), "a seed is offered before one is picked"
    set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_OUT"])
    tab_to(dlg, "push button", "Format")
    key("space")
    wait_find(app, "label", "qcow2")
    key("Down", "Return")
    wait_until("Format says qcow2", lambda: "qcow2" in labels(dlg))
    press(wait_find(dlg, "push button", "Add seed"))
    # GTK 4.8 gives the chooser's window the role "filler", not "dialog"
    chooser = wait_find(app, "filler", "Seed image")
    screenshot("chooser")
    key("ctrl+l")
    type_text(seed_path)
    key("Return")
    wait_gone(app, "filler", "Seed image")
    seed = wait_find(dlg, "check box", seed_path)
    assert seed.getState().contains(pyatspi.STATE_CHECKED), "the picked seed is not checked"
    screenshot("seed-picked")
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    screenshot("plan")
    body = [l for l in labels(plan) if "to download" in l]
    print("# plan:", body)
    assert body and re.match(r"[0-9.]+ MiB from your disk, ", body[0]), body
    disk = float(body[0].split(" ")[0])
    assert disk >= 4, "the picked seed gave only %s MiB" % disk
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=40)
    screenshot("checked-out")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
qemu-img info --output=json "$T/out/desk.qcow2" >"$T/info.json" 2>"$T/info.err" || fail "qemu-img info: $(cat "$T/info.err")"
[[ $(jq -r .format "$T/info.json") == qcow2 ]] || bad "the checkout is not qcow2: $(jq -c . "$T/info.json")"
vm "$T/verify" verify "$R" desk@1 "$T/out/desk.qcow2"
((VM_RC == 0)) || bad "vmsync verify: the qcow2 checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
