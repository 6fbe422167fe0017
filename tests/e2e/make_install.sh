#!/usr/bin/env bash
# make install puts every file under DESTDIR/PREFIX, with the units naming the
# installed paths; make uninstall removes exactly what it put there.  The
# installed vmsync-maintenance (what the systemd timer runs) checks and
# collects each repository under its root, whatever its depth or the spaces in
# its path: a busy one (gc's exit 8) is no failure, a damaged one is, and a
# harmless check finding (a dangling lease) fails the run but gc still runs.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd make flock sqlite3 jq
[[ -z $(ls "$REPO"/docs/man/*.scd 2>/dev/null) ]] || need_cmd scdoc

mk() { make -s -C "$REPO" BUILD="$BUILD" "$@"; }
files_under() { (cd "$1" && find . -type f -o -type l | sort); }

# ---- DESTDIR: the layout, then uninstall --------------------------------------
dest=$T/dest
mk install DESTDIR="$dest" PREFIX=/opt/vms >"$T/install.log" 2>&1 || { cat "$T/install.log"; fail "make install failed"; }
files_under "$dest" >"$T/installed"
info "installed: $(wc -l <"$T/installed") files"
expect=(bin/vmsync bin/vmsync-agent bin/vmsync-gtk lib/vmsync/vmsync-maintenance
    lib/systemd/system/vmsync-maintenance.service lib/systemd/system/vmsync-maintenance.timer
    lib/systemd/user/vmsync-prefetch@.service lib/systemd/user/vmsync-prefetch@.timer
    share/applications/org.vmsync.Gtk.desktop share/metainfo/org.vmsync.Gtk.metainfo.xml
    share/icons/hicolor/scalable/apps/org.vmsync.Gtk.svg
    share/icons/hicolor/symbolic/apps/org.vmsync.Gtk-symbolic.svg)
[[ ! -f $REPO/packaging/completion/vmsync ]] ||
    expect+=(share/bash-completion/completions/vmsync share/bash-completion/completions/vmsync-agent)
for scd in "$REPO"/docs/man/*.scd; do
    [[ -f $scd ]] || continue
    page=$(basename "$scd" .scd)
    expect+=("share/man/man${page##*.}/$page")
done
for f in "${expect[@]}"; do
    grep -qx "./opt/vms/$f" "$T/installed" || bad "make install did not install /opt/vms/$f"
done
outside=$(grep -v '^\./opt/vms/' "$T/installed" || true)
[[ -z $outside ]] || bad "files outside PREFIX: $outside"
for p in vmsync vmsync-agent vmsync-gtk lib/vmsync/vmsync-maintenance; do
    f=$dest/opt/vms/bin/$p
    [[ $p == lib/* ]] && f=$dest/opt/vms/$p
    [[ -x $f ]] || bad "$f is not executable"
done
"$dest/opt/vms/bin/vmsync" --version >"$T/version" 2>&1 || bad "the installed vmsync --version failed: $(cat "$T/version")"
grep -q '^ExecStart=/opt/vms/lib/vmsync/vmsync-maintenance /srv/vmsync$' \
    "$dest/opt/vms/lib/systemd/system/vmsync-maintenance.service" || bad "the service does not run the installed script"
grep -q '^ExecStart=/opt/vms/bin/vmsync prefetch %I --quiet$' \
    "$dest/opt/vms/lib/systemd/user/vmsync-prefetch@.service" || bad "the prefetch service does not run the installed vmsync"
grep -q '^vmsync=/opt/vms/bin/vmsync$' "$dest/opt/vms/lib/vmsync/vmsync-maintenance" || bad "the script does not run the installed vmsync"
if grep -rl '@[A-Z]*DIR@' "$dest" >"$T/unsubst"; then bad "paths left unsubstituted in: $(cat "$T/unsubst")"; fi
if command -v desktop-file-validate >/dev/null; then
    desktop-file-validate "$dest/opt/vms/share/applications/org.vmsync.Gtk.desktop" || bad "desktop-file-validate"
fi
if command -v appstreamcli >/dev/null; then
    appstreamcli validate --no-net "$dest/opt/vms/share/metainfo/org.vmsync.Gtk.metainfo.xml" >"$T/as.log" 2>&1 ||
        bad "appstreamcli validate: $(cat "$T/as.log")"
fi
mk uninstall DESTDIR="$dest" PREFIX=/opt/vms >"$T/uninstall.log" 2>&1 || { cat "$T/uninstall.log"; fail "make uninstall failed"; }
left=$(files_under "$dest")
[[ -z $left ]] || bad "make uninstall left: $left"

# ---- PREFIX alone: the maintenance script on real repositories -----------------
prefix=$T/prefix
mk install PREFIX="$prefix" >"$T/install2.log" 2>&1 || { cat "$T/install2.log"; fail "make install PREFIX=$prefix failed"; }
maint=$prefix/lib/vmsync/vmsync-maintenance
srv=$T/srv
mkdir -p "$srv/team" "$srv/not-a-repo"
repo_init "$srv/golden"
repo_init "$srv/team/desk"
repo_motd_img hello "$T/hello.img"
vm_ok "$T/import" import "$srv/golden" "$T/hello.img" --name hello
export VMSYNC_GC_WAIT=1 CACHE_DIRECTORY=$T/cache
rc=0
"$maint" "$srv" >"$T/maint.log" 2>&1 || rc=$?
[[ $rc == 0 ]] || bad "vmsync-maintenance on healthy repositories: exit $rc: $(cat "$T/maint.log")"

# A client holding a repository: gc gives up (exit 8), which is not a failure.
# The holder is sleep itself, so that killing it by PID frees the lock.
(exec 9>>"$srv/team/desk/lock" && flock -s 9 && exec sleep 60) &
holder=$!
sleep 0.3
rc=0
"$maint" "$srv" >"$T/maint-busy.log" 2>&1 || rc=$?
kill "$holder" 2>/dev/null || true
wait "$holder" 2>/dev/null || true
[[ $rc == 0 ]] || bad "a busy repository made vmsync-maintenance fail: exit $rc: $(cat "$T/maint-busy.log")"
grep -q "team/desk: in use" "$T/maint-busy.log" || bad "vmsync-maintenance did not say the busy repository is in use: $(cat "$T/maint-busy.log")"

# A lease on a version that is gone fails the check, but gc still collects:
# it refuses real damage by itself.  The repository's path has a space and is
# deeper than the others.
odd="$srv/team a/x/y/z/odd"
mkdir -p "${odd%/*}"
repo_init "$odd"
repo_motd_img one "$T/one.img" 65536
repo_motd_img two "$T/two.img" 65536
vm_ok "$T/odd1" import "$odd" "$T/one.img" --name hello
vm_ok "$T/odd2" import "$odd" "$T/two.img" --name hello
vm_ok "$T/odd-forget" forget "$odd" hello@1
sqlite3 "$odd/catalog.db" "INSERT INTO leases SELECT id, 99, 'gone', 'laptop', 0 FROM images" ||
    fail "sqlite3 could not add a dangling lease"
vm_ok "$T/odd-gc0" gc "$odd" -n --json
[[ $(jq .objects_dropped "$T/odd-gc0.out") -gt 0 ]] || fail "no garbage to collect: $(cat "$T/odd-gc0.out")"
rc=0
"$maint" "$srv" >"$T/maint-lease.log" 2>&1 || rc=$?
[[ $rc == 1 ]] || bad "a check finding: vmsync-maintenance exit $rc, not 1: $(cat "$T/maint-lease.log")"
grep -qF "$odd: check failed" "$T/maint-lease.log" ||
    bad "the repository with a space in its path is not named whole: $(cat "$T/maint-lease.log")"
! grep -q "gc failed" "$T/maint-lease.log" || bad "gc failed on a dangling lease: $(cat "$T/maint-lease.log")"
vm_ok "$T/odd-gc1" gc "$odd" -n --json
[[ $(jq .objects_dropped "$T/odd-gc1.out") == 0 ]] ||
    bad "vmsync-maintenance did not collect after a harmless check finding: $(cat "$T/odd-gc1.out")"
rm -rf "$srv/team a"

# A damaged repository is a failure (and the others are still maintained).
rm -f "$srv"/golden/manifests/*
rc=0
"$maint" "$srv" >"$T/maint-bad.log" 2>&1 || rc=$?
[[ $rc == 1 ]] || bad "a damaged repository: vmsync-maintenance exit $rc, not 1: $(cat "$T/maint-bad.log")"
grep -q "golden: check failed (exit 5)" "$T/maint-bad.log" || bad "the damaged repository is not named: $(cat "$T/maint-bad.log")"

mk uninstall PREFIX="$prefix" >"$T/uninstall2.log" 2>&1 || fail "make uninstall PREFIX=$prefix failed"
left=$(files_under "$prefix")
[[ -z $left ]] || bad "make uninstall PREFIX=$prefix left: $left"
finish
