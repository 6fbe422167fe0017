#!/usr/bin/env python3
"""Seed inputs for fuzz_fleet: small fleets that parse and plan, from
bench/fleet_gen.py.  Usage: seeds-fuzz_fleet.py DIR"""
import os, subprocess, sys

gen = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench", "fleet_gen.py")
os.makedirs(sys.argv[1], exist_ok=True)
for i, (n, b) in enumerate([(3, 2), (6, 3), (9, 4)]):
    out = subprocess.run([sys.executable, gen, str(n), str(b), str(i)], stdout=subprocess.PIPE,
                         check=True).stdout
    with open(os.path.join(sys.argv[1], "fleet%d.json" % i), "wb") as f:
        f.write(out)
