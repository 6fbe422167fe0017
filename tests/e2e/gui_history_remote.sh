#!/usr/bin/env bash
# vmsync-gtk's history over ssh:// (the test's sshd behind tests/lib/relay.py),
# and a history window closed while its comparison runs.  The image holds
# 4000 small files, so a manifest is well over 100 KB; the relay stalls the
# window's first connection once 100 KB have come down, which is inside the
# comparison's first manifest fetch.  Closing the window then must cancel
# the comparison, leave no temporary folder, and free the repository for
# the next job: the list refreshes, and a new history window compares the
# two versions over a new connection, with the paths `vmsync diff --json`
# gives.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/relay.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs debugfs jq ss

mkdir -p "$T/tree/many" "$T/srv"
python3 - "$T/tree/many" <<'PY'
import os, sys
for i in range(4000):
    with open(os.path.join(sys.argv[1], "f%04d" % i), "wb") as f:
        f.write(os.urandom(16))
PY
mke2fs -q -F -t ext4 -N 8192 -d "$T/tree" "$T/desk.img" 32M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
export VMSYNC_CACHE=$T/cache
vm_ok "$T/init" init "$R"
USER=alice VMSYNC_HOST=lab vm_ok "$T/imp" import "$R" "$T/desk.img" --name desk -m "many files" -q
USER=alice VMSYNC_HOST=lab vm_ok "$T/co" checkout "$R" desk -o "$T/w.img" -q
echo new >"$T/new.txt"
printf 'write %s /new\nrm /many/f0001\n' "$T/new.txt" | debugfs -w -f - "$T/w.img" >/dev/null 2>&1 ||
    fail "debugfs -w failed"
USER=alice VMSYNC_HOST=lab vm_ok "$T/ci" checkin "$R" desk "$T/w.img" -m "one in, one out" -q
vm_ok "$T/d12" diff "$R" desk@1 desk@2 --json
vm_ok "$T/man" manifest "$T/desk.img" -o "$T/desk.vmsm"
(($(stat -c %s "$T/desk.vmsm") > 130000)) || fail "the manifest is too small to stall in: $(stat -c %s "$T/desk.vmsm") bytes"

sshd_start "$T/sshd" "$T/srv"
# the window's host holds the lease, taken over ssh:// past the relay (whose
# stall is for the window's first connection)
VMSYNC_HOST=laptop vm_ok "$T/co-here" checkout "$SSHD_URL_BASE/repo" desk -o "$T/here.img" -q \
    --known-hosts "$SSH_KNOWN_HOSTS" -i "$SSH_CLIENT_KEY"
relay_start --stall-after 100000

export VMSYNC_HOST=laptop
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh" "$T/tmp"
cp "$T/kh-relay" "$HOME/.ssh/known_hosts"
URL="ssh://$SSHD_USER@127.0.0.1:$RELAY_PORT/repo"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$XDG_CONFIG_HOME/vmsync/config"
export TMPDIR=$T/tmp
gui_start
GUI_T=$T GUI_PORT=$RELAY_PORT gui_py - <<'PY' || fail "driving the window failed (see the log)"
import json, os, subprocess
from gui_atspi import *
T, PORT = os.environ["GUI_T"], os.environ["GUI_PORT"]

def history_frame():
    return find(app, "frame", "History of desk")

def history():
    """Opens the history window and waits for its versions; a window that
    finds the repository still busy (the cancelled job's answer on its way
    to the main loop) is closed and opened again."""
    def opened():
        press(wait_find(app, "push button", "History of desk"))
        hist = wait_until("the history window", history_frame)
        def answered():
            now = labels(hist)
            return ("busy" if any("busy" in l for l in now) else
                    "ok" if "one in, one out" in now else None)
        if wait_until("the versions", answered, timeout=30) == "ok":
            return hist
        press(wait_find(hist, "push button", "Close"))
        wait_until("the busy window to close", lambda: not history_frame())
        return None
    return wait_until("a history window with the versions", opened, timeout=30)

def window_links():
    """The window's TCP connections to the relay, established."""
    out = subprocess.run(["ss", "-Htn", "state", "established", "( dport = :%s )" % PORT],
                         check=True, capture_output=True, text=True).stdout
    return [l for l in out.splitlines() if l.strip()]

def stalled():
    try:
        return json.load(open(T + "/relay.json"))["stalled"] == 1
    except (OSError, ValueError):
        return False

with driving() as app:
    wait_find(app, "label", "version 2 · 32.0 MiB · checked out here (version 2)", timeout=30)
    hist = history()
    print("# the first history window")
    wait_find(hist, "label", "many files")
    press(wait_find(hist, "push button", "Compare"))
    wait_find(hist, "label", "Comparing version 1 with version 2…")
    wait_until("the link to stall", stalled, timeout=30)
    press(wait_find(hist, "push button", "Close"))
    wait_until("the history window to close", lambda: not history_frame())
    # closing cancelled the comparison: the stalled link is closed
    wait_until("the stalled link to close", lambda: not window_links(), timeout=10)
    print("# the link closed after the window")
    hist = history()
    press(wait_find(hist, "push button", "Compare"))
    d = json.load(open(T + "/d12.out"))
    want = sorted(["added " + e["path"] for e in d["added"]] +
                  ["removed " + e["path"] for e in d["removed"]])
    assert want == ["added /new", "removed /many/f0001"] and not d["changed"] and not d["moved"], d
    wait_find(hist, "label", "version 1 → version 2: 1 added, 1 removed, 0 changed, 0 moved",
              timeout=30)
    box = wait_find(hist, "list", "Changed files")
    got = sorted(labels(box))
    assert got == want, "window %r, CLI %r" % (got, want)
    press(wait_find(hist, "push button", "Close"))
    wait_until("the history window to close", lambda: not history_frame())
    # over ssh:// the lease names the agent's user: the host says it is ours
    press(wait_find(app, "push button", "Release desk"))
    press(wait_find(wait_find(app, "dialog", "Release desk?"), "push button", "Release"))
    wait_find(app, "label", "desk is released", timeout=30)
    wait_find(app, "label", "version 2 · 32.0 MiB · not here", timeout=30)
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
vm_ok "$T/leases" leases "$R" --json
[[ $(jq '.leases | length' "$T/leases.out") == 0 ]] || bad "after the release the leases are $(cat "$T/leases.out")"
vm_ok "$T/audit" audit "$R" desk --json
[[ $(jq -c '[.entries[] | select(.action == "release") | .host]' "$T/audit.out") == '["laptop"]' ]] ||
    bad "the audit log has not one release by laptop: $(cat "$T/audit.out")"
[[ -z $(ls -A "$T/tmp") ]] || bad "the comparisons left files in TMPDIR: $(ls -A "$T/tmp")"
(($(jq -r .connections "$T/relay.json") >= 2)) || bad "the window did not connect again after the cancel"
finish
