"""The fields of vmsync's records as the seed scripts write them: a varint,
and a byte string or a text as its length + 1, then its bytes (0 would mean
absent)."""


def varint(n):
    out = bytearray()
    while True:
        c, n = n & 0x7f, n >> 7
        out.append(c | (0x80 if n else 0))
        if not n:
            return bytes(out)


def blob(b):
    return varint(len(b) + 1) + b


def s(text):
    return blob(text.encode())
