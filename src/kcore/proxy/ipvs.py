"""kube-proxy's IPVS mode as pure functions: the virtual servers a node should
have, the minimum changes from what it has, and `ipvsadm -Ln`'s listing.

    want = desired(state, scheduler="rr", node_ips=["192.168.1.10"])
    ops = plan(want, have)                    # have: read from the kernel
    print(format_table(have, header))

* One virtual server per ClusterIP:port, external IP:port and node IP:nodePort
  (protocol tcp/udp/sctp), all with the node's scheduler, masquerade
  forwarding, and persistence (-p) for sessionAffinity ClientIP. A service
  without endpoints keeps its virtual server with no real servers: the
  ClusterIP is local (kube-ipvs0), so a connection is refused.
* One real server per ready endpoint, weight 1 unless the Endpoints object
  says otherwise (servicemap.WEIGHTS_ANNOTATION). Real servers are added in
  (address, port) order, so the kernel's list (newest first) is the reverse.
* plan() changes only what differs: new virtual servers and their real
  servers, a scheduler/flags/persistence edit in place, weight edits, and
  deletions. A TCP/SCTP real server that is gone from the endpoints but still
  has connections is quiesced (weight 0: no new connections, existing ones
  kept) and deleted once it has none -- kube-proxy's graceful termination.
  UDP real servers go at once. Virtual servers not wanted are deleted only
  when `owned` says they are the proxy's (so a node's own IPVS config stays).

Pure and stdlib-only (the test VM imports it with plain Python).
"""
from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from functools import cmp_to_key

from kcore.proxy.servicemap import ProxyState

FWD_MASQ, FWD_LOCAL, FWD_TUNNEL, FWD_ROUTE = 0, 1, 2, 3
FWD_NAMES = {FWD_MASQ: "Masq", FWD_LOCAL: "Local", FWD_TUNNEL: "Tunnel", FWD_ROUTE: "Route"}
SVC_F_PERSISTENT = 0x0001
SVC_F_HASHED = 0x0002  # set by the kernel on every service; not ours to compare
SVC_F_ONEPACKET = 0x0004
SVC_F_SCHED1 = 0x0008
SVC_F_SCHED2 = 0x0010
SVC_F_SCHED3 = 0x0020
SCHEDULERS = ("rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf",
              "mh", "twos")
PROTO_NUM = {"tcp": 6, "udp": 17, "sctp": 132}
PROTO_NAME = {v: k for k, v in PROTO_NUM.items()}
FULL_MASK = "255.255.255.255"
DEFAULT_HEADER = "IP Virtual Server version 1.2.1 (size=4096)"

VSKey = tuple[str, str, int]   # (proto, addr, port)
RSKey = tuple[str, int]        # (addr, port)


@dataclass(frozen=True)
class VirtualServer:
    """`ipvsadm -A -t|-u addr:port -s scheduler [-b flags] [-p timeout [-M netmask]]`."""
    proto: str
    addr: str
    port: int
    scheduler: str = "rr"
    flags: int = 0          # SVC_F_SCHED* (the kernel's PERSISTENT follows timeout)
    timeout: int = 0        # persistence, seconds; 0 = none
    netmask: str = FULL_MASK

    @property
    def key(self) -> VSKey:
        return (self.proto, self.addr, self.port)

    def settings(self) -> tuple:
        return (self.scheduler, self.flags & ~(SVC_F_PERSISTENT | SVC_F_HASHED),
                self.timeout, self.netmask if self.timeout else FULL_MASK)

    def __str__(self) -> str:
        return f"{self.proto.upper()} {self.addr}:{self.port}"


@dataclass(frozen=True)
class RealServer:
    """`ipvsadm -a ... -r addr:port -m -w weight`, with the kernel's counters when read."""
    addr: str
    port: int
    weight: int = 1
    fwd: int = FWD_MASQ
    active: int = 0
    inactive: int = 0

    @property
    def key(self) -> RSKey:
        return (self.addr, self.port)

    @property
    def connections(self) -> int:
        return self.active + self.inactive

    def __str__(self) -> str:
        return f"{self.addr}:{self.port}"


@dataclass
class Entry:
    """A virtual server and its real servers (in the kernel's list order when read)."""
    vs: VirtualServer
    dests: dict[RSKey, RealServer]


Table = dict[VSKey, Entry]


@dataclass(frozen=True)
class Op:
    """One netlink command: add/set/del of a service or of a dest."""
    kind: str  # add_service set_service del_service add_dest set_dest del_dest
    vs: VirtualServer
    rs: RealServer | None = None

    def __str__(self) -> str:
        return f"{self.kind} {self.vs}" + (f" -> {self.rs} w={self.rs.weight}" if self.rs else "")


def desired(state: ProxyState, scheduler: str = "rr", node_ips: Iterable[str] = (),
            flags: int = 0) -> Table:
    """The virtual servers a node should have for `state`."""
    if scheduler not in SCHEDULERS:
        raise ValueError(f"unknown IPVS scheduler {scheduler!r}")
    nodes = list(dict.fromkeys(node_ips))
    out: Table = {}
    for sp in state.services:
        proto = sp.protocol.lower()
        name = sp.port_name_string
        eps = sorted(state.endpoints.get(name, ()),
                     key=lambda e: (ipaddress.IPv4Address(e.ip), e.port))
        dests = {(e.ip, e.port): RealServer(e.ip, e.port, state.weight(name, e)) for e in eps}
        timeout = sp.affinity_seconds
        addrs = [(sp.cluster_ip, sp.port)] + [(ip, sp.port) for ip in sp.external_ips]
        if sp.node_port:
            addrs += [(ip, sp.node_port) for ip in nodes]
        for addr, port in addrs:
            vs = VirtualServer(proto, addr, port, scheduler, flags, timeout)
            if vs.key not in out:
                out[vs.key] = Entry(vs, dict(dests))
    return out


def bound_addresses(want: Table, node_ips: Iterable[str] = ()) -> set[str]:
    """Addresses to put on kube-ipvs0 (ClusterIPs and external IPs, not the node's own)."""
    nodes = set(node_ips)
    return {k[1] for k in want if k[1] not in nodes}


def plan(want: Table, have: Table, owned: Callable[[VirtualServer], bool] = lambda vs: True,
         graceful: bool = True) -> list[Op]:
    """The fewest commands that turn `have` into `want`, in a fixed order:
    wanted virtual servers one by one (added, or edited, then their dests
    added, re-weighted, quiesced or deleted), then the deletion of owned
    virtual servers no longer wanted."""
    ops: list[Op] = []
    for key in sorted(want, key=_vs_order):
        w = want[key]
        h = have.get(key)
        if h is None:
            ops.append(Op("add_service", w.vs))
            ops.extend(Op("add_dest", w.vs, rs) for rs in w.dests.values())
            continue
        if h.vs.settings() != w.vs.settings():
            ops.append(Op("set_service", w.vs))
        for rk, rs in w.dests.items():
            cur = h.dests.get(rk)
            if cur is None:
                ops.append(Op("add_dest", w.vs, rs))
            elif cur.weight != rs.weight or cur.fwd not in (rs.fwd, FWD_LOCAL):
                ops.append(Op("set_dest", w.vs, rs))
        for rk in sorted(set(h.dests) - set(w.dests)):
            cur = h.dests[rk]
            if graceful and key[0] != "udp" and cur.connections > 0:
                if cur.weight != 0:
                    ops.append(Op("set_dest", w.vs, replace(cur, weight=0)))
            else:
                ops.append(Op("del_dest", w.vs, cur))
    for key in sorted(set(have) - set(want), key=_vs_order):
        if owned(have[key].vs):
            ops.append(Op("del_service", have[key].vs))
    return ops


def pending_deletions(want: Table, have: Table) -> int:
    """Real servers kept quiesced until their connections end."""
    return sum(1 for k, h in have.items() if k in want
               for rk in h.dests if rk not in want[k].dests)


def apply_to(table: Table, ops: Iterable[Op]) -> Table:
    """What `table` becomes after `ops` succeed (a cache of the kernel's state).
    New dests go to the head of the list, as the kernel's list_add does."""
    out = {k: Entry(e.vs, dict(e.dests)) for k, e in table.items()}
    for op in ops:
        k = op.vs.key
        if op.kind == "add_service":
            out[k] = Entry(op.vs, {})
        elif op.kind == "set_service" and k in out:
            out[k].vs = op.vs
        elif op.kind == "del_service":
            out.pop(k, None)
        elif k in out and op.rs is not None:
            d = out[k].dests
            if op.kind == "add_dest":
                out[k].dests = {op.rs.key: replace(op.rs, active=0, inactive=0), **d}
            elif op.kind == "set_dest" and op.rs.key in d:
                d[op.rs.key] = replace(d[op.rs.key], weight=op.rs.weight)
            elif op.kind == "del_dest":
                d.pop(op.rs.key, None)
    return out


def _vs_order(key: VSKey) -> tuple:
    proto, addr, port = key
    return (PROTO_NUM.get(proto, 0), int(ipaddress.IPv4Address(addr)), port)


def _rs_order(rs: RealServer) -> tuple:
    return (int(ipaddress.IPv4Address(rs.addr)), rs.port)


def _int32(v: int) -> int:
    v &= 0xFFFFFFFF
    return v - (1 << 32) if v & 0x80000000 else v


def _ipvsadm_cmp(a: tuple, b: tuple) -> int:
    """ipvsadm's sort comparator: fields subtracted, the addresses as unsigned
    host-order integers whose difference lands in an int -- so 192.168.x sorts
    before 10.x (observed in the VM). Reproduced, not fixed."""
    for x, y in zip(a, b):
        r = _int32(x - y)
        if r:
            return r
    return 0


def format_table(table: Table | Mapping[VSKey, Entry], header: str = DEFAULT_HEADER) -> str:
    """The table as `ipvsadm -Ln` prints it: services and real servers sorted
    as ipvsadm sorts them by default (protocol, address, port)."""
    lines = [header,
             "Prot LocalAddress:Port Scheduler Flags",
             "  -> RemoteAddress:Port           Forward Weight ActiveConn InActConn"]
    for key in sorted(table, key=cmp_to_key(lambda x, y: _ipvsadm_cmp(_vs_order(x),
                                                                         _vs_order(y)))):
        e = table[key]
        vs = e.vs
        line = f"{vs.proto.upper()}  {vs.addr}:{vs.port} {vs.scheduler}"
        sched_flags = _sched_flag_names(vs.scheduler, vs.flags)
        if sched_flags:
            line += f" ({sched_flags})"
        if vs.timeout:
            line += f" persistent {vs.timeout}"
            if vs.netmask != FULL_MASK:
                line += f" mask {vs.netmask}"
        if vs.flags & SVC_F_ONEPACKET:
            line += " ops"
        lines.append(line)
        for rs in sorted(e.dests.values(), key=cmp_to_key(
                lambda x, y: _ipvsadm_cmp(_rs_order(x), _rs_order(y)))):
            lines.append(f"  -> {str(rs):<28} {FWD_NAMES.get(rs.fwd, '?'):<7} {rs.weight:<6} "
                         f"{rs.active:<10} {rs.inactive:<10}")
    return "\n".join(lines) + "\n"


def _sched_flag_names(sched: str, flags: int) -> str:
    names = []
    if sched in ("sh", "mh"):
        if flags & SVC_F_SCHED1:
            names.append(f"{sched}-fallback")
        if flags & SVC_F_SCHED2:
            names.append(f"{sched}-port")
    else:
        for bit, n in ((SVC_F_SCHED1, "flag-1"), (SVC_F_SCHED2, "flag-2"),
                       (SVC_F_SCHED3, "flag-3")):
            if flags & bit:
                names.append(n)
    return ",".join(names)
