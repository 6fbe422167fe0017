#!/usr/bin/env bash
# Checkout and export never replace a user's work.  Over a local repository
# and over ssh://:
#   - OUT exists and vmsync did not write it: checkout and export refuse
#     (exit 8, naming OUT and --force), leave it as it was and take no lease;
#     --force replaces it;
#   - a checkout again over its own unchanged output: nothing to do (the file
#     is not rewritten, nothing is fetched), the lease is taken;
#   - its times touched but the content the same: read again, nothing to do;
#   - changed since (offline work, not checked in): refused (exit 8, "check it
#     in first"), the work kept; after the check-in (which notes that the
#     file now holds version 2), a checkout of version 1 over it goes ahead
#     without reading it again;
#   - a VM writes to OUT while an export over it runs (gdb holds the export
#     at the start of its final verification): OUT is not replaced (exit 8).
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
source "$TESTS_LIB/sshd.sh"
need_vmsync
need_cmd mke2fs debugfs gdb sqlite3 jq sha256sum

export VMSYNC_HOST=laptop-ow VMSYNC_CACHE=$T/cache
sshd_start "$T/sshd" "$T/srv"
mkdir -p "$T/srv"
timg=$(repo_img t ext4) || fail "cannot build T"
tdig=$(repo_digest "$timg") || fail "no digest for T"
PART=$REPO_PART_START

sum_of() { sha256sum "$1" | cut -d' ' -f1; }
ident() { stat -c '%i %Y.%y %s' "$1"; }

for where in local ssh; do
    repo_for "$where"
    vm_ok "$T/$where.import" import "$url" "$timg" --name t -q "${opts[@]}"

    # a file vmsync did not write
    out=$T/$where.img
    printf 'the user'"'"'s own file\n' >"$out"
    before=$(sum_of "$out")
    for cmd in checkout export; do
        if vm_expect "$T/$where.$cmd-foreign" 8 "$cmd" "$url" t -o "$out" -q "${opts[@]}"; then
            why=$(one_error_line "$T/$where.$cmd-foreign" "$out" "--force") || bad "$where: $cmd over a foreign file: $why"
        fi
        [[ $(sum_of "$out") == "$before" ]] || bad "$where: $cmd replaced a file vmsync did not write"
    done
    [[ -z $(repo_lease "$R") ]] || bad "$where: a refused checkout took the lease: $(repo_lease "$R")"
    vm_ok "$T/$where.force" checkout "$url" t -o "$out" -q --force "${opts[@]}"
    [[ $(repo_digest "$out") == "$tdig" ]] || bad "$where: checkout --force did not write T"

    # its own output, unchanged: nothing to do
    id0=$(ident "$out")
    vm "$T/$where.again" checkout "$url" t -o "$out" --stats-json "$T/$where.again.json" "${opts[@]}"
    if ((VM_RC != 0)); then
        bad "$where: a checkout over its own unchanged output exited $VM_RC: $(head -c 300 "$T/$where.again.err")"
    else
        grep -q "already holds t@1" "$T/$where.again.out" || bad "$where: the re-run does not say OUT already holds t@1: $(cat "$T/$where.again.out")"
        [[ $(jget "$T/$where.again.json" .in_place) == true && $(jget "$T/$where.again.json" .bytes_fetched_raw) == 0 ]] ||
            bad "$where: the re-run's stats: $(cat "$T/$where.again.json")"
    fi
    [[ $(ident "$out") == "$id0" ]] || bad "$where: the unchanged output was rewritten ($id0 -> $(ident "$out"))"
    [[ $(repo_lease "$R") == "1|laptop-ow" ]] || bad "$where: the re-run holds lease '$(repo_lease "$R")'"
    vm_ok "$T/$where.export-own" export "$url" t -o "$out" -q "${opts[@]}"
    holder=$(cut -d' ' -f11 "$out.vmsync-record")
    [[ $holder == "$(sqlite3 "$R/catalog.db" "select user from leases")" ]] ||
        bad "$where: the record names '$holder', not the lease's holder: $(cat "$out.vmsync-record")"
    # a record from before the holder field (format 1) is still vmsync's
    sed -i -E 's/^vmsync-record 2 (([^ ]+ ){8})[^ ]+ /vmsync-record 1 \1/' "$out.vmsync-record"
    grep -q '^vmsync-record 1 [0-9]* raw [0-9a-f]* [0-9 .]* t$' "$out.vmsync-record" ||
        fail "$where: the record did not turn into format 1: $(cat "$out.vmsync-record")"
    vm "$T/$where.format1" checkout "$url" t -o "$out" --stats-json "$T/$where.format1.json" "${opts[@]}"
    ((VM_RC == 0)) && [[ $(jget "$T/$where.format1.json" .in_place) == true ]] ||
        bad "$where: a checkout over its output with a format 1 record: exit $VM_RC, $(head -c 300 "$T/$where.format1.err")"

    # touched, same content: read again, nothing to do
    touch "$out"
    vm "$T/$where.touched" checkout "$url" t -o "$out" --stats-json "$T/$where.touched.json" "${opts[@]}"
    ((VM_RC == 0)) || bad "$where: a checkout over its touched output exited $VM_RC: $(head -c 300 "$T/$where.touched.err")"
    [[ $(jget "$T/$where.touched.json" .in_place) == true ]] || bad "$where: a touched output with the same content was rebuilt"

    # offline work, not checked in
    repo_add_file "$out" notes
    work=$(repo_digest "$out")
    for cmd in checkout export; do
        if vm_expect "$T/$where.$cmd-work" 8 "$cmd" "$url" t -o "$out" -q "${opts[@]}"; then
            why=$(one_error_line "$T/$where.$cmd-work" "$out" "check it in first") || bad "$where: $cmd over work: $why"
        fi
    done
    [[ $(repo_digest "$out") == "$work" ]] || bad "$where: the offline work was lost"

    # checked in: now a version holds it, and the output may be replaced
    vm_ok "$T/$where.ci" checkin "$url" t "$out" -q "${opts[@]}"
    vm_ok "$T/$where.co1" checkout "$url" t@1 -o "$out" -q "${opts[@]}"
    # the check-in noted what the file holds: no need to read it again
    ! grep -q 'reading it' "$T/$where.co1.err" || bad "$where: after the check-in, the checkout read the output again: $(cat "$T/$where.co1.err")"
    [[ $(repo_digest "$out") == "$tdig" ]] || bad "$where: the checkout of t@1 over the checked-in work did not write t@1"

    # a VM writes to OUT while an export of t@2 over it runs: the export,
    # stopped by gdb as it starts to verify the rebuilt image (from what it
    # wrote, or by a scan when that cannot vouch), finds the change and does
    # not replace it
    printf 'written during the export\n' >"$T/during.txt"
    # (LeakSanitizer cannot run under a debugger: a sanitizer build would fail at exit)
    ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0 \
        timeout -k 10 "$VMSYNC_CMD_TIMEOUT" gdb -nx -batch -q -iex 'set debuginfod enabled off' \
        -iex 'set print thread-events off' \
        -ex 'set startup-with-shell off' -ex 'break vms_out_digest' \
        -ex 'break vms_ctx_scan_summary_raw' -ex run \
        -ex 'shell debugfs -w -R "write '"$T"'/during.txt /during.txt" "'"$out?offset=$PART"'" >/dev/null 2>&1' \
        -ex 'delete' -ex continue --args "$VMSYNC" export "$url" t@2 -o "$out" -q "${opts[@]}" \
        >"$T/$where.race.out" 2>&1 </dev/null || true
    grep -q 'exited with code 010' "$T/$where.race.out" ||
        bad "$where: an export over an output changed while it ran did not exit 8: $(tail -c 400 "$T/$where.race.out" | tr '\n' ' ')"
    grep -q 'changed while vmsync rebuilt the image' "$T/$where.race.out" || bad "$where: the export does not say that $out changed while it ran"
    debugfs -R "cat /during.txt" "$out?offset=$PART" 2>/dev/null | grep -q 'written during' ||
        bad "$where: the change made during the export was lost"
    rm -f "$out" "$out.vmsync-record" "$out.vmsync-part" "$out.vmsync-journal"
done
finish
