#!/usr/bin/env bash
# The laptop's whole cycle in vmsync-gtk, as its user goes through it, under
# Xvfb and driven through AT-SPI, with a screenshot at each step (kept in the
# test's log folder, TEST_NAME.shots):
#   1. the window opens empty; a local repository is added and listed;
#   2. an ssh:// repository (the test's real sshd) is added with a key file;
#      its unknown host key is shown with its fingerprint and remembered;
#   3. desk is checked out from it with a seed found in the seed folder: the
#      plan counts MiB from the disk before anything moves;
#   4. files change inside the checked-out image (debugfs -w);
#   5. the check-in dialog shows the changes, and desk@2 is checked in with a
#      message;
#   6. the history lists both versions and compares them.
# The CLI then checks the result in the repository: desk@2 with the message,
# by this laptop, holding the file's digest (vmsync verify), and the key in
# the known hosts file.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs debugfs jq ssh-keygen

mkdir -p "$T/tree/data" "$T/srv" "$T/seeds" "$T/out" "$T/local"
for i in 0 1 2 3 4 5; do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/seeds/desk-last-month.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
head -c $((2 << 20)) /dev/urandom >"$T/tree/data/report"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
mkdir -p "$T/notes-tree"
printf 'to do\n' >"$T/notes-tree/todo"
mke2fs -q -F -t ext4 -d "$T/notes-tree" "$T/notes.img" 8M >/dev/null 2>&1 || fail "mke2fs -d failed"
vm_ok "$T/init" init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q -m "the golden desk"
vm_ok "$T/init-local" init "$T/local/repo"
vm_ok "$T/imp-local" import "$T/local/repo" "$T/notes.img" --name notes -q
sshd_start "$T/sshd" "$T/srv"
URL=$SSHD_URL_BASE/repo

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[seeds]\nfolder = %s\n' "$T/seeds" >"$XDG_CONFIG_HOME/vmsync/config"
FILE=$T/out/desk.img

# step 4, run by the driver between the checkout and the check-in
cat >"$T/edit.sh" <<SH
set -e
printf 'minutes of the meeting\n' >"$T/minutes"
head -c 1048576 /dev/urandom >"$T/f1-new"
debugfs -w -f - "$FILE" >"$T/debugfs.log" 2>&1 <<CMDS
write $T/minutes /data/minutes
rm /data/f0
rm /data/f1
write $T/f1-new /data/f1
CMDS
SH

gui_start
GUI_LOCAL=$T/local/repo GUI_URL=$URL GUI_KEY=$SSH_CLIENT_KEY GUI_FILE=$FILE \
    GUI_SEED=$T/seeds/desk-last-month.img GUI_EDIT=$T/edit.sh \
    GUI_FP=$(ssh-keygen -lf "$T/sshd/host_key.pub" | awk '{print $2}') gui_py - <<'PY' ||
import os, re, subprocess
from gui_atspi import *
import pyatspi
E = os.environ

def add_repo(location, key=None):
    press(wait_find(app, "push button", "Add repository"))
    dlg = wait_find(app, "dialog", "Add a repository")
    set_text(wait_find(dlg, "text", "Repository location"), location)
    if key:
        set_text(wait_find(dlg, "text", "Key file"), key)
    screenshot("add-repository")
    press(wait_find(dlg, "push button", "Add"))

with driving() as app:
    wait_find(app, "label", "No repository yet")
    screenshot("empty")
    # 1. a local repository
    add_repo(E["GUI_LOCAL"])
    wait_find(app, "list item", E["GUI_LOCAL"])
    wait_find(app, "label", "version 1 · 8.0 MiB · not here", timeout=30)
    screenshot("local-repository")
    # 2. an ssh:// one: its unknown host key, remembered
    add_repo(E["GUI_URL"], E["GUI_KEY"])
    ask = wait_find(app, "dialog", "Trust the host key of 127.0.0.1?", timeout=30)
    body = " ".join(labels(ask))
    assert E["GUI_FP"] in body, "the dialog does not show the fingerprint %s: %s" % (E["GUI_FP"], body)
    screenshot("host-key")
    press(wait_find(ask, "push button", "Remember"))
    wait_find(app, "label", "version 1 · 16.0 MiB · not here", timeout=30)
    screenshot("ssh-repository")
    # 3. check out with the seed from the seed folder; the plan first
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    set_text(wait_find(dlg, "text", "Output file"), E["GUI_FILE"])
    seed = wait_find(dlg, "check box", E["GUI_SEED"])
    assert seed.getState().contains(pyatspi.STATE_CHECKED), "the seed found is not ticked"
    screenshot("checkout")
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    body = [l for l in labels(plan) if "to download" in l]
    m = body and re.match(r"([0-9.]+) MiB from your disk, ([0-9.]+) MiB to download", body[0])
    assert m and float(m.group(1)) >= 4, "the plan takes little from the seed: %r" % body
    print("# plan:", body[0])
    screenshot("plan")
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=60)
    wait_find(app, "label", "version 1 · 16.0 MiB · checked out here (version 1)")
    screenshot("checked-out")
    # 4. work inside the image
    subprocess.run(["bash", E["GUI_EDIT"]], check=True, timeout=60)
    # 5. check in: the changes, a message, the send
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    summary = wait_until("the changes", lambda: [l for l in labels(dlg) if " added, " in l],
                         timeout=60)[0]
    print("# changes:", summary)
    assert summary.startswith("1 added, 1 removed, 1 changed, 0 moved"), summary
    lines = labels(wait_find(dlg, "list", "Changes"))
    assert sorted(lines) == ["added /data/minutes", "changed /data/f1 (content)", "removed /data/f0"], lines
    set_text(wait_find(dlg, "text", "Message"), "minutes of the meeting")
    screenshot("checkin")
    press(wait_find(dlg, "push button", "Check in"))
    wait_find(app, "label", "desk@2 is checked in", timeout=60)
    wait_find(app, "label", "version 2 · 16.0 MiB · not here", timeout=30)
    screenshot("checked-in")
    # 6. the history, and what changed between the two versions
    press(wait_find(app, "push button", "History of desk"))
    hist = wait_find(app, "frame", "History of desk")
    wait_find(hist, "label", "minutes of the meeting", timeout=30)
    wait_find(hist, "label", "the golden desk")
    press(wait_find(hist, "push button", "Compare"))
    wait_find(hist, "label", "version 1 → version 2: 1 added, 1 removed, 1 changed, 0 moved",
              timeout=30)
    screenshot("history")
    press(wait_find(hist, "push button", "Close"))
    wait_gone(app, "frame", "History of desk")
    press(wait_find(app, "push button", "Close"))
PY
    fail "driving the window failed (see the log)"
gui_exit_ok

info "the repository, as the CLI sees it"
grep -q "127.0.0.1" "$HOME/.ssh/known_hosts" || bad "the remembered key is not in $HOME/.ssh/known_hosts"
vm_ok "$T/log" log "$URL" desk --json
jq -se 'length == 2' "$T/log.out" >/dev/null || bad "desk has not two versions: $(cat "$T/log.out")"
jq -se '.[1] | .message == "minutes of the meeting" and .host == "laptop" and .parent == 1' \
    "$T/log.out" >/dev/null || bad "desk@2 is not the window's check-in: $(cat "$T/log.out")"
vm "$T/verify" verify "$URL" desk@2 "$FILE"
((VM_RC == 0)) || bad "vmsync verify: desk@2 does not hold the checked-in file (exit $VM_RC): $(head -c 300 "$T/verify.err")"
vm_ok "$T/leases" leases "$URL" --json
jq -e '.leases | length == 0' "$T/leases.out" >/dev/null || bad "a lease is left: $(cat "$T/leases.out")"
grep -qxF "url = $URL" "$XDG_CONFIG_HOME/vmsync/config" || bad "the settings do not list $URL"
shots=$(find "$GUI_SHOTS" -name '*.png' | wc -l)
((shots >= 10)) || bad "only $shots screenshots in $GUI_SHOTS"
info "screenshots: $GUI_SHOTS"
finish
