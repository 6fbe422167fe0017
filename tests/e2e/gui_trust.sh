#!/usr/bin/env bash
# vmsync-gtk honours the settings' [trust] keys, driven through AT-SPI under
# Xvfb.  Three real repositories: "office" holds old@1 (imported before its
# key: unsigned) and desk@1 (signed by office's key, from `vmsync key
# generate`); "branch" holds desk@1 signed by a key of its own; "plain" has
# no key.  The settings file trusts office's key (`vmsync key show`).  One
# window per repository, each listed alone in the settings:
#   - office: the history says desk@1 is signed by a trusted key (its
#     fingerprint as `vmsync log --json` names the signer) and old@1 is not
#     signed; desk checks out (vmsync verify --trust says same); old is
#     refused with the engine's reason and "Nothing was written";
#   - office again, with a byte of desk@1's signature flipped (sqlite3):
#     the history says BAD SIGNATURE, and the checkout is refused as badly
#     signed;
#   - branch: the history says "a key not trusted here"; the checkout is
#     refused as signed by a key that is not trusted;
#   - plain: the checkout is refused as unsigned;
# and a refused checkout writes no file, no .vmsync-part, takes no lease.
# Last, a [trust] key file that is missing: the window says so naming the
# settings file and the key's, and lists nothing from a handle that cannot
# check signatures.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs jq python3

mkdir -p "$T/srv" "$T/out"
repo_motd_img old "$T/old.img" 200000
repo_motd_img desk "$T/desk.img" 200000
export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache

vm_ok "$T/init-office" init "$T/srv/office"
vm_ok "$T/imp-old" import "$T/srv/office" "$T/old.img" --name old -q
vm_ok "$T/key-office" key generate "$T/srv/office"
vm_ok "$T/show-office" key show "$T/srv/office"
cp "$T/show-office.out" "$T/office.pub"
vm_ok "$T/imp-desk" import "$T/srv/office" "$T/desk.img" --name desk -q
vm_ok "$T/init-branch" init "$T/srv/branch"
vm_ok "$T/key-branch" key generate "$T/srv/branch"
vm_ok "$T/imp-branch" import "$T/srv/branch" "$T/desk.img" --name desk -q
vm_ok "$T/init-plain" init "$T/srv/plain"
vm_ok "$T/imp-plain" import "$T/srv/plain" "$T/desk.img" --name desk -q

signer() { # REPO: desk@1's signer as the CLI names it
    vm_ok "$T/log" log "$1" desk --json
    jq -r 'select(.version == 1) | .signer' "$T/log.out"
}
OFFICE_FP=$(signer "$T/srv/office")
BRANCH_FP=$(signer "$T/srv/branch")
[[ $OFFICE_FP == SHA256:* && $BRANCH_FP == SHA256:* && $OFFICE_FP != "$BRANCH_FP" ]] ||
    fail "the signers are '$OFFICE_FP' and '$BRANCH_FP'"

gui_session
CFG=$XDG_CONFIG_HOME/vmsync/config
mkdir -p "$(dirname "$CFG")"
settings() { printf '[repository]\nurl = %s\n\n[trust]\nkey = %s\n' "$1" "$2" >"$CFG"; }

# The driver: python3 drive.py MODE, MODE one of the runs above.
cat >"$T/drive.py" <<'PY'
import os, sys
from gui_atspi import *
mode, out = sys.argv[1], os.environ.get("GUI_OUT", "")

def history_says(app, image, words):
    press(wait_find(app, "push button", "History of " + image))
    hist = wait_find(app, "frame", "History of " + image)
    wait_find(hist, "label", words, timeout=30)
    print("# history of %s:" % image, words)
    screenshot("%s-history-%s" % (mode, image))
    press(wait_find(hist, "push button", "Close"))
    wait_gone(app, "frame", "History of " + image)

def refused(app, image, reason):
    press(wait_find(app, "push button", "Check out " + image))
    dlg = wait_find(app, "dialog", "Check out " + image)
    set_text(wait_find(dlg, "text", "Output file"), "%s/%s.img" % (out, image))
    press(wait_find(dlg, "push button", "Plan"))
    told = wait_find(app, "dialog", image + " was not checked out", timeout=40)
    body = [l for l in labels(told) if "Nothing was written." in l]
    print("# told:", body)
    screenshot("%s-refused-%s" % (mode, image))
    assert body and reason in body[0] and "[trust]" in body[0], labels(told)
    assert find(app, "dialog", "Check out %s@1?" % image) is None, "a refused version has a plan"
    press(wait_find(told, "push button", "Close"))
    wait_gone(app, "dialog", image + " was not checked out")

with driving() as app:
    if mode == "missing":
        key = os.environ["GUI_KEY"]
        told = wait_until("the key's error", lambda: [l for l in labels(app)
                          if l.startswith(os.environ["GUI_CFG"] + ": [trust]: " + key + ": cannot open")])
        print("# told:", told[0])
        wait_until("the listing's error", lambda: [l for l in labels(app)
                   if l.startswith(key + ": cannot open")])
        assert find(app, "push button", "Check out desk") is None, "listed without its trusted key"
    elif mode == "office":
        history_says(app, "desk", "signed by a trusted key (%s)" % os.environ["GUI_FP"])
        history_says(app, "old", "not signed")
        refused(app, "old", "old@1 is unsigned")
        press(wait_find(app, "push button", "Check out desk"))
        dlg = wait_find(app, "dialog", "Check out desk")
        set_text(wait_find(dlg, "text", "Output file"), out + "/desk.img")
        press(wait_find(dlg, "push button", "Plan"))
        plan = wait_find(app, "dialog", "Check out desk@1?", timeout=40)
        press(wait_find(plan, "push button", "Check out"))
        wait_find(app, "label", "desk@1 is checked out", timeout=40)
    elif mode == "bad":
        fp = os.environ["GUI_FP"]
        history_says(app, "desk", "BAD SIGNATURE: it does not verify with the trusted key " + fp)
        refused(app, "desk", "desk@1 has a bad signature: it does not verify with the trusted key " + fp)
    elif mode == "branch":
        history_says(app, "desk", "signed by %s, a key not trusted here" % os.environ["GUI_FP"])
        refused(app, "desk", "desk@1 is signed by %s, which is not a trusted key" % os.environ["GUI_FP"])
    else:
        history_says(app, "desk", "not signed")
        refused(app, "desk", "desk@1 is unsigned")
    press(wait_find(app, "push button", "Close"))
PY

# drive MODE REPO FP: a window on REPO alone, office's key trusted
drive() {
    settings "$2" "$T/office.pub"
    gui_start
    GUI_OUT=$T/out GUI_FP=$3 gui_py "$T/drive.py" "$1" || fail "driving the window ($1) failed (see the log)"
    gui_exit_ok "$1"
}

# nothing_written REPO IMAGE: a refused checkout left no trace
nothing_written() {
    [[ ! -e $T/out/$2.img && ! -e $T/out/$2.img.vmsync-part ]] ||
        bad "${1##*/}: the refused checkout of $2 wrote $(ls "$T/out")"
    vm_ok "$T/leases" leases "$1" --json
    [[ $(jq '[.leases[] | select(.image == "'"$2"'")] | length' "$T/leases.out") == 0 ]] ||
        bad "${1##*/}: the refused checkout of $2 took a lease: $(cat "$T/leases.out")"
}

drive office "$T/srv/office" "$OFFICE_FP"
nothing_written "$T/srv/office" old
vm "$T/verify" verify "$T/srv/office" desk@1 "$T/out/desk.img" --trust "$T/office.pub"
((VM_RC == 0)) || bad "vmsync verify: the window's checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
rm -f "$T/out/desk.img"
vm_ok "$T/release" release "$T/srv/office" desk

# one byte of desk@1's signature flipped in office's catalog
python3 - "$T/srv/office/catalog.db" <<'PY' || fail "could not flip a byte of the signature"
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
sig = bytearray(db.execute("select signature from versions where signature is not null").fetchone()[0])
sig[10] ^= 0x01
db.execute("update versions set signature = ? where signature is not null", (bytes(sig),))
db.commit()
PY
drive bad "$T/srv/office" "$OFFICE_FP"
nothing_written "$T/srv/office" desk

drive branch "$T/srv/branch" "$BRANCH_FP"
nothing_written "$T/srv/branch" desk
drive plain "$T/srv/plain" ""
nothing_written "$T/srv/plain" desk

settings "$T/srv/office" "$T/missing.pub"
gui_start
GUI_CFG=$CFG GUI_KEY=$T/missing.pub gui_py "$T/drive.py" missing ||
    fail "driving the window (missing key) failed (see the log)"
gui_exit_ok missing
finish
