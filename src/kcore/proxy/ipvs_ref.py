"""Userspace IPVS, pure-Python reference: the kernel's nine schedulers, its
connection table and persistence templates, written from docs/IPVS.md and the
Linux sources (net/netfilter/ipvs, 6.1) read for facts.

This module is the contract. `kcore._native.ipvs.Engine` implements the same
class with the same results (tests/unit/proxy/test_dispatcher_agree.py proves
it); `kcore.proxy.dispatcher.Dispatcher` is the validated public face of both.
Everything is an int: addresses are IPv4 in host order (10.0.0.1 is
0x0A000001), ports host order, time integer milliseconds. No clock inside.

The model, kernel by kernel:

* Services hold their dests newest first (the kernel's list_add at head).
  A dest is usable when weight > 0 and it is not OVERLOADed. OVERLOAD is set
  when a connection (or template) binds and u_threshold != 0 and
  active+inactive >= u_threshold; it is cleared when one unbinds and the total
  drops below l_threshold (or below 3/4 of u_threshold when l_threshold is 0,
  or always when u_threshold is 0), and by an update that raises u_threshold
  or sets it to 0.
* A connection is keyed by (proto, saddr, sport, daddr, dport). It starts
  INACTIVE (the dest's conn_flags) and counts in inactconns; the TCP state
  machine (the kernel's INPUT / OUTPUT / INPUT-ONLY tables) moves it to
  active in SYN_SENT, SYN_RECV, ESTABLISHED and SYNACK. Each packet sets the
  timeout of the new state and re-arms expiry to now + timeout. UDP stays
  inactive with 300 s.
* TCP schedules only on SYN without RST (or any non-RST with sloppy_tcp);
  UDP always. A SYN on an existing connection in TIME_WAIT or CLOSE (not
  controlled by a template) reschedules it (conn_reuse_mode); so does a SYN
  on a connection whose dest has weight 0 when expire_nodest_conn is set.
  The old connection is unbound after the new one is bound, as the kernel's
  expire_now timer fires after the packet. A packet for a connection whose
  dest was deleted is dropped (-1), or with expire_nodest_conn the connection
  is expired and the packet scheduled afresh.
* Persistence (ipvsadm -p): a template keyed (proto, saddr & netmask, 0, vip,
  vport) -- vport 0 for port 21 -- is bound to the first dest the scheduler
  picks; later connections of that client go to the template's dest, even a
  quiesced or overloaded one (unless expire_quiescent_template and weight 0).
  A template whose dest was deleted is invalidated (not matched again) and
  a new one is made. Each new connection re-arms the template to now +
  timeout; a template that expires while it still controls connections is
  re-armed for 60 s, and 60 s becomes its timeout from then on.
* Expiry runs in time order whenever time advances (every call that takes
  `now`): a connection is alive while now < expires. At equal times ordinary
  connections expire before templates. Time never goes back: an earlier
  `now` is taken as the current clock.
* Deleted dests still referenced by connections stay in a trash; adding the
  same addr:port to a service with the same (proto, vip, port) brings it back
  with its counters (the kernel's ip_vs_trash_get_dest). Dest ids are never
  reused.

Limits (documented, not modelled): IPv4 only, TCP and UDP only, no fwmark or
port-0 services, no one-packet scheduling, no secure_tcp state table, no
conntrack (the kernel drops the first SYN of a reused connection when
conntrack owns it; here it is rescheduled at once), persistence timeout not
editable, counts below 2**23 per dest (the kernel's int overhead arithmetic).
"""
from __future__ import annotations

import heapq
from math import gcd

M32 = 0xFFFFFFFF
M64 = 0xFFFFFFFFFFFFFFFF

TCP = 6
UDP = 17

# flow flags: the TCP header bits, plus the direction
F_FIN = 0x01
F_SYN = 0x02
F_RST = 0x04
F_ACK = 0x10
F_REPLY = 0x100  # a packet from the real server back to the client (OUTPUT)

# service flags (include/uapi/linux/ip_vs.h)
SVC_F_PERSISTENT = 0x0001
SVC_F_SCHED1 = 0x0008  # sh-fallback / mh-fallback
SVC_F_SCHED2 = 0x0010  # sh-port / mh-port
SVC_F_SCHED_MASK = SVC_F_SCHED1 | SVC_F_SCHED2 | 0x0020

RR, WRR, LC, WLC, SED, NQ, DH, SH, MH = range(9)
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "sed", "nq", "dh", "sh", "mh")

# TCP states (IP_VS_TCP_S_*)
S_NONE, S_ESTABLISHED, S_SYN_SENT, S_SYN_RECV, S_FIN_WAIT, S_TIME_WAIT, S_CLOSE, \
    S_CLOSE_WAIT, S_LAST_ACK, S_LISTEN, S_SYNACK = range(11)
TCP_STATE_NAMES = ("NONE", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT", "TIME_WAIT",
                   "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "SYNACK")
TCP_TIMEOUT_MS = (2_000, 900_000, 120_000, 60_000, 120_000, 120_000, 10_000, 60_000,
                  30_000, 120_000, 120_000)
TCP_ACTIVE = (False, True, True, True, False, False, False, False, False, False, True)
UDP_TIMEOUT_MS = 300_000
TEMPLATE_LATER_MS = 60_000  # a template that still controls connections lives on this long

_NO, _ES, _SS, _SR, _FW, _TW, _CL, _CW, _LA, _LI, _SA = range(11)
# rows: (direction offset 0 INPUT / 4 OUTPUT / 8 INPUT-ONLY) + (0 syn, 1 fin, 2 ack, 3 rst);
# columns: the current state
TCP_NEXT = (
    # INPUT
    (_SR, _ES, _ES, _SR, _SR, _SR, _SR, _SR, _SR, _SR, _SR),
    (_CL, _CW, _SS, _TW, _TW, _TW, _CL, _CW, _LA, _LI, _TW),
    (_ES, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _CL, _LI, _ES),
    (_CL, _CL, _CL, _SR, _CL, _CL, _CL, _CL, _LA, _LI, _SR),
    # OUTPUT
    (_SS, _ES, _SS, _SR, _SS, _SS, _SS, _SS, _SS, _LI, _SR),
    (_TW, _FW, _SS, _TW, _FW, _TW, _CL, _TW, _LA, _LI, _TW),
    (_ES, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _LA, _ES, _ES),
    (_CL, _CL, _SS, _CL, _CL, _TW, _CL, _CL, _CL, _CL, _CL),
    # INPUT-ONLY (the dest does not masquerade: replies bypass the director)
    (_SR, _ES, _ES, _SR, _SR, _SR, _SR, _SR, _SR, _SR, _SR),
    (_CL, _FW, _SS, _TW, _FW, _TW, _CL, _CW, _LA, _LI, _TW),
    (_ES, _ES, _SS, _ES, _FW, _TW, _CL, _CW, _CL, _LI, _ES),
    (_CL, _CL, _CL, _SR, _CL, _CL, _CL, _CL, _LA, _LI, _CL),
)

SH_TAB_BITS = 8
SH_TAB_SIZE = 1 << SH_TAB_BITS
DH_TAB_BITS = 8
DH_TAB_SIZE = 1 << DH_TAB_BITS
MH_TAB_SIZE = 4093  # primes[CONFIG_IP_VS_MH_TAB_INDEX(12) - 8]
MH_TAB_BITS = 6  # CONFIG_IP_VS_MH_TAB_INDEX / 2
MH_KEY1 = (2654435761, 2654435761)
MH_KEY2 = (2654446892, 2654446892)
FTP_PORT = 21


# ---------------------------------------------------------------- hashes

def hash_32(val: int, bits: int) -> int:
    """Linux hash_32 (generic): the top `bits` of val * GOLDEN_RATIO_32 (mod 2**32)."""
    return ((val * 0x61C88647) & M32) >> (32 - bits)


def _rotl(x: int, b: int) -> int:
    return ((x << b) | (x >> (64 - b))) & M64


def _sipround(v0: int, v1: int, v2: int, v3: int) -> tuple[int, int, int, int]:
    v0 = (v0 + v1) & M64
    v1 = _rotl(v1, 13) ^ v0
    v0 = _rotl(v0, 32)
    v2 = (v2 + v3) & M64
    v3 = _rotl(v3, 16) ^ v2
    v0 = (v0 + v3) & M64
    v3 = _rotl(v3, 21) ^ v0
    v2 = (v2 + v1) & M64
    v1 = _rotl(v1, 17) ^ v2
    v2 = _rotl(v2, 32)
    return v0, v1, v2, v3


def siphash(data: bytes, k0: int, k1: int, c_rounds: int = 2, d_rounds: int = 4) -> int:
    """SipHash-c-d of data under the 128-bit key (k0, k1), as a 64-bit int."""
    v0 = 0x736F6D6570736575 ^ k0
    v1 = 0x646F72616E646F6D ^ k1
    v2 = 0x6C7967656E657261 ^ k0
    v3 = 0x7465646279746573 ^ k1
    n = len(data)
    end = n - n % 8
    for i in range(0, end, 8):
        m = int.from_bytes(data[i:i + 8], "little")
        v3 ^= m
        for _ in range(c_rounds):
            v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
        v0 ^= m
    b = ((n & 0xFF) << 56) | int.from_bytes(data[end:], "little")
    v3 ^= b
    for _ in range(c_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    v0 ^= b
    v2 ^= 0xFF
    for _ in range(d_rounds):
        v0, v1, v2, v3 = _sipround(v0, v1, v2, v3)
    return v0 ^ v1 ^ v2 ^ v3


def hsiphash_u32(v: int, key: tuple[int, int]) -> int:
    """Linux hsiphash(&v, 4, key) on a 64-bit kernel: SipHash-1-3 with the
    64-bit key pair over the four little-endian bytes of v, truncated to u32."""
    return siphash((v & M32).to_bytes(4, "little"), key[0], key[1], 1, 3) & M32


def mh_hashkey(addr: int, port: int, key: tuple[int, int], offset: int) -> int:
    """ip_vs_mh_hashkey: hsiphash of the u32 offset + port + addr."""
    return hsiphash_u32((offset + port + addr) & M32, key)


# ---------------------------------------------------------------- state

class _Dest:
    __slots__ = (
        "active",
        "addr",
        "available",
        "id",
        "inactive",
        "l_threshold",
        "last_weight",
        "linked",
        "noout",
        "overload",
        "persist",
        "port",
        "refcnt",
        "svc",
        "u_threshold",
        "vkey",
        "weight",
    )

    def __init__(self, id: int, svc: _Service, addr: int, port: int):
        self.id = id
        self.svc = svc
        self.vkey = (svc.proto, svc.vip, svc.port, addr, port)  # trash match
        self.addr = addr
        self.port = port
        self.weight = self.last_weight = 0
        self.u_threshold = self.l_threshold = 0
        self.active = self.inactive = self.persist = 0
        self.refcnt = 0
        self.available = self.overload = self.noout = self.linked = False

    def usable(self) -> bool:
        return self.weight > 0 and not self.overload


class _Service:
    __slots__ = (
        "dests",
        "flags",
        "id",
        "netmask",
        "port",
        "proto",
        "rr_pos",
        "sched",
        "table",
        "timeout_ms",
        "vip",
        "wrr_cl",
        "wrr_cw",
        "wrr_di",
        "wrr_mw",
    )

    def __init__(self, id: int, proto: int, vip: int, port: int, sched: int, flags: int,
                 timeout_ms: int, netmask: int):
        self.id = id
        self.proto = proto
        self.vip = vip
        self.port = port
        self.sched = sched
        self.flags = flags
        self.timeout_ms = timeout_ms
        self.netmask = netmask
        self.dests: list[_Dest] = []  # newest first
        self.rr_pos = -1  # -1 is the list head
        self.wrr_cl = -1
        self.wrr_cw = self.wrr_mw = 0
        self.wrr_di = 1
        self.table: list[_Dest | None] = []


class _Conn:
    __slots__ = (
        "control",
        "dest",
        "expires",
        "inactive",
        "invalid",
        "key",
        "live",
        "n_control",
        "noout",
        "rearmed",
        "sched",
        "state",
        "template",
        "timeout",
    )

    def __init__(self, key: tuple, dest: _Dest, template: bool):
        self.key = key
        self.dest = dest
        self.state = S_NONE
        self.inactive = True
        self.noout = dest.noout
        self.template = template
        self.invalid = False
        self.control: _Conn | None = None
        self.n_control = 0
        self.timeout = 0
        self.expires = 0
        self.sched = None  # time of the heap node that stands for this entry
        self.live = True
        self.rearmed = False


class Engine:
    """The dispatcher core: services, dests, connections, templates, expiry.

    Inputs are trusted (kcore.proxy.dispatcher validates them); ids are plain
    ints handed out in order and never reused.
    """

    def __init__(self, conn_reuse_mode: int = 1, expire_nodest_conn: bool = False,
                 expire_quiescent_template: bool = False, sloppy_tcp: bool = False,
                 capacity: int = 1024, seed: int = 0):
        self.conn_reuse_mode = conn_reuse_mode
        self.expire_nodest_conn = bool(expire_nodest_conn)
        self.expire_quiescent_template = bool(expire_quiescent_template)
        self.sloppy_tcp = bool(sloppy_tcp)
        self.clock = 0
        self._services: dict[int, _Service] = {}
        self._svc_by_key: dict[tuple[int, int, int], _Service] = {}
        self._dests: dict[int, _Dest] = {}  # linked and trashed
        self._trash: dict[tuple, _Dest] = {}
        self._conns: dict[tuple, _Conn] = {}
        self._templates: dict[tuple, _Conn] = {}  # valid templates only
        self._n_templates = 0  # valid and invalidated, alive
        self._heap: list[tuple[int, int, _Conn]] = []
        self._seq = 0
        self._next_svc = 0
        self._next_dest = 0

    # ------------------------------------------------------------ services

    def find_service(self, proto: int, vip: int, port: int) -> int:
        s = self._svc_by_key.get((proto, vip, port))
        return -1 if s is None else s.id

    def add_service(self, proto: int, vip: int, port: int, sched: int, flags: int,
                    timeout_ms: int, netmask: int) -> int:
        s = _Service(self._next_svc, proto, vip, port, sched, flags, timeout_ms, netmask)
        self._next_svc += 1
        self._services[s.id] = s
        self._svc_by_key[(proto, vip, port)] = s
        self._sched_init(s)
        return s.id

    def edit_service(self, sid: int, sched: int, flags: int) -> None:
        s = self._services[sid]
        s.flags = (s.flags & SVC_F_PERSISTENT) | (flags & ~SVC_F_PERSISTENT)
        if sched != s.sched:
            s.sched = sched
            self._sched_init(s)

    def del_service(self, sid: int) -> None:
        s = self._services.pop(sid)
        del self._svc_by_key[(s.proto, s.vip, s.port)]
        for d in s.dests:
            self._unlink(d)
        s.dests = []
        s.table = []

    def service_dests(self, sid: int) -> list[int]:
        return [d.id for d in self._services[sid].dests]

    def service_sched(self, sid: int) -> tuple[int, int]:
        """(scheduler, flags without the persistent bit)."""
        s = self._services[sid]
        return s.sched, s.flags & ~SVC_F_PERSISTENT

    def has_service(self, sid: int) -> bool:
        return sid in self._services

    # ------------------------------------------------------------ dests

    def find_dest(self, sid: int, addr: int, port: int) -> int:
        for d in self._services[sid].dests:
            if d.addr == addr and d.port == port:
                return d.id
        return -1

    def add_dest(self, sid: int, addr: int, port: int, weight: int, u_threshold: int,
                 l_threshold: int, noout: bool) -> int:
        s = self._services[sid]
        vkey = (s.proto, s.vip, s.port, addr, port)
        d = self._trash.pop(vkey, None)
        if d is None:
            d = _Dest(self._next_dest, s, addr, port)
            self._next_dest += 1
            self._dests[d.id] = d
        d.svc = s
        self._update(d, weight, u_threshold, l_threshold, noout, add=True)
        s.dests.insert(0, d)
        d.linked = True
        if s.sched == RR:
            if s.rr_pos >= 0:
                s.rr_pos += 1
        elif s.sched in (WRR, DH, SH, MH):
            self._sched_changed(s)
        return d.id

    def edit_dest(self, did: int, weight: int, u_threshold: int, l_threshold: int) -> None:
        d = self._dests[did]
        self._update(d, weight, u_threshold, l_threshold, d.noout, add=False)
        if d.svc.sched in (WRR, SH, MH):  # dh has no upd_dest hook
            self._sched_changed(d.svc)

    def del_dest(self, did: int) -> None:
        d = self._dests[did]
        s = d.svc
        pos = s.dests.index(d)
        del s.dests[pos]
        self._unlink(d)
        if s.sched == RR:
            if pos < s.rr_pos:
                s.rr_pos -= 1
            elif pos == s.rr_pos:
                s.rr_pos = pos - 1
        elif s.sched in (WRR, DH, SH, MH):
            self._sched_changed(s)

    def dest_info(self, did: int) -> tuple | None:
        """(svc, addr, port, weight, last_weight, u_threshold, l_threshold, active,
        inactive, persist, overloaded, available) or None once freed."""
        d = self._dests.get(did)
        if d is None:
            return None
        return (d.svc.id if d.linked else -1, d.addr, d.port, d.weight, d.last_weight,
                d.u_threshold, d.l_threshold, d.active, d.inactive, d.persist, d.overload,
                d.available)

    def _update(self, d: _Dest, weight: int, u: int, lo: int, noout: bool, add: bool) -> None:
        if add or weight != 0:
            d.last_weight = weight
        d.weight = weight
        d.noout = bool(noout)
        d.available = True
        if u == 0 or u > d.u_threshold:
            d.overload = False
        d.u_threshold = u
        d.l_threshold = lo

    def _unlink(self, d: _Dest) -> None:
        d.available = False
        d.linked = False
        if d.refcnt == 0:
            del self._dests[d.id]
        else:
            self._trash[d.vkey] = d

    def _put_dest(self, d: _Dest) -> None:
        d.refcnt -= 1
        if d.refcnt == 0 and not d.linked:
            del self._dests[d.id]
            if self._trash.get(d.vkey) is d:
                del self._trash[d.vkey]

    # ------------------------------------------------------------ schedulers

    def _sched_init(self, s: _Service) -> None:
        s.rr_pos = -1
        s.wrr_cl = -1
        s.table = []
        if s.sched == WRR:
            s.wrr_di = self._wrr_gcd(s)
            s.wrr_mw = max((d.weight for d in s.dests), default=0) - (s.wrr_di - 1)
            s.wrr_cw = s.wrr_mw
        elif s.sched in (DH, SH, MH):
            self._sched_changed(s)

    def _sched_changed(self, s: _Service) -> None:
        if s.sched == WRR:
            s.wrr_cl = -1
            s.wrr_di = self._wrr_gcd(s)
            s.wrr_mw = max(max((d.weight for d in s.dests), default=0), 0) - (s.wrr_di - 1)
            if s.wrr_cw > s.wrr_mw or s.wrr_cw == 0:
                s.wrr_cw = s.wrr_mw
            elif s.wrr_di > 1:
                s.wrr_cw = (s.wrr_cw // s.wrr_di) * s.wrr_di + 1
        elif s.sched == DH:
            n = len(s.dests)
            s.table = [s.dests[i % n] for i in range(DH_TAB_SIZE)] if n else [None] * DH_TAB_SIZE
        elif s.sched == SH:
            s.table = self._sh_table(s)
        elif s.sched == MH:
            s.table = self._mh_table(s)

    @staticmethod
    def _wrr_gcd(s: _Service) -> int:
        g = 0
        for d in s.dests:
            if d.weight > 0:
                g = gcd(d.weight, g) if g > 0 else d.weight
        return g or 1

    @staticmethod
    def _sh_table(s: _Service) -> list:
        ds = s.dests
        if not ds:
            return [None] * SH_TAB_SIZE
        table = []
        p = count = 0
        for _ in range(SH_TAB_SIZE):
            d = ds[p]
            table.append(d)
            count += 1
            if count >= d.weight:  # a weight-0 dest still takes one bucket
                p = (p + 1) % len(ds)
                count = 0
        return table

    @staticmethod
    def _mh_table(s: _Service) -> list:
        ds = s.dests
        g = 0
        for d in ds:
            if d.last_weight > 0:
                g = gcd(d.last_weight, g) if g > 0 else d.last_weight
        if g < 1:
            return [None] * MH_TAB_SIZE
        mw = max(d.last_weight for d in ds) // g
        rshift = max(0, mw.bit_length() - MH_TAB_BITS)
        perm, skip, turns = [], [], []
        for d in ds:
            perm.append(mh_hashkey(d.addr, d.port, MH_KEY1, 0) % MH_TAB_SIZE)
            skip.append(mh_hashkey(d.addr, d.port, MH_KEY2, 0) % (MH_TAB_SIZE - 1) + 1)
            lw = d.last_weight
            turns.append(((lw // g) >> rshift) or int(lw != 0))
        table: list[_Dest | None] = [None] * MH_TAB_SIZE
        taken = bytearray(MH_TAB_SIZE)
        n = 0
        while True:
            for j, d in enumerate(ds):
                for _ in range(turns[j]):
                    c = perm[j]
                    while taken[c]:
                        c += skip[j]
                        if c >= MH_TAB_SIZE:
                            c -= MH_TAB_SIZE
                    perm[j] = c
                    taken[c] = 1
                    table[c] = d
                    n += 1
                    if n == MH_TAB_SIZE:
                        return table

    def _schedule(self, s: _Service, saddr: int, sport: int, daddr: int) -> _Dest | None:
        k = s.sched
        ds = s.dests
        if k == RR:
            n = len(ds)
            c = s.rr_pos
            order = list(range(c + 1, n)) + list(range(c + 1)) if c >= 0 else range(n)
            for p in order:
                d = ds[p]
                if not d.overload and d.weight > 0:
                    s.rr_pos = p
                    return d
            return None
        if k == WRR:
            return self._wrr(s)
        if k == LC:
            least, loh = None, 0
            for d in ds:
                if d.overload or d.weight == 0:
                    continue
                doh = (d.active << 8) + d.inactive
                if least is None or doh < loh:
                    least, loh = d, doh
            return least
        if k in (WLC, SED):
            def oh(d: _Dest) -> int:
                return (d.active << 8) + d.inactive if k == WLC else d.active + 1
            for i, d in enumerate(ds):  # noqa: B007 (i is used after the loop)
                if not d.overload and d.weight > 0:
                    least, loh = d, oh(d)
                    break
            else:
                return None
            for d in ds[i + 1:]:
                if d.overload:
                    continue
                doh = oh(d)
                if loh * d.weight > doh * least.weight:
                    least, loh = d, doh
            return least
        if k == NQ:
            least, loh = None, 0
            for d in ds:
                if d.overload or d.weight == 0:
                    continue
                doh = d.active + 1
                if d.active == 0:
                    return d
                if least is None or loh * d.weight > doh * least.weight:
                    least, loh = d, doh
            return least
        if k == DH:
            d = s.table[hash_32(daddr, DH_TAB_BITS)]
            if d is None or not d.available or d.weight <= 0 or d.overload:
                return None
            return d
        port = sport if s.flags & SVC_F_SCHED2 else 0
        if k == SH:
            def sh_key(off: int) -> int:
                return (off + hash_32((port + saddr) & M32, SH_TAB_BITS)) & (SH_TAB_SIZE - 1)
            ih = sh_key(0)
            d = s.table[ih]
            if d is None or d.usable():
                return d
            if not s.flags & SVC_F_SCHED1:
                return None
            for off in range(SH_TAB_SIZE):
                d = s.table[sh_key((off + ih) % SH_TAB_SIZE)]
                if d is None:
                    return None
                if d.usable():
                    return d
            return None
        # MH
        ih = mh_hashkey(saddr, port, MH_KEY1, 0) % MH_TAB_SIZE
        d = s.table[ih]
        if d is None or d.usable():
            return d
        if not s.flags & SVC_F_SCHED1 or not any(x.usable() for x in ds):
            return None  # (the walk below finds nothing when no dest is usable)
        for off in range(MH_TAB_SIZE):
            h = mh_hashkey(saddr, port, MH_KEY1, (off + ih) % MH_TAB_SIZE) % MH_TAB_SIZE
            d = s.table[h]
            if d is None:
                return None
            if d.usable():
                return d
        return None

    @staticmethod
    def _wrr(s: _Service) -> _Dest | None:
        ds = s.dests
        n = len(ds)
        pos = s.wrr_cl
        if s.wrr_mw == 0:
            return None
        last = pos
        stop = None
        last_pass = restarted = False
        while True:
            for p in range(pos + 1, n):
                d = ds[p]
                if not d.overload and d.weight >= s.wrr_cw:
                    s.wrr_cl = p
                    return d
                if p == stop:
                    s.wrr_cl = p
                    return None
            pos = -1  # back at the head
            s.wrr_cw -= s.wrr_di
            if s.wrr_cw <= 0:
                s.wrr_cw = s.wrr_mw
                if last_pass or last == -1:
                    s.wrr_cl = -1
                    return None
                restarted = True
            last_pass = s.wrr_cw <= s.wrr_di
            if last_pass and restarted and last != -1:
                stop = last

    # ------------------------------------------------------------ connections

    def lookup_or_schedule(self, proto: int, saddr: int, sport: int, daddr: int, dport: int,
                           flags: int, now: int) -> int:
        """One packet: the dest id it goes to, or -1 (no service, not schedulable,
        no usable dest, or dropped because its dest is gone)."""
        self._advance(now)
        now = self.clock
        key = (proto, saddr, sport, daddr, dport)
        cp = self._conns.get(key)
        if flags & F_REPLY:
            if cp is None:
                return -1
            self._set_state(cp, flags, output=True)
            self._arm(cp, now + cp.timeout)
            return cp.dest.id
        old = None
        if cp is not None and proto == TCP and flags & F_SYN and self._resched_on_syn(cp):
            old, cp = cp, None
        if cp is not None and not cp.dest.available:
            if not self.expire_nodest_conn:
                return -1
            old, cp = cp, None
        if cp is None:
            cp = self._try_schedule(key, proto, saddr, sport, daddr, dport, flags, now)
            if old is not None:
                self._expire_conn(old)
            if cp is None:
                return -1
            self._conns[key] = cp
        self._set_state(cp, flags, output=False)
        self._arm(cp, now + cp.timeout)
        return cp.dest.id

    def _resched_on_syn(self, cp: _Conn) -> bool:
        """A SYN on an existing connection starts a new one: its dest is quiesced
        (with expire_nodest_conn), or it is closing and not persistent (conn_reuse_mode)."""
        if self.expire_nodest_conn and cp.dest.weight == 0:
            return True
        if not self.conn_reuse_mode or cp.control is not None:
            return False
        return (cp.state in (S_TIME_WAIT, S_CLOSE)
                or bool(self.conn_reuse_mode & 2 and cp.state == S_FIN_WAIT and cp.noout))

    def process(self, flows, now, out) -> None:
        """Batch form: flows is a FLOW_DTYPE array, now a scalar or an int64 array."""
        scalar = not hasattr(now, "__len__")
        for i in range(len(flows)):
            f = flows[i]
            out[i] = self.lookup_or_schedule(int(f["proto"]), int(f["saddr"]), int(f["sport"]),
                                             int(f["daddr"]), int(f["dport"]), int(f["flags"]),
                                             int(now) if scalar else int(now[i]))

    def expire(self, now: int) -> None:
        self._advance(now)

    def conn_count(self) -> tuple[int, int]:
        """(connections, templates) alive."""
        return len(self._conns), self._n_templates

    def conn_info(self, proto: int, saddr: int, sport: int, daddr: int,
                  dport: int) -> tuple | None:
        """(dest, state, inactive, expires, controlled) of one connection."""
        cp = self._conns.get((proto, saddr, sport, daddr, dport))
        if cp is None:
            return None
        return (cp.dest.id, cp.state, cp.inactive, cp.expires, cp.control is not None)

    def _try_schedule(self, key: tuple, proto: int, saddr: int, sport: int, daddr: int,
                      dport: int, flags: int, now: int) -> _Conn | None:
        s = self._svc_by_key.get((proto, daddr, dport))
        if s is None:
            return None
        if proto == TCP and (flags & F_RST or not (self.sloppy_tcp or flags & F_SYN)):
            return None
        if not s.flags & SVC_F_PERSISTENT:
            d = self._schedule(s, saddr, sport, daddr)
            if d is None:
                return None
            cp = _Conn(key, d, template=False)
            self._bind(cp)
            return cp
        tkey = (proto, saddr & s.netmask, daddr, 0 if s.port == FTP_PORT else dport)
        ct = self._templates.get(tkey)
        if ct is not None and (not ct.dest.available or (self.expire_quiescent_template
                                                         and ct.dest.weight == 0)):
            ct.invalid = True  # stays until it expires; never matched again
            del self._templates[tkey]
            ct = None
        if ct is None:
            d = self._schedule(s, saddr, sport, daddr)
            if d is None:
                return None
            ct = _Conn(tkey, d, template=True)
            ct.timeout = s.timeout_ms
            self._bind(ct)
            self._templates[tkey] = ct
            self._n_templates += 1
        cp = _Conn(key, ct.dest, template=False)
        self._bind(cp)
        cp.control = ct
        ct.n_control += 1
        self._arm(ct, now + ct.timeout)
        return cp

    def _bind(self, cp: _Conn) -> None:
        d = cp.dest
        d.refcnt += 1
        if cp.template:
            d.persist += 1
        else:
            d.inactive += 1
        if d.u_threshold and d.active + d.inactive >= d.u_threshold:
            d.overload = True

    def _unbind(self, cp: _Conn) -> None:
        d = cp.dest
        if cp.template:
            d.persist -= 1
        elif cp.inactive:
            d.inactive -= 1
        else:
            d.active -= 1
        total = d.active + d.inactive
        if d.l_threshold:
            if total < d.l_threshold:
                d.overload = False
        elif d.u_threshold:
            if total * 4 < d.u_threshold * 3:
                d.overload = False
        else:
            d.overload = False
        self._put_dest(d)

    def _set_state(self, cp: _Conn, flags: int, output: bool) -> None:
        if cp.key[0] != TCP:
            cp.timeout = UDP_TIMEOUT_MS
            return
        off = 4 if output else 0
        if cp.noout:
            if output:
                cp.noout = False
            else:
                off = 8
        if flags & F_RST:
            new = TCP_NEXT[off + 3][cp.state]
        elif flags & F_SYN:
            new = TCP_NEXT[off][cp.state]
        elif flags & F_FIN:
            new = TCP_NEXT[off + 1][cp.state]
        elif flags & F_ACK:
            new = TCP_NEXT[off + 2][cp.state]
        else:
            new = S_CLOSE
        if new != cp.state:
            d = cp.dest
            if not cp.inactive and not TCP_ACTIVE[new]:
                d.active -= 1
                d.inactive += 1
                cp.inactive = True
            elif cp.inactive and TCP_ACTIVE[new]:
                d.active += 1
                d.inactive -= 1
                cp.inactive = False
        cp.state = new
        cp.timeout = TCP_TIMEOUT_MS[new]

    # ------------------------------------------------------------ expiry

    def _arm(self, cp: _Conn, expires: int) -> None:
        cp.expires = expires
        if cp.sched is None or expires < cp.sched:
            self._push(cp, expires)

    def _push(self, cp: _Conn, t: int) -> None:
        cp.sched = t
        self._seq += 1
        heapq.heappush(self._heap, (t * 2 + cp.template, self._seq, cp))

    def _advance(self, now: int) -> None:
        self.clock = max(self.clock, now)
        now = self.clock
        heap = self._heap
        while heap and heap[0][0] >> 1 <= now:
            k2, _, cp = heapq.heappop(heap)
            t = k2 >> 1
            if not cp.live or cp.sched != t:
                continue  # stale node
            if cp.expires > t:
                self._push(cp, cp.expires)
                continue
            if cp.template and cp.n_control > 0:
                cp.timeout = TEMPLATE_LATER_MS
                cp.rearmed = True
                cp.expires = t + TEMPLATE_LATER_MS
                self._push(cp, cp.expires)
                continue
            self._expire_conn(cp)

    def _expire_conn(self, cp: _Conn) -> None:
        cp.live = False
        if cp.template:
            self._n_templates -= 1
            if self._templates.get(cp.key) is cp:
                del self._templates[cp.key]
        else:
            if cp.control is not None:
                cp.control.n_control -= 1
            if self._conns.get(cp.key) is cp:
                del self._conns[cp.key]
        self._unbind(cp)
