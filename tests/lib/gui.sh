# shellcheck shell=bash
# A display and an accessibility bus for the window's tests (tests/e2e/gui_*.sh).
# Source it after common.sh (and after repo.sh when the test uses it):
#
#   gui_session          starts Xvfb (its display number read from -displayfd),
#                        a session D-Bus and the AT-SPI bus launcher, exports
#                        DISPLAY and DBUS_SESSION_BUS_ADDRESS, and points HOME,
#                        XDG_CONFIG_HOME and XDG_CACHE_HOME into $T
#   gui_start [ARGS...]  starts $VMSYNC_GTK ARGS in the background (GUI_PID),
#                        its stdout and stderr in $T/gtk.out and $T/gtk.err;
#                        an ASan build gets tests/lib/gui-lsan.supp (and
#                        whole leak stacks with GUI_FULL_LEAK_STACKS=1)
#   gui_wait_exit SECS   waits for the window's process; sets GUI_RC
#   gui_exit_ok [WHEN]   waits (20 s); the window must exit 0 with a stderr free
#                        of GTK's CRITICAL, WARNING and ERROR
#   gui_desk_repo SEED   a repository R=$T/srv/repo holding "desk" (16 MiB of
#                        ext4, random files), and SEED, an older image sharing
#                        all but one of its files
#   gui_py SCRIPT...     runs the system python3 (pyatspi) with tests/lib
#                        importable (gui_atspi.py: the AT-SPI driver)
#   gui_screenshot NAME  saves what the window shows (it and its dialogs, each
#                        at its place: gui_screenshot.sh) as NN-NAME.png in
#                        $GUI_SHOTS ($VMSYNC_TEST_LOGS/TEST_NAME.shots, kept
#                        after the test); prints the file's path.  From
#                        python: gui_atspi.screenshot(NAME)
#
# The exit trap ends every process started here by its process id (and the
# ones they started: the bus launcher's own dbus-daemon and registry),
# whatever way the test ends.  It chains in front of the EXIT trap installed
# when gui_session runs.

VMSYNC_GTK=${VMSYNC_GTK:-$REPO/$BUILD/vmsync-gtk}
[[ $VMSYNC_GTK == /* ]] || VMSYNC_GTK="$PWD/$VMSYNC_GTK"
GUI_PYTHON=${GUI_PYTHON:-/usr/bin/python3}
GUI_PID=
GUI_RC=
_GUI_PIDS=()
_GUI_PREV_EXIT=
GUI_SHOTS=${GUI_SHOTS:-${VMSYNC_TEST_LOGS:-$REPO/$BUILD/test-logs}/$TEST_NAME.shots}

need_gui() {
    [[ -x $VMSYNC_GTK ]] || fail "window under test not found: $VMSYNC_GTK"
    need_cmd Xvfb dbus-daemon xdotool xwd xwdtopnm ppmmake pnmpaste pnmtopng
    [[ -x /usr/libexec/at-spi-bus-launcher ]] || skip "missing at-spi-bus-launcher"
    "$GUI_PYTHON" -c 'import pyatspi' 2>/dev/null || skip "missing python3-pyatspi"
}

# _gui_descendants PID: the process ids below PID, deepest first.
_gui_descendants() {
    local c
    for c in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        _gui_descendants "$c"
        echo "$c"
    done
}

_gui_cleanup() {
    local rc=$? p i all=()
    set +e
    for ((i = ${#_GUI_PIDS[@]} - 1; i >= 0; i--)); do
        p=${_GUI_PIDS[i]}
        all+=($(_gui_descendants "$p") "$p")
    done
    for p in "${all[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${all[@]}"; do
        # give each a moment to go on its own, then end it for sure
        timeout 5 tail --pid="$p" -f "$T/gui-never-written" 2>/dev/null || kill -9 "$p" 2>/dev/null
    done
    (exit "$rc")
    eval "${_GUI_PREV_EXIT:-exit $rc}"
}

_gui_trap() {
    _GUI_PREV_EXIT=$(trap -p EXIT | sed -e "s/^trap -- '//" -e "s/' EXIT\$//")
    trap _gui_cleanup EXIT
    trap 'exit 143' TERM
    trap 'exit 130' INT
}

_gui_xvfb() {
    local fifo=$T/gui-displayfd
    mkfifo "$fifo"
    Xvfb -displayfd 3 -screen 0 1280x800x24 -nolisten tcp -noreset \
        3>"$fifo" >"$T/xvfb.log" 2>&1 &
    _GUI_PIDS+=($!)
    local n
    # blocks until Xvfb has chosen a free display and is ready on it
    read -r -t 20 n <"$fifo" || fail "Xvfb did not start: $(tail -3 "$T/xvfb.log")"
    rm -f "$fifo"
    export DISPLAY=:$n
}

_gui_dbus() {
    local out addr pid
    out=$(dbus-daemon --session --fork --print-address=1 --print-pid=1) ||
        fail "dbus-daemon did not start"
    addr=$(sed -n 1p <<<"$out")
    pid=$(sed -n 2p <<<"$out")
    _GUI_PIDS+=("$pid")
    export DBUS_SESSION_BUS_ADDRESS=$addr
}

_gui_atspi() {
    /usr/libexec/at-spi-bus-launcher --launch-immediately >"$T/atspi.log" 2>&1 &
    _GUI_PIDS+=($!)
    # the launcher owns org.a11y.Bus once the accessibility bus is up
    "$GUI_PYTHON" - <<'PY' || fail "the AT-SPI bus did not come up: $(tail -3 "$T/atspi.log")"
import sys
from gi.repository import Gio, GLib
bus = Gio.bus_get_sync(Gio.BusType.SESSION, None)
seen = []
def appeared(*a):
    seen.append(1)
    loop.quit()
loop = GLib.MainLoop()
Gio.bus_watch_name_on_connection(bus, "org.a11y.Bus", 0, appeared, None)
GLib.timeout_add_seconds(20, loop.quit)
loop.run()
sys.exit(0 if seen else 1)
PY
}

gui_session() {
    : >"$T/gui-never-written" # what tail -f watches while it waits for a pid
    _gui_trap
    export HOME=$T/home XDG_CONFIG_HOME=$T/home/.config XDG_CACHE_HOME=$T/home/.cache
    mkdir -p "$XDG_CONFIG_HOME" "$XDG_CACHE_HOME"
    export GSETTINGS_BACKEND=memory GTK_A11Y=atspi NO_AT_BRIDGE=0 GDK_BACKEND=x11
    # the software renderer: Xvfb has no GL
    export GSK_RENDERER=cairo
    _gui_xvfb
    _gui_dbus
    _gui_atspi
}

gui_start() {
    local asan=${ASAN_OPTIONS:-}
    # (grep -c reads to the end: grep -q would leave nm a SIGPIPE, a failure under pipefail)
    if [[ $(nm "$VMSYNC_GTK" 2>/dev/null | grep -c __asan_init) != 0 ]]; then
        # the toolkit's process-long caches are not our leaks (the file says which)
        export LSAN_OPTIONS="suppressions=$TESTS_LIB/gui-lsan.supp${LSAN_OPTIONS:+:$LSAN_OPTIONS}"
        # GUI_FULL_LEAK_STACKS=1: a leak's stack is unwound through the
        # libraries built without frame pointers (GLib), so that a
        # suppression can name the library below them.  It costs about
        # twice the time, so only the tests that need it ask.
        [[ -z ${GUI_FULL_LEAK_STACKS:-} ]] ||
            asan="${asan:+$asan:}fast_unwind_on_malloc=0:malloc_context_size=10"
    fi
    # glibc scribbles over freed memory (a sanitizer's allocator ignores it):
    # a use after free inside the toolkit, which no sanitizer sees, then
    # crashes at once instead of rarely (libadwaita's toasts did: window.c)
    MALLOC_PERTURB_=${MALLOC_PERTURB_:-165} ASAN_OPTIONS=$asan "$VMSYNC_GTK" "$@" \
        >"$T/gtk.out" 2>"$T/gtk.err" &
    GUI_PID=$!
    _GUI_PIDS+=("$GUI_PID")
}

gui_wait_exit() {
    GUI_RC=0
    timeout "$1" tail --pid="$GUI_PID" -f "$T/gui-never-written" 2>/dev/null || fail "vmsync-gtk did not exit within $1 s"
    wait "$GUI_PID" || GUI_RC=$?
}

# gui_exit_ok [WHEN]: waits for the window's process (20 s), which must exit 0
# with no GTK warning on stderr; WHEN says which run, in a test of several.
gui_exit_ok() {
    local when=${1:+ ($1)}
    gui_wait_exit 20
    ((GUI_RC == 0)) || bad "vmsync-gtk exited $GUI_RC$when: $(head -c 400 "$T/gtk.err")"
    if grep -E 'CRITICAL|WARNING|ERROR' "$T/gtk.err"; then bad "vmsync-gtk complained on stderr$when"; fi
}

gui_desk_repo() {
    local i
    mkdir -p "$T/tree/data" "$T/srv" "$T/out" "$(dirname "$1")"
    for i in 0 1 2 3 4 5; do head -c $((1 << 20)) /dev/urandom >"$T/tree/data/f$i"; done
    mke2fs -q -F -t ext4 -d "$T/tree" "$1" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
    head -c $((2 << 20)) /dev/urandom >"$T/tree/data/new"
    rm "$T/tree/data/f5"
    mke2fs -q -F -t ext4 -d "$T/tree" "$T/desk.img" 16M >/dev/null 2>&1 || fail "mke2fs -d failed"
    R=$T/srv/repo
    vm_ok "$T/init" init "$R"
    vm_ok "$T/imp" import "$R" "$T/desk.img" --name desk -q
}

gui_py() { GUI_PID=$GUI_PID GUI_SHOTS=$GUI_SHOTS PYTHONPATH=$TESTS_LIB "$GUI_PYTHON" "$@"; }

# gui_screenshot NAME: the next NN-NAME.png in $GUI_SHOTS (numbered on from
# the files there, so shots taken from python, gui_atspi.screenshot, interleave).
gui_screenshot() {
    local n
    mkdir -p "$GUI_SHOTS"
    n=$(find "$GUI_SHOTS" -maxdepth 1 -name '*.png' | wc -l)
    "$TESTS_LIB/gui_screenshot.sh" "$GUI_PID" "$GUI_SHOTS/$(printf '%02d' $((n + 1)))-$1.png" ||
        fail "gui_screenshot $1 failed"
}
