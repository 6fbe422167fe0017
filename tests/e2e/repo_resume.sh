#!/usr/bin/env bash
# Resume after kill -9.  A seed-less checkout of a 400 MiB image (324 MiB of
# random file data, all fetched from the repository) is killed at several
# points: as soon as OUT.vmsync-part appears, after the first journal sync,
# deep into the fetch, and while the result is being verified.  Running the
# same command again finishes with an image identical to a clean export,
# reusing what was written (bytes_resumed > 0).  Then a check-in with 162 MiB
# of new data is killed at several points (early, after the first pack is
# committed, after the second): the repository never shows a half check-in, and
# the same command again records one version with the modified image's digest.
# Last, a partial checkout of v1 is not resumed by a checkout of v2.
# The kill conditions are single-quoted on purpose: kill_when evaluates them
# again and again.
# shellcheck disable=SC2016
source "$(dirname "$0")/../lib/common.sh"
source "$TESTS_LIB/repo.sh"
need_vmsync
need_cmd mke2fs jq cmp sqlite3 python3 losetup
repo_have_loop || skip "needs root and loop devices"

export VMSYNC_HOST=laptop-r VMSYNC_CACHE=$T/cache
R=$T/repo
repo_init "$R"
big=$(repo_img big ext4) || fail "cannot build the big image"
pb=$REPO_BIG_PART_BYTES
bdig=$(repo_digest "$big") || fail "no digest for $big"
vm_ok "$T/import" import "$R" "$big" --name big -q

# kill_when PREFIX COND ARGS...: runs vmsync ARGS in the background (output in
# PREFIX.out/.err), evaluates COND every 20 ms and kills the process with
# SIGKILL once COND holds.  Returns 0 when the process was killed, 1 when it
# ended first (its status in VM_RC).
kill_when() {
    local p=$1 cond=$2 pid rc=0 t0=$SECONDS
    shift 2
    repo_bg "$VMSYNC" "$@" >"$p.out" 2>"$p.err"
    pid=$REPO_BG_PID
    while kill -0 "$pid" 2>/dev/null; do
        if eval "$cond"; then
            kill -9 "$pid" 2>/dev/null || true
            break
        fi
        if ((SECONDS - t0 > VMSYNC_CMD_TIMEOUT)); then
            kill -9 "$pid" 2>/dev/null || true
            fail "vmsync $* did not finish in ${VMSYNC_CMD_TIMEOUT}s"
        fi
        sleep 0.02
    done
    wait "$pid" 2>/dev/null || rc=$?
    if ((rc == 137)); then
        return 0
    fi
    VM_RC=$rc
    return 1
}

alloc() { if [[ -e $1 ]]; then echo $(($(stat -c %b "$1") * 512)); else echo 0; fi; }
fsize() { if [[ -e $1 ]]; then stat -c %s "$1"; else echo 0; fi; }
JHDR=40 # journal header: magic + manifest id

# ---- checkout -----------------------------------------------------------------
out=$T/out.img
vm_ok "$T/est" checkout "$R" big -o "$out" --estimate --stats-json "$T/est.json"
total=$(repo_stat "$T/est.json" bytes_fetched_raw)
co_args=(checkout "$R" big -o "$out" --progress=json --stats-json "$T/co.json")
conds=(
    '[[ -e $out.vmsync-part ]]'
    '(( $(fsize "$out.vmsync-journal") > JHDR ))'
    '(( $(alloc "$out.vmsync-part") >= 200 << 20 ))'
    'grep -q "\"phase\":\"verify\"" "$T/co.k$k.err"'
)
killed=0
for k in "${!conds[@]}"; do
    if kill_when "$T/co.k$k" "${conds[k]}" "${co_args[@]}" && [[ ! -e $out ]]; then
        killed=$((killed + 1))
        info "checkout killed at point $k: part allocated $(alloc "$out.vmsync-part"), journal $(fsize "$out.vmsync-journal") bytes"
        [[ ! -e $out ]] || bad "checkout killed at point $k: $out exists already"
        [[ -e $out.vmsync-part ]] || bad "checkout killed at point $k: no $out.vmsync-part"
        if ((k >= 2)) && (($(fsize "$out.vmsync-journal") <= JHDR)); then
            bad "checkout killed at point $k (after 200 MiB were written): the journal records nothing"
        fi
    else
        # the verify reads back little, so the image may be in place before
        # the kill lands (its record, or the journal's removal, then missing)
        [[ ! -e $out ]] || VM_RC=0
        info "checkout finished (status $VM_RC) before kill point $k"
        ((VM_RC == 0)) || bad "checkout run $k exited $VM_RC: $(grep -v '^{' "$T/co.k$k.err" | head -c 300)"
        rm -f "$out" "$out.vmsync-part" "$out.vmsync-journal" "$out.vmsync-record"
    fi
    if grep -q 'did not verify' "$T/co.k$k.err"; then
        bad "checkout run $k: a resumed image did not verify: $(grep 'did not verify' "$T/co.k$k.err" | head -1)"
    fi
done
((killed >= 2)) || bad "only $killed of ${#conds[@]} checkout runs could be killed before they finished"
[[ -e $out.vmsync-part ]] || info "no partial output left for the final run"

vm "$T/co.final" "${co_args[@]}"
((VM_RC == 0)) || fail "the resumed checkout exited $VM_RC: $(grep -v '^{' "$T/co.final.err" | head -c 400)"
grep -q 'resuming' "$T/co.final.err" || bad "the final checkout did not say it resumed: $(grep -v '^{' "$T/co.final.err" | head -c 200)"
grep -q 'did not verify' "$T/co.final.err" && bad "the final checkout rebuilt from scratch: $(grep 'did not verify' "$T/co.final.err")"
resumed=$(repo_stat "$T/co.json" bytes_resumed)
fetched=$(repo_stat "$T/co.json" bytes_fetched_raw)
info "final checkout: bytes_resumed $resumed, bytes_fetched_raw $fetched"
((resumed > 0)) || bad "the final checkout resumed nothing (bytes_resumed=$resumed)"
# what was resumed was not fetched: the two add up to the whole plan
((fetched + resumed == total)) ||
    bad "the final checkout reports bytes_fetched_raw=$fetched and bytes_resumed=$resumed; their sum should be the $total bytes the plan fetches (resumed objects are counted as fetched)"
for f in "$out.vmsync-part" "$out.vmsync-journal"; do
    [[ ! -e $f ]] || bad "$(basename "$f") left after the finished checkout"
done
odig=$(repo_digest "$out") || fail "no digest for the checkout"
[[ $odig == "$bdig" ]] || bad "resumed checkout digest $odig != the image's $bdig"
vm_ok "$T/export1" export "$R" big -o "$T/clean.img"
cmp -s "$out" "$T/clean.img" || bad "the resumed checkout differs from a clean export: $(cmp "$out" "$T/clean.img" 2>&1 | head -1)"
rm -f "$T/clean.img"
if ! o=$(repo_fsck "$out" ext4 "$pb"); then bad "fsck of the resumed checkout: $(tr '\n' ' ' <<<"$o" | cut -c1-300)"; fi

# a single kill in the middle of the fetch, then the same command: part resumed,
# part fetched, same image
out2=$T/out2.img
co2_args=(checkout "$R" big -o "$out2" --progress=json --stats-json "$T/co2.json")
k=mid
if kill_when "$T/co2.kill" '(( $(alloc "$out2.vmsync-part") >= 150 << 20 ))' "${co2_args[@]}"; then
    vm "$T/co2.final" "${co2_args[@]}"
    ((VM_RC == 0)) || fail "the checkout resumed from the middle exited $VM_RC: $(grep -v '^{' "$T/co2.final.err" | head -c 400)"
    grep -q 'did not verify' "$T/co2.final.err" && bad "the checkout resumed from the middle rebuilt from scratch"
    r2=$(repo_stat "$T/co2.json" bytes_resumed)
    f2=$(repo_stat "$T/co2.json" bytes_fetched_raw)
    info "checkout resumed from the middle: bytes_resumed $r2, bytes_fetched_raw $f2"
    ((r2 > 0 && r2 < total)) || bad "the checkout killed in the middle of the fetch resumed $r2 of $total bytes"
    ((f2 + r2 == total)) || bad "the checkout resumed from the middle reports bytes_fetched_raw=$f2 + bytes_resumed=$r2 != the plan's $total"
    cmp -s "$out" "$out2" || bad "the checkout resumed from the middle differs from the first one"
    rm -f "$out2"
else
    bad "the checkout finished before 150 MiB were written (status $VM_RC): cannot test a resume from the middle"
fi

# ---- check-in -------------------------------------------------------------------
# offline work: 162 MiB of files replaced by 162 MiB of new ones
dev=$(repo_loop "$out" "" "$pb") || fail "losetup failed"
repo_mount "$dev" ext4 "$T/mnt" || fail "cannot mount the checkout"
rm -f "$T/mnt"/bulk/f0[0-9].bin "$T"/mnt/bulk/f1[0-7].bin
python3 - "$T/mnt" <<'EOF' || fail "writing new data failed"
import os, random, sys
os.makedirs(os.path.join(sys.argv[1], 'newbulk'))
for k in range(18):
    with open(os.path.join(sys.argv[1], 'newbulk', 'g%02d.bin' % k), 'wb') as f:
        f.write(random.Random(50000 + k).randbytes(9 << 20))
EOF
repo_umount "$T/mnt"
repo_unloop "$dev"
mdig=$(repo_digest "$out") || fail "no digest for the modified image"
NEW=$((162 << 20))

# packs committed: in packs/ and indexed by the catalog
npacks() { sqlite3 "$R/catalog.db" 'select count(*) from packs' 2>/dev/null || echo 0; }
p0=$(npacks)
ci_args=(checkin "$R" big "$out" -m "new bulk" --progress=json --stats-json "$T/ci.json")
cconds=(
    'grep -q "\"phase\"" "$T/ci.k$k.err"'
    '(( $(npacks) > p0 ))'
    '(( $(npacks) > p0 + 1 ))'
)
killed=0
for k in "${!cconds[@]}"; do
    if kill_when "$T/ci.k$k" "${cconds[k]}" "${ci_args[@]}"; then
        killed=$((killed + 1))
        info "check-in killed at point $k ($(($(npacks) - p0)) new packs)"
        n=$(repo_nversions "$R" big)
        ((n == 1)) || bad "after the check-in killed at point $k, the log shows $n versions"
        lease=$(sqlite3 "$R/catalog.db" "select version || '|' || host from leases")
        [[ $lease == "1|laptop-r" ]] || bad "after the check-in killed at point $k, the lease is '$lease'"
    else
        info "check-in finished (status $VM_RC) before kill point $k"
        ((VM_RC == 0)) || bad "check-in run $k exited $VM_RC: $(grep -v '^{' "$T/ci.k$k.err" | head -c 300)"
        break
    fi
done
((killed >= 2)) || bad "only $killed check-in runs could be killed before they finished"

if (($(repo_nversions "$R" big) == 1)); then
    vm "$T/ci.final" "${ci_args[@]}"
    ((VM_RC == 0)) || fail "the check-in after the kills exited $VM_RC: $(grep -v '^{' "$T/ci.final.err" | head -c 400)"
    sent=$(repo_stat "$T/ci.json" bytes_sent_raw)
    info "final check-in sent $sent bytes raw of $NEW new"
    if ((killed >= 3)) && ((sent > NEW / 2)); then
        bad "the check-in after the kills sent $sent bytes of $NEW: it did not reuse the objects of the packs committed before"
    fi
fi
n=$(repo_nversions "$R" big)
((n == 2)) || bad "the log shows $n versions after the check-in, expected exactly 2"
[[ $(repo_version_digest "$R" big 2) == "$mdig" ]] || bad "v2's digest $(repo_version_digest "$R" big 2) != the modified image's $mdig"
[[ -z $(sqlite3 "$R/catalog.db" "select * from leases") ]] || bad "the lease is still held after the check-in"

# the leftovers of the killed runs do not get in the way: gc, then export v2
vm "$T/gc" gc "$R"
((VM_RC == 0)) || bad "vmsync gc exited $VM_RC: $(head -c 300 "$T/gc.err")"
vm_ok "$T/export2" export "$R" big@2 -o "$T/v2.img"
[[ $(repo_digest "$T/v2.img") == "$mdig" ]] || bad "export of v2 after gc does not have the modified image's digest"
vm "$T/verify2" verify "$R" big@2 "$T/v2.img"
((VM_RC == 0)) || bad "verify of the v2 export exited $VM_RC"
rm -f "$T/v2.img"

# a partial checkout of v1, then a checkout of v2 to the same place: nothing of
# v1's partial output may be taken for v2
out3=$T/out3.img
k=v1
if kill_when "$T/co3.kill" '(( $(alloc "$out3.vmsync-part") >= 100 << 20 ))' checkout "$R" big@1 -o "$out3" --progress=json; then
    vm "$T/co3" checkout "$R" big@2 -o "$out3" --stats-json "$T/co3.json"
    ((VM_RC == 0)) || bad "checkout of v2 over a partial v1 exited $VM_RC: $(head -c 300 "$T/co3.err")"
    [[ $(repo_digest "$out3") == "$mdig" ]] || bad "checkout of v2 over a partial v1 does not have v2's digest"
    (($(repo_stat "$T/co3.json" bytes_resumed) == 0)) || bad "checkout of v2 resumed $(repo_stat "$T/co3.json" bytes_resumed) bytes of a partial checkout of v1"
else
    info "the checkout of v1 finished before it could be killed"
fi
finish
