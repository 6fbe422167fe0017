#!/usr/bin/env bash
# vmsync-gtk shows an image's history and gives a lease back, driven through
# AT-SPI under Xvfb.  The CLI makes three versions of "desk" by two users on
# two hosts (an import, then two checkouts changed with debugfs -w and
# checked in, one message holding a newline), then checks desk out as the
# window's user and host; "other" is held by bob@ws.
#
# The window must list the three versions with who, when and the message as
# the CLI quotes it; comparing 2 with 3 (the default) and 1 with 3 must show
# the counts and the paths `vmsync diff REPO desk@A desk@B --json` gives.
# Release: a Cancel in the confirmation leaves the lease (vmsync leases);
# confirming gives it back (vmsync leases is empty, vmsync audit has the
# release by the window's user and host); other's lease has no button.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs debugfs jq xdotool

mkdir -p "$T/tree/data" "$T/tree/etc" "$T/srv"
for f in a b c; do head -c 300000 /dev/urandom >"$T/tree/data/$f"; done
echo one >"$T/tree/etc/conf"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
export VMSYNC_CACHE=$T/cache
vm_ok "$T/init" init "$R"

# as_who USER HOST ARGS...: the CLI as USER on HOST
as_who() { local u=$1 h=$2; shift 2; USER=$u VMSYNC_HOST=$h vm_ok "$@"; }
# edit IMG COMMANDS: debugfs -w on IMG, one command a line
edit() { printf '%s\n' "$2" | debugfs -w -f - "$1" >/dev/null 2>&1 || fail "debugfs -w $1 failed"; }

as_who alice lab "$T/imp" import "$R" "$T/desk.img" --name desk -m "first import" -q
as_who bob ws "$T/co2" checkout "$R" desk -o "$T/w2.img" -q
echo new >"$T/new.txt"
edit "$T/w2.img" "write $T/new.txt /data/new
rm /data/b"
as_who bob ws "$T/ci2" checkin "$R" desk "$T/w2.img" -m "add new, drop b" -q
as_who alice lab "$T/co3" checkout "$R" desk -o "$T/w3.img" -q
echo two >"$T/conf2.txt"
edit "$T/w3.img" "rm /etc/conf
write $T/conf2.txt /etc/conf
ln /data/c /data/c2
unlink /data/c"
as_who alice lab "$T/ci3" checkin "$R" desk "$T/w3.img" -m $'fix conf\nrename c' -q
as_who bob ws "$T/imp2" import "$R" "$T/desk.img" --name other -q
as_who bob ws "$T/co-other" checkout "$R" other -o "$T/other.img" -q
# the window's own lease: its user and host
as_who carol laptop "$T/co-here" checkout "$R" desk -o "$T/here.img" -q

vm_ok "$T/log" log "$R" desk --json
vm_ok "$T/d23" diff "$R" desk@2 desk@3 --json
vm_ok "$T/d13" diff "$R" desk@1 desk@3 --json
[[ $(jq -s length "$T/log.out") == 3 ]] || fail "the CLI made $(jq -s length "$T/log.out") versions, not 3"

export USER=carol VMSYNC_HOST=laptop
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[repository]\nurl = %s\n' "$R" >"$XDG_CONFIG_HOME/vmsync/config"
# the window's private folders for the manifests it compares go here
mkdir -p "$T/tmp"
export TMPDIR=$T/tmp
gui_start
GUI_T=$T GUI_REPO=$R GUI_VMSYNC=$VMSYNC gui_py - <<'PY' || fail "driving the window failed (see the log)"
import json, os, subprocess, time
from gui_atspi import *
T, R = os.environ["GUI_T"], os.environ["GUI_REPO"]

def lease_hosts():
    out = subprocess.run([os.environ["GUI_VMSYNC"], "leases", R, "--json"], check=True,
                         capture_output=True, text=True).stdout
    return sorted("%s:%s@%s" % (l["image"], l["user"], l["host"]) for l in json.loads(out)["leases"])

def expected_changes(path):
    d = json.load(open(path))
    lines = ["added " + e["path"] for e in d["added"]]
    lines += ["removed " + e["path"] for e in d["removed"]]
    lines += ["changed %s (%s)" % (e["path"], ", ".join(e["what"])) for e in d["changed"]]
    lines += ["moved %s -> %s" % (e["from"], e["to"]) for e in d["moved"]]
    counts = "%d added, %d removed, %d changed, %d moved" % tuple(
        len(d[k]) for k in ("added", "removed", "changed", "moved"))
    return sorted(lines), counts

def compare(hist, a, b):
    want, counts = expected_changes("%s/d%d%d.out" % (T, a, b))
    press(wait_find(hist, "push button", "Compare"))
    summary = "version %d → version %d: %s" % (a, b, counts)
    wait_find(hist, "label", summary, timeout=30)
    box = wait_find(hist, "list", "Changed files")
    got = wait_until("%d changes listed" % len(want),
                     lambda: (lambda l: l if len(l) == len(want) else None)(sorted(labels(box))))
    print("# %d→%d:" % (a, b), summary, got)
    assert got == want, "window %r, CLI %r" % (got, want)
    assert all(n for n in want), want


with driving() as app:
    wait_find(app, "label", "version 3 · 16.0 MiB · checked out here (version 3)")
    wait_find(app, "push button", "History of other")
    assert find(app, "push button", "Release other") is None, "another holder's lease has a Release button"
    press(wait_find(app, "push button", "History of desk"))
    hist = wait_find(app, "frame", "History of desk")
    for line in open(T + "/log.out"):
        v = json.loads(line)
        when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(v["created"]))
        title = "version %d · %s · %s@%s" % (v["version"], when, v["user"], v["host"])
        wait_find(hist, "label", title)
        wait_find(hist, "label", v["message"].replace("\n", "\\n"))
    from_field = wait_find(hist, "spin button", "From")
    assert text_of(from_field) == "2", "From is %r, not the previous version" % text_of(from_field)
    assert text_of(wait_find(hist, "spin button", "To")) == "3"
    compare(hist, 2, 3)
    set_text(from_field, "1")
    compare(hist, 1, 3)
    # Escape closes it (there is no window manager: focus it by hand)
    xid = subprocess.run(["xdotool", "search", "--sync", "--name", "^History of desk$"], check=True,
                         capture_output=True, text=True).stdout.split()[0]
    subprocess.run(["xdotool", "windowfocus", "--sync", xid], check=True)
    subprocess.run(["xdotool", "key", "Escape"], check=True)
    wait_until("Escape to close the history window",
               lambda: not find_all(app, "frame", "History of desk"), timeout=10)

    press(wait_find(app, "push button", "Release desk"))
    ask = wait_find(app, "dialog", "Release desk?")
    body = " ".join(labels(ask))
    for words in ("stays where it is", "needs a new checkout", "audit log"):
        assert words in body, "the confirmation does not say %r: %r" % (words, body)
    press(wait_find(ask, "push button", "Cancel"))
    wait_gone(app, "dialog", "Release desk?")
    held = lease_hosts()
    assert held == ["desk:carol@laptop", "other:bob@ws"], "after a Cancel the leases are %r" % held
    press(wait_find(app, "push button", "Release desk"))
    press(wait_find(wait_find(app, "dialog", "Release desk?"), "push button", "Release"))
    wait_find(app, "label", "desk is released", timeout=30)
    wait_find(app, "label", "version 3 · 16.0 MiB · not here")
    wait_gone(app, "push button", "Release desk")
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
vm_ok "$T/leases" leases "$R" --json
[[ $(jq -c '[.leases[] | .image + ":" + .user + "@" + .host]' "$T/leases.out") == '["other:bob@ws"]' ]] ||
    bad "after the release the leases are $(cat "$T/leases.out")"
vm_ok "$T/audit" audit "$R" desk --json
releases=$(jq -c '[.entries[] | select(.action == "release") | .user + "@" + .host + " " + .image]' \
    "$T/audit.out")
[[ $releases == '["carol@laptop desk"]' ]] ||
    bad "the audit log has not one release of desk by carol@laptop: $(cat "$T/audit.out")"
[[ -z $(ls -A "$T/tmp") ]] || bad "the comparison left files in TMPDIR: $(ls -A "$T/tmp")"
finish
