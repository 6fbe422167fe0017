#!/usr/bin/env bash
# qemu-nbd never outlives vmsync.  A qemu-nbd that hangs (here: one stopped
# before it serves, by a wrapper on PATH that then execs the real one) must die
# with vmsync, whether vmsync is killed with SIGKILL or ended by a timeout; and
# after an ordinary run no qemu-nbd is left.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
need_vmsync
need_cmd qemu-img qemu-nbd mke2fs

real_qemu_nbd=$(command -v qemu-nbd)
mkdir -p "$T/bin" "$T/tree"
head -c 200000 /dev/urandom >"$T/tree/data.bin"
mke2fs -q -t ext4 -F -d "$T/tree" "$T/disk.raw" 8M
qemu-img convert -q -f raw -O qcow2 "$T/disk.raw" "$T/disk.qcow2"

# The wrapper notes its PID (exec keeps it), stops itself when asked to hang,
# then becomes the real qemu-nbd.
cat >"$T/bin/qemu-nbd" <<EOF
#!/bin/sh
echo \$\$ >"$T/qemu.pid"
[ -e "$T/hang" ] && kill -STOP \$\$
exec "$real_qemu_nbd" "\$@"
EOF
chmod +x "$T/bin/qemu-nbd"
export PATH="$T/bin:$PATH"

QPID=
cleanup_qemu() { [[ -n $QPID ]] && kill -9 "$QPID" 2>/dev/null || true; }
trap 'rc=$?; cleanup_qemu; (exit $rc); _common_cleanup' EXIT

# gone PID: the process has exited (a zombie waiting for its new parent counts).
gone() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 0
    [[ $state == Z* ]]
}

# wait_gone PID: up to 5 s.
wait_gone() {
    for _ in $(seq 100); do
        gone "$1" && return 0
        sleep 0.05
    done
    return 1
}

# start_hung: vmsync manifest in the background, its qemu-nbd stopped.
start_hung() {
    rm -f "$T/qemu.pid"
    touch "$T/hang"
    "$@" >/dev/null 2>&1 &
    VPID=$!
    for _ in $(seq 200); do
        [[ -s $T/qemu.pid ]] && break
        sleep 0.05
    done
    QPID=$(cat "$T/qemu.pid" 2>/dev/null) || fail "vmsync started no qemu-nbd"
    for _ in $(seq 100); do # stopped, then exec'd only after SIGCONT: wait for the stop
        [[ $(ps -o stat= -p "$QPID" 2>/dev/null) == T* ]] && break
        sleep 0.05
    done
}

# -- SIGKILL of vmsync
start_hung "$VMSYNC" manifest "$T/disk.qcow2"
kill -9 "$VPID"
wait "$VPID" 2>/dev/null || true
wait_gone "$QPID" || bad "kill -9 of vmsync left qemu-nbd $QPID behind ($(ps -o stat=,ppid= -p "$QPID"))"
cleanup_qemu

# -- a timeout (SIGTERM) of vmsync
start_hung timeout -s TERM 2 "$VMSYNC" manifest "$T/disk.qcow2"
wait "$VPID" 2>/dev/null || true
wait_gone "$QPID" || bad "a timeout of vmsync left qemu-nbd $QPID behind ($(ps -o stat=,ppid= -p "$QPID"))"
cleanup_qemu

# -- an ordinary run leaves nothing behind, and still reads the image
rm -f "$T/hang" "$T/qemu.pid"
vm_ok "$T/plain" manifest "$T/disk.qcow2"
QPID=$(cat "$T/qemu.pid" 2>/dev/null) || fail "the manifest of a qcow2 started no qemu-nbd"
gone "$QPID" || bad "qemu-nbd $QPID is still running after vmsync exited"
grep -q '^digest: ' "$T/plain.out" || bad "no digest from the ordinary run: $(cat "$T/plain.out")"
finish
