#!/usr/bin/env python3
"""Seed inputs for fuzz_bundle: small well-formed bundles (docs/bundle.md),
written here from the format's description, so that the fuzzer starts past
the tar framing and the records.  Usage: seeds-fuzz_bundle.py DIR"""
import hashlib, io, os, struct, subprocess, sys, tarfile
from wire_fields import s, varint

def zstd(data):
    return subprocess.run(["zstd", "-q", "-c", "-3", "--check"], input=data,
                          stdout=subprocess.PIPE, check=True).stdout

def bundle(objects, members_of, held, signed=False):
    manifest = b"VMSYNCMF" + bytes(range(64))  # the reader checks its hash, not its records
    mid = hashlib.sha256(manifest).digest()
    total = sum(len(o) for o in objects)
    header = (b"VMSYNCBH" + varint(1) + varint(1 if signed else 0) + s("desk") + varint(2) + varint(1) + varint(0)
              + varint(len(held)) + b"".join(held) + varint(len(objects)) + varint(total))
    version = (b"VMSYNCVR" + s("desk") + varint(2) + varint(1) + mid + hashlib.sha256(b"d").digest()
               + varint(1 << 20) + varint(2 * 1700000000) + s("m") + s("u") + s("h"))
    members = [("vmsync-bundle", header), ("version", version)]
    if signed:  # a signer's fingerprint and a signature: their shape, not a real key's
        members.append(("version.sig", b"VMSYNCSG" + bytes(range(32)) + bytes(range(64, 128))))
    members.append(("manifest", manifest))
    for i, group in enumerate(members_of, 1):
        frames = b"".join(hashlib.sha256(o).digest() + struct.pack("<I", len(o)) + o for o in group)
        members.append(("objects-%06u.zst" % i, zstd(frames)))
    seals = b"".join(s(n) + hashlib.sha256(d).digest() for n, d in members)
    end = b"VMSYNCEN" + varint(len(members_of)) + varint(len(objects)) + varint(len(members)) + seals
    members.append(("end", end + hashlib.sha256(end).digest()))
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            t.addfile(info, io.BytesIO(data))
    return out.getvalue()

def main():
    d = sys.argv[1]
    os.makedirs(d, exist_ok=True)
    objs = [bytes([ord("A") + i]) * (100 * (i + 1)) for i in range(4)]
    seeds = {
        "empty": bundle([], [], []),
        "one-member": bundle(objs, [objs], []),
        "two-members": bundle(objs, [objs[:1], objs[1:]], [hashlib.sha256(b"held").digest()]),
        "signed": bundle(objs, [objs], [], signed=True),
    }
    for name, data in seeds.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)

main()
