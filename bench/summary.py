#!/usr/bin/env python3
"""The performance table of one `make bench` run (standard library only).

  summary.py BUILD [--run-id ID]
      Reads the JSON files the benchmarks of this run wrote in BUILD and
      prints one table: each figure, the peer figure measured in the same run,
      their ratio, the goal and whether it is met.  Writes the rows to
      BUILD/bench-summary.json.

Each benchmark writes its run id ($BENCH_RUN_ID, which make bench sets once for
all of them) into its JSON.  A file from another run, a file that is missing,
or a section that did not run gives "not measured" and the reason, never an
older figure.  ID is --run-id, else $BENCH_RUN_ID, else the newest run id
among the files.  BUILD/bench-status.tsv (written by make bench) lists the
steps that exited non-zero: they are named, and the exit status is then 1.
A goal that is missed is reported, not an error.

The files and the keys read (medians where the scripts repeat runs):
  bench-results.json  (bench/run.sh)   images[debian-ext4]: manifest_s, openssl_s
  bench-sync.json     (bench/sync.sh)  results.FS.median: ca_T_index + ca_co_bytes
                                       (casync's checkout), rs_ci_total (rsync's
                                       check-in, sent + received)
  bench-wan.json      (bench/wan.sh)   bundle.FS.figures: vm_co19_wire_in/out,
                                       vm_ci19_wire_in/out, level;
                                       wan.LINK.ext4.median: vm_co_s, vm_co_link_s,
                                       vm_co_ratio, vm_ci_* the same,
                                       vm_co_level_min, vm_co_level_max;
                                       server_cpu.ext4: the case of 1 client at
                                       level 19, cold: agent_cpu_per_client;
                                       server_cpu.ext4.second_client:
                                       recompressed_cpu, agent_cpu
  bench-share.json    (bench/share.sh) results: [{fs, seed: copy or shared,
                                       wall_s, bytes_written}] (fs: xfs, btrfs)
  bench-fleet.json    (bench/fleet.sh) makespan, makespan_all_at_once, laptops,
                                       branches, ranking (simulated)
  bench-fleet-run.json (bench/fleet_run.sh) direct and reflector: makespan_median,
                                       makespan_predicted; laptops, uplink, office
  bench-web.json      (bench/web.sh)   results: [{rate, delay_ms, via: ssh or web,
                                       seconds}] (the first link)
  bench-reflector.json (bench/reflector.sh) laptops, link, direct.upstream_bytes,
                                       reflector.upstream_bytes
"""
import json
import os
import sys

SOURCES = {  # name: (file in BUILD, what writes it)
    "run": ("bench-results.json", "bench/run.sh"),
    "sync": ("bench-sync.json", "bench/sync.sh"),
    "wan": ("bench-wan.json", "bench/wan.sh"),
    "share": ("bench-share.json", "bench/share.sh"),
    "fleet": ("bench-fleet.json", "bench/fleet.sh"),
    "fleet_run": ("bench-fleet-run.json", "bench/fleet_run.sh"),
    "web": ("bench-web.json", "bench/web.sh"),
    "reflector": ("bench-reflector.json", "bench/reflector.sh"),
}
LINKS = ((10e6, "10 Mbit/s"), (2e6, "2 Mbit/s"))
SAMEHOST_FS = (("xfs", "XFS"), ("btrfs", "btrfs"))
FS_NAMES = {"ext4": "ext4", "ntfs": "NTFS"}


class NotMeasured(Exception):
    """A row's figure is not in this run's data; the message says why."""


# ------------------------------------------------------------ the files

def load(build, name):
    """{"file", "script", "data" or None, "run_id"}: one source, unchecked."""
    fname, script = SOURCES[name]
    path = os.path.join(build, fname)
    src = {"file": path, "script": script, "data": None, "run_id": None, "error": None}
    try:
        with open(path) as fh:
            src["data"] = json.load(fh)
    except FileNotFoundError:
        src["error"] = "%s wrote no %s" % (script, path)
    except (OSError, ValueError) as e:
        src["error"] = "%s: unreadable: %s" % (path, e)
    if isinstance(src["data"], dict):
        src["run_id"] = src["data"].get("run_id")
    elif src["error"] is None:
        src["error"] = "%s: not a JSON object" % path
    return src


def pick_run_id(sources, given):
    if given:
        return given
    ids = [s["run_id"] for s in sources.values() if isinstance(s["run_id"], str)]
    return max(ids) if ids else None


def check_run(src, run_id, failed):
    """Marks SRC unusable unless it belongs to run RUN_ID."""
    note = " (%s exited %s in this run)" % (src["script"], failed[src["script"]]) \
        if src["script"] in failed else ""
    if src["error"]:
        src["error"] += note
    elif src["run_id"] is None:
        src["error"] = "%s has no run id (an older %s wrote it)%s" % (
            src["file"], src["script"], note)
    elif src["run_id"] != run_id:
        src["error"] = "%s is from run %s, not this run %s%s" % (
            src["file"], src["run_id"], run_id, note)


def read_status(build):
    """{script: exit status} of the steps make bench saw fail."""
    failed = {}
    try:
        with open(os.path.join(build, "bench-status.tsv")) as fh:
            for line in fh:
                script, _, rc = line.rstrip("\n").partition("\t")
                failed[script] = rc
    except FileNotFoundError:
        pass
    return failed


# ------------------------------------------------------------ lookups

def need(sources, name):
    src = sources[name]
    if src["error"]:
        raise NotMeasured(src["error"])
    return src["data"]


def dig(d, keys, why):
    """d[k0][k1]...; NotMeasured(why) when one is missing."""
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            raise NotMeasured(why)
        d = d[k]
    return d


def total(d, keys, why):
    return sum(dig(d, [k], why) for k in keys)


def wan_skipped(wan, section):
    return section in wan.get("meta", {}).get("skipped", [])


def bundle_figures(sources, fs):
    wan = need(sources, "wan")
    if wan_skipped(wan, "bundle"):
        raise NotMeasured("bench/wan.sh ran with WAN_SKIP_BUNDLE=1")
    b = dig(wan, ["bundle", fs, "figures"],
            "bench/wan.sh's bundle section did not run on %s (WAN_BUNDLE_FS)" % fs)
    level = int(b.get("level", 0))
    if level != 19:
        raise NotMeasured("bench/wan.sh ran its level-19 section at level %d (WAN_BUNDLE_LEVEL)"
                          % level)
    return b


def sync_median(sources, fs):
    return dig(need(sources, "sync"), ["results", fs, "median"],
               "bench/sync.sh did not measure %s (SYNC_FS)" % fs)


def wan_link(sources, rate, fs="ext4"):
    """The medians of bench/wan.sh's runs over the link of RATE bits/s."""
    wan = need(sources, "wan")
    if wan_skipped(wan, "wan"):
        raise NotMeasured("bench/wan.sh ran with WAN_SKIP_WAN=1")
    for per_fs in wan.get("wan", {}).values():
        d = per_fs.get(fs)
        if d and d.get("rate_bits_per_s") == rate:
            return d
    raise NotMeasured("bench/wan.sh measured no %g Mbit/s link on %s (WAN_LINKS, WAN_FS)"
                      % (rate / 1e6, fs))


def cpu_cases(sources, fs="ext4"):
    wan = need(sources, "wan")
    if wan_skipped(wan, "cpu"):
        raise NotMeasured("bench/wan.sh ran with WAN_SKIP_CPU=1")
    return dig(wan, ["server_cpu", fs], "bench/wan.sh's CPU section did not run on %s (WAN_FS)" % fs)


# ------------------------------------------------------------ the rows

def compared(fig, peer, peer_name, goal, unit="bytes"):
    ratio = fig / peer if peer else None
    return {"figure": fig, "peer": peer, "peer_name": peer_name, "ratio": ratio,
            "goal": goal, "goal_of": "ratio", "unit": unit,
            "met": None if goal is None or ratio is None else ratio <= goal}


def checkout_bytes(sources, fs):
    b = bundle_figures(sources, fs)
    why = "bench/wan.sh's bundle figures lack the checkout's wire bytes"
    fig = total(b, ("vm_co19_wire_in", "vm_co19_wire_out"), why)
    m = sync_median(sources, fs)
    peer = total(m, ("ca_T_index", "ca_co_bytes"), "bench/sync.sh's JSON lacks casync's bytes")
    row = compared(fig, peer, "casync index + chunks", 0.70 if fs == "ext4" else 0.63)
    row["note"] = objects_note(b, "vm_co19_bytes_fetched_compressed")
    return row


def objects_note(b, key):
    """What the protocol bytes carried as compressed objects (the rest: requests, manifests)."""
    return "protocol bytes in + out; objects %s" % fmt(b.get(key), "bytes")


def checkin_bytes(sources, fs):
    b = bundle_figures(sources, fs)
    why = "bench/wan.sh's bundle figures lack the level-19 check-in (vm_ci19_wire_*)"
    fig = total(b, ("vm_ci19_wire_in", "vm_ci19_wire_out"), why)
    peer = dig(sync_median(sources, fs), ["rs_ci_total"],
               "bench/sync.sh's JSON lacks rsync's check-in")
    row = compared(fig, peer, "rsync sent + received", 0.98)
    row["note"] = objects_note(b, "vm_ci19_bytes_sent_compressed")
    return row


def link_ratio(sources, tool, rate, goal):
    d = wan_link(sources, rate)
    m = d["median"]
    why = "bench/wan.sh's %s has no %s figures" % (d["link"], tool)
    row = compared(dig(m, [tool + "_s"], why), dig(m, [tool + "_link_s"], why),
                   "link time", goal, unit="s")
    row["ratio"] = dig(m, [tool + "_ratio"], why)  # the median of each run's ratio
    row["met"] = row["ratio"] <= goal
    row["note"] = d["link"]
    return row


def manifest_ratio(sources):
    run = need(sources, "run")
    img = next((r for r in run.get("images", []) if r.get("image") == "debian-ext4"), None)
    if img is None:
        raise NotMeasured("bench/run.sh did not measure debian-ext4 (BENCH_IMAGES)")
    if img.get("status") != "ok":
        raise NotMeasured("bench/run.sh failed on debian-ext4: %s" % img.get("status"))
    row = compared(img["manifest_s"], img["openssl_s"], "openssl dgst -sha256", 0.5, unit="s")
    row["note"] = "%.2f GB image, median of %d runs" % (img["image_bytes"] / 1e9, img["runs"])
    return row


def absolute(fig, goal, unit):
    return {"figure": fig, "peer": None, "peer_name": None, "ratio": None, "goal": goal,
            "goal_of": "figure", "unit": unit, "met": None if goal is None else fig <= goal}


def agent_cpu(sources):
    cases = cpu_cases(sources)
    for name, c in cases.items():
        if isinstance(c, dict) and c.get("clients") == 1 and "level 19" in name and "cold" in name:
            row = absolute(c["agent_cpu_per_client"], 60.0, "s")
            row["note"] = name
            return row
    raise NotMeasured("bench/wan.sh's CPU section has no case of 1 client at level 19, cold "
                      "(WAN_CPU_LEVEL)")


def second_client(sources):
    c = dig(cpu_cases(sources), ["second_client"],
            "bench/wan.sh records no second client (server_cpu.ext4.second_client)")
    why = "server_cpu.ext4.second_client lacks recompressed_cpu or agent_cpu"
    row = compared(dig(c, ["recompressed_cpu"], why), dig(c, ["agent_cpu"], why),
                   "its agent CPU", 0.05, unit="s")
    row["met"] = row["ratio"] is not None and row["ratio"] < 0.05
    return row


def level_range(sources, rate):
    d = wan_link(sources, rate)
    why = "bench/wan.sh records no level range (vm_co_level_min, vm_co_level_max)"
    lo, hi = (dig(d["median"], [k], why) for k in ("vm_co_level_min", "vm_co_level_max"))
    row = absolute(lo, None, "level")
    row["figure_max"] = hi
    row["note"] = d["link"]
    return row


def samehost(sources, fs, what):
    results = dig(need(sources, "share"), ["results"], "bench-share.json has no results")
    by_seed = {r.get("seed"): r for r in results if isinstance(r, dict) and r.get("fs") == fs}
    key, unit = ("bytes_written", "bytes") if what == "bytes" else ("wall_s", "s")
    why = "bench/share.sh measured no copy and shared checkout on %s (SHARE_FS)" % fs
    return compared(dig(by_seed, ["shared", key], why), dig(by_seed, ["copy", key], why),
                    "the same checkout copying", None, unit=unit)


def fleet_makespan(sources):
    d = need(sources, "fleet")
    why = "bench-fleet.json lacks makespan or makespan_all_at_once"
    row = compared(dig(d, ["makespan"], why), dig(d, ["makespan_all_at_once"], why),
                   "everyone at once", 1.0, unit="s")
    row["note"] = "simulated, %s laptops in %s branches, %s" % (
        d.get("laptops"), d.get("branches"), d.get("ranking"))
    return row


def fleet_run_makespan(sources, setup):
    d = need(sources, "fleet_run")
    why = "bench-fleet-run.json lacks %s's makespan_median or makespan_predicted" % setup
    row = compared(dig(d, [setup, "makespan_median"], why), dig(d, [setup, "makespan_predicted"], why),
                   "the prediction", 1.2, unit="s")
    row["met"] = row["ratio"] is not None and 0.8 <= row["ratio"] <= 1.2
    row["note"] = "%s laptops, uplink %s, office %s (bits/s:ms one way); goal: within 20 %%" % (
        d.get("laptops"), d.get("uplink"), d.get("office"))
    return row


def web_checkout(sources):
    results = dig(need(sources, "web"), ["results"], "bench-web.json has no results")
    first = results[0] if results else {}
    by_via = {r.get("via"): r for r in results
              if (r.get("rate"), r.get("delay_ms")) == (first.get("rate"), first.get("delay_ms"))}
    why = "bench/web.sh measured no ssh:// and https:// checkout on one link"
    row = compared(dig(by_via, ["web", "seconds"], why), dig(by_via, ["ssh", "seconds"], why),
                   "ssh:// on the same link", 1.0, unit="s")
    row["note"] = "%g Mbit/s, %s ms each way" % (first.get("rate", 0) / 1e6, first.get("delay_ms"))
    return row


def reflector_bytes(sources):
    d = need(sources, "reflector")
    why = "bench-reflector.json lacks the upstream bytes"
    laptops = dig(d, ["laptops"], why)
    row = compared(dig(d, ["reflector", "upstream_bytes"], why), dig(d, ["direct", "upstream_bytes"], why),
                   "%s direct ssh:// clients" % laptops, 1.3 / laptops if laptops else None)
    row["note"] = "%s laptops at once; goal: each object once, 30 %% slack" % laptops
    return row


def rows():
    """(id, label, function of the sources) for every row of the table."""
    out = []
    for fs in ("ext4", "ntfs"):
        out.append(("checkout_bytes_ssh19_" + fs,
                    "checkout bytes over ssh at level 19, " + FS_NAMES[fs],
                    lambda s, fs=fs: checkout_bytes(s, fs)))
    for fs in ("ext4", "ntfs"):
        out.append(("checkin_bytes_ssh19_" + fs,
                    "check-in bytes over ssh at level 19, " + FS_NAMES[fs],
                    lambda s, fs=fs: checkin_bytes(s, fs)))
    for rate, name in LINKS:
        out.append(("checkin_link_ratio_%dmbit" % (rate / 1e6), "check-in wall / link time, " + name,
                    lambda s, r=rate: link_ratio(s, "vm_ci", r, 1.05)))
    for rate, name in LINKS:
        out.append(("checkout_link_ratio_%dmbit" % (rate / 1e6), "checkout wall / link time, " + name,
                    lambda s, r=rate: link_ratio(s, "vm_co", r, 1.02)))
    out.append(("manifest_vs_openssl_ext4", "vmsync manifest / openssl dgst -sha256, ext4",
                manifest_ratio))
    out.append(("agent_cpu_1client_level19_cold", "agent CPU per client, 1 client, level 19, cold",
                agent_cpu))
    out.append(("second_client_recompressed", "second client, same version: recompressed",
                second_client))
    for fs, name in SAMEHOST_FS:
        out.append(("samehost_bytes_" + fs, "same-host checkout on %s: bytes written" % name,
                    lambda s, fs=fs: samehost(s, fs, "bytes")))
        out.append(("samehost_time_" + fs, "same-host checkout on %s: wall time" % name,
                    lambda s, fs=fs: samehost(s, fs, "time")))
    for rate, name in LINKS:
        out.append(("agent_levels_checkout_%dmbit" % (rate / 1e6),
                    "agent's zstd levels, checkout, " + name,
                    lambda s, r=rate: level_range(s, r)))
    out.append(("fleet_makespan_simulated", "rollout makespan, schedule / everyone at once",
                fleet_makespan))
    for setup, name in (("direct", "office direct"), ("reflector", "office behind a reflector")):
        out.append(("fleet_run_makespan_" + setup, "8-laptop rollout (fleet run), %s: makespan" % name,
                    lambda s, setup=setup: fleet_run_makespan(s, setup)))
    out.append(("web_checkout_time", "checkout through nginx (https://): wall time", web_checkout))
    out.append(("reflector_upstream_bytes", "8 laptops behind a reflector: upstream bytes",
                reflector_bytes))
    return out


def evaluate(sources):
    out = []
    for rid, label, fn in rows():
        try:
            row = fn(sources)
            row["measured"] = True
        except NotMeasured as e:
            row = {"measured": False, "reason": str(e)}
        row.update(id=rid, row=label)
        out.append(row)
    return out


# ------------------------------------------------------------ printing

def fmt(v, unit):
    if v is None:
        return "-"
    if unit == "bytes":
        return "%.1f MB" % (v / 1e6)
    if unit == "s":
        return "%.2f s" % v if v < 100 else "%.0f s" % v
    return "%d" % v


def goal_text(r):
    if r["goal"] is None:
        return "-"
    bound = "<" if r["id"] == "second_client_recompressed" else "<="
    unit = " s" if r["goal_of"] == "figure" and r["unit"] == "s" else ""
    return "%s %g%s" % (bound, r["goal"], unit)


def print_row(r):
    label = "%-48s" % r["row"]
    if not r["measured"]:
        print("%s not measured: %s" % (label, r["reason"]))
        return
    fig = fmt(r["figure"], r["unit"])
    if "figure_max" in r:
        fig = "%s-%s" % (fig, fmt(r["figure_max"], r["unit"]))
    peer = "%s %s" % (r["peer_name"], fmt(r["peer"], r["unit"])) if r["peer_name"] else "-"
    status = "-" if r["met"] is None else ("met" if r["met"] else "MISSED")
    print("%s %10s %-34s %6s %8s %6s%s" % (
        label, fig, peer, "%.3f" % r["ratio"] if r["ratio"] is not None else "-",
        goal_text(r), status, "  (%s)" % r["note"] if r.get("note") else ""))


def print_table(run_id, table, sources, failed):
    print("\n== make bench, run %s: every figure next to its peer of the same run" % run_id)
    print("%-48s %10s %-34s %6s %8s %6s" % ("", "figure", "peer (same run)", "ratio", "goal",
                                            "met"))
    for r in table:
        print_row(r)
    for s in sources.values():
        if s["error"]:
            print("note: %s" % s["error"])
    for script, rc in failed.items():
        print("note: %s exited %s" % (script, rc))


def write_json(path, run_id, table, sources, failed):
    out = {"run_id": run_id, "failed_steps": failed, "rows": table,
           "sources": {n: {"file": s["file"], "run_id": s["run_id"], "used": not s["error"],
                           "reason": s["error"]} for n, s in sources.items()}}
    with open(path + ".tmp", "w") as fh:
        json.dump(out, fh, indent=2, sort_keys=True)
        fh.write("\n")
    os.replace(path + ".tmp", path)


def main(argv):
    args = argv[1:]
    given = os.environ.get("BENCH_RUN_ID") or None
    if len(args) == 3 and args[1] == "--run-id":
        given = args[2]
    elif len(args) != 1:
        sys.exit(__doc__)
    build = args[0]
    failed = read_status(build)
    sources = {name: load(build, name) for name in SOURCES}
    run_id = pick_run_id(sources, given)
    for s in sources.values():
        check_run(s, run_id, failed)
    table = evaluate(sources)
    print_table(run_id, table, sources, failed)
    write_json(os.path.join(build, "bench-summary.json"), run_id, table, sources, failed)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
