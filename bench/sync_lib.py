#!/usr/bin/env python3
"""Helpers for bench/sync.sh (standard library only).

  sync_lib.py gen-home DIR
      Writes the user's files of the target image under DIR (DIR/home/user):
      a ~100 MiB mailbox (Mail/INBOX.mbox: pseudo-English mail with quoted
      replies and some base64 attachments, so it compresses like real mail),
      reports/ (renamed by the offline work) and old-project/ (deleted by it).
      Deterministic: the same bytes on every run.
  sync_lib.py offline-work ROOT
      The offline work, applied to a mounted filesystem whose root is ROOT:
      adds ~20 MB of documents (text, CSV, zipped office-like files,
      incompressible photo-like files), rewrites a dozen 4 KiB pages of the
      mailbox in place, appends 1 MiB to it, deletes home/user/old-project and
      renames home/user/reports to home/user/reports-2023.
  sync_lib.py store-diff NEW_STORE OLD_STORE
      Sums the sizes of the casync chunk files (*.cacnk) of NEW_STORE whose
      names (chunk ids) OLD_STORE does not hold.  Prints JSON.
  sync_lib.py strace-chunks STRACE_LOG STORE
      The chunk files a `strace -f -e trace=openat casync extract` run opened
      successfully: distinct count and bytes, and total opens.  Prints JSON.
  sync_lib.py rsync-stats RSYNC_STATS_OUTPUT
      Parses `rsync --stats`: literal, matched, sent, received bytes.  JSON.
  sync_lib.py missing-list HELD_TREE TARGET_TREE OUT_LIST
      The regular files of TARGET_TREE whose content (SHA-256) HELD_TREE does
      not hold, each content once: the bytes a perfect file-level sync must
      move.  Writes their paths to OUT_LIST, prints JSON {files, bytes}.
  sync_lib.py report RESULTS_TSV STATIC_JSON OUT_JSON
      Medians per (fs, metric), the table on stdout, the goals, and OUT_JSON.
"""
import base64
import io
import json
import os
import random
import re
import statistics
import sys
import zipfile

MAILBOX = "home/user/Mail/INBOX.mbox"
MAILBOX_BYTES = 100 * 2**20
EPOCH = 1609459200  # 2021-01-01, for deterministic times in the target tree


# ------------------------------------------------------------ pseudo text

class Text:
    """Pseudo-English: a Zipf-distributed vocabulary of syllable words."""

    def __init__(self, seed):
        r = random.Random(seed)
        syl = ["ka", "to", "ri", "men", "sa", "lo", "ver", "an", "de", "qui", "pro", "ti",
               "ne", "ba", "cor", "us", "el", "stra", "mi", "gon", "fa", "ple", "ur", "zo",
               "th", "ing", "er", "on", "re", "at", "is", "the", "and", "for", "ed", "es"]
        common = ["the", "and", "to", "of", "a", "in", "is", "it", "you", "that", "we",
                  "for", "on", "with", "this", "be", "are", "as", "have", "not", "will",
                  "can", "meeting", "please", "thanks", "report", "project", "review",
                  "attached", "budget", "server", "image", "laptop", "update", "team"]
        words = set(common)
        vocab = list(common)
        while len(vocab) < 6000:
            w = "".join(r.choice(syl) for _ in range(r.choice((1, 2, 2, 3, 3, 4))))
            if w not in words:
                words.add(w)
                vocab.append(w)
        self.vocab = vocab
        weights = [1.0 / (i + 1) ** 1.05 for i in range(len(vocab))]
        acc, cum = 0.0, []
        for w in weights:
            acc += w
            cum.append(acc)
        self.cum = cum

    def words(self, r, n):
        return r.choices(self.vocab, cum_weights=self.cum, k=n)

    def paragraph(self, r, nwords):
        ws = self.words(r, nwords)
        out, line, col = [], [], 0
        for i, w in enumerate(ws):
            if i == 0 or ws[i - 1].endswith("."):
                w = w.capitalize()
            if r.random() < 0.08:
                w += "."
            elif r.random() < 0.05:
                w += ","
            if col + len(w) + 1 > 72:
                out.append(" ".join(line))
                line, col = [], 0
            line.append(w)
            col += len(w) + 1
        if line:
            out.append(" ".join(line))
        return "\n".join(out).rstrip(",.") + ".\n"


NAMES = ["alice", "bob", "carol", "dave", "erin", "frank", "grace", "heidi", "ivan",
         "judy", "mallory", "oscar", "peggy", "rupert", "sybil", "trent", "victor", "wendy"]
DOMAINS = ["example.org", "example.com", "corp.example.net", "mail.example.edu"]
DAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def mail(r, text, n, prev_body):
    """One mbox message (str)."""
    who = r.choice(NAMES)
    dom = r.choice(DOMAINS)
    to = r.choice(NAMES)
    t = EPOCH - 3 * 365 * 86400 + n * 977
    day, mon = DAYS[(t // 86400) % 7], MONTHS[(t // (30 * 86400)) % 12]
    hh, mm, ss = (t // 3600) % 24, (t // 60) % 60, t % 60
    date = "%s, %02d %s %d %02d:%02d:%02d +0000" % (day, 1 + (t // 86400) % 28, mon,
                                                     2018 + t // (365 * 86400) % 4, hh, mm, ss)
    subject = " ".join(text.words(r, r.randint(2, 7)))
    if prev_body and r.random() < 0.5:
        subject = "Re: " + subject
    mid = "%016x" % r.getrandbits(64)
    h = ["From %s@%s %s %s %2d %02d:%02d:%02d 2021" % (who, dom, day, mon, 1 + n % 28, hh, mm, ss),
         "Return-Path: <%s@%s>" % (who, dom),
         "Received: from mx%d.%s (mx%d.%s [192.0.2.%d])" % (n % 7, dom, n % 7, dom, n % 250),
         "\tby mail.example.org (Postfix) with ESMTPS id %s" % mid[:10].upper(),
         "\tfor <%s@example.org>; %s" % (to, date),
         "Message-ID: <%s.%d@%s>" % (mid, n, dom),
         "Date: " + date,
         "From: %s <%s@%s>" % (who.capitalize(), who, dom),
         "To: %s <%s@example.org>" % (to.capitalize(), to),
         "Subject: " + subject,
         "MIME-Version: 1.0",
         "X-Mailer: Thunderbird 102.%d" % (n % 13),
         "Status: RO"]
    body = "".join(text.paragraph(r, r.randint(20, 140)) + "\n" for _ in range(r.randint(1, 6)))
    if prev_body and subject.startswith("Re:"):
        body += "On %s, %s wrote:\n" % (date, to.capitalize())
        body += "".join("> " + line + "\n" for line in prev_body.splitlines()[:60])
    body += "\n-- \n%s\n%s@%s\n" % (who.capitalize(), who, dom)
    if r.random() < 0.07:
        boundary = "----=_Part_%s" % mid
        att = base64.encodebytes(r.randbytes(r.randint(20_000, 250_000))).decode()
        h.append('Content-Type: multipart/mixed; boundary="%s"' % boundary)
        body = ("--%s\nContent-Type: text/plain; charset=utf-8\n\n%s\n--%s\n"
                "Content-Type: application/octet-stream; name=\"scan%d.pdf\"\n"
                "Content-Transfer-Encoding: base64\n\n%s--%s--\n" % (
                    boundary, body, boundary, n, att, boundary))
    else:
        h.append("Content-Type: text/plain; charset=utf-8")
    # mbox "From " escaping
    body = re.sub(r"(?m)^From ", ">From ", body)
    return "\n".join(h) + "\n\n" + body + "\n", body


def mails(seed, nbytes, first):
    """About nbytes of mbox messages, numbered from first, as bytes."""
    r = random.Random(seed)
    text = Text(7)
    out, size, n, prev = [], 0, first, ""
    while size < nbytes:
        m, prev = mail(r, text, n, prev)
        b = m.encode()
        out.append(b)
        size += len(b)
        n += 1
    return b"".join(out)[:nbytes]


def write(path, data, mtime=EPOCH):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def office_doc(r, text, nparas):
    """A zip of XML, like .odt/.docx: deflated, so barely compressible."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        info = zipfile.ZipInfo("mimetype", (2021, 1, 1, 0, 0, 0))
        z.writestr(info, "application/vnd.oasis.opendocument.text", zipfile.ZIP_STORED)
        xml = "".join("<text:p>%s</text:p>\n" % text.paragraph(r, r.randint(40, 200))
                      for _ in range(nparas))
        info = zipfile.ZipInfo("content.xml", (2021, 1, 1, 0, 0, 0))
        z.writestr(info, '<?xml version="1.0"?>\n<office:document>\n%s</office:document>\n' % xml)
        info = zipfile.ZipInfo("Pictures/img.png", (2021, 1, 1, 0, 0, 0))
        z.writestr(info, r.randbytes(r.randint(100_000, 400_000)), zipfile.ZIP_STORED)
    return buf.getvalue()


def csv(r, nrows):
    rows = ["date,account,amount,description"]
    for i in range(nrows):
        rows.append("2021-%02d-%02d,%06d,%d.%02d,%s" % (
            1 + i % 12, 1 + i % 28, r.randint(0, 999999), r.randint(0, 99999), r.randint(0, 99),
            r.choice(NAMES)))
    return ("\n".join(rows) + "\n").encode()


def gen_home(root):
    r = random.Random(1234)
    text = Text(7)
    u = os.path.join(root, "home/user")
    write(os.path.join(root, MAILBOX), mails(99, MAILBOX_BYTES, 0))
    for i in range(12):  # reports/: renamed offline
        write(os.path.join(u, "reports/q%d-%d.txt" % (1 + i % 4, 2019 + i // 4)),
              "".join(text.paragraph(r, 150) for _ in range(r.randint(40, 160))).encode())
    write(os.path.join(u, "reports/ledger.csv"), csv(r, 30000))
    for i in range(60):  # old-project/: deleted offline
        ext = r.choice((".c", ".h", ".py", ".md"))
        write(os.path.join(u, "old-project/src%d/file%03d%s" % (i % 6, i, ext)),
              "".join(text.paragraph(r, 80) for _ in range(r.randint(10, 120))).encode())
    for i in range(4):
        write(os.path.join(u, "old-project/assets/blob%d.bin" % i), r.randbytes(600_000))
    for d, _, _ in os.walk(u):
        os.utime(d, (EPOCH, EPOCH))
    for d in (u, os.path.join(root, "home/user/Mail")):
        os.chmod(d, 0o755)


def offline_work(root):
    r = random.Random(4321)
    text = Text(11)
    docs = os.path.join(root, "home/user/Documents/2024")
    os.makedirs(docs, exist_ok=True)
    total = 0
    for i in range(8):  # notes: compressible text
        d = "".join(text.paragraph(r, 120) for _ in range(r.randint(250, 700))).encode()
        total += len(d)
        write(os.path.join(docs, "notes-%02d.md" % i), d, mtime=None)
    for i in range(8):  # office documents: deflated XML + a picture
        d = office_doc(r, text, r.randint(300, 900))
        total += len(d)
        write(os.path.join(docs, "letter-%02d.odt" % i), d, mtime=None)
    for i in range(8):  # photos: incompressible
        d = r.randbytes(r.randint(900_000, 1_600_000))
        total += len(d)
        write(os.path.join(docs, "photo-%02d.jpg" % i), d, mtime=None)
    for i in range(2):
        d = csv(r, 40000)
        total += len(d)
        write(os.path.join(docs, "accounts-%d.csv" % i), d, mtime=None)
    mbox = os.path.join(root, MAILBOX)
    size = os.path.getsize(mbox)
    pages = sorted(r.sample(range(size // 4096), 12))
    with open(mbox, "r+b") as fh:
        for p in pages:
            new = (text.paragraph(r, 900).encode() * 2)[:4096]
            fh.seek(p * 4096)
            fh.write(new)
        fh.seek(0, os.SEEK_END)
        fh.write(mails(555, 2**20, 10_000_000))
    old = os.path.join(root, "home/user/old-project")
    removed = 0
    for d, _, fs in os.walk(old, topdown=False):
        for f in fs:
            removed += os.path.getsize(os.path.join(d, f))
            os.unlink(os.path.join(d, f))
        os.rmdir(d)
    os.rename(os.path.join(root, "home/user/reports"), os.path.join(root, "home/user/reports-2023"))
    print(json.dumps({"documents_bytes": total, "mailbox_pages_edited": pages,
                      "mailbox_appended": 2**20, "deleted_dir_bytes": removed}))


# ------------------------------------------------------------ byte counting

def tree_hashes(root):
    """{relative path: (sha256, size)} of the regular files under root."""
    import hashlib
    out = {}
    for d, dirs, fs in os.walk(root):
        dirs.sort()
        for f in sorted(fs):
            p = os.path.join(d, f)
            if os.path.islink(p) or not os.path.isfile(p):
                continue
            h = hashlib.sha256()
            with open(p, "rb") as fh:
                for block in iter(lambda: fh.read(1 << 20), b""):
                    h.update(block)
            out[os.path.relpath(p, root)] = (h.hexdigest(), os.path.getsize(p))
    return out


def missing_list(held, target, out):
    have = {h for h, _ in tree_hashes(held).values()}
    seen, paths, total = set(), [], 0
    for p, (h, size) in sorted(tree_hashes(target).items()):
        if h in have or h in seen:
            continue
        seen.add(h)
        paths.append(p)
        total += size
    with open(out, "w") as fh:
        fh.write("".join(p + "\n" for p in paths))
    print(json.dumps({"files": len(paths), "bytes": total}))


def chunk_files(store):
    out = {}
    for d, _, fs in os.walk(store):
        for f in fs:
            if f.endswith(".cacnk"):
                out[f] = os.path.getsize(os.path.join(d, f))
    return out


def store_diff(new, old):
    a, b = chunk_files(new), chunk_files(old)
    missing = [k for k in a if k not in b]
    print(json.dumps({"chunks": len(a), "chunks_new": len(missing),
                      "bytes_new": sum(a[k] for k in missing), "bytes_store": sum(a.values())}))


def strace_chunks(log, store):
    sizes = chunk_files(store)
    opened, total = set(), 0
    pat = re.compile(r'openat\([^"]*"([^"]*\.cacnk)"[^)]*\)\s*=\s*(-?\d+)')
    with open(log) as fh:
        for line in fh:
            m = pat.search(line)
            if m and int(m.group(2)) >= 0:
                name = os.path.basename(m.group(1))
                if name in sizes:
                    total += 1
                    opened.add(name)
    print(json.dumps({"opens": total, "chunks": len(opened),
                      "bytes": sum(sizes[k] for k in opened)}))


def rsync_stats(path):
    with open(path) as fh:
        s = fh.read()

    def num(label):
        m = re.search(re.escape(label) + r":\s*([\d,.]+)", s)
        if not m:
            raise SystemExit("sync_lib.py: no '%s' in rsync output %s" % (label, path))
        return int(m.group(1).replace(",", "").split(".")[0])
    print(json.dumps({"literal": num("Literal data"), "matched": num("Matched data"),
                      "sent": num("Total bytes sent"), "received": num("Total bytes received")}))


# ------------------------------------------------------------ the report

def fmt_mb(n):
    return "%.1f MB" % (n / 1e6) if n is not None else "-"


def fmt_s(n):
    return "%.2f s" % n if n is not None else "-"


def report(tsv, static_json, out_json):
    runs = {}
    with open(tsv) as fh:
        for line in fh:
            fs, run, metric, value = line.rstrip("\n").split("\t")
            runs.setdefault(fs, {}).setdefault(metric, []).append(float(value))
    with open(static_json) as fh:
        static = json.load(fh)
    res = {}
    for fs in sorted(set(runs) | set(static)):
        med = {k: statistics.median(v) for k, v in runs.get(fs, {}).items()}
        med.update(static.get(fs, {}))
        res[fs] = {"median": med, "runs": runs.get(fs, {})}

    def g(fs, k):
        return res[fs]["median"].get(k)

    goals_out = {}
    for fs in res:
        m = res[fs]["median"]
        print("\n== %s (median of %d runs; sizes: image %s, allocated in T %s)" % (
            fs, len(res[fs]["runs"].get("vm_co_s", [])), fmt_mb(m.get("image_bytes")),
            fmt_mb(m.get("target_alloc"))))
        rows = [
            ("checkout (laptop holds minbase, gets T)", None, None),
            ("  vmsync bytes_fetched_compressed", fmt_mb(m.get("vm_co_fetched_c")),
             "raw %s, %d objects, %s from seeds" % (fmt_mb(m.get("vm_co_fetched_raw")),
                                                    m.get("vm_co_objects", 0),
                                                    fmt_mb(m.get("vm_co_from_seeds")))),
            ("  zstd -3 of the whole image T", fmt_mb(m.get("zstd_T")), ""),
            ("  rsync delta, held image as basis", fmt_mb(m.get("rs_co_total")),
             "sent %s + received %s; literal %s" % (fmt_mb(m.get("rs_co_sent")),
                                                    fmt_mb(m.get("rs_co_recv")),
                                                    fmt_mb(m.get("rs_co_literal")))),
            ("  casync, held image as seed", fmt_mb(m.get("ca_co_bytes")),
             "%d chunks read by extract (strace); store-diff %s; index %s" % (
                 m.get("ca_co_chunks", 0), fmt_mb(m.get("ca_co_storediff")),
                 fmt_mb(m.get("ca_T_index")))),
            ("  reference: missing contents, solid zstd -3", fmt_mb(m.get("missing_zstd3")),
             "%d files, %s raw, each content once" % (m.get("missing_files", 0),
                                                      fmt_mb(m.get("missing_raw")))),
            ("  reference: the same, zstd -19 --long", fmt_mb(m.get("missing_zstd19_long")), ""),
            ("check-in (offline work on the checked-out copy)", None, None),
            ("  vmsync bytes_sent_compressed", fmt_mb(m.get("vm_ci_sent_c")),
             "raw %s, %d objects, %d files rehashed, %d trusted" % (
                 fmt_mb(m.get("vm_ci_sent_raw")), m.get("vm_ci_objects", 0),
                 m.get("vm_ci_rehashed", 0), m.get("vm_ci_trusted", 0))),
            ("  zstd -3 of the whole modified image", fmt_mb(m.get("zstd_M")), ""),
            ("  rsync delta, checked-out image as basis", fmt_mb(m.get("rs_ci_total")),
             "sent %s + received %s; literal %s" % (fmt_mb(m.get("rs_ci_sent")),
                                                    fmt_mb(m.get("rs_ci_recv")),
                                                    fmt_mb(m.get("rs_ci_literal")))),
            ("  casync, new chunks vs T's store", fmt_mb(m.get("ca_ci_bytes")),
             "%d new chunks; index %s" % (m.get("ca_ci_chunks", 0), fmt_mb(m.get("ca_M_index")))),
            ("wall times (local, warm cache)", None, None),
            ("  vmsync checkout (rebuild)", fmt_s(m.get("vm_co_s")),
             "cpu %s; cold seed cache %s" % (fmt_s(m.get("vm_co_cpu")), fmt_s(m.get("vm_co_cold_s")))),
            ("  casync extract --seed", fmt_s(m.get("ca_ex_s")), "cpu " + fmt_s(m.get("ca_ex_cpu"))),
            ("  vmsync checkin", fmt_s(m.get("vm_ci_s")), "cpu " + fmt_s(m.get("vm_ci_cpu"))),
            ("  rsync check-in", fmt_s(m.get("rs_ci_s")), "cpu " + fmt_s(m.get("rs_ci_cpu"))),
            ("  rsync checkout", fmt_s(m.get("rs_co_s")), "cpu " + fmt_s(m.get("rs_co_cpu"))),
            ("  vmsync import of T (once)", fmt_s(m.get("vm_import_s")), "cpu " + fmt_s(m.get("vm_import_cpu"))),
        ]
        for name, val, note in rows:
            if val is None:
                print(name)
            else:
                print("%-44s %12s  %s" % (name, val, note))

        def ratio(a, b):
            return a / b if a is not None and b else None
        goals = [
            ("checkout bytes / casync", ratio(m.get("vm_co_fetched_c"), m.get("ca_co_bytes")), 0.75),
            ("check-in bytes / rsync (sent+received)", ratio(m.get("vm_ci_sent_c"), m.get("rs_ci_total")), 1.0),
            ("check-in bytes / rsync (sent only)", ratio(m.get("vm_ci_sent_c"), m.get("rs_ci_sent")), 1.0),
            ("check-in time / rsync", ratio(m.get("vm_ci_s"), m.get("rs_ci_s")), 0.3),
            ("rebuild time / casync extract", ratio(m.get("vm_co_s"), m.get("ca_ex_s")), 0.5),
        ]
        print("goals:")
        goals_out[fs] = {}
        for name, r, lim in goals:
            ok = r is not None and r <= lim
            print("  %-40s %6s  (goal <= %.2f) %s" % (name, "%.3f" % r if r is not None else "-",
                                                     lim, "ok" if ok else "MISSED"))
            goals_out[fs][name] = {"ratio": r, "goal": lim, "ok": ok}
    with open(out_json + ".tmp", "w") as fh:
        json.dump({"run_id": os.environ.get("BENCH_RUN_ID"),
                   "benchmark": "bench/sync.sh: checkout and check-in vs zstd, rsync, casync",
                   "aggregate": "median", "cpus": os.cpu_count(),
                   "load_average_before_after": os.environ.get("SYNC_LOAD", ""),
                   "units": {"bytes": "bytes", "times": "seconds"},
                   "results": res, "goals": goals_out}, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(out_json + ".tmp", out_json)


def main(argv):
    if len(argv) < 2:
        sys.exit(__doc__)
    cmd, args = argv[1], argv[2:]
    if cmd == "gen-home":
        gen_home(args[0])
    elif cmd == "offline-work":
        offline_work(args[0])
    elif cmd == "store-diff":
        store_diff(args[0], args[1])
    elif cmd == "strace-chunks":
        strace_chunks(args[0], args[1])
    elif cmd == "rsync-stats":
        rsync_stats(args[0])
    elif cmd == "missing-list":
        missing_list(args[0], args[1], args[2])
    elif cmd == "report":
        report(args[0], args[1], args[2])
    else:
        sys.exit("sync_lib.py: unknown command %s" % cmd)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
