#!/usr/bin/env python3
"""Seed inputs for fuzz_proto: well-formed protocol streams, so the fuzzer
starts past the framing.  Usage: seeds-fuzz_proto.py DIR

Each seed is a side byte (0 agent, 1 client, 3 delta) and then bytes as
docs/protocol.md describes them.  The objects are those fuzz_proto.c stores:
'A' x 1000, 'B' x 2000, 'C' x 3000, 'D' x 4000."""
import hashlib, os, struct, subprocess, sys, tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "lib"))
from agentwire import put_str as s, put_varint as varint

def frame(t, payload=b""):
    return struct.pack("<I", len(payload) + 1) + bytes([t]) + payload

M = dict(HELLO=1, OPEN=2, VERSION=3, LIST=4, LEASE_TAKE=5, LEASE_GET=6, LEASE_RELEASE=7,
         AUDIT=8, GET_MANIFEST=9, PUT_MANIFEST=10, HAS=11, GET=12, OFFER=13, PUT_END=14,
         ADD_VERSION=15, PING=16, IMAGES=17, LEASES=18, AUDIT_LOG=19, PUT_MANIFEST_DELTA=23, DATA=70, END=68, SEGMENT=74)
objs = [bytes([ord('A') + i]) * (1000 * (i + 1)) for i in range(4)]
hashes = [hashlib.sha256(o).digest() for o in objs]

def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3", "--no-check"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout

def solid(idx):
    z = zstd(b"".join(objs[i] for i in idx))
    return (varint(1) + varint(3) + varint(len(idx)) + b"".join(varint(len(objs[i])) for i in idx)
            + varint(len(z)) + z)

def chained(prefix_idx, idx):  # zstd's --patch-from: the prefix as a raw dictionary
    with tempfile.NamedTemporaryFile() as f:
        f.write(b"".join(objs[i] for i in prefix_idx))
        f.flush()
        data = b"".join(objs[i] for i in idx)
        z = subprocess.run(["zstd", "-q", "-c", "-12", "--no-check", "--patch-from=" + f.name,
                            "--stream-size=%d" % len(data)],
                           input=data, stdout=subprocess.PIPE, check=True).stdout
    return (varint(3) + varint(12) + varint(len(idx)) + b"".join(varint(len(objs[i])) for i in idx)
            + varint(len(z)) + z)

def run(*payloads):
    return b"".join(struct.pack("<I", len(p)) + p for p in payloads)

def stored(idx):
    head, bodies = b"", b""
    for i in idx:
        z = zstd(objs[i])
        head += varint(len(objs[i])) + varint(len(z)) + bytes([1])
        bodies += z
    return varint(2) + varint(9) + varint(len(idx)) + head + bodies

hello = frame(M["HELLO"], varint(0x31534d56) + varint(1) + s("u") + s("h") + s("seed"))
hello3 = frame(M["HELLO"], varint(0x31534d56) + varint(3) + s("u") + s("h") + s("seed"))

# fuzz_proto.c's fixed base: a manifest header and the alphabet
header = b"VMSYNCMF" + bytes([1, 0, 16]) + bytes(5)
base = header + b"abcdefghijklmnopqrstuvwxyz"

def patch(target):
    with open("/tmp/seeds-fuzz-proto-base", "wb") as f:
        f.write(base)
    with open("/tmp/seeds-fuzz-proto-target", "wb") as f:
        f.write(target)
    return subprocess.run(["zstd", "-q", "-c", "-19", "--patch-from=/tmp/seeds-fuzz-proto-base",
                           "/tmp/seeds-fuzz-proto-target"], stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, check=True).stdout
delta = patch(header + b"abcdefghijklmnopqrstuvwxyz" * 3)
opened = hello + frame(M["OPEN"], s("repo"))
hl = lambda idx: varint(len(idx)) + b"".join(hashes[i] for i in idx)
seeds = {
    "catalog": opened + frame(M["VERSION"], s("img") + varint(0)) + frame(M["LIST"], b"\x01" + s(""))
    + frame(M["LEASE_TAKE"], s("img") + varint(1) + b"\x00") + frame(M["LEASE_GET"], s("img"))
    + frame(M["LEASE_RELEASE"], s("img")) + frame(M["AUDIT"], s("a") + s("img") + varint(1) + s("d"))
    + frame(M["PING"]) + frame(M["IMAGES"]) + frame(M["LEASES"], b"\x00" + s("img"))
    + frame(M["AUDIT_LOG"], b"\x01" + s("") + varint(2)),
    "has-get": opened + frame(M["HAS"], hl([0, 1, 2, 3])) + frame(M["GET"], varint(0) + varint(0) + hl([3, 1]))
    + frame(M["GET"], varint(19) + varint(1000) + hl([0])),
    "offer": opened + frame(M["OFFER"], hl([0, 1]) ) + frame(M["PUT_END"], varint(0)),
    "manifest": opened + frame(M["PUT_MANIFEST"], varint(5)) + frame(M["DATA"], b"abcde") + frame(M["END"])
    + frame(M["GET_MANIFEST"], b"\x00" * 32)
    + frame(M["ADD_VERSION"], s("img") + varint(0) + b"\x01" * 32 + b"\x02" * 32 + varint(10) + s("m")),
    "manifest-delta": hello3 + frame(M["OPEN"], s("repo"))
    + frame(M["PUT_MANIFEST_DELTA"], b"\x01" * 32 + b"\x02" * 32 + varint(len(delta)))
    + frame(M["DATA"], delta) + frame(M["END"]),
}
agent = {k: b"\x00" + v for k, v in seeds.items()}
client = {"solid": b"\x01" + solid([0, 1, 2, 3]), "stored": b"\x01" + stored([0, 1, 2, 3]),
          "mixed": b"\x01" + solid([0, 1]) ,
          "chained": b"\x07" + run(solid([0, 1]), chained([0, 1], [2, 3])),
          "chained-first": b"\x07" + run(chained([0, 1], [0, 1])),
          "version": b"\x01" + s("img") + varint(2) + varint(1) + b"\x01" * 64 + varint(5) + varint(6)
          + s("m") + s("u") + s("h"),
          "error": b"\x01" + varint(9) + varint(2) + s("no such image"),
          "delta": b"\x03" + delta}
os.makedirs(sys.argv[1], exist_ok=True)
for name, data in {**agent, **client}.items():
    with open(os.path.join(sys.argv[1], name), "wb") as f:
        f.write(data)
