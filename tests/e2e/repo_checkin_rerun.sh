#!/usr/bin/env bash
# A check-in killed after the repository recorded its version, then run again.
# Over a local repository and over ssh://: check T out, change it (debugfs),
# check it in under gdb, which SIGKILLs vmsync as it is about to release the
# lease, the step that marks the check-in finished on the client's side.  The
# repository then holds version 2 and the lease on version 1.  The same
# command again exits 0, says that the image is already recorded as t@2, and
# releases the lease; no third version appears.  An image changed once more
# since the killed run is not taken for it: that re-run is still refused
# (exit 8), as another host's check-in would be.
# Then the same once more with the kill just after the lease release (at the
# audit): the repository holds version 3 and no lease at all.  The re-run knows
# from OUT.vmsync-record that the image was checked out at version 2, finds
# version 3 with its digest and size, recorded by the lease's holder from this
# host, and exits 0 the same way.  Another host, or an image changed since, is
# still refused.
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs debugfs gdb sqlite3 jq

export VMSYNC_HOST=laptop-rerun VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
timg=$(repo_img t ext4) || fail "cannot build T"

# kill_at FUNCTION PREFIX ARGS...: runs vmsync ARGS under gdb and kills it
# (SIGKILL) when it calls FUNCTION; nothing of vmsync runs after that point.
kill_at() {
    local fn=$1 p=$2
    shift 2
    timeout -k 10 "$VMSYNC_CMD_TIMEOUT" gdb -nx -batch -q -iex 'set debuginfod enabled off' \
        -iex 'set print thread-events off' \
        -ex 'set startup-with-shell off' -ex "break $fn" -ex run -ex kill \
        --args "$VMSYNC" "$@" >"$p.out" 2>&1 </dev/null || true
}

checkins() { sqlite3 "$1/catalog.db" "select count(*) from audit where action = 'checkin'"; }

# refused_when_changed PREFIX ARGS...: with the image changed once more since
# the killed run, it is not the recorded version: vmsync ARGS is refused (exit
# 8).  The image is then put back in place (cp, not mv: its record names the
# inode).
refused_when_changed() {
    local p=$1
    shift
    cp --sparse=always "$img" "$p.saved"
    repo_add_file "$img" more
    vm_expect "$p" 8 "$@" || info "${p##*/}: a re-run with another image: $(head -c 300 "$p.err")"
    cp --sparse=always "$p.saved" "$img"
    rm -f "$p.saved"
}

# rerun_recorded PREFIX N ARGS...: vmsync ARGS exits 0, and says (and its
# stats say) that the image is already recorded as t@N.
rerun_recorded() {
    local p=$1 n=$2
    shift 2
    vm "$p" "$@" --stats-json "$p.json"
    if ((VM_RC != 0)); then
        bad "${p##*/}: the re-run after the kill exited $VM_RC, expected 0: $(head -c 400 "$p.err")"
        return
    fi
    grep -q "already recorded as t@$n" "$p.out" ||
        bad "${p##*/}: the re-run does not say the version is already recorded as t@$n: $(cat "$p.out")"
    [[ $(jget "$p.json" .already_recorded) == true && $(jget "$p.json" .version) == "$n" ]] ||
        bad "${p##*/}: the re-run's stats: $(cat "$p.json")"
}

for where in local ssh; do
    repo_for "$where"
    backend=local # the backend's operations, where gdb stops the client
    [[ $where == local ]] || backend=remote
    img=$T/$where.img
    vm_ok "$T/$where.import" import "$url" "$timg" --name t -q "${opts[@]}"

    # killed at the lease release: the lease still names version 1
    vm_ok "$T/$where.co" checkout "$url" t -o "$img" -q "${opts[@]}"
    repo_add_file "$img" notes
    work=$(repo_digest "$img") || fail "no digest for the changed image"
    ci=(checkin "$url" t "$img" -m offline-work "${opts[@]}") # no spaces: gdb splits its --args again
    kill_at "vms_${backend}_lease_release" "$T/$where.kill" "${ci[@]}"
    n=$(repo_nversions "$R" t)
    lease=$(repo_lease "$R")
    if ((n != 2)) || [[ $lease != "1|laptop-rerun" ]]; then
        fail "$where: the killed check-in left $n versions and lease '$lease', expected 2 and 1|laptop-rerun: $(tail -c 400 "$T/$where.kill.out" | tr '\n' ' ')"
    fi
    [[ $(repo_version_digest "$R" t 2) == "$work" ]] || fail "$where: the killed check-in recorded another digest"

    refused_when_changed "$T/$where.other" "${ci[@]}"
    [[ $(repo_lease "$R") == "1|laptop-rerun" ]] || bad "$where: a refused re-run changed the lease to '$(repo_lease "$R")'"
    rerun_recorded "$T/$where.rerun" 2 "${ci[@]}"
    n=$(repo_nversions "$R" t)
    ((n == 2)) || bad "$where: after the re-run the log shows $n versions, expected 2"
    [[ -z $(repo_lease "$R") ]] || bad "$where: the lease is still held after the re-run: $(repo_lease "$R")"
    (($(checkins "$R") == 1)) || bad "$where: the audit log should hold one check-in"
    # and once done, the same command again is an ordinary refusal: nothing checked out
    vm_expect "$T/$where.again" 8 "${ci[@]}" || true

    # killed after the lease release, at the audit: the re-run has no lease to go by
    vm_ok "$T/$where.co2" checkout "$url" t -o "$img" -q "${opts[@]}"
    repo_add_file "$img" later
    work=$(repo_digest "$img") || fail "no digest for the changed image"
    ci=(checkin "$url" t "$img" -m later-work "${opts[@]}")
    kill_at "vms_${backend}_audit" "$T/$where.kill2" "${ci[@]}"
    n=$(repo_nversions "$R" t)
    lease=$(repo_lease "$R")
    if ((n != 3)) || [[ -n $lease ]]; then
        fail "$where: the check-in killed after the release left $n versions and lease '$lease', expected 3 and none: $(tail -c 400 "$T/$where.kill2.out" | tr '\n' ' ')"
    fi
    [[ $(repo_version_digest "$R" t 3) == "$work" ]] || fail "$where: the second killed check-in recorded another digest"

    VMSYNC_HOST=elsewhere vm_expect "$T/$where.host2" 8 "${ci[@]}" ||
        info "$where: a re-run from another host: $(head -c 300 "$T/$where.host2.err")"
    refused_when_changed "$T/$where.other2" "${ci[@]}"
    rerun_recorded "$T/$where.rerun2" 3 "${ci[@]}"
    n=$(repo_nversions "$R" t)
    ((n == 3)) || bad "$where: after the second re-run the log shows $n versions, expected 3"
    (($(checkins "$R") == 2)) || bad "$where: the audit log should hold two check-ins, one from the second re-run"
    vm_expect "$T/$where.again2" 8 "${ci[@]}" || true # the record now names version 3
    rm -f "$img"
done
finish
