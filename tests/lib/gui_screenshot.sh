#!/usr/bin/env bash
# gui_screenshot.sh PID FILE: saves as the PNG FILE what the process PID shows
# on the X display $DISPLAY: its shown windows (the main window and its
# dialogs, which are windows of their own), each at its place on one canvas
# as small as they allow, older windows first (a dialog over its window).
# Each window is read by itself (xwd -id): without a compositor the screen
# does not hold a dialog's pixels.  Prints FILE.
set -euo pipefail
pid=$1 file=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
x0=100000 y0=100000 x1=0 y1=0 wins=()
# ascending ids: the order the windows were made in
for w in $(xdotool search --onlyvisible --pid "$pid" 2>/dev/null | sort -n); do
    eval "$(xdotool getwindowgeometry --shell "$w" | grep -E '^(X|Y|WIDTH|HEIGHT)=')"
    ((WIDTH > 1 && HEIGHT > 1 && X >= 0 && Y >= 0)) || continue
    wins+=("$w $X $Y")
    ((X < x0)) && x0=$X
    ((Y < y0)) && y0=$Y
    ((X + WIDTH > x1)) && x1=$((X + WIDTH))
    ((Y + HEIGHT > y1)) && y1=$((Y + HEIGHT))
done
if ((${#wins[@]} == 0)); then
    echo "gui_screenshot.sh: process $pid shows no window" >&2
    exit 1
fi
ppmmake white $((x1 - x0)) $((y1 - y0)) >"$tmp/canvas.ppm" 2>/dev/null
for entry in "${wins[@]}"; do
    read -r w x y <<<"$entry"
    xwd -id "$w" -silent | xwdtopnm 2>/dev/null >"$tmp/win.ppm"
    pnmpaste "$tmp/win.ppm" $((x - x0)) $((y - y0)) "$tmp/canvas.ppm" >"$tmp/next.ppm" 2>/dev/null
    mv "$tmp/next.ppm" "$tmp/canvas.ppm"
done
pnmtopng "$tmp/canvas.ppm" >"$file" 2>/dev/null
echo "$file"
