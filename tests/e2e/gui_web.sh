#!/usr/bin/env bash
# vmsync-gtk with an https:// repository: a tree that vmsync publish wrote,
# served by a real nginx on 127.0.0.1 (tests/lib/nginx.sh, its CA in
# CURL_CA_BUNDLE), driven through AT-SPI under Xvfb.  Started with the URL,
# the window keeps it in the settings as given, lists the image, plans and
# runs a checkout with a seed from the seed folder, and the CLI then finds
# the file holding the version (vmsync verify); the tree keeps no leases, so
# the row offers no check-in.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/nginx.sh"
source "$TESTS_LIB/gui.sh"
need_vmsync
need_gui
need_cmd mke2fs nginx openssl

gui_desk_repo "$T/seeds/old-desk.img"
mkdir -p "$T/www"
vm_ok "$T/pub" publish "$R" "$T/www/office" -q
nginx_start "$T/www"
export CURL_CA_BUNDLE=$NGINX_CA
URL=https://127.0.0.1:$NGINX_HTTPS/office

export VMSYNC_HOST=laptop VMSYNC_CACHE=$T/cache
gui_session
mkdir -p "$XDG_CONFIG_HOME/vmsync"
printf '[seeds]\nfolder = %s\n' "$T/seeds" >"$XDG_CONFIG_HOME/vmsync/config"
gui_start "$URL"
GUI_OUT=$T/out/desk.img gui_py - <<'PY' || fail "driving the window failed (see the log)"
import os, re
from gui_atspi import *

with driving() as app:
    wait_find(app, "label", "version 1 · 16.0 MiB · not here", timeout=30)
    plan = plan_checkout(app, "desk", os.environ["GUI_OUT"])
    body = [l for l in labels(plan) if "to download" in l]
    print("# plan:", body)
    m = body and re.match(r"([0-9.]+) MiB from your disk, ([0-9.]+) MiB to download", body[0])
    assert m and float(m.group(1)) > 0 and float(m.group(2)) > 0, body
    press(wait_find(plan, "push button", "Check out"))
    wait_find(app, "label", "desk@1 is checked out", timeout=60)
    wait_find(app, "label", "version 1 · 16.0 MiB · not here", timeout=20)
    assert not find(app, "push button", "Check in desk"), "a check-in is offered for a read-only tree"
    press(wait_find(app, "push button", "Close"))
PY
gui_exit_ok
nginx_stop
grep -qxF "url = $URL" "$XDG_CONFIG_HOME/vmsync/config" ||
    bad "the settings do not hold the URL as given: $(cat "$XDG_CONFIG_HOME/vmsync/config")"
vm "$T/verify" verify "$R" desk@1 "$T/out/desk.img"
((VM_RC == 0)) || bad "vmsync verify: the window's checkout does not hold desk@1 (exit $VM_RC): $(head -c 300 "$T/verify.err")"
finish
