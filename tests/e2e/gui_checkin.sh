#!/usr/bin/env bash
# vmsync-gtk checks an image in, driven through AT-SPI under Xvfb.
#
# 1. The window checks "desk" out; the settings then record the file.
#    Toasts that come 60 ms apart, each replacing the last, leave the window
#    running (libadwaita 1.2 freed a toast dismissed while it slid in).  The
#    window closes cleanly with the check-in dialog open.
# 2. Files change inside the ext4 image (debugfs -w: one written, one
#    removed, one rewritten, one moved with ln + unlink).  A new window
#    offers the recorded file, and the changes it lists and counts are
#    `vmsync diff` of the same pair, line for line; the new data it announces
#    is about the two new files.  Escape closes the dialog.  Checked in with a message: `vmsync log`
#    has desk@2 with it, and `vmsync verify` finds the file's digest there.
# 3. The CLI checks desk@2 out to another file, which the window is told by
#    hand.  While its dialog is open, another host steals the lease and checks
#    in first.  The window's check-in is refused and says so in plain words
#    (who checked in which version, the file untouched), with only safe
#    options.  "Save as a new image" first refuses the name "desk" (it
#    exists: nothing is added to it), then saves under desk-laptop, which
#    `vmsync verify` finds equal to the file.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs debugfs jq xdotool

mkdir -p "$T/tree/data" "$T/srv" "$T/out"
for i in 0 1 2 3; do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
R=$T/srv/repo
vm_ok "$T/init" init "$R"
vm_ok "$T/imp" import "$R" "$T/desk.img" --name desk -q

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
CONFIG=$XDG_CONFIG_HOME/vmsync/config
printf '[repository]\nurl = %s\n' "$R" >"$CONFIG"
FILE=$T/out/desk.img

# gui_run NAME: runs the window with the driver in $T/NAME.py, then checks
# that it closed cleanly and left its private TMPDIR empty (the comparison's
# manifests list every path of the image)
mkdir -p "$T/tmp"
gui_run() {
    TMPDIR=$T/tmp gui_start
    gui_py "$T/$1.py" || fail "driving the window ($1) failed (see the log)"
    gui_exit_ok "$1"
    [[ -z $(ls -A "$T/tmp") ]] || bad "the window ($1) left files in its TMPDIR: $(ls -A "$T/tmp")"
    cat "$T/gtk.err" >>"$T/gtk-all.err"
}

# ---- 1. the window checks desk out, and remembers the file ----
cat >"$T/checkout.py" <<'PY'
import os, subprocess, time
from gui_atspi import *

with driving() as app:
    press(wait_find(app, "push button", "Check out desk"))
    dlg = wait_find(app, "dialog", "Check out desk")
    set_text(wait_find(dlg, "text", "Output file"), os.environ["GUI_FILE"])
    press(wait_find(dlg, "push button", "Plan"))
    plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=40)
    # the window closes with the check-in dialog open (its comparison done):
    # the process still ends cleanly
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    wait_until("the summary", lambda: [l for l in labels(dlg) if " added, " in l], timeout=40)
    # toasts that come fast, each replacing the last: libadwaita 1.2 freed
    # one dismissed before it had slid in, and the window crashed as its
    # show ended.  Real clicks (an AT-SPI press waits 250 ms), 60 ms apart,
    # on "Show changes" with no file: a toast each, and no job.
    set_text(wait_find(dlg, "text", "File to check in"), "")
    x, y, w, h = wait_find(dlg, "push button", "Show changes").queryComponent().getExtents(
        pyatspi.WINDOW_COORDS)
    wid = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name",
                          "^Check in desk$"], check=True, timeout=20, capture_output=True,
                         text=True).stdout.split()[-1]
    subprocess.run(["xdotool", "mousemove", "--window", wid, str(x + w // 2), str(y + h // 2),
                    "click", "--repeat", "8", "--delay", "60", "1"], check=True, timeout=20)
    wait_find(app, "label", "Name the file that holds the checkout.")
    time.sleep(1.5) # every show has ended: the window is still there
    press(wait_find(wait_find(app, "frame", "vmsync"), "push button", "Close"))
PY
export GUI_FILE=$FILE
gui_run checkout
grep -qxF "file = $FILE" "$CONFIG" || fail "the settings do not record the checkout's file: $(cat "$CONFIG")"

# ---- 2. change files inside the image, check the changes in ----
cp --sparse=always "$FILE" "$T/before.img"
head -c $((1 << 20)) /dev/urandom >"$T/added"
head -c $((1 << 20)) /dev/urandom >"$T/rewritten"
debugfs -w -f - "$FILE" >"$T/debugfs.log" 2>&1 <<CMDS || fail "debugfs failed: $(tail -3 "$T/debugfs.log")"
write $T/added /data/added
rm /data/f0
rm /data/f1
write $T/rewritten /data/f1
ln /data/f2 /data/moved
unlink /data/f2
CMDS
vm_ok "$T/diff" diff "$T/before.img" "$FILE"
info "vmsync diff: $(tr '\n' ';' <"$T/diff.out")"
for l in A D M R; do
    [[ $(grep -c "^$l " "$T/diff.out") -ge 1 ]] || fail "the edits gave no '$l' line: $(cat "$T/diff.out")"
done

cat >"$T/checkin.py" <<'PY'
import os, re, subprocess
from gui_atspi import *
# vmsync diff's lines in the window's words: "A /x" is "added /x", and the
# list of what changed in a file is spaced: "(content, size)"
WORDS = {"A": "added", "D": "removed", "M": "changed", "R": "moved"}
cli = open(os.environ["GUI_DIFF"]).read().splitlines()
want = [WORDS[l[0]] + l[1:].replace(",", ", ") if l.endswith(")") else WORDS[l[0]] + l[1:]
        for l in cli]

with driving() as app:
    # Escape closes the dialog, a real key sent to it
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    wait_until("the summary", lambda: [l for l in labels(dlg) if " added, " in l], timeout=40)
    wid = subprocess.run(["xdotool", "search", "--sync", "--onlyvisible", "--name",
                          "^Check in desk$"], check=True, timeout=20, capture_output=True,
                         text=True).stdout.split()[-1]
    subprocess.run(["xdotool", "windowfocus", "--sync", wid], check=True, timeout=20)
    subprocess.run(["xdotool", "key", "Escape"], check=True, timeout=20)
    wait_gone(app, "dialog", "Check in desk")
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    entry = wait_find(dlg, "text", "File to check in")
    assert text_of(entry) == os.environ["GUI_FILE"], "not the recorded file: %r" % text_of(entry)
    summary = wait_until("the summary", lambda: [l for l in labels(dlg) if " added, " in l],
                         timeout=40)[0]
    print("# summary:", summary)
    got = labels(wait_find(dlg, "list", "Changes"))
    assert got == want, "the window lists %r, vmsync diff %r" % (got, want)
    n = {k: sum(1 for l in cli if l.startswith(k + " ")) for k in "ADMR"}
    m = re.fullmatch(r"(\d+) added, (\d+) removed, (\d+) changed, (\d+) moved · about "
                     r"([0-9.]+) MiB of new data \(before compression\)", summary)
    assert m, summary
    assert [int(x) for x in m.groups()[:4]] == [n["A"], n["D"], n["M"], n["R"]], (summary, n)
    # the two new files, a MiB each, and a little metadata; never the moved file
    assert 2.0 <= float(m.group(5)) < 2.5, summary
    set_text(wait_find(dlg, "text", "Message"), "notes from the train")
    press(wait_find(dlg, "push button", "Check in"))
    wait_find(app, "label", "desk@2 is checked in", timeout=40)
    wait_gone(app, "dialog", "Check in desk")
    wait_find(app, "label", "version 2 · 16.0 MiB · not here")
    press(wait_find(app, "push button", "Close"))
PY
export GUI_DIFF=$T/diff.out
gui_run checkin
vm_ok "$T/log" log "$R" desk --json
jq -se 'length == 2' "$T/log.out" >/dev/null || bad "desk has not two versions: $(cat "$T/log.out")"
[[ $(jq -rs '.[1].message' "$T/log.out") == "notes from the train" ]] ||
    bad "desk@2 does not hold the message: $(cat "$T/log.out")"
vm "$T/verify" verify "$R" desk@2 "$FILE"
((VM_RC == 0)) || bad "vmsync verify: desk@2 is not the checked-in file (exit $VM_RC): $(head -c 300 "$T/verify.err")"

# ---- 3. another host checks in first: refused in plain words, saved as new ----
FILE2=$T/out/desk2.img
vm_ok "$T/co2" checkout "$R" desk -o "$FILE2"
printf 'laptop, again\n' >"$T/note"
debugfs -w -R "write $T/note /data/note" "$FILE2" >/dev/null 2>&1 || fail "debugfs could not write into $FILE2"
cat >"$T/other.sh" <<SH
set -e
export VMSYNC_HOST=other
"$VMSYNC" checkout "$R" desk --steal -o "$T/other.img" >"$T/other.log" 2>&1
printf 'from the other host\n' >"$T/other-note"
debugfs -w -R "write $T/other-note /data/other" "$T/other.img" >/dev/null 2>&1
"$VMSYNC" checkin "$R" desk "$T/other.img" -m "the other host's work" >>"$T/other.log" 2>&1
SH
cat >"$T/conflict.py" <<'PY'
import os, re, subprocess
from gui_atspi import *

with driving() as app:
    wait_find(app, "label", "version 2 · 16.0 MiB · checked out here (version 2)")
    press(wait_find(app, "push button", "Check in desk"))
    dlg = wait_find(app, "dialog", "Check in desk")
    # the recorded file (desk.img) is compared first; this checkout is another
    wait_until("the first comparison", lambda: [l for l in labels(dlg) if " added, " in l],
               timeout=40)
    set_text(wait_find(dlg, "text", "File to check in"), os.environ["GUI_FILE2"])
    press(wait_find(dlg, "push button", "Show changes"))
    wait_until("the changes", lambda: labels(wait_find(dlg, "list", "Changes")) == ["added /data/note"],
               timeout=40)
    subprocess.run(["bash", os.environ["GUI_OTHER"]], check=True)
    set_text(wait_find(dlg, "text", "Message"), "mine")
    press(wait_find(dlg, "push button", "Check in"))
    refusal = wait_find(app, "dialog", "Someone else checked desk in first", timeout=40)
    body = " ".join(labels(refusal))
    print("# refusal:", body)
    user = os.environ["GUI_USER"]
    for part in ["%s@other checked in desk@3 on " % user, "after the version 2 you checked out",
                 "Nobody holds it now", "your file %s is untouched" % os.environ["GUI_FILE2"]]:
        assert part in body, "the refusal does not say %r: %s" % (part, body)
    # (the dialog lays its buttons out twice, in a row and in a column)
    buttons = sorted(set(l for b in find_all(refusal, "push button") for l in labels(b)))
    assert buttons == ["Keep my file", "Save as a new image…"], buttons
    press(wait_find(refusal, "push button", "Save as a new image…"))
    ask = wait_find(app, "dialog", "Save as a new image")
    name = wait_find(ask, "text", "New image name")
    assert text_of(name) == "desk-laptop", text_of(name)
    set_text(name, "desk")
    press(wait_find(ask, "push button", "Save"))
    wait_find(app, "label", "desk: already exists (version 3, checked in by %s@other): choose "
              "another name" % user, timeout=40)
    ask = wait_find(app, "dialog", "Save as a new image")
    set_text(wait_find(ask, "text", "New image name"), "desk-laptop")
    press(wait_find(ask, "push button", "Save"))
    wait_find(app, "label", "desk-laptop@1 is saved as a new image", timeout=40)
    press(wait_find(app, "push button", "Close"))
PY
export GUI_FILE2=$FILE2 GUI_OTHER=$T/other.sh GUI_USER=${USER:-$(id -un)}
gui_run conflict
vm_ok "$T/log3" log "$R" desk --json
jq -se 'length == 3' "$T/log3.out" >/dev/null ||
    bad "desk should have the other host's version 3 and nothing of ours: $(cat "$T/log3.out")"
[[ $(jq -rs '.[2].host' "$T/log3.out") == other ]] || bad "desk@3 is not the other host's: $(cat "$T/log3.out")"
vm "$T/verify2" verify "$R" desk-laptop@1 "$FILE2"
((VM_RC == 0)) || bad "vmsync verify: desk-laptop@1 is not the user's file (exit $VM_RC): $(head -c 300 "$T/verify2.err")"
vm "$T/verify3" verify "$R" desk@3 "$T/other.img"
((VM_RC == 0)) || bad "the other host's desk@3 changed (exit $VM_RC): $(head -c 300 "$T/verify3.err")"
finish
