"""The userspace IPVS dispatcher: services, real servers (dests), a connection
table with TCP-state timeouts, persistence templates and the kernel's nine
schedulers (rr wrr lc wlc sed nq dh sh mh), choosing exactly as Linux does.

    d = Dispatcher()
    svc = d.add_service(Service("10.96.0.10", 80, "tcp", "rr"))
    a = d.add_dest(svc, "10.244.1.5", 8080, weight=1)
    dest = d.lookup_or_schedule(Flow(TCP, ip4("10.0.0.7"), 40000, ip4("10.96.0.10"), 80, F_SYN),
                                now_ms=0)
    out = d.process(flows, now_ms)   # numpy FLOW_DTYPE array in, int32 dest ids out (-1 = none)

The semantics (what a packet does to the table, when connections expire,
how OVERLOAD and persistence behave) are documented in kcore.proxy.ipvs_ref,
the pure-Python reference. The native engine (kcore._native.ipvs, Cython) is
used when built; both are checked to agree by property tests. Time is an
integer number of milliseconds passed in by the caller; nothing here reads a
clock.
"""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from kcore.proxy import ipvs_ref
from kcore.proxy.ipvs_ref import (  # noqa: F401  (re-exported)
    F_ACK,
    F_FIN,
    F_REPLY,
    F_RST,
    F_SYN,
    SCHEDULERS,
    SVC_F_SCHED1,
    SVC_F_SCHED2,
    TCP,
    TCP_STATE_NAMES,
    UDP,
)

try:
    from kcore._native import ipvs as _native
except ImportError:  # not built: the reference serves
    _native = None

NATIVE_AVAILABLE = _native is not None

# ipvsadm's scheduler flags: -b sh-fallback,sh-port / mh-fallback,mh-port
SH_FALLBACK = MH_FALLBACK = SVC_F_SCHED1
SH_PORT = MH_PORT = SVC_F_SCHED2

# One packet: 16 bytes. Addresses IPv4 host order, ports host order,
# flags = TCP header bits (F_FIN F_SYN F_RST F_ACK) | F_REPLY for server->client.
FLOW_DTYPE = np.dtype([("saddr", "<u4"), ("daddr", "<u4"), ("sport", "<u2"), ("dport", "<u2"),
                       ("proto", "u1"), ("_pad", "u1"), ("flags", "<u2")])

MAX_PERSISTENCE_S = 10 * 86400  # keeps every deadline within the engines' 24-day window
_PROTOS = {"tcp": TCP, "udp": UDP, TCP: TCP, UDP: UDP}


class DispatcherError(Exception):
    """Base of the dispatcher's named errors."""


class ServiceExists(DispatcherError):
    pass


class NoSuchService(DispatcherError):
    pass


class DestExists(DispatcherError):
    pass


class NoSuchDest(DispatcherError):
    pass


class InvalidArgument(DispatcherError):
    pass


def ip4(addr: str | int) -> int:
    """An IPv4 address as the dispatcher's host-order u32."""
    if isinstance(addr, int):
        if not 0 <= addr <= 0xFFFFFFFF:
            raise InvalidArgument(f"address out of range: {addr}")
        return addr
    try:
        return int(ipaddress.IPv4Address(addr))
    except ValueError as e:
        raise InvalidArgument(str(e)) from None


def ip4_str(addr: int) -> str:
    return str(ipaddress.IPv4Address(addr))


@dataclass(frozen=True)
class Service:
    """A virtual service, as `ipvsadm -A -t|-u vip:port -s sched [-b flags] [-p s [-M mask]]`."""
    vip: str | int
    port: int
    proto: str | int = "tcp"
    scheduler: str = "wlc"
    flags: int = 0  # SH_FALLBACK/SH_PORT or MH_FALLBACK/MH_PORT
    persistence: int = 0  # seconds; 0 = not persistent
    netmask: str | int = "255.255.255.255"


class Flow(NamedTuple):
    """One packet's 5-tuple and flags, as the client sent it."""
    proto: int
    saddr: int
    sport: int
    daddr: int
    dport: int
    flags: int = 0


class DestInfo(NamedTuple):
    service: int  # -1 once deleted (kept while connections still point at it)
    addr: int
    port: int
    weight: int
    last_weight: int
    u_threshold: int
    l_threshold: int
    active: int
    inactive: int
    persist: int
    overloaded: bool
    available: bool


class ConnInfo(NamedTuple):
    dest: int
    state: str  # TCP state name; "UDP" for UDP
    inactive: bool
    expires_ms: int
    persistent: bool


def _check_port(port: int) -> int:
    if not isinstance(port, int) or not 0 < port <= 0xFFFF:
        raise InvalidArgument(f"port out of range: {port!r}")
    return port


def _check_u32(name: str, v: int) -> int:
    if not isinstance(v, (int, np.integer)) or not 0 <= v <= 0x7FFFFFFF:
        raise InvalidArgument(f"{name} out of range: {v!r}")
    return int(v)


class Dispatcher:
    """Validated front of one engine (native when built, else the reference).

    native: True requires the Cython engine, False forces the reference,
    None takes the native one when it is there. Options are the kernel
    sysctls of the same names (defaults as in Linux 6.1). capacity is the
    initial connection-table size (it grows); seed keys the table's hash
    (random by default).

    One thread at a time: the native batch runs without the GIL (so other
    Python threads, e.g. another Dispatcher, keep going), and a call made on
    the same Dispatcher meanwhile raises RuntimeError rather than racing.
    """

    def __init__(self, native: bool | None = None, *, conn_reuse_mode: int = 1,
                 expire_nodest_conn: bool = False, expire_quiescent_template: bool = False,
                 sloppy_tcp: bool = False, capacity: int = 1024, seed: int | None = None):
        if native is None:
            native = NATIVE_AVAILABLE
        if native and not NATIVE_AVAILABLE:
            raise ImportError("kcore._native.ipvs is not built")
        if conn_reuse_mode not in (0, 1, 2, 3):
            raise InvalidArgument("conn_reuse_mode must be 0..3")
        if seed is None:
            seed = int.from_bytes(os.urandom(8), "little")
        impl = _native.Engine if native else ipvs_ref.Engine
        self.native = bool(native)
        self._e = impl(conn_reuse_mode, bool(expire_nodest_conn),
                       bool(expire_quiescent_template), bool(sloppy_tcp),
                       max(16, int(capacity)), seed & 0xFFFFFFFFFFFFFFFF)

    # ------------------------------------------------------------ services

    def add_service(self, svc: Service) -> int:
        proto = _PROTOS.get(svc.proto.lower() if isinstance(svc.proto, str) else svc.proto)
        if proto is None:
            raise InvalidArgument(f"protocol not supported: {svc.proto!r}")
        if svc.scheduler not in SCHEDULERS:
            raise InvalidArgument(f"unknown scheduler {svc.scheduler!r}")
        vip, port = ip4(svc.vip), _check_port(svc.port)
        if svc.flags & ~(SVC_F_SCHED1 | SVC_F_SCHED2):
            raise InvalidArgument(f"unsupported service flags {svc.flags:#x}")
        if not 0 <= svc.persistence <= MAX_PERSISTENCE_S:
            raise InvalidArgument(f"persistence must be 0..{MAX_PERSISTENCE_S} s")
        netmask = ip4(svc.netmask)
        if self._e.find_service(proto, vip, port) >= 0:
            raise ServiceExists(f"{svc.proto} {ip4_str(vip)}:{port}")
        flags = svc.flags | (ipvs_ref.SVC_F_PERSISTENT if svc.persistence else 0)
        return self._e.add_service(proto, vip, port, SCHEDULERS.index(svc.scheduler), flags,
                                   int(svc.persistence) * 1000, netmask)

    def update_service(self, svc: int, *, scheduler: str | None = None,
                       flags: int | None = None) -> None:
        """Change the scheduler (its state starts afresh, as in the kernel) or its flags."""
        self._svc(svc)
        if scheduler is not None and scheduler not in SCHEDULERS:
            raise InvalidArgument(f"unknown scheduler {scheduler!r}")
        if flags is not None and flags & ~(SVC_F_SCHED1 | SVC_F_SCHED2):
            raise InvalidArgument(f"unsupported service flags {flags:#x}")
        cur_sched, cur_flags = self._e.service_sched(svc)
        self._e.edit_service(svc, cur_sched if scheduler is None else SCHEDULERS.index(scheduler),
                             cur_flags if flags is None else flags)

    def del_service(self, svc: int) -> None:
        self._svc(svc)
        self._e.del_service(svc)

    def find_service(self, vip: str | int, port: int, proto: str | int = "tcp") -> int | None:
        p = _PROTOS.get(proto.lower() if isinstance(proto, str) else proto)
        sid = self._e.find_service(p, ip4(vip), port) if p else -1
        return None if sid < 0 else sid

    def service_dests(self, svc: int) -> list[int]:
        """Dest ids in the kernel's list order (newest first)."""
        self._svc(svc)
        return list(self._e.service_dests(svc))

    def _svc(self, svc: int) -> None:
        if not isinstance(svc, int) or not self._e.has_service(svc):
            raise NoSuchService(str(svc))

    # ------------------------------------------------------------ dests

    def add_dest(self, svc: int, addr: str | int, port: int, weight: int = 1, *,
                 u_threshold: int = 0, l_threshold: int = 0, forward: str = "masq") -> int:
        """ipvsadm -a: returns the dest id (the same id again when a deleted dest
        that still has connections is added back)."""
        self._svc(svc)
        a, p = ip4(addr), _check_port(port)
        w = _check_u32("weight", weight)
        u, lo = _check_u32("u_threshold", u_threshold), _check_u32("l_threshold", l_threshold)
        if lo > u:
            raise InvalidArgument("l_threshold above u_threshold")
        if forward not in ("masq", "route", "tunnel"):
            raise InvalidArgument(f"unknown forwarding method {forward!r}")
        if self._e.find_dest(svc, a, p) >= 0:
            raise DestExists(f"{ip4_str(a)}:{p}")
        return self._e.add_dest(svc, a, p, w, u, lo, forward != "masq")

    def update_dest(self, dest: int, *, weight: int | None = None,
                    u_threshold: int | None = None, l_threshold: int | None = None) -> None:
        """ipvsadm -e: weight 0 quiesces (no new connections, existing ones kept)."""
        info = self.dest(dest)
        if info is None or info.service < 0:
            raise NoSuchDest(str(dest))
        w = info.weight if weight is None else _check_u32("weight", weight)
        u = info.u_threshold if u_threshold is None else _check_u32("u_threshold", u_threshold)
        lo = info.l_threshold if l_threshold is None else _check_u32("l_threshold", l_threshold)
        if lo > u:
            raise InvalidArgument("l_threshold above u_threshold")
        self._e.edit_dest(dest, w, u, lo)

    def del_dest(self, dest: int) -> None:
        info = self.dest(dest)
        if info is None or info.service < 0:
            raise NoSuchDest(str(dest))
        self._e.del_dest(dest)

    def dest(self, dest: int) -> DestInfo | None:
        """A dest's counters and settings; None once deleted and unreferenced."""
        t = self._e.dest_info(dest) if isinstance(dest, int) and dest >= 0 else None
        return None if t is None else DestInfo(*t)

    # ------------------------------------------------------------ traffic

    def lookup_or_schedule(self, flow: Flow, now_ms: int) -> int:
        """The dest id for one packet, or -1: no service, not a connection start
        (TCP without SYN), no usable dest, or its dest is gone."""
        return self._e.lookup_or_schedule(int(flow.proto), int(flow.saddr), int(flow.sport),
                                          int(flow.daddr), int(flow.dport), int(flow.flags),
                                          int(now_ms))

    def process(self, flows: np.ndarray, now_ms: int | np.ndarray,
                out: np.ndarray | None = None) -> np.ndarray:
        """Batch API: FLOW_DTYPE flows (in order) at now_ms (one time, or an int64
        array with one per flow) -> int32 dest ids, -1 for none."""
        if flows.dtype != FLOW_DTYPE:
            raise InvalidArgument("flows must be a FLOW_DTYPE array")
        flows = np.ascontiguousarray(flows)
        n = len(flows)
        if out is None:
            out = np.empty(n, dtype=np.int32)
        elif out.dtype != np.int32 or out.shape != (n,) or not out.flags.c_contiguous:
            raise InvalidArgument("out must be a contiguous int32 array of len(flows)")
        if isinstance(now_ms, np.ndarray):
            now = np.ascontiguousarray(now_ms, dtype=np.int64)
            if now.shape != (n,):
                raise InvalidArgument("now_ms array must have one time per flow")
        else:
            now = int(now_ms)
        self._e.process(flows, now, out)
        return out

    def expire(self, now_ms: int) -> None:
        """Advance the clock: every connection and template due by now_ms expires."""
        self._e.expire(int(now_ms))

    @property
    def clock_ms(self) -> int:
        return self._e.clock

    def conn_count(self) -> tuple[int, int]:
        """(connections, persistence templates) alive."""
        return tuple(self._e.conn_count())

    def conn(self, flow: Flow) -> ConnInfo | None:
        t = self._e.conn_info(int(flow.proto), int(flow.saddr), int(flow.sport),
                              int(flow.daddr), int(flow.dport))
        if t is None:
            return None
        dest, state, inactive, expires, controlled = t
        name = TCP_STATE_NAMES[state] if flow.proto == TCP else "UDP"
        return ConnInfo(dest, name, bool(inactive), int(expires), bool(controlled))


def make_flows(n: int) -> np.ndarray:
    """A zeroed FLOW_DTYPE array of n flows."""
    return np.zeros(n, dtype=FLOW_DTYPE)
