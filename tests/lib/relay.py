#!/usr/bin/env python3
"""relay.py: a user-space WAN emulator (TCP relay) for tests and benchmarks.

    relay.py --listen PORT --to HOST:PORT [--rate BITS_PER_SEC]
             [--delay-ms ONE_WAY_MS] [--port-file F] [--stats F]
             [--cut-after BYTES] [--cut-count K] [--stall-after BYTES]
             [--stall-up-after BYTES]

Listens on 127.0.0.1:PORT (0: an ephemeral port; --port-file F receives the
chosen port, written atomically once the relay listens) and relays every
accepted connection to HOST:PORT, both directions independently (full duplex).

Each direction is one link (shared by all connections) with a serialisation
rate (--rate, bits/s; 0 or absent: unlimited) and a one-way propagation delay
(--delay-ms).  A chunk read at time t leaves the link at departure =
max(t, link_free) + len*8/rate (then link_free = departure) and is delivered
at departure + delay.  The relay stops reading a side while more than
rate*delay + 64 KiB (256 KiB when unlimited) of that connection is queued in
that direction, so backpressure reaches TCP (its sockets have ~64 KiB
buffers); that queue also delays other traffic, like a router buffer would.
With --delay-ms but no --rate, a connection carries at most 256 KiB per
one-way delay (~105 Mbit/s at 20 ms): give a --rate too.  The relay terminates
TCP: application round trips see the delay, TCP's own ACK clock does not.  An
end-of-stream is propagated (shutdown(SHUT_WR)) after the data queued before
it; a reset or error on either side resets both.  Measured on loopback: rates
within 0.5%, RTT = 2*delay + ~0.4 ms.

--stats F: rewritten atomically at each connection end and on SIGTERM/SIGINT:
  {"connections": N, "bytes_up": client->server, "bytes_down": server->client,
   "cut": connections dropped abruptly, "stalled": connections stalled}
  (also rewritten when a connection stalls)
--cut-after BYTES: the first K connections (--cut-count K, default 1) to carry
  BYTES server->client are dropped abruptly (RST, SO_LINGER 0) right after
  exactly BYTES went down; connections that end earlier do not count.
--stall-after BYTES: the first connection to carry BYTES server->client stops
  delivering anything more to the client right after exactly BYTES went down,
  and stays open: the link went silent (the relay then stops reading from the
  server too, as a full router would).
--stall-up-after BYTES: the same for the first connection to carry BYTES
  client->server (a link that goes silent while the client sends).
SIGUSR1 drops every current connection abruptly (counted in "cut").
SIGTERM/SIGINT: writes the stats and exits 0.

Example:
  python3 relay.py --listen 0 --port-file p --to 127.0.0.1:22 \\
      --rate 10000000 --delay-ms 25 --stats s.json &
"""
import argparse
import asyncio
import collections
import json
import os
import selectors
import signal
import socket
import struct
import sys

BUF = 64 * 1024
CHUNK = 16 * 1024


def write_atomic(path, text):
    tmp = "%s.tmp.%d" % (path, os.getpid())
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


class Link:
    """One direction of one connection: src -> (rate, delay) -> dst."""

    def __init__(self, relay, conn, src, dst, down):
        self.relay, self.conn, self.src, self.dst, self.down = relay, conn, src, dst, down
        self.queue = collections.deque()  # (deliver_at, bytes); b"" is EOF
        self.queued = 0
        self.ready = asyncio.Event()
        self.room = asyncio.Event()
        rate, delay = relay.rate, relay.delay
        self.limit = (int(rate / 8 * delay) + 64 * 1024) if rate else 256 * 1024
        # chunks of at most ~5 ms of link time keep a slow link smooth
        self.chunk = min(CHUNK, max(2048, int(rate / 8 / 200))) if rate else CHUNK

    async def reader(self):
        loop = asyncio.get_running_loop()
        rate, delay = self.relay.rate, self.relay.delay
        while True:
            while self.queued > self.limit:
                self.room.clear()
                await self.room.wait()
            data = await loop.sock_recv(self.src, self.chunk)
            t = loop.time()
            departure = max(t, self.relay.link_free[self.down])
            if data and rate:
                departure += len(data) * 8 / rate
                self.relay.link_free[self.down] = departure
            self.queue.append((departure + delay, data))
            self.queued += len(data)
            self.ready.set()
            if not data:
                return

    async def writer(self):
        loop = asyncio.get_running_loop()
        while True:
            while not self.queue:
                self.ready.clear()
                await self.ready.wait()
            at, data = self.queue[0]
            wait = at - loop.time() - self.relay.early
            if wait > 0:
                await asyncio.sleep(wait)
                self.relay.oversleep(loop.time() - at)
            self.queue.popleft()
            if not data:
                self.dst.shutdown(socket.SHUT_WR)
                self.conn.half_closed()
                return
            cut = self.relay.cut_due(self.conn, len(data)) if self.down else None
            if cut is not None:
                data = data[:cut]
            stall = self.relay.stall_due(self.conn, len(data), self.down)
            if stall is not None:
                await loop.sock_sendall(self.dst, data[:stall])
                self.conn.sent[self.down] += stall
                self.relay.stalled()
                await asyncio.Event().wait()  # silent until the connection ends
            await loop.sock_sendall(self.dst, data)
            self.queued -= len(data)
            self.conn.sent[self.down] += len(data)
            if cut is not None:
                self.conn.finish(rst=True, cut=True)
                return
            if self.queued <= self.limit:
                self.room.set()


class Conn:
    def __init__(self, relay, client):
        self.relay, self.client, self.server = relay, client, None
        self.sent = [0, 0]  # bytes delivered [up (client->server), down]
        self.eofs = 0
        self.done = asyncio.get_running_loop().create_future()
        self.task = None

    def half_closed(self):
        self.eofs += 1
        if self.eofs == 2:
            self.finish(rst=False)

    def finish(self, rst, cut=False):
        if not self.done.done():
            self.done.set_result((rst, cut))

    async def guard(self, coro):
        try:
            await coro
        except asyncio.CancelledError:
            raise
        except OSError:
            self.finish(rst=True)

    async def run(self):
        loop = asyncio.get_running_loop()
        tasks = []
        rst, cut = True, False
        try:
            self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tune(self.server)
            self.server.setblocking(False)
            await loop.sock_connect(self.server, self.relay.target)
            links = [Link(self.relay, self, self.client, self.server, False),
                     Link(self.relay, self, self.server, self.client, True)]
            for link in links:
                tasks += [asyncio.create_task(self.guard(link.reader())),
                          asyncio.create_task(self.guard(link.writer()))]
            rst, cut = await self.done
        except OSError as e:
            print("relay: connect %s:%d: %s" % (*self.relay.target, e), file=sys.stderr)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for s in (self.client, self.server):
                if s is None:
                    continue
                if rst:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                s.close()
            self.relay.ended(self, cut)


def tune(s):
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUF)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, BUF)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Relay:
    def __init__(self, args):
        host, _, port = args.to.rpartition(":")
        self.target = (host, int(port))
        self.rate = float(args.rate or 0)
        self.delay = (args.delay_ms or 0) / 1000.0
        self.args = args
        self.cuts_left = args.cut_count if args.cut_after is not None else 0
        self.stalls_left = [int(args.stall_up_after is not None), int(args.stall_after is not None)]
        self.conns = set()
        self.early = 0.0005
        self.link_free = [0.0, 0.0]  # [up, down]: one link each way, shared
        self.stats = {"connections": 0, "bytes_up": 0, "bytes_down": 0, "cut": 0, "stalled": 0}

    def oversleep(self, late):
        # timers fire late (wake-up latency): learn by how much, wake earlier
        self.early = min(0.002, max(0.0, self.early + 0.1 * late))

    def cut_due(self, conn, n):
        """None, or how many of the next n down bytes go before the cut."""
        if self.cuts_left <= 0 or conn.sent[1] + n < self.args.cut_after:
            return None
        self.cuts_left -= 1
        return max(0, self.args.cut_after - conn.sent[1])

    def stall_due(self, conn, n, down):
        """None, or how many of the next n bytes (down or up) go before the stall."""
        after = self.args.stall_after if down else self.args.stall_up_after
        if self.stalls_left[down] <= 0 or conn.sent[down] + n < after:
            return None
        self.stalls_left[down] -= 1
        return max(0, after - conn.sent[down])

    def stalled(self):
        self.stats["stalled"] += 1
        self.write_stats()

    def ended(self, conn, cut):
        self.conns.discard(conn)
        self.stats["bytes_up"] += conn.sent[0]
        self.stats["bytes_down"] += conn.sent[1]
        self.stats["cut"] += int(cut)
        self.write_stats()

    def write_stats(self):
        if self.args.stats:
            s = dict(self.stats)
            for c in self.conns:  # connections still open count too
                s["bytes_up"] += c.sent[0]
                s["bytes_down"] += c.sent[1]
            write_atomic(self.args.stats, json.dumps(s) + "\n")

    def drop_all(self):
        for c in list(self.conns):
            c.finish(rst=True, cut=True)

    async def main(self):
        loop = asyncio.get_running_loop()
        lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tune(lsock)  # inherited by accepted sockets (window scale is set at SYN)
        lsock.bind(("127.0.0.1", self.args.listen))
        lsock.listen(128)
        lsock.setblocking(False)
        stop = asyncio.Event()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGUSR1, self.drop_all)
        self.write_stats()
        if self.args.port_file:
            write_atomic(self.args.port_file, "%d\n" % lsock.getsockname()[1])
        accepting = asyncio.create_task(self.accept(lsock))
        await stop.wait()
        accepting.cancel()
        self.write_stats()

    async def accept(self, lsock):
        loop = asyncio.get_running_loop()
        while True:
            client, _ = await loop.sock_accept(lsock)
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.stats["connections"] += 1
            conn = Conn(self, client)
            self.conns.add(conn)
            conn.task = asyncio.create_task(conn.run())


def parse():
    p = argparse.ArgumentParser(description="TCP relay emulating a WAN link")
    p.add_argument("--listen", type=int, required=True, help="port on 127.0.0.1 (0: ephemeral)")
    p.add_argument("--to", required=True, help="HOST:PORT to connect to")
    p.add_argument("--rate", type=float, default=0, help="bits/s per direction (0: unlimited)")
    p.add_argument("--delay-ms", type=float, default=0, help="one-way delay in ms")
    p.add_argument("--port-file", help="file receiving the listening port")
    p.add_argument("--stats", help="JSON stats file")
    p.add_argument("--cut-after", type=int, help="RST a connection after BYTES server->client")
    p.add_argument("--cut-count", type=int, default=1, help="connections to cut (default 1)")
    p.add_argument("--stall-after", type=int, help="go silent after BYTES server->client")
    p.add_argument("--stall-up-after", type=int, help="go silent after BYTES client->server")
    return p.parse_args()


if __name__ == "__main__":
    # select() takes its timeout in microseconds, epoll in whole ms (fine for
    # the few hundred connections a test makes: select handles fds < 1024)
    def select_loop():
        return asyncio.SelectorEventLoop(selectors.SelectSelector())
    with asyncio.Runner(loop_factory=select_loop) as r:
        r.run(Relay(parse()).main())
