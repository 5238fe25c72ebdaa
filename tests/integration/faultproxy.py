"""A fault-injecting proxy for the store's peer links.

Every member's advertised peer URL points at a proxy port that forwards to the
member's real listener. The proxy reads the first frame of each connection
(the transport's hello, which names the sending and receiving member) and can
then cut chosen pairs: existing connections between them are closed and new
ones refused, until healed. Runs in a thread with its own event loop.
"""
from __future__ import annotations

import asyncio
import struct
import threading

import msgpack

FRAME = struct.Struct(">IB")
HELLO = 1


class FaultProxy:
    def __init__(self):
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.blocked: set[frozenset[int]] = set()
        self.conns: list[tuple[int, int, asyncio.StreamWriter, asyncio.StreamWriter]] = []
        self.servers = []

    def add_route(self, listen_port: int, target_port: int) -> None:
        fut = asyncio.run_coroutine_threadsafe(self._listen(listen_port, target_port), self.loop)
        fut.result(5)

    async def _listen(self, listen_port: int, target_port: int) -> None:
        async def handle(reader, writer):
            try:
                head = await reader.readexactly(FRAME.size)
                n, kind = FRAME.unpack(head)
                body = await reader.readexactly(n)
                pair = None
                if kind == HELLO:
                    h = msgpack.unpackb(body)
                    pair = (h.get("from", 0), h.get("to", 0))
                    if frozenset(pair) in self.blocked:
                        writer.close()
                        return
                ur, uw = await asyncio.open_connection("127.0.0.1", target_port)
            except (OSError, asyncio.IncompleteReadError):
                writer.close()
                return
            uw.write(head + body)
            if pair is not None:
                self.conns.append((pair[0], pair[1], writer, uw))

            async def pump(src, dst):
                try:
                    while True:
                        data = await src.read(65536)
                        if not data:
                            break
                        dst.write(data)
                        await dst.drain()
                except (OSError, ConnectionError):
                    pass
                finally:
                    try:
                        dst.close()
                    except Exception:  # noqa: BLE001
                        pass
            await asyncio.gather(pump(reader, uw), pump(ur, writer))
        srv = await asyncio.start_server(handle, "127.0.0.1", listen_port, reuse_address=True)
        self.servers.append(srv)

    def partition(self, a: int, b: int) -> None:
        def do():
            self.blocked.add(frozenset((a, b)))
            keep = []
            for f, t, w1, w2 in self.conns:
                if frozenset((f, t)) == frozenset((a, b)):
                    w1.close()
                    w2.close()
                else:
                    keep.append((f, t, w1, w2))
            self.conns = keep
        self.loop.call_soon_threadsafe(do)

    def isolate(self, a: int, others: list[int]) -> None:
        for b in others:
            if b != a:
                self.partition(a, b)

    def heal(self) -> None:
        self.loop.call_soon_threadsafe(self.blocked.clear)

    def close(self) -> None:
        async def stop():
            for s in self.servers:
                s.close()
            for _, _, w1, w2 in self.conns:
                w1.close()
                w2.close()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
