"""userspace mode in-process, real TCP on loopback: the ClusterIP is a 127.x
address (local without binding anything), backends are echo servers that
first say their name. Checks the dispatcher's choices on real connections
(rr order, lc with open connections), byte integrity with flow control,
quiescing and removal with a connection open. No root needed."""
from __future__ import annotations

import asyncio
import os

import pytest

from kcore.proxy.servicemap import build
from kcore.proxy.userspace import UserspaceProxier

VIP = "127.0.10.1"


async def echo_backends(n: int):
    servers, ports = [], []
    for i in range(n):
        async def handle(r, w, name=f"b{i}"):
            w.write(f"{name}\n".encode())
            try:
                while data := await r.read(65536):
                    w.write(data)
                    await w.drain()
            except ConnectionError:
                pass
            finally:
                w.close()
        srv = await asyncio.start_server(handle, "127.0.0.1", 0)
        servers.append(srv)
        ports.append(srv.sockets[0].getsockname()[1])
    return servers, ports


def state(vport: int, ports: list[int]):
    svc = {"metadata": {"name": "echo", "namespace": "default"},
           "spec": {"clusterIP": VIP, "ports": [{"port": vport, "protocol": "TCP"}]}}
    ep = {"metadata": {"name": "echo", "namespace": "default"},
          "subsets": [{"addresses": [{"ip": "127.0.0.1"}], "ports": [{"port": p}]}
                      for p in ports]}
    return build([svc], [ep])


async def connect(port: int):
    r, w = await asyncio.open_connection(VIP, port)
    name = (await asyncio.wait_for(r.readline(), 5)).decode().strip()
    return name, r, w


async def one(port: int) -> str:
    name, _r, w = await connect(port)
    w.close()
    await w.wait_closed()
    return name


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind((VIP, 0))
        return s.getsockname()[1]


@pytest.fixture
def run():
    return lambda coro: asyncio.run(asyncio.wait_for(coro, 60))


def test_rr_order_and_byte_integrity(run):
    async def main():
        servers, ports = await echo_backends(3)
        vport = free_port()
        p = UserspaceProxier("rr")
        try:
            res = await p.sync(state(vport, ports))
            assert res.changed and res.ops == 4
            # dests are added in (address, port) order and rr walks the kernel's
            # list, newest first: descending port order
            order = [f"b{i}" for i in sorted(range(3), key=lambda i: -ports[i])]
            seq = [await one(vport) for _ in range(12)]
            assert seq == order * 4
            # 4 MiB each way through the proxy, with flow control
            name, r, w = await connect(vport)
            blob = os.urandom(4 << 20)

            async def send():
                w.write(blob)
                await w.drain()
                w.write_eof()
            sender = asyncio.create_task(send())
            got = await r.readexactly(len(blob))
            await sender
            assert got == blob and await r.read() == b""
            w.close()
            assert p.forwarded == 13 and p.refused == 0
        finally:
            await p.close()
            for s in servers:
                s.close()
    run(main())


def test_lc_counts_open_connections_and_quiesce_keeps_them(run):
    async def main():
        servers, ports = await echo_backends(3)
        vport = free_port()
        p = UserspaceProxier("lc")
        try:
            await p.sync(state(vport, ports))
            order = [f"b{i}" for i in sorted(range(3), key=lambda i: -ports[i])]
            held = {}
            for _ in range(3):
                name, r, w = await connect(vport)
                held[name] = (r, w)
            # lc: least (active << 8) + inactive, ties to the newest dest
            assert list(held) == order
            first, mid, last = order
            held[first][1].close()       # its connection ends: inactive, no longer active
            await asyncio.sleep(0.1)
            assert await one(vport) == first
            # quiesce `last` (weight 0): its open connection keeps working, no new ones
            vs_key = next(iter(p.table))
            did = p.dids[(vs_key, ("127.0.0.1", ports[int(last[1])]))]
            p.d.update_dest(did, weight=0)
            assert last not in [await one(vport) for _ in range(6)]
            r, w = held[last]
            w.write(b"still here")
            assert await r.readexactly(10) == b"still here"
            # `mid`'s endpoint is removed while its connection is open
            keep = [ports[int(x[1])] for x in (first, last)]
            await p.sync(state(vport, keep))
            r1, w1 = held[mid]
            w1.write(b"ping")
            assert await r1.readexactly(4) == b"ping"
            assert {await one(vport) for _ in range(4)} == {first}
            res = await p.sync(state(vport, keep))
            assert res.pending == 1        # `mid` quiesced until its connection ends
            for x in (mid, last):
                held[x][1].close()
        finally:
            await p.close()
            for s in servers:
                s.close()
    run(main())


def test_no_endpoints_refuses_and_removed_service_stops_listening(run):
    async def main():
        vport = free_port()
        p = UserspaceProxier("rr")
        try:
            await p.sync(state(vport, []))
            try:   # accepted, then reset: no byte ever comes back
                name, _r, w = await connect(vport)
                assert name == ""
            except ConnectionError:
                pass
            assert p.refused == 1
            await p.sync(build([], []))
            with pytest.raises(ConnectionRefusedError):
                await asyncio.open_connection(VIP, vport)
        finally:
            await p.close()
    run(main())
