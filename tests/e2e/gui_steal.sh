#!/usr/bin/env bash
# vmsync-gtk checks out an image another host holds (the CLI checked it out
# as VMSYNC_HOST=lab): the run stops at a confirmation that names the holder,
# since when and which version, says what taking it over does, and that the
# repository's audit log records it.
#   - Enter (Cancel is the default): the checkout fails, and the lease is
#     exactly as it was (vmsync leases --json);
#   - the checkout cancelled while it asks: the question goes away with a
#     "no", and the lease is as it was;
#   - Take over: the checkout runs, the lease is the window's, and
#     vmsync audit --json records the steal; vmsync verify checks the file.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs jq

mkdir -p "$T/tree" "$T/srv" "$T/out"
head -c $((1 << 20)) /dev/urandom >"$T/tree/data"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/desk.img" --name desk -q
VMSYNC_HOST=lab vm_ok "$T/lab" checkout "$R" desk -o "$T/lab.img"
vm_ok "$T/before" leases "$R" --json
[[ $(jq -r '.leases[0].host' "$T/before.out") == lab ]] || fail "lab does not hold desk: $(cat "$T/before.out")"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n' "$R" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
GUI_OUT=$T/out/desk.img GUI_ME=$(id -un) \
    VMSYNC_REPO=$R gui_py - <<'PY' || fail "driving the window failed (see the log)"
import json, os, subprocess
from gui_atspi import *
import pyatspi
HEADING = "Take over the lease of desk?"
holder = "%s@lab" % os.environ["GUI_ME"]

def leases():
    out = subprocess.run([os.environ["VMSYNC"], "leases", os.environ["VMSYNC_REPO"], "--json"],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out)["leases"]

def row_saying(words):
    return wait_until("a row saying " + words, lambda: [l for l in labels(app) if words in l],
                      timeout=30)[0]

def ask_to_steal():
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_OUT"])
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    press(wait_find(plan, "push button", "Check out"))
    dlg = wait_find(app, "dialog", HEADING, timeout=30)
    body = [l for l in labels(dlg) if "is checked out by" in l]
    assert body, "the confirmation says nothing of the holder: %r" % labels(dlg)
    print("# asked:", body[0].replace("\n", " "))
    return dlg, body[0]

with driving() as app:
    before = leases()
    since = row_saying("held by %s since " % holder).split(" since ")[1]
    dlg, body = ask_to_steal()
    assert body.startswith("desk is checked out by %s since %s." % (holder, since)), body
    assert "their copy stays on their machine, but they can no longer check it in" in body, body
    assert "audit log" in body, body
    # Enter (a real key event, through the AT-SPI registry) answers with the
    # default, which must be Cancel
    pyatspi.Registry.generateKeyboardEvent(0xff0d, None, pyatspi.KEY_SYM)  # XK_Return
    wait_gone(app, "dialog", HEADING)
    # the engine's refusal, as the CLI says it
    err = wait_until("the refusal's toast", lambda: [l for l in labels(app)
                     if l.startswith("desk is checked out by " + holder) and "\n" not in l], timeout=20)
    print("# refused:", err[0])
    assert leases() == before, "the lease changed: %r, was %r" % (leases(), before)
    row_saying("held by %s since %s" % (holder, since))
    # the run's own Cancel (reached through AT-SPI, past the modal dialog)
    ask_to_steal()
    press(wait_find(app, "push button", "Cancel checkout"))
    wait_gone(app, "dialog", HEADING, timeout=10)
    wait_gone(app, "push button", "Cancel checkout", timeout=20)
    assert leases() == before, "the lease changed: %r, was %r" % (leases(), before)
    row_saying("held by %s since %s" % (holder, since))
    dlg, body = ask_to_steal()
    press(wait_find(dlg, "push button", "Take over"))
    wait_find(app, "label", "desk@1 is checked out", timeout=40)
    wait_find(app, "label", "version 1 · 4.0 MiB · checked out here (version 1)")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
vm_ok "$T/after" leases "$R" --json
[[ $(jq -r '.leases[0].host' "$T/after.out") == laptop ]] || bad "the lease is not laptop's: $(cat "$T/after.out")"
vm_ok "$T/audit" audit "$R" --json
[[ $(jq '[.entries[] | select(.action == "steal" and .host == "laptop" and .image == "desk")] | length' \
    "$T/audit.out") == 1 ]] || bad "the audit log does not record one steal by laptop: $(cat "$T/audit.out")"
vm "$T/verify" verify "$R" desk@1 "$T/out/desk.img"
((VM_RC == 0)) || bad "vmsync verify: the checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
