"""Drives vmsync-gtk through AT-SPI, by the accessible names of its controls.

Every wait polls the accessibility tree until what it waits for is there (or
a deadline passes): the window's state is the only clock.

    with driving() as app:
        press(wait_find(app, "push button", "Add repository"))
"""
import contextlib
import os
import subprocess
import sys
import time

import pyatspi

POLL = 0.05


class Timeout(Exception):
    pass


def wait_until(what, probe, timeout=20):
    """Calls probe until it returns something true; returns that."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            got = probe()
        except Exception:
            # a node went away while the tree was read (a label replaced
            # by the progress it shows): read it again
            got = None
        if got:
            return got
        if time.monotonic() > deadline:
            raise Timeout("timed out after %ss waiting for %s" % (timeout, what))
        time.sleep(POLL)


def find_app(name):
    desktop = pyatspi.Registry.getDesktop(0)
    for i in range(desktop.childCount):
        a = desktop.getChildAtIndex(i)
        if a is not None and a.name == name:
            return a
    return None


def wait_app(name="vmsync-gtk", timeout=30):
    return wait_until("application %s" % name, lambda: find_app(name), timeout)


@contextlib.contextmanager
def driving(name="vmsync-gtk"):
    """The window's application, for the steps of a test: a step that fails
    prints FAIL with the reason, then the accessibility tree (what the window
    showed), and the script exits 1."""
    app = wait_app(name)
    try:
        yield app
    except Exception as e:
        print("FAIL: %s" % e)
        dump(app)
        raise SystemExit(1)


def _walk(node, depth=0):
    if node is None or depth > 60:
        return
    yield node
    try:
        n = node.childCount
    except Exception:
        return
    for i in range(n):
        try:
            c = node.getChildAtIndex(i)
        except Exception:
            continue
        yield from _walk(c, depth + 1)


def name_matches(got, want):
    """GTK joins a control's own name with the label that names it (its
    mnemonic label, a button's label): "Key file Key file (optional)",
    "_Add Add".  WANT matches either part."""
    if got is None:
        return False
    return got == want or got.startswith(want + " ") or got.endswith(" " + want)


def find_all(root, role=None, name=None):
    out = []
    for n in _walk(root):
        try:
            if role is not None and n.getRoleName() != role:
                continue
            if name is not None and not name_matches(n.name, name):
                continue
        except Exception:
            continue
        out.append(n)
    return out


def find(root, role=None, name=None):
    got = find_all(root, role, name)
    return got[0] if got else None


def wait_find(root, role, name, timeout=20):
    return wait_until("%s %r" % (role, name), lambda: find(root, role, name), timeout)


def wait_gone(root, role, name, timeout=20):
    return wait_until("%s %r to go" % (role, name), lambda: find(root, role, name) is None, timeout)


def press(node):
    """Activates a control as a click would (its first action)."""
    node.queryAction().doAction(0)


def set_text(node, text):
    node.queryEditableText().setTextContents(text)


def plan_checkout(app, image, out, version=1):
    """Opens the checkout dialog of image's row, names the output file and
    asks for the plan: returns the plan's dialog."""
    press(wait_find(app, "push button", "Check out " + image))
    dlg = wait_find(app, "dialog", "Check out " + image)
    set_text(wait_find(dlg, "text", "Output file"), out)
    press(wait_find(dlg, "push button", "Plan"))
    return wait_find(app, "dialog", "Check out %s@%d?" % (image, version), timeout=40)


def text_of(node):
    t = node.queryText()
    return t.getText(0, t.characterCount)


def labels(root):
    """The text of every label under root, in tree order."""
    return [n.name for n in find_all(root, "label") if n.name]


def dump(root, out=sys.stderr):
    """The tree, one node a line: for a failing test's log."""
    def rec(n, d):
        try:
            out.write("%s%s %r\n" % ("  " * d, n.getRoleName(), n.name))
            for i in range(n.childCount):
                rec(n.getChildAtIndex(i), d + 1)
        except Exception as e:
            out.write("%s(gone: %s)\n" % ("  " * d, e))
    rec(root, 0)


def focused(root):
    """The control that has the keyboard focus under root, or None."""
    for n in _walk(root):
        try:
            st = n.getState()
            if st.contains(pyatspi.STATE_FOCUSED) and n.getRoleName() not in ("frame", "dialog"):
                return n
        except Exception:
            continue
    return None


def key(*keys):
    """Real key presses through the X server (xdotool, XTEST): "ctrl+n", "Tab"."""
    subprocess.run(["xdotool", "key", "--clearmodifiers", "--delay", "30"] + list(keys),
                   check=True)


def type_text(text):
    subprocess.run(["xdotool", "type", "--clearmodifiers", "--delay", "10", text], check=True)


def tab_to(root, role, name, limit=30):
    """Presses Tab until the control ROLE NAME under root has the focus; the
    names focused on the way, in order."""
    seen = []
    for _ in range(limit):
        key("Tab")
        n = wait_until("a focused control", lambda: focused(root), timeout=5)
        seen.append("%s %r" % (n.getRoleName(), n.name))
        if n.getRoleName() == role and name_matches(n.name, name):
            return seen
    raise Timeout("Tab never reached %s %r; it went through %s" % (role, name, seen))


def screenshot(name):
    """gui_screenshot NAME from python: the next NN-NAME.png in $GUI_SHOTS."""
    shots = os.environ["GUI_SHOTS"]
    os.makedirs(shots, exist_ok=True)
    n = len([f for f in os.listdir(shots) if f.endswith(".png")])
    path = os.path.join(shots, "%02d-%s.png" % (n + 1, name))
    here = os.path.dirname(os.path.abspath(__file__))
    subprocess.run([os.path.join(here, "gui_screenshot.sh"), os.environ["GUI_PID"], path],
                   check=True, stdout=subprocess.DEVNULL)
    return path
