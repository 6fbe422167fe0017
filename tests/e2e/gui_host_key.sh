#!/usr/bin/env bash
# vmsync-gtk asks about a host key its known_hosts file does not hold (the
# real sshd of tests/lib/sshd.sh, a known_hosts file that lacks its key):
#   - the dialog shows the host, the key's type and the fingerprint that
#     `ssh-keygen -lf` prints for the server's public key, and the file;
#   - Refuse: the engine's error as a toast, the file unchanged;
#   - Accept once: the images are listed, the file unchanged;
#   - closing the window while the question is open answers it "no": the
#     process ends at once, cleanly, and the file is unchanged;
#   - Remember: the key is written, and the CLI then connects without
#     --accept-new (it refused before);
#   - a changed server key: refused with the reason, only Close offered,
#     the file untouched.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs ssh-keygen

mkdir -p "$T/tree" "$T/srv"
echo "a file" >"$T/tree/hello"
mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 4M >/dev/null 2>&1 || fail "mke2fs -d failed"
vm_ok "$T/init" init "$T/srv/repo"
vm_ok "$T/imp" import "$T/srv/repo" "$T/desk.img" --name desk -q
sshd_start "$T/sshd" "$T/srv"

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync" "$HOME/.ssh"
export KH=$HOME/.ssh/known_hosts URL=$SSHD_URL_BASE/repo
: >"$KH"
printf '[repository]\nurl = %s\nidentity = %s\n' "$URL" "$SSH_CLIENT_KEY" >"$XDG_CONFIG_HOME/vmsync/config"
FP=$(ssh-keygen -lf "$T/sshd/host_key.pub" | awk '{print $2}')
export FP

# window STEP: a window driven by the python steps named STEP (below); it
# must end by itself, with status 0 and nothing on stderr
window() {
    gui_start
    gui_py "$T/steps.py" "$1" || fail "$1: driving the window failed (see the log)"
    gui_exit_ok "$1"
}

cat >"$T/steps.py" <<'PY'
import os, re, sys
from gui_atspi import *
KH, FP = os.environ["KH"], os.environ["FP"]
UNKNOWN = "Trust the host key of 127.0.0.1?"
LISTED = "version 1 · 4.0 MiB · not here"

def kh_size():
    return os.path.getsize(KH)

def question(heading):
    dlg = wait_find(app, "dialog", heading, timeout=30)
    body = [l for l in labels(dlg) if "offers the host key" in l]
    assert body, "the dialog says nothing of the key: %r" % labels(dlg)
    print("# dialog:", body[0].replace("\n", " "))
    return dlg, body[0]

def buttons(dlg):
    # each response shows twice (the dialog's wide and narrow layouts)
    return sorted(set(find(b, "label").name for b in find_all(dlg, "push button")))

def answer(dlg, heading, choice):
    press(wait_find(dlg, "push button", choice))
    wait_gone(app, "dialog", heading)

def shown_fingerprint(body):
    m = re.search(r"ssh-ed25519 (SHA256:[A-Za-z0-9+/]+)", body)
    assert m, "no fingerprint in: " + body
    return m.group(1)

def close_window():
    press(wait_find(app, "push button", "Close"))

def refuse_then_once():
    dlg, body = question(UNKNOWN)
    assert shown_fingerprint(body) == FP, "shown %s, ssh-keygen -lf says %s" % (shown_fingerprint(body), FP)
    assert KH in body, "the dialog does not name " + KH
    assert buttons(dlg) == ["Accept once", "Refuse", "Remember"], buttons(dlg)
    answer(dlg, UNKNOWN, "Refuse")
    # the engine's refusal, in the page's status only: shown once, no toast
    err = wait_until("the refusal's status", lambda: [l for l in labels(app) if "unknown host key" in l
                     and FP in l])
    print("# refused:", err[0])
    assert len([l for l in labels(app) if "unknown host key" in l]) == 1, "the refusal is shown twice"
    assert kh_size() == 0, "a refused key was written"
    press(wait_find(app, "push button", "Refresh images"))
    dlg, body = question(UNKNOWN)
    answer(dlg, UNKNOWN, "Accept once")
    wait_find(app, "label", LISTED, timeout=30)
    assert kh_size() == 0, "a key accepted once was written"
    close_window()

def close_while_asked():
    question(UNKNOWN)
    close_window()

def remember():
    dlg, body = question(UNKNOWN)
    answer(dlg, UNKNOWN, "Remember")
    wait_find(app, "label", LISTED, timeout=30)
    close_window()

def changed():
    heading = "The host key of 127.0.0.1 has changed"
    dlg, body = question(heading)
    assert shown_fingerprint(body) == FP, "shown %s, the new key is %s" % (shown_fingerprint(body), FP)
    assert "The connection is refused" in body and "remove its old line from " + KH in body, body
    assert buttons(dlg) == ["Close"], "a changed key offers %r" % buttons(dlg)
    answer(dlg, heading, "Close")
    err = wait_until("the refusal's status", lambda: [l for l in labels(app) if "host key has CHANGED" in l])
    print("# refused:", err[0])
    # the dialog told it: the status keeps it, no toast repeats it
    assert len(err) == 1, "the refusal is shown %d times" % len(err)
    close_window()

with driving() as app:
    globals()[sys.argv[1]]()
PY

info "an unknown key: refused, then accepted once"
window refuse_then_once
[[ -s $KH ]] && bad "the known hosts file was written: $(cat "$KH")"

info "the window closed while it asks"
window close_while_asked
[[ -s $KH ]] && bad "closing the question wrote the known hosts file"

info "remembered: the CLI then trusts it"
vm_expect "$T/cli-before" 12 images "$URL" -i "$SSH_CLIENT_KEY" --known-hosts "$KH"
window remember
grep -q "^\[127.0.0.1\]:$SSHD_PORT ssh-ed25519 " "$KH" || bad "the key was not remembered: $(cat "$KH")"
vm_ok "$T/cli-after" images "$URL" -i "$SSH_CLIENT_KEY" --known-hosts "$KH"

info "a changed key: refused with the reason"
sshd_rekey "$T/sshd"
FP=$(ssh-keygen -lf "$T/sshd/host_key.pub" | awk '{print $2}')
cp "$KH" "$T/kh-before"
window changed
cmp -s "$KH" "$T/kh-before" || bad "the known hosts file changed on a changed key"
finish
