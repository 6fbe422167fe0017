#!/usr/bin/env python3
"""Writes a synthetic FLEET.json for simulation: bench/fleet_gen.py [LAPTOPS [BRANCHES [SEED]]]

Headquarters (the first branch) sits at the server's site; the other branches
reach it over 10 Mbit/s lines, half of them (the even ones) through a
reflector.  A laptop held last month's image (it lacks 200 to 900 MiB) or,
one in six, only the OEM system (2 to 4 GiB); one in four is online one hour
a day, the others 08:00-18:00.  The byte counts are plausible, not measured:
every laptop gives its needs as "bytes", every reflector its union as
"upstream_bytes" (its largest laptop's need plus a tenth)."""
import json
import random
import sys

MIB = 1 << 20


def laptop(rng, name, branch, hq):
    oem = rng.random() < 1 / 6
    need = rng.randint(2048, 4096) * MIB if oem else rng.randint(200, 900) * MIB
    one_hour = rng.random() < 0.25
    start = rng.choice(["08:00", "09:00", "12:00", "13:00", "17:00"])
    end = "%02d:%s" % (int(start[:2]) + 1, start[3:])
    return {
        "name": name,
        "branch": branch,
        "link": {"rate": "%dMbit" % (1000 if hq else rng.choice([54, 100, 300])),
                 "rtt_ms": rng.choice([1, 2, 5]) if hq else rng.choice([2, 5, 10])},
        "online": ["%s-%s" % (start, end)] if one_hour else ["08:00-18:00"],
        "bytes": need,
    }


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300
    n_branches = int(sys.argv[2]) if len(sys.argv) > 2 else 8
    rng = random.Random(int(sys.argv[3]) if len(sys.argv) > 3 else 14)
    branches = [{"name": "hq", "reflector": False}]
    for b in range(1, n_branches):
        branches.append({"name": "branch%d" % b,
                         "link": {"rate": "10Mbit", "rtt_ms": rng.choice([20, 40, 80])},
                         "reflector": b % 2 == 0, "lan": "1Gbit"})
    hq_count = min(40, n // 4)
    laptops = []
    for i in range(n):
        b = 0 if i < hq_count else 1 + (i - hq_count) % (n_branches - 1)
        laptops.append(laptop(rng, "lap%03d" % (i + 1), branches[b]["name"], b == 0))
    for b in branches:
        if b["reflector"]:
            needs = [l["bytes"] for l in laptops if l["branch"] == b["name"]]
            b["upstream_bytes"] = max(needs) * 11 // 10 if needs else 0
    fleet = {"image": "desk", "start": "08:00", "server": {"uplink": "200Mbit"},
             "branches": branches, "laptops": laptops}
    json.dump(fleet, sys.stdout, indent=1)
    sys.stdout.write("\n")


main()
