#!/usr/bin/env bash
# vmsync-gtk checks in over ssh://, through a throttled link (tests/lib/relay.py
# at 8 Mbit/s in front of the test's sshd).  The CLI checked desk out over
# the same sshd as the window's host; 8 MiB of new data went into the image.
# The window is told the file by hand (it made no checkout, so it has no
# record), shows the changes and about 8 MiB of new data, and sends with its
# progress: the scan, then "Sending: ..." once the spooled objects go.  Cancel
# stops the send: the repository still has one version and the lease is still
# laptop's.  "Check in" again sends with a true rate and time left, and
# records desk@2, which `vmsync verify` finds equal to the file.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs debugfs jq

mkdir -p "$T/tree/data" "$T/srv" "$T/out"
for i in 0 1; do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 24M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"
relay_start --rate 8000000

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
FILE=$T/out/desk.img
vm_ok "$T/co" checkout "$SSHD_URL_BASE/repo" desk -o "$FILE" -i "$SSH_CLIENT_KEY" \
    --known-hosts "$SSH_KNOWN_HOSTS"
head -c $((8 << 20)) /dev/urandom >"$T/big"
debugfs -w -R "write $T/big /data/big" "$FILE" >/dev/null 2>&1 || fail "debugfs could not write into $FILE"

gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh"
cp "$T/kh-relay" "$HOME/.ssh/known_hosts"
URL="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$XDG_CONFIG_HOME/vmsync/config"
cat >"$T/lease.sh" <<SH
"$VMSYNC" log "$R" desk --json >"$T/mid-log.json"
"$VMSYNC" leases "$R" --json >"$T/mid-leases.json"
SH
gui_start
GUI_FILE=$FILE GUI_MID=$T/lease.sh gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os, re, subprocess
from gui_atspi import *

def status(dlg, prefix):
    return [l for l in labels(dlg) if l.startswith(prefix)]

with driving() as app:
    wait_find(app, "label", "version 1 · 24.0 MiB · checked out here (version 1)", timeout=30)
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    entry = wait_find(dlg, "text", "File to check in")
    assert text_of(entry) == "", "a file offered with no checkout recorded: %r" % text_of(entry)
    set_text(entry, os.environ["GUI_FILE"])
    press(wait_find(dlg, "push button", "Show changes"))
    summary = wait_until("the summary", lambda: status(dlg, "1 added, "), timeout=40)[0]
    print("# summary:", summary)
    assert re.fullmatch(r"1 added, 0 removed, 0 changed, 0 moved · about 8\.[0-9] MiB of new "
                        r"data \(before compression\)", summary), summary
    assert labels(wait_find(dlg, "list", "Changes")) == ["added /data/big"]
    set_text(wait_find(dlg, "text", "Message"), "big")
    press(wait_find(dlg, "push button", "Check in"))
    shown = wait_until("the send under way", lambda: [l for l in status(dlg, "Sending: ")
                       if float(l.split(" ")[1]) > 0], timeout=30)
    print("# progress:", shown[0])
    press(wait_find(dlg, "push button", "Cancel"))
    wait_find(dlg, "label", "Cancelled.", timeout=10)
    subprocess.run(["bash", os.environ["GUI_MID"]], check=True)
    press(wait_find(dlg, "push button", "Check in"))
    rated = wait_until("a rate and a time left", lambda: [l for l in status(dlg, "Sending: ")
                       if re.search(r"[0-9.]+ MiB/s · [0-9]+ s left$", l)], timeout=30)
    print("# progress:", rated[0])
    wait_find(app, "label", "desk@2 is checked in", timeout=60)
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
jq -se 'length == 1' "$T/mid-log.json" >/dev/null || bad "the cancelled check-in recorded a version: $(cat "$T/mid-log.json")"
[[ $(jq -r '.leases[0].host' "$T/mid-leases.json") == laptop ]] ||
    bad "after the cancel the lease is not laptop's: $(cat "$T/mid-leases.json")"
vm_ok "$T/log" log "$R" desk --json
[[ $(jq -rs '.[1].message' "$T/log.out") == big ]] || bad "desk@2 is not the window's: $(cat "$T/log.out")"
vm "$T/verify" verify "$R" desk@2 "$FILE"
((VM_RC == 0)) || bad "vmsync verify: desk@2 is not the checked-in file (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
