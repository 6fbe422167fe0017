"""A hand-made client of the agent protocol (docs/protocol.md), for tests that
send what the vmsync client never would: crafted requests from a hostile key.

    s = Session([agent, '--root', root, '--user', 'u'], host='laptop')
    s.open('repo')                      # HELLO and OPEN, both answered
    kind, body = s.ask(LEASE_TAKE, put_str('t') + put_varint(1) + b'\\1')
    s.close()                           # returns the agent's exit status

ask() returns the reply's type and payload; ERROR payloads decode with
error().  Everything is synchronous: one request, one reply.
"""
import struct
import subprocess

MAGIC = 0x31534D56
VERSION = 1

(HELLO, OPEN, VERSION_REQ, LIST, LEASE_TAKE, LEASE_GET, LEASE_RELEASE, AUDIT,
 GET_MANIFEST, PUT_MANIFEST, HAS, GET, OFFER, PUT_END, ADD_VERSION, PING,
 IMAGES, LEASES, AUDIT_LOG, KEY, FORGET, STATS, PUT_MANIFEST_DELTA) = range(1, 24)
OK, ERROR, HELLO_OK, VERSION_INFO, END, LEASE_INFO, DATA, MANIFEST_ID = range(64, 72)
NUMBER, PONG, IMAGE_INFO, AUDIT_ENTRY = 76, 77, 78, 79


def put_varint(v):
    out = bytearray()
    while True:
        b = v & 0x7F
        v >>= 7
        out.append(b | (0x80 if v else 0))
        if not v:
            return bytes(out)


def put_str(s):
    b = s.encode() if isinstance(s, str) else s
    return put_varint(len(b) + 1) + b


def get_varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def get_str(b, i):
    n, i = get_varint(b, i)
    return b[i:i + n - 1].decode(errors='replace'), i + n - 1


def error(body):
    """(kind, message) of an ERROR payload."""
    kind, i = get_varint(body, 0)
    _, i = get_varint(body, i)  # the code, zigzag
    msg, _ = get_str(body, i)
    return kind, msg


class Session:
    def __init__(self, argv, host='laptop', stderr=None, version=VERSION):
        self.host, self.version = host, version
        self.p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=stderr)

    def send(self, kind, payload=b''):
        self.p.stdin.write(struct.pack('<IB', len(payload) + 1, kind) + payload)
        self.p.stdin.flush()

    def recv(self):
        head = self.p.stdout.read(5)
        if len(head) < 5:
            return None, b''
        n, kind = struct.unpack('<IB', head)
        return kind, self.p.stdout.read(n - 1)

    def ask(self, kind, payload=b''):
        self.send(kind, payload)
        return self.recv()

    def open(self, path):
        hello = (put_varint(MAGIC) + put_varint(self.version) + put_str('crafted') +
                 put_str(self.host) + put_str('agentwire'))
        kind, body = self.ask(HELLO, hello)
        self.hello = body
        if kind != HELLO_OK:
            raise RuntimeError('HELLO: %r %r' % (kind, body[:200]))
        kind, body = self.ask(OPEN, put_str(path))
        if kind != OK:
            raise RuntimeError('OPEN: %r %r' % (kind, error(body) if kind == ERROR else body))

    def close(self, timeout=30):
        try:
            self.p.stdin.close()
        except BrokenPipeError:
            pass
        return self.p.wait(timeout)
