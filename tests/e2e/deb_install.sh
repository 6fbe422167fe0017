#!/usr/bin/env bash
# The packages in a clean Debian 12: make deb builds vmsync, vmsync-agent and
# vmsync-gtk (lintian finding no error or warning), apt-get installs them
# into a debootstrap'd minbase root, which then runs vmsync --version, a local
# import and a checkout equal to the image, finds the man page, the vmsync
# user, /srv/vmsync and the timer; purging them leaves the root's files as
# they were before.  The root is cached as a tarball between runs; plain
# build only (it builds its own plain packages).
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
! is_sanitized || skip "plain build only: it builds and installs its own plain packages"
[[ $(id -u) == 0 ]] || skip "needs root (debootstrap, chroot)"
need_cmd debootstrap dpkg-buildpackage lintian chroot mke2fs git

step() { info "$(date -u +%T) step: $*"; }

# ---- the clean root, cached ------------------------------------------------------
# The machine's own mirror, as its apt uses it.
mirror=$(sed -n 's/^URIs: *\([^ ]*\).*/\1/p' /etc/apt/sources.list.d/*.sources 2>/dev/null | head -1)
[[ -n $mirror ]] || mirror=$(awk '$1 == "deb" { print $2; exit }' /etc/apt/sources.list 2>/dev/null)
mirror=${mirror:-http://deb.debian.org/debian}
bootstrap=(debootstrap --variant=minbase --include=man-db bookworm)
# run.sh always sets VMSYNC_TEST_CACHE; one inside the run's scratch dies with
# the run, so the root then lives under the build folder.
cache=$VMSYNC_TEST_CACHE
[[ $cache != "$VMSYNC_TEST_WORK"/* ]] || cache=$REPO/$BUILD/test-cache
key=$(printf '%s\n' "${bootstrap[*]}" "$mirror" | sha256sum | cut -c1-16)
tarball=$cache/debootstrap-bookworm-$key.tar
root=$T/root
mounted=()
deb_cleanup() {
    local rc=$? m
    for m in "${mounted[@]}"; do umount "$m" || umount -l "$m"; done
    (exit $rc)
    _common_cleanup
}
trap deb_cleanup EXIT

if [[ ! -f $tarball ]]; then
    step "debootstrap: ${bootstrap[*]} $root $mirror (cached as $tarball)"
    "${bootstrap[@]}" "$root" "$mirror" >"$T/debootstrap.log" 2>&1 ||
        { tail -20 "$T/debootstrap.log"; fail "debootstrap failed"; }
    mkdir -p "$cache"
    tar -C "$root" -cpf "$tarball.tmp" . && mv "$tarball.tmp" "$tarball"
else
    step "clean root from the cache: $tarball"
    mkdir -p "$root"
    tar -C "$root" -xpf "$tarball"
fi

# ---- the packages ---------------------------------------------------------------
step "make deb"
debs=$T/deb
make -s -C "$REPO" deb DEB_DIR="$debs" >"$T/make-deb.log" 2>&1 ||
    { tail -40 "$T/make-deb.log"; fail "make deb failed"; }
cp "$T/make-deb.log" "${VMSYNC_TEST_LOGS:-$T}/deb_install-make-deb.log" 2>/dev/null || true
info "lintian: $(grep -cE '^(E|W): ' "$T/make-deb.log" || true) errors and warnings; its tags:"
grep -E '^[A-Z]: ' "$T/make-deb.log" || info "(none)"
mkdir -p "$root/tmp/debs"
for p in vmsync vmsync-agent vmsync-gtk; do
    cp "$debs/${p}_"*.deb "$root/tmp/debs/" || fail "make deb made no $p package"
done
ls "$root/tmp/debs"

# ---- in the root ----------------------------------------------------------------
in_root() { chroot "$root" env -i HOME=/root PATH=/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C.UTF-8 \
    DEBIAN_FRONTEND=noninteractive "$@"; }
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
cp /etc/resolv.conf "$root/etc/resolv.conf"
# The files a user's package leaves: the apt and dpkg state and logs excepted.
snapshot() {
    (cd "$root" && find . \( -path ./proc -o -path ./dev -o -path ./sys -o -path ./tmp \
        -o -path ./var/cache/apt -o -path ./var/lib/apt -o -path ./var/lib/dpkg \
        -o -path ./var/log \) -prune -o -print | sort)
}
step "apt-get update"
in_root apt-get update -qq || fail "apt-get update in the root failed"
# What the packages depend on goes in first: the root as it is then is what
# purging must bring back.
deps=$(for d in "$root"/tmp/debs/*.deb; do dpkg-deb -f "$d" Depends; done |
    tr ',' '\n' | sed 's/^ *//' | grep -v '^vmsync' | sort -u | paste -sd, | sed 's/,/, /g')
step "apt-get satisfy (the packages' dependencies): $deps"
in_root apt-get satisfy -y -qq --no-install-recommends "$deps" >"$T/deps.log" 2>&1 ||
    { tail -20 "$T/deps.log"; fail "installing the dependencies failed"; }
snapshot >"$T/before"

step "apt-get install ./*.deb"
in_root sh -c 'cd /tmp/debs && apt-get install -y --no-install-recommends ./*.deb' >"$T/install.log" 2>&1 ||
    { tail -20 "$T/install.log"; fail "apt-get install ./*.deb failed"; }
grep -E '^(Setting up|Unpacking) vmsync' "$T/install.log"

step "vmsync --version"
in_root vmsync --version || bad "vmsync --version failed"
step "vmsync init, import, checkout"
mkdir -p "$T/motd/etc"
echo "installed from the package" >"$T/motd/etc/motd"
mke2fs -q -F -t ext4 -d "$T/motd" "$root/root/motd.img" 4M || fail "mke2fs -d failed"
in_root vmsync init /root/repo || bad "vmsync init failed"
in_root vmsync import /root/repo /root/motd.img --name motd -q || bad "vmsync import failed"
in_root vmsync checkout /root/repo motd -o /root/out.img -q || bad "vmsync checkout failed"
cmp "$root/root/motd.img" "$root/root/out.img" || bad "the checkout differs from the imported image"
rm -rf "$root/root/repo" "$root/root/motd.img" "$root/root/out.img"* "$root/root/.cache"

step "man -w vmsync"
in_root man -w vmsync || bad "man -w vmsync finds no page"
if [[ -f $REPO/packaging/completion/vmsync ]]; then
    step "the bash completion"
    in_root ls -l /usr/share/bash-completion/completions/vmsync /usr/share/bash-completion/completions/vmsync-agent ||
        bad "the bash completion is not installed"
fi
step "the vmsync user, /srv/vmsync, the timer"
in_root getent passwd vmsync || bad "no vmsync user"
[[ $(in_root stat -c %U /srv/vmsync 2>/dev/null) == vmsync ]] || bad "/srv/vmsync is not there, owned by vmsync"
ls -l "$root"/lib/systemd/system/vmsync-maintenance.* || bad "no vmsync-maintenance units"
grep -q '^OnCalendar=' "$root/lib/systemd/system/vmsync-maintenance.timer" || bad "the timer has no OnCalendar="
[[ -L $root/etc/systemd/system/timers.target.wants/vmsync-maintenance.timer ]] || bad "the timer is not enabled"
grep -q '^ExecStart=/usr/bin/vmsync prefetch %I' "$root/usr/lib/systemd/user/vmsync-prefetch@.service" ||
    bad "the vmsync package has no prefetch user service running /usr/bin/vmsync"
[[ -f $root/usr/lib/systemd/user/vmsync-prefetch@.timer ]] || bad "the vmsync package has no prefetch user timer"

step "apt-get purge -y vmsync vmsync-agent vmsync-gtk"
in_root apt-get purge -y vmsync vmsync-agent vmsync-gtk >"$T/purge.log" 2>&1 ||
    { tail -20 "$T/purge.log"; fail "apt-get purge failed"; }
grep -E '^(Removing|Purging)' "$T/purge.log"
in_root dpkg-query -W -f '${Package} ${Status}\n' vmsync vmsync-agent vmsync-gtk 2>&1 | grep -v 'no packages found' | grep 'install\|config-files' &&
    bad "a package is still installed or has configuration left"
! in_root getent passwd vmsync || bad "the vmsync user is left after purge"
! in_root getent group vmsync || bad "the vmsync group is left after purge"
[[ ! -e $root/srv/vmsync ]] || bad "/srv/vmsync is left after purge"
snapshot >"$T/after"
step "the root's files after purge against before install"
if ! diff "$T/before" "$T/after" >"$T/left"; then
    cat "$T/left"
    bad "purging left the root's files changed (above: < gone, > left)"
fi
info "$(wc -l <"$T/before") paths before install, $(wc -l <"$T/after") after purge"

# A /srv/vmsync holding a repository is user data: purge keeps it, and the
# user that owns it.
step "again, with a repository in /srv/vmsync at purge"
in_root sh -c 'cd /tmp/debs && apt-get install -y -qq --no-install-recommends ./*.deb' >"$T/install2.log" 2>&1 ||
    { tail -20 "$T/install2.log"; fail "the second apt-get install failed"; }
in_root runuser -u vmsync -- vmsync init /srv/vmsync/golden || bad "vmsync init /srv/vmsync/golden as vmsync failed"
in_root apt-get purge -y -qq vmsync vmsync-agent vmsync-gtk >"$T/purge2.log" 2>&1 ||
    { tail -20 "$T/purge2.log"; fail "the second apt-get purge failed"; }
grep 'vmsync-agent:' "$T/purge2.log" || bad "purge did not say that it kept /srv/vmsync"
[[ -f $root/srv/vmsync/golden/catalog.db ]] || bad "purge removed the repository in /srv/vmsync"
in_root getent passwd vmsync || bad "purge removed the vmsync user that owns /srv/vmsync"

# Neither is a repository that the vmsync user owns under another agent root.
step "again, with /srv/vmsync empty and a repository of the vmsync user in /var/backups"
rm -rf "$root/srv/vmsync/golden"
in_root sh -c 'cd /tmp/debs && apt-get install -y -qq --no-install-recommends ./*.deb' >"$T/install3.log" 2>&1 ||
    { tail -20 "$T/install3.log"; fail "the third apt-get install failed"; }
in_root install -d -o vmsync /var/backups/vmsync-repo
in_root runuser -u vmsync -- vmsync init /var/backups/vmsync-repo/golden || bad "vmsync init in /var/backups as vmsync failed"
in_root apt-get purge -y -qq vmsync vmsync-agent vmsync-gtk >"$T/purge3.log" 2>&1 ||
    { tail -20 "$T/purge3.log"; fail "the third apt-get purge failed"; }
grep 'vmsync-agent: /var/backups/vmsync-repo' "$T/purge3.log" || bad "purge did not name the vmsync user's file that it kept the user for"
in_root getent passwd vmsync || bad "purge removed the vmsync user that owns /var/backups/vmsync-repo"
[[ ! -e $root/srv/vmsync ]] || bad "purge left the empty /srv/vmsync"
finish
