#!/usr/bin/env python3
"""Seed inputs for fuzz_web: a top-level index and a pack index
(docs/web.md), written here from the format's description, without the
trailing SHA-256 that the target appends, after the byte that chooses the
record (0: the index, 1: a pack index).  Usage: seeds-fuzz_web.py DIR"""
import hashlib, os, struct, sys
from wire_fields import blob, s, varint

def version(n, signed):
    rec = (b"VMSYNCVR" + s("desk") + varint(n) + varint(n - 1) + hashlib.sha256(b"m%d" % n).digest()
           + hashlib.sha256(b"d").digest() + varint(1 << 20) + varint(2 * 1700000000) + s("m") + s("u") + s("h"))
    sig = b"VMSYNCSG" + bytes(32) + bytes(64) if signed else None
    return blob(rec) + (blob(sig) if sig else varint(0)) + varint(4096)

def index(packs, versions):
    out = b"VMSYNCWI" + varint(1) + varint(len(packs))
    for name, objects, size in packs:
        out += s(name) + varint(objects) + varint(size) + hashlib.sha256(name.encode()).digest()
    out += varint(len(versions)) + b"".join(versions)
    return b"\0" + out

def idx(records):
    records = sorted(records)
    fan = [sum(1 for h, *_ in records if h[0] <= b) for b in range(256)]
    out = b"VMSWPIDX" + struct.pack("<II", 1, len(records)) + struct.pack("<256I", *fan)
    for h, off, stored, length, codec in records:
        out += h + struct.pack("<QII", off, stored, length | codec << 28)
    return b"\1" + out

d = sys.argv[1]
os.makedirs(d, exist_ok=True)
seeds = {
    "index-empty": index([], []),
    "index-two": index([("pack-0123456789abcdef", 2, 4096)], [version(1, False), version(2, True)]),
    "idx-two": idx([(hashlib.sha256(b"a").digest(), 8, 100, 100, 0),
                    (hashlib.sha256(b"b").digest(), 108, 50, 300, 1)]),
}
for name, data in seeds.items():
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)
