#!/usr/bin/env bash
# What a desktop needs from vmsync-gtk besides the window:
#   - gui-gtk/data/org.vmsync.Gtk.desktop passes desktop-file-validate, runs
#     vmsync-gtk and names the icon that gui-gtk/data/icons holds;
#   - each icon parses (xmllint) and renders (rsvg-convert) to a PNG of the
#     size it declares (128 and 16 pixels square);
#   - `vmsync-gtk --help` names every option main.c compares argv with, each
#     option it names does its job (--version prints the version), and an
#     option it does not name is refused with exit 2;
#   - run from the build tree, the window finds its icon (it is not
#     installed): the X window carries it in _NET_WM_ICON.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/gui.sh"
need_gui
need_cmd desktop-file-validate xmllint rsvg-convert xprop

DATA=$REPO/gui-gtk/data
DESKTOP=$DATA/org.vmsync.Gtk.desktop
ICONS=$DATA/icons/hicolor
desktop-file-validate "$DESKTOP" >"$T/validate.out" 2>&1 || bad "desktop-file-validate: $(cat "$T/validate.out")"
[[ ! -s $T/validate.out ]] || bad "desktop-file-validate warns: $(cat "$T/validate.out")"
key() { sed -n "s/^$1=//p" "$DESKTOP"; }
[[ $(key Exec) == "vmsync-gtk %f" ]] || bad "Exec is '$(key Exec)'"
[[ $(key Terminal) == false ]] || bad "Terminal is '$(key Terminal)'"
icon=$(key Icon)
[[ -f $ICONS/scalable/apps/$icon.svg ]] || bad "the icon $icon is not in $ICONS/scalable/apps"
grep -q "\"$icon\"" "$REPO/gui-gtk/window.c" || bad "the window does not use the icon name $icon"

# png_size FILE: "W H" from the PNG's header
png_size() { od -An -tu1 -j16 -N8 "$1" | awk '{print $1*16777216+$2*65536+$3*256+$4, $5*16777216+$6*65536+$7*256+$8}'; }
for svg_size in "scalable/apps/$icon.svg 128" "symbolic/apps/$icon-symbolic.svg 16"; do
    read -r svg size <<<"$svg_size"
    xmllint --noout "$ICONS/$svg" 2>"$T/xmllint.err" || bad "$svg does not parse: $(cat "$T/xmllint.err")"
    png=$T/$(basename "$svg" .svg).png
    rsvg-convert "$ICONS/$svg" -o "$png" 2>"$T/rsvg.err" || bad "$svg does not render: $(cat "$T/rsvg.err")"
    [[ $(png_size "$png") == "$size $size" ]] || bad "$svg renders at $(png_size "$png"), not ${size}x$size"
done

DISPLAY= "$VMSYNC_GTK" --help >"$T/help.out" 2>&1 || bad "--help failed: $(head -3 "$T/help.out")"
mapfile -t accepted < <(grep -o 'strcmp(argv\[i\], "-[^"]*")' "$REPO/gui-gtk/main.c" | sed 's/.*"\(.*\)")/\1/')
((${#accepted[@]} >= 3)) || bad "found only ${#accepted[@]} options in main.c: ${accepted[*]}"
for o in "${accepted[@]}"; do
    grep -qE "(^|[ ,])$o([ ,]|\$)" "$T/help.out" || bad "--help does not name $o"
done
for o in $(grep -oE '(^|[ ,])--?[a-z][a-z-]*' "$T/help.out" | tr -d ' ,'); do
    [[ " ${accepted[*]} " == *" $o "* ]] || bad "--help names $o, which main.c does not accept"
done
DISPLAY= "$VMSYNC_GTK" --version >"$T/version.out" 2>&1 || bad "--version failed"
grep -qE '^vmsync-gtk [0-9]' "$T/version.out" || bad "--version prints: $(cat "$T/version.out")"
rc=0
DISPLAY= "$VMSYNC_GTK" --no-such-option >"$T/bogus.out" 2>&1 || rc=$?
((rc == 2)) || bad "an unknown option exits $rc, not 2"
grep -q '^usage: vmsync-gtk' "$T/bogus.out" || bad "an unknown option shows no usage: $(cat "$T/bogus.out")"

gui_session
gui_start
gui_py - <<'PY' || fail "the window did not open (see the log)"
from gui_atspi import *
app = wait_app()
wait_find(app, "frame", "vmsync")
screenshot("window")
PY
win=$(xdotool search --onlyvisible --pid "$GUI_PID" --name '^vmsync$' | head -1)
[[ -n $win ]] || bad "no X window named vmsync"
xprop -id "$win" _NET_WM_ICON >"$T/icon.out" 2>&1 || true
grep -q 'Icon (48 x 48)' "$T/icon.out" || bad "the window carries no icon: $(head -c 200 "$T/icon.out")"
kill -TERM "$GUI_PID"
gui_exit_ok
finish
