#!/usr/bin/env python3
"""Helpers for bench/run.sh (standard library only).

  benchlib.py gen-small DIR NDIRS PER_DIR
      Writes NDIRS directories of PER_DIR files, 100..2000 bytes each, with
      deterministic content.  Directory d is the same in every tree, so the
      20K tree is the first 40 directories of the 200K tree.
  benchlib.py check-small MANIFEST_JSON NDIRS PER_DIR
      Checks the entry count and a sample of SHA-256s in a manifest of such a
      tree against regenerated content.
  benchlib.py check-tree MANIFEST_JSON TREE [EXCLUDE_TOP...]
      Compares the manifest's regular files with TREE: counts, and SHA-256 of
      a deterministic sample (the largest files plus an even spread).
  benchlib.py report RESULTS_TSV OUT_JSON
      Prints the results table on stdout and writes the JSON.
"""
import hashlib
import json
import os
import random
import stat
import sys

SAMPLE = 40


def small_file(d, f):
    """Name and content of file f in directory d of a small-file tree."""
    r = random.Random(d * 1_000_003 + f)
    size = r.randint(100, 2000)
    return "d%03d/f%04d" % (d, f), r.randbytes(size)


def gen_small(root, ndirs, per_dir):
    os.makedirs(root, exist_ok=True)
    for d in range(ndirs):
        os.makedirs(os.path.join(root, "d%03d" % d), exist_ok=True)
        for f in range(per_dir):
            name, data = small_file(d, f)
            with open(os.path.join(root, name), "wb") as fh:
                fh.write(data)
            os.utime(os.path.join(root, name), (1609459200, 1609459200))


def manifest_files(path):
    """{path: (size, sha256)} of the regular files of a manifest JSON, plus
    the summary and the warnings."""
    with open(path) as fh:
        m = json.load(fh)
    files = {}
    for vol in m.get("volumes", []):
        for e in vol.get("entries", []):
            if e.get("type") == "file":
                files[e["path"]] = (e.get("size"), e.get("sha256"))
    return files, m.get("summary", {}), m.get("warnings", [])


def check_small(mpath, ndirs, per_dir):
    files, summary, warnings = manifest_files(mpath)
    want = ndirs * per_dir
    problems = []
    if len(files) != want:
        problems.append("manifest has %d files, tree has %d" % (len(files), want))
    r = random.Random(42)
    picks = [(r.randrange(ndirs), r.randrange(per_dir)) for _ in range(SAMPLE)]
    bad = 0
    for d, f in picks:
        name, data = small_file(d, f)
        got = files.get("/" + name)
        exp = (len(data), hashlib.sha256(data).hexdigest())
        if got != exp:
            bad += 1
            if bad <= 5:
                problems.append("/%s: manifest %s, expected %s" % (name, got, exp))
    return report_check(len(picks) - bad, len(picks), problems, warnings)


def sha256_file(p):
    h = hashlib.sha256()
    with open(p, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_tree(mpath, tree, exclude):
    files, summary, warnings = manifest_files(mpath)
    tree_files = {}
    for dirpath, dirnames, filenames in os.walk(tree):
        rel = os.path.relpath(dirpath, tree)
        if rel == ".":
            dirnames[:] = [d for d in dirnames if d not in exclude]
        for n in filenames:
            p = os.path.join(dirpath, n)
            st = os.lstat(p)
            if stat.S_ISREG(st.st_mode):
                key = "/" + os.path.relpath(p, tree)
                tree_files[key] = st.st_size
    problems = []
    missing = sorted(set(tree_files) - set(files))
    extra = sorted(set(files) - set(tree_files))
    if missing:
        problems.append("%d tree files not in manifest, e.g. %s" % (len(missing), missing[:3]))
    if extra:
        problems.append("%d manifest files not in tree, e.g. %s" % (len(extra), extra[:3]))
    common = sorted(set(files) & set(tree_files))
    size_bad = [p for p in common if files[p][0] != tree_files[p]]
    if size_bad:
        problems.append("%d size mismatches, e.g. %s" % (len(size_bad), size_bad[:3]))
    largest = sorted(common, key=lambda p: -tree_files[p])[:10]
    step = max(1, len(common) // (SAMPLE - 10))
    picks = sorted(set(largest + common[::step]))
    bad = 0
    for p in picks:
        want = sha256_file(os.path.join(tree, p.lstrip("/")))
        if files[p][1] != want:
            bad += 1
            if bad <= 5:
                problems.append("%s: manifest sha256 %s, sha256sum %s" % (p, files[p][1], want))
    return report_check(len(picks) - bad, len(picks), problems, warnings,
                        "%d files in manifest, %d in tree" % (len(files), len(tree_files)))


def report_check(ok, n, problems, warnings, extra=""):
    line = "%d/%d sampled sha256 match" % (ok, n)
    if extra:
        line += "; " + extra
    if warnings:
        line += "; %d manifest warnings, e.g. %s" % (
            len(warnings), json.dumps(warnings[0])[:160])
    print(line)
    for p in problems:
        print("  PROBLEM: " + p)
    return 1 if problems else 0


def fmt_bytes(n):
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return ("%.0f%s" if unit == "B" else "%.1f%s") % (n, unit)
        n /= 1024.0


def report(tsv, out_json):
    rows = []
    with open(tsv) as fh:
        header = fh.readline().rstrip("\n").split("\t")
        for line in fh:
            vals = line.rstrip("\n").split("\t")
            row = {}
            for k, v in zip(header, vals):
                try:
                    row[k] = int(v)
                except ValueError:
                    try:
                        row[k] = float(v)
                    except ValueError:
                        row[k] = v
            rows.append(row)
    for r in rows:
        if r.get("status") != "ok":
            continue
        r["ratio"] = r["manifest_s"] / r["openssl_s"] if r["openssl_s"] else None
        r["cpu_ratio"] = r["cpu_s"] / r["openssl_cpu_s"] if r["openssl_cpu_s"] else None
        r["fraction_n"] = r["image_bytes"] / r["manifest_bytes"] if r["manifest_bytes"] else None
        r["sha1_4k_baseline_bytes"] = r["image_bytes"] // 4096 * 20
        r["alloc_mib_per_s"] = r["alloc_bytes"] / r["manifest_s"] / 2**20 if r["manifest_s"] else None
    cols = ("image", "size", "alloc", "files", "manifest_s", "openssl_s", "ratio",
            "cpu_s", "ssl_cpu", "cpu_ratio", "peak_rss", "manifest_bytes", "fraction", "sha1/4K")
    fmt = "%-12s %7s %8s %6s %10s %9s %5s %6s %7s %9s %8s %14s %8s %7s"
    print(fmt % cols)
    for r in rows:
        if r.get("status") != "ok":
            print("%-12s FAILED: %s" % (r["image"], r.get("status")))
            continue
        print(fmt % (r["image"], fmt_bytes(r["image_bytes"]), fmt_bytes(r["alloc_bytes"]),
                     r["files"], "%.3f" % r["manifest_s"], "%.3f" % r["openssl_s"],
                     "%.2f" % r["ratio"], "%.2f" % r["cpu_s"], "%.2f" % r["openssl_cpu_s"],
                     "%.2f" % r["cpu_ratio"],
                     fmt_bytes(r["rss_kib"] * 1024), r["manifest_bytes"],
                     "1/%.0f" % r["fraction_n"], "1/%.0f" % (r["image_bytes"] / r["sha1_4k_baseline_bytes"])))
    by = {r["image"]: r for r in rows if r.get("status") == "ok"}
    scaling = {}
    if "small-20k" in by and "small-200k" in by:
        a, b = by["small-20k"], by["small-200k"]
        scaling = {"files_ratio": b["files"] / a["files"],
                   "rss_ratio": b["rss_kib"] / a["rss_kib"],
                   "time_ratio": b["manifest_s"] / a["manifest_s"]}
        print("\nfile-count scaling 20K -> 200K files (x%.1f): time x%.2f (%.3fs -> %.3fs), "
              "peak RSS x%.2f (%s -> %s)" % (
                  scaling["files_ratio"], scaling["time_ratio"], a["manifest_s"], b["manifest_s"],
                  scaling["rss_ratio"], fmt_bytes(a["rss_kib"] * 1024), fmt_bytes(b["rss_kib"] * 1024)))
    goals = []
    for r in by.values():
        if r["image"].startswith("debian"):
            goals.append("%s: time ratio %.2f (goal <= 0.5) %s; manifest 1/%.0f (goal <= 1/1000) %s" % (
                r["image"], r["ratio"], "ok" if r["ratio"] <= 0.5 else "MISSED",
                r["fraction_n"], "ok" if r["fraction_n"] >= 1000 else "MISSED"))
    if goals:
        print()
        for g in goals:
            print(g)
    with open(out_json + ".tmp", "w") as fh:
        json.dump({"run_id": os.environ.get("BENCH_RUN_ID"),
                   "tool": "vmsync manifest IMAGE -o FILE -q",
                   "baseline": "openssl dgst -sha256 IMAGE",
                   "aggregate": "median", "cpus": int(os.environ.get("BENCH_CPUS", "0")),
                   "load_average_before_after": [float(x) for x in os.environ.get("BENCH_LOAD", "").split()],
                   "images": rows, "scaling_20k_to_200k": scaling},
                  fh, indent=2)
        fh.write("\n")
    os.replace(out_json + ".tmp", out_json)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd = argv[1]
    if cmd == "gen-small":
        gen_small(argv[2], int(argv[3]), int(argv[4]))
        return 0
    if cmd == "check-small":
        return check_small(argv[2], int(argv[3]), int(argv[4]))
    if cmd == "check-tree":
        return check_tree(argv[2], argv[3], set(argv[4:]))
    if cmd == "report":
        report(argv[2], argv[3])
        return 0
    sys.exit("benchlib.py: unknown command %s" % cmd)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
