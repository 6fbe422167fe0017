#!/usr/bin/env bash
# make bench's last step, bench/summary.py: one table of every figure of one
# run.  First on a real short run of bench/run.sh (the small-20k image, one
# run): the manifest row is "not measured" for want of the Debian image, and
# every other row names the script that wrote no JSON.  Then on JSON written by
# the benchmarks' own report code (sync_lib.py, wan_lib.py and benchlib.py
# report, fed samples in the form bench/sync.sh and bench/wan.sh record): each
# figure and peer must be the one those scripts computed (medians included),
# each ratio figure / peer, each verdict the goal's; a file of another run, a
# section that did not run and a step that failed give "not measured" with the
# reason, never the old figure.
# shellcheck source=tests/lib/common.sh
source "$(dirname "$0")/../lib/common.sh"
need_cmd python3 openssl sfdisk mke2fs flock
need_vmsync
BENCH=$REPO/bench
B=$T/build
mkdir -p "$B" "$VMSYNC_TEST_CACHE/bench-run"
ln -s "$VMSYNC" "$B/vmsync"
ln -s "$VMSYNC_TEST_CACHE/bench-run" "$B/bench-cache" # the small-20k image, kept across runs

# ---- a real short run of bench/run.sh
unset BENCH_RUN_ID
BENCH_IMAGES=small-20k BENCH_RUNS=1 "$BENCH/run.sh" "$B" >"$T/run.out" 2>"$T/run.err" ||
    fail "bench/run.sh exited $?: $(tail -c 400 "$T/run.err")"
"$BENCH/summary.py" "$B" >"$T/sum.out" || fail "summary.py exited $? with no step failed"
row() { python3 "$T/row.py" "$B/bench-summary.json" "$@"; }
cat >"$T/row.py" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1]))
r = {r["id"]: r for r in s["rows"]}[sys.argv[2]]
print(s["run_id"] if sys.argv[3] == "run_id" else r.get(sys.argv[3]))
EOF
run_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["run_id"])' "$B/bench-results.json")
[[ $run_id == 20* ]] || bad "bench/run.sh recorded no run id: '$run_id'"
[[ $(row manifest_vs_openssl_ext4 run_id) == "$run_id" ]] || bad "the summary is not of run $run_id"
[[ $(row manifest_vs_openssl_ext4 reason) == *"debian-ext4 (BENCH_IMAGES)"* ]] ||
    bad "manifest row: $(row manifest_vs_openssl_ext4 reason)"
[[ $(row checkout_bytes_ssh19_ext4 reason) == *"bench/wan.sh wrote no"* ]] ||
    bad "checkout row without bench-wan.json: $(row checkout_bytes_ssh19_ext4 reason)"
grep -q '^checkout bytes over ssh at level 19, NTFS *not measured: ' "$T/sum.out" ||
    bad "the table does not say the NTFS checkout was not measured: $(head -c 600 "$T/sum.out")"

# ---- the scripts' report code on samples: sync.sh's (3 runs), wan.sh's
export BENCH_RUN_ID=20991231T000000Z-1
python3 - "$B/bench-results.json" "$T" <<'EOF'
import json, random, sys
out = sys.argv[2]
r = random.Random(7)
# bench/run.sh's TSV, with the real run's small-20k row as debian-ext4
img = json.load(open(sys.argv[1]))["images"][0]
cols = ["image", "status", "image_bytes", "host_alloc_bytes", "alloc_bytes", "files", "entries",
        "warnings", "manifest_s", "manifest_s_min", "manifest_s_max", "cpu_s", "rss_kib",
        "openssl_s", "openssl_cpu_s", "openssl_rss_kib", "manifest_bytes", "runs", "verify"]
img["image"] = "debian-ext4"
with open(out + "/run.tsv", "w") as fh:
    fh.write("\t".join(cols) + "\n" + "\t".join(str(img[c]) for c in cols) + "\n")
# bench/sync.sh's samples and cached peers, per filesystem
static = {}
with open(out + "/sync.tsv", "w") as fh:
    for fs in ("ext4", "ntfs"):
        static[fs] = {"ca_co_bytes": r.randint(200_000_000, 400_000_000),
                      "ca_T_index": r.randint(1_000_000, 2_000_000)}
        for run in (1, 2, 3):
            fh.write("%s\t%d\trs_ci_total\t%d\n" % (fs, run, r.randint(20_000_000, 30_000_000)))
json.dump(static, open(out + "/sync-static.json", "w"))
# bench/wan.sh's: two links (ext4), the CPU cases, the level-19 section per filesystem
with open(out + "/wan.tsv", "w") as fh:
    for scope in ("10000000:25", "2000000:150"):
        for run in (1, 2):
            for t in ("vm_co", "vm_ci", "rs_co", "rs_ci"):
                up, down = r.randint(1_000_000, 3_000_000), r.randint(20_000_000, 300_000_000)
                link_s = max(up, down) * 8 / float(scope.split(":")[0])
                for k, v in (("s", link_s * r.uniform(1.0, 1.3)), ("up", up), ("down", down)):
                    fh.write("%s\text4\t%d\t%s_%s\t%s\n" % (scope, run, t, k, v))
    for name, n in (("1 client, level 19, cold cache", 1), ("8 clients, level 19, cold cache", 8)):
        for k in ("wall_s", "srv_cpu", "agent_cpu", "level", "segments", "segments_cached",
                  "segments_stored"):
            fh.write("cpu\text4\t%s\t%s\t%d\n" % (name, k, r.randint(1, 300) * n))
        fh.write("cpu\text4\t%s\tclients\t%d\n" % (name, n))
    for fs in ("ext4", "ntfs"):
        b = dict(static[fs], level=19, bn_objects=9, bn_create_s=1, bn_create_cpu=1, bn_co_s=1)
        for k in ("bn_bytes", "vm_co19_wire_in", "vm_co19_wire_out", "vm_co19_objects_fetched",
                  "vm_co19_bytes_fetched_compressed", "vm_ci19_wire_in", "vm_ci19_wire_out",
                  "vm_ci19_objects_sent", "vm_ci19_bytes_sent_compressed"):
            b[k] = r.randint(100_000, 300_000_000)
        for k, v in b.items():
            fh.write("bundle\t%s\t1\t%s\t%s\n" % (fs, k, v))
EOF
python3 "$BENCH/benchlib.py" report "$T/run.tsv" "$B/bench-results.json" >/dev/null ||
    fail "benchlib.py report failed on the samples"
python3 "$BENCH/sync_lib.py" report "$T/sync.tsv" "$T/sync-static.json" "$B/bench-sync.json" >/dev/null ||
    fail "sync_lib.py report failed on the samples"
WAN_META='{"run_id": "'$BENCH_RUN_ID'", "skipped": []}' \
    python3 "$BENCH/wan_lib.py" report "$T/wan.tsv" "$B/bench-wan.json" >/dev/null ||
    fail "wan_lib.py report failed on the samples"
"$BENCH/summary.py" "$B" >"$T/sum.out" || fail "summary.py exited $?"
python3 - "$B" "$T/sync.tsv" <<'EOF' || bad "the summary does not match the scripts' JSON"
import json, statistics, sys
b, sync_tsv = sys.argv[1], sys.argv[2]
s = {r["id"]: r for r in json.load(open(b + "/bench-summary.json"))["rows"]}
wan = json.load(open(b + "/bench-wan.json"))
run = json.load(open(b + "/bench-results.json"))["images"][0]
ci = {}
for line in open(sync_tsv):
    fs, _, _, v = line.split("\t")
    ci.setdefault(fs, []).append(float(v))
want = {}  # id: (figure, peer) as the scripts computed them
for fs in ("ext4", "ntfs"):
    f = wan["bundle"][fs]["figures"]
    want["checkout_bytes_ssh19_" + fs] = (f["ssh19_bytes"], f["casync_bytes"])
    want["checkin_bytes_ssh19_" + fs] = (f["ssh19_checkin_bytes"], statistics.median(ci[fs]))
for scope, mbit in (("10000000:25", 10), ("2000000:150", 2)):
    m = wan["wan"][scope]["ext4"]["median"]
    for t, name in (("vm_ci", "checkin"), ("vm_co", "checkout")):
        want["%s_link_ratio_%dmbit" % (name, mbit)] = (m[t + "_s"], m[t + "_link_s"], m[t + "_ratio"])
want["manifest_vs_openssl_ext4"] = (run["manifest_s"], run["openssl_s"], run["ratio"])
one = wan["server_cpu"]["ext4"]["1 client, level 19, cold cache"]
want["agent_cpu_1client_level19_cold"] = (one["agent_cpu_per_client"], None, None)
bad = 0
for rid, w in want.items():
    r = s[rid]
    ratio = w[2] if len(w) > 2 else w[0] / w[1]
    got = (r["figure"], r["peer"], r["ratio"])
    verdict = ratio <= r["goal"] if ratio is not None else r["figure"] <= r["goal"]
    if not r["measured"] or any(abs(a - b) > 1e-9 * abs(b) for a, b in zip(got, (w[0], w[1], ratio))
                                if b is not None) or r["met"] != verdict:
        print("FAIL: %s: summary %s, the scripts' JSON %s" % (rid, r, w))
        bad = 1
for rid in ("second_client_recompressed", "samehost_bytes_xfs", "agent_levels_checkout_2mbit"):
    if s[rid]["measured"]:
        print("FAIL: %s measured from data no script wrote: %s" % (rid, s[rid]))
        bad = 1
sys.exit(bad)
EOF
grep -q '^checkout bytes over ssh at level 19, NTFS .* casync index + chunks ' "$T/sum.out" ||
    bad "the table has no measured NTFS checkout row: $(head -c 800 "$T/sum.out")"

# ---- a file of another run, a section that did not run, a step that failed
python3 - "$B/bench-sync.json" <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
d["run_id"] = "20990101T000000Z-2"
json.dump(d, open(sys.argv[1], "w"))
EOF
grep -v '^bundle	ntfs	' "$T/wan.tsv" >"$T/wan-ext4.tsv"
WAN_META='{"run_id": "'$BENCH_RUN_ID'", "skipped": []}' \
    python3 "$BENCH/wan_lib.py" report "$T/wan-ext4.tsv" "$B/bench-wan.json" >/dev/null
printf 'bench/sync.sh\t3\n' >"$B/bench-status.tsv"
# a bench-share.json without a run id (as an older bench/share.sh wrote)
echo '{"results": [{"fs": "xfs", "seed": "copy", "wall_s": 9, "bytes_written": 9}]}' >"$B/bench-share.json"
rc=0
"$BENCH/summary.py" "$B" >"$T/sum.out" || rc=$?
((rc == 1)) || bad "summary.py exited $rc after a failed step, not 1"
stale="bench-sync.json is from run 20990101T000000Z-2, not this run $BENCH_RUN_ID"
[[ $(row checkin_bytes_ssh19_ext4 reason) == *"$stale (bench/sync.sh exited 3 in this run)" ]] ||
    bad "check-in row with a stale bench-sync.json: $(row checkin_bytes_ssh19_ext4 reason)"
[[ $(row checkout_bytes_ssh19_ntfs reason) == *"did not run on ntfs (WAN_BUNDLE_FS)" ]] ||
    bad "NTFS checkout row without its section: $(row checkout_bytes_ssh19_ntfs reason)"
[[ $(row samehost_bytes_xfs reason) == *"bench-share.json has no run id"* ]] ||
    bad "same-host row from a file without a run id: $(row samehost_bytes_xfs reason)"
[[ $(row checkout_link_ratio_2mbit measured) == True ]] ||
    bad "the 2 Mbit/s checkout row, which needs only bench-wan.json, is not measured"
grep -q '^note: bench/sync.sh exited 3' "$T/sum.out" || bad "the table does not name the failed step"

# ---- make -n bench still lists every step, the summary last
make -s -n -C "$REPO" bench BUILD="$B" >"$T/make-n.out" 2>&1 ||
    bad "make -n bench failed: $(tail -c 300 "$T/make-n.out")"
steps=$(grep -o -E '^bench/(run|sync|wan|summary)\.(sh|py)' "$T/make-n.out" | tr '\n' ' ')
[[ $steps == "bench/run.sh bench/sync.sh bench/wan.sh bench/summary.py " ]] ||
    bad "make -n bench lists '$steps'"
finish
