"""userspace mode: real TCP forwarded by this process, balanced by the userspace
IPVS dispatcher (kcore.proxy.dispatcher), for nodes where neither IPVS nor
iptables can be programmed.

    p = UserspaceProxier(scheduler="wlc")
    await p.sync(state)       # listeners on ClusterIP:port and 0.0.0.0:nodePort

Per virtual server (ipvs.desired, as in IPVS mode; NodePorts become 0.0.0.0:
nodePort) a listening socket; ClusterIPs are bound to the dummy interface
kube-ipvs0 first (addresses in 127.0.0.0/8 are local already). Each accepted
connection is one flow through the dispatcher, fed the TCP events the kernel
would see -- SYN, the server's SYN-ACK, the client's ACK, FINs or RST -- so
its connection table, active/inactive counters (lc, wlc, sed, nq), weights,
quiescing (weight 0: no new connections, open ones stay) and persistence
behave as in IPVS. Bytes are copied between the two sockets by asyncio
transports with flow control (a full write buffer pauses the other side's
reads). UDP and SCTP services are not served in this mode.
"""
from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import time
from collections.abc import Callable

from kcore.proxy import links
from kcore.proxy.dispatcher import (
    F_ACK,
    F_FIN,
    F_REPLY,
    F_RST,
    F_SYN,
    TCP,
    Dispatcher,
    DispatcherError,
    Flow,
    Service,
    ip4,
    ip4_str,
)
from kcore.proxy.ipvs import (
    FWD_MASQ,
    Entry,
    Op,
    RealServer,
    Table,
    VSKey,
    apply_to,
    bound_addresses,
    desired,
    plan,
)
from kcore.proxy.proxier import Proxier, SyncResult
from kcore.proxy.servicemap import ProxyState

log = logging.getLogger("kcore.proxy")
ANY = "0.0.0.0"
CONNECT_TIMEOUT = 5.0
REARM_S = 30.0   # an active connection re-arms its dispatcher entry at most this often
HIGH_WATER = 256 << 10


class _Side(asyncio.Protocol):
    """One socket of a forwarded connection; `peer` is the other one."""

    def __init__(self, conn: _Conn, client: bool):
        self.conn, self.client = conn, client
        self.transport: asyncio.Transport | None = None
        self.peer: _Side | None = None
        self.eof = False
        self.early: list[bytes] = []   # client bytes that came before the backend was up

    def connection_made(self, transport) -> None:
        self.transport = transport
        transport.set_write_buffer_limits(HIGH_WATER)
        if self.client:
            self.conn.accepted(self)

    def data_received(self, data: bytes) -> None:
        self.conn.bytes += len(data)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.write(data)
        else:
            self.early.append(data)
            if sum(map(len, self.early)) > HIGH_WATER:
                self.transport.pause_reading()
        self.conn.touch()

    def eof_received(self) -> bool:
        self.eof = True
        self.conn.event(F_FIN | F_ACK, reply=not self.client)
        if self.peer is None:
            return True            # the backend is still connecting: forward the EOF then
        if self.peer.transport is not None and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()
        if self.peer.eof:
            self.conn.finish()
            return False
        return True

    def connection_lost(self, exc) -> None:
        if exc is not None and not self.eof:
            self.conn.event(F_RST, reply=not self.client)
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()
        self.conn.finish()

    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


class _Conn:
    """One client connection and its flow key in the dispatcher."""

    def __init__(self, proxier: UserspaceProxier, vs_addr: int, vs_port: int):
        self.p = proxier
        self.vs_addr, self.vs_port = vs_addr, vs_port
        self.flow: tuple[int, int] | None = None
        self.client: _Side | None = None
        self.backend: _Side | None = None
        self.bytes = 0
        self.done = False
        self.last = 0.0

    def event(self, flags: int, reply: bool = False) -> None:
        if self.flow is None or self.done:
            return
        saddr, sport = self.flow
        self.p.feed(Flow(TCP, saddr, sport, self.vs_addr, self.vs_port,
                         flags | (F_REPLY if reply else 0)))

    def touch(self) -> None:
        now = time.monotonic()
        if now - self.last > REARM_S:
            self.last = now
            self.event(F_ACK)

    def accepted(self, side: _Side) -> None:
        self.client = side
        peer = side.transport.get_extra_info("peername")
        if not peer:
            side.transport.abort()
            return
        self.flow = (ip4(peer[0]), peer[1])
        self.p.connections.add(self)
        dest = self.p.feed(Flow(TCP, self.flow[0], self.flow[1], self.vs_addr, self.vs_port,
                                F_SYN))
        target = self.p.dest_addrs.get(dest) if dest >= 0 else None
        if target is None:
            self.p.refused += 1
            self.done = True
            side.transport.abort()
            self.p.connections.discard(self)
            return
        self.last = time.monotonic()
        asyncio.get_running_loop().create_task(self._connect(*target))

    async def _connect(self, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            _t, backend = await asyncio.wait_for(
                loop.create_connection(lambda: _Side(self, client=False), host, port),
                CONNECT_TIMEOUT)
        except (TimeoutError, OSError) as e:
            log.debug("userspace: backend %s:%d: %s", host, port, e)
            self.p.backend_errors += 1
            self.event(F_RST, reply=True)
            self.done = True
            if self.client is not None and self.client.transport is not None:
                self.client.transport.abort()
            self.p.connections.discard(self)
            return
        if self.client is None or self.client.transport is None or \
                self.client.transport.is_closing():
            backend.transport.close()
            return
        self.backend = backend
        backend.peer, self.client.peer = self.client, backend
        self.event(F_SYN | F_ACK, reply=True)
        self.event(F_ACK)
        self.p.forwarded += 1
        for a, b in ((self.client, backend), (backend, self.client)):  # bytes that raced us
            if a.early:
                b.transport.write(b"".join(a.early))
                a.early.clear()
                a.transport.resume_reading()
            if a.eof and b.transport.can_write_eof():
                b.transport.write_eof()

    def finish(self) -> None:
        if self.done:
            return
        c, b = self.client, self.backend
        if (c is None or c.transport is None or c.transport.is_closing()) and \
                (b is None or b.transport is None or b.transport.is_closing()):
            self.event(F_ACK)
            self.done = True
            self.p.connections.discard(self)
            self.p.bytes += self.bytes


class UserspaceProxier(Proxier):
    mode = "userspace"

    def __init__(self, scheduler: str = "rr", sched_flags: int = 0,
                 link: links.DummyLink | None = None, dispatcher: Dispatcher | None = None,
                 node_ip: str = ANY, clock: Callable[[], float] = time.monotonic):
        self.scheduler, self.sched_flags = scheduler, sched_flags
        self.link = link
        self.d = dispatcher or Dispatcher()
        self.node_ip = node_ip
        self._clock = clock
        self._t0 = clock()
        self.sids: dict[VSKey, int] = {}
        self.dids: dict[tuple[VSKey, tuple[str, int]], int] = {}
        self.dest_addrs: dict[int, tuple[str, int]] = {}
        self.servers: dict[tuple[str, int], asyncio.base_events.Server] = {}
        self.connections: set[_Conn] = set()
        self.bound: set[str] = set()
        self.table: Table = {}
        self.forwarded = self.refused = self.backend_errors = self.bytes = 0
        self._expiry: asyncio.Task | None = None
        self._skipped: set[VSKey] = set()

    # -- the dispatcher ---------------------------------------------------------------------
    def now_ms(self) -> int:
        return int((self._clock() - self._t0) * 1000)

    def feed(self, flow: Flow) -> int:
        return self.d.lookup_or_schedule(flow, self.now_ms())

    def _read(self) -> Table:
        out: Table = {}
        for key, e in self.table.items():
            dests = {}
            for did in self.d.service_dests(self.sids[key]):
                info = self.d.dest(did)
                rs = RealServer(ip4_str(info.addr), info.port, info.weight, FWD_MASQ,
                                info.active, info.inactive)
                dests[rs.key] = rs
            out[key] = Entry(e.vs, dests)
        return out

    def _apply(self, op: Op) -> None:
        vs, key = op.vs, op.vs.key
        if op.kind == "set_service" and self.table[key].vs.timeout != vs.timeout:
            dests = list(self.table[key].dests.values())   # persistence is not editable
            self._apply(Op("del_service", self.table[key].vs))
            self._apply(Op("add_service", vs))
            for rs in dests:
                self._apply(Op("add_dest", vs, rs))
            return
        if op.kind == "add_service":
            self.sids[key] = self.d.add_service(Service(vs.addr, vs.port, "tcp", vs.scheduler,
                                                        vs.flags, vs.timeout, vs.netmask))
        elif op.kind == "set_service":
            self.d.update_service(self.sids[key], scheduler=vs.scheduler, flags=vs.flags)
        elif op.kind == "del_service":
            self.d.del_service(self.sids.pop(key))
            for k in [k for k in self.dids if k[0] == key]:
                self.dids.pop(k)
        elif op.kind == "add_dest":
            did = self.d.add_dest(self.sids[key], op.rs.addr, op.rs.port, op.rs.weight)
            self.dids[(key, op.rs.key)] = did
            self.dest_addrs[did] = op.rs.key
        elif op.kind == "set_dest":
            self.d.update_dest(self.dids[(key, op.rs.key)], weight=op.rs.weight)
        elif op.kind == "del_dest":
            self.d.del_dest(self.dids.pop((key, op.rs.key)))
        self.table = apply_to(self.table, [op])

    # -- the sync ---------------------------------------------------------------------------
    async def sync(self, state: ProxyState, full: bool = False) -> SyncResult:
        if self._expiry is None:
            self._expiry = asyncio.get_running_loop().create_task(self._expire_loop())
        want = desired(state, self.scheduler, [self.node_ip], self.sched_flags)
        for key in [k for k in want if k[0] != "tcp"]:
            if key not in self._skipped:
                log.warning("userspace: %s services are not proxied in userspace mode (%s:%d)",
                            key[0].upper(), key[1], key[2])
                self._skipped.add(key)
            del want[key]
        ops = plan(want, self._read())
        failed = 0
        for op in ops:
            try:
                self._apply(op)
            except (DispatcherError, KeyError) as e:
                failed += 1
                log.error("userspace: %s: %r", op, e)
        await self._bind(want)
        changed = await self._listen(want)
        have = self._read()
        pending = sum(1 for k, e in have.items() if k in want
                      for rk in e.dests if rk not in want[k].dests)
        return SyncResult(bool(ops) or changed, len(ops), pending,
                          f"{len(self.servers)} listeners, {failed} refused")

    async def _bind(self, want: Table) -> None:
        addrs = {a for a in bound_addresses(want, [self.node_ip]) if a != ANY and
                 not ipaddress.IPv4Address(a).is_loopback}
        if self.link is None:
            return
        loop = asyncio.get_running_loop()
        new = sorted(addrs - self.bound)
        if new:
            bad = await loop.run_in_executor(None, self.link.add, new)
            for a, e in bad.items():
                log.error("userspace: cannot bind %s: %s", a, errno.errorcode.get(e, e))
            self.bound |= set(new) - set(bad)
        gone = sorted(self.bound - addrs)
        if gone:
            await loop.run_in_executor(None, self.link.remove, gone)
            self.bound -= set(gone)

    async def _listen(self, want: Table) -> bool:
        loop = asyncio.get_running_loop()
        changed = False
        wanted = {(k[1], k[2]) for k in want}
        for addr_port in sorted(set(self.servers) - wanted):
            srv = self.servers.pop(addr_port)
            srv.close()
            changed = True
        for addr, port in sorted(wanted - set(self.servers)):
            vs_addr = ip4(addr)
            try:
                srv = await loop.create_server(
                    lambda a=vs_addr, p=port: _Side(_Conn(self, a, p), client=True),
                    host=addr, port=port, reuse_address=True, backlog=1024)
            except OSError as e:
                log.error("userspace: cannot listen on %s:%d: %s", addr, port, e)
                continue
            self.servers[(addr, port)] = srv
            changed = True
        return changed

    async def _expire_loop(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            self.d.expire(self.now_ms())

    # -- lifecycle ----------------------------------------------------------------------------
    async def close(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None
        for srv in self.servers.values():
            srv.close()
        self.servers.clear()
        for c in list(self.connections):
            for side in (c.client, c.backend):
                if side is not None and side.transport is not None:
                    side.transport.abort()

    async def cleanup(self) -> None:
        await self.close()
        if self.link is not None and self.bound:
            await asyncio.get_running_loop().run_in_executor(None, self.link.remove,
                                                             sorted(self.bound))
            self.bound.clear()
