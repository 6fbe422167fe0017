#!/usr/bin/env bash
# vmsync-gtk over ssh://, through a throttled link (tests/lib/relay.py at
# 8 Mbit/s in front of the test's sshd): the checkout shows one bar with the
# true rate and the time left, Cancel stops it (vms_client_cancel), and
# checking out again resumes: the new plan counts what arrived as already on
# the disk and estimates the time at the rate measured.  While the fetch
# runs, the image's row says "being downloaded"; after the cancel it shows
# the true state again, as vmsync leases tells it.  The CLI then checks the
# file against the version.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs jq

mkdir -p "$T/tree/data" "$T/srv" "$T/out"
for i in $(seq 16); do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 32M >/dev/null 2>&1 || fail "mke2fs -d failed"
vm_ok "$T/init" init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"
relay_start --rate 8000000

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh"
cp "$T/kh-relay" "$HOME/.ssh/known_hosts"
URL="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start
GUI_OUT=$T/out/desk.img VMSYNC_REPO=$T/srv/repo gui_py - <<'PY' || fail "driving the window failed (see the log)"
import json, os, re, subprocess
from gui_atspi import *
ROW = "version 1 · 32.0 MiB · "

def plan_body():
    plan = plan_checkout(app, "desk", os.environ["GUI_OUT"])
    body = [l for l in labels(plan) if "to download" in l]
    print("# plan:", body)
    return plan, body[0]

def true_state():
    """The row's state from the CLI's view of the lease."""
    out = subprocess.run([os.environ["VMSYNC"], "leases", os.environ["VMSYNC_REPO"], "--json"],
                         check=True, capture_output=True, text=True).stdout
    mine = [l for l in json.loads(out)["leases"] if l["image"] == "desk" and l["host"] == "laptop"]
    return "checked out here (version 1)" if mine else "not here"

def progress():
    return [l for l in labels(app) if l.startswith("Fetching: ")]

with driving() as app:
    wait_find(app, "label", "version 1 · 32.0 MiB · not here", timeout=30)
    plan, body = plan_body()
    assert body.endswith("; the time is unknown: no rate has been measured yet"), body
    press(wait_find(plan, "push button", "Check out"))
    # cancel early in the fetch, once its first segment (4 MiB) is on the
    # disk, then resume
    shown = wait_until("the fetch under way", lambda: [l for l in progress()
                       if float(l.split(" ")[1]) > 4.5], timeout=30)
    print("# progress:", shown[0])
    wait_find(app, "label", ROW + "being downloaded", timeout=5)
    press(wait_find(app, "push button", "Cancel checkout"))
    stopped = wait_until("the cancel's toast", lambda: [l for l in labels(app) if l.startswith("Checkout cancelled; checking out again resumes it")], timeout=10)
    print("# toast:", stopped[0])
    state = true_state()
    wait_find(app, "label", ROW + state, timeout=20)
    assert not [l for l in labels(app) if "being downloaded" in l], "still said downloading"
    print("# after the cancel:", state)
    plan, body = plan_body()
    m = re.match(r"([0-9.]+) MiB from your disk, ([0-9.]+) MiB to download", body)
    assert m and float(m.group(1)) > 0, "the new plan resumes nothing: " + body
    press(wait_find(plan, "push button", "Check out"))
    # the true rate, and the time left at it
    shown = wait_until("a rate and a time left", lambda: [l for l in progress()
                       if re.search(r" · [0-9.]+ MiB/s · [0-9]+ s left$", l)], timeout=30)
    print("# progress:", shown[0])
    wait_find(app, "label", "desk@1 is checked out", timeout=40)
    # the next plan estimates the time at the rate the fetch measured
    os.environ["GUI_OUT"] += ".second"
    plan, body = plan_body()
    assert re.fullmatch(r"0.0 MiB from your disk, [0-9.]+ MiB to download, about [0-9]+ s at the "
                        r"measured rate \([0-9.]+ MiB/s\)", body), body
    press(wait_find(plan, "push button", "Cancel"))
    wait_gone(app, "dialog", "Check out desk@1?")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
vm "$T/verify" verify "$T/srv/repo" desk@1 "$T/out/desk.img"
((VM_RC == 0)) || bad "vmsync verify: the resumed checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
