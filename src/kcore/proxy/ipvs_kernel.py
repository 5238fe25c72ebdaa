"""The kernel's IPVS table over generic netlink: read it, change it.

    k = KernelIPVS()          # IPVSUnavailable when the node has no ip_vs
    have = k.read()           # ipvs.Table, dests in the kernel's list order, with counters
    failed = k.apply(ops)     # [(op, errno)] of the commands the kernel refused
    print(k.header())         # "IP Virtual Server version 1.2.1 (size=4096)"

Detection and the family id come from pyroute2's `IPVS()`, which raises
NetlinkError code 2 (ENOENT) in its constructor when the kernel has no
`IPVS` generic-netlink family -- that is the proxy's cue to fall back to
iptables mode. Commands and dumps then go through kcore.proxy.netlink in
batches (see there for the measured reason); `PyrouteIPVS` does the same
through pyroute2's API alone, one request at a time, and is the reference
the VM tests compare against.

Field facts (docs IPVS.md): masquerade is fwd_method 0 (pyroute2's default
is 3, Route); a dest at a local address reads back as 1 (Local); pyroute2's
"update" command deletes, "set" edits; the dump lists dests newest first.
"""
from __future__ import annotations

import asyncio
import socket
import struct
from collections.abc import Iterable

from kcore.proxy import netlink as nl
from kcore.proxy.ipvs import (
    FULL_MASK,
    PROTO_NAME,
    PROTO_NUM,
    SVC_F_PERSISTENT,
    Entry,
    Op,
    RealServer,
    Table,
    VirtualServer,
)

GENL_NAME = "IPVS"
# commands (include/uapi/linux/ip_vs.h)
CMD_NEW_SERVICE, CMD_SET_SERVICE, CMD_DEL_SERVICE, CMD_GET_SERVICE = 1, 2, 3, 4
CMD_NEW_DEST, CMD_SET_DEST, CMD_DEL_DEST, CMD_GET_DEST = 5, 6, 7, 8
CMD_GET_INFO = 15
CMD_ATTR_SERVICE, CMD_ATTR_DEST = 1, 2
SVC_AF, SVC_PROTOCOL, SVC_ADDR, SVC_PORT, SVC_FWMARK = 1, 2, 3, 4, 5
SVC_SCHED_NAME, SVC_FLAGS, SVC_TIMEOUT, SVC_NETMASK = 6, 7, 8, 9
DEST_ADDR, DEST_PORT, DEST_FWD_METHOD, DEST_WEIGHT = 1, 2, 3, 4
DEST_U_THRESH, DEST_L_THRESH, DEST_ACTIVE_CONNS, DEST_INACT_CONNS = 5, 6, 7, 8
DEST_ADDR_FAMILY = 11
INFO_VERSION, INFO_CONN_TAB_SIZE = 1, 2
_CMDS = {"add_service": CMD_NEW_SERVICE, "set_service": CMD_SET_SERVICE,
         "del_service": CMD_DEL_SERVICE, "add_dest": CMD_NEW_DEST, "set_dest": CMD_SET_DEST,
         "del_dest": CMD_DEL_DEST}


class IPVSUnavailable(RuntimeError):
    """This node cannot do IPVS (no ip_vs netlink family, or no pyroute2)."""


def _open(loop):
    """pyroute2's IPVS socket on `loop`, or IPVSUnavailable with the reason."""
    try:
        from pyroute2 import IPVS
        from pyroute2.netlink.exceptions import NetlinkError
    except ImportError as e:  # pragma: no cover - pyroute2 is a dependency
        raise IPVSUnavailable(f"pyroute2 is not installed ({e})") from None
    try:
        return IPVS(use_event_loop=loop)
    except NetlinkError as e:
        if e.code == 2:
            raise IPVSUnavailable("the kernel has no IPVS generic netlink family "
                                  "(module ip_vs not available)") from None
        raise IPVSUnavailable(f"IPVS netlink: {e}") from None
    except OSError as e:
        raise IPVSUnavailable(f"IPVS netlink: {e}") from None


def probe() -> int:
    """The IPVS generic-netlink family id, or IPVSUnavailable. Callable from
    inside a running event loop too (it then probes on another thread)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return _probe()
    import concurrent.futures
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(_probe).result()


def _probe() -> int:
    loop = asyncio.SelectorEventLoop()
    try:
        v = _open(loop)
        try:
            return int(v.prid)
        finally:
            v.close()
    finally:
        loop.close()


def available() -> tuple[bool, str]:
    try:
        probe()
        return True, ""
    except IPVSUnavailable as e:
        return False, str(e)


# -- message encoding --------------------------------------------------------------------------
def _svc_key(vs: VirtualServer) -> list[bytes]:
    return [nl.u16(SVC_AF, socket.AF_INET), nl.u16(SVC_PROTOCOL, PROTO_NUM[vs.proto]),
            nl.attr(SVC_ADDR, socket.inet_aton(vs.addr)), nl.be16(SVC_PORT, vs.port)]


def _svc_full(vs: VirtualServer) -> list[bytes]:
    flags = (vs.flags & ~SVC_F_PERSISTENT) | (SVC_F_PERSISTENT if vs.timeout else 0)
    mask = vs.netmask if vs.timeout else FULL_MASK
    return _svc_key(vs) + [nl.asciiz(SVC_SCHED_NAME, vs.scheduler),
                           nl.attr(SVC_FLAGS, struct.pack("=II", flags, 0xFFFFFFFF)),
                           nl.u32(SVC_TIMEOUT, vs.timeout),
                           nl.attr(SVC_NETMASK, socket.inet_aton(mask))]


def _dest(rs: RealServer, full: bool) -> list[bytes]:
    out = [nl.attr(DEST_ADDR, socket.inet_aton(rs.addr)), nl.be16(DEST_PORT, rs.port),
           nl.u16(DEST_ADDR_FAMILY, socket.AF_INET)]
    if full:
        out += [nl.u32(DEST_FWD_METHOD, rs.fwd if rs.fwd != 1 else 0),
                nl.u32(DEST_WEIGHT, rs.weight), nl.u32(DEST_U_THRESH, 0),
                nl.u32(DEST_L_THRESH, 0)]
    return out


def encode(op: Op) -> bytes:
    """The generic-netlink body (genlmsghdr + attributes) of one command."""
    cmd = _CMDS[op.kind]
    head = struct.pack("=BBH", cmd, 1, 0)
    if op.kind in ("add_service", "set_service"):
        return head + nl.nested(CMD_ATTR_SERVICE, *_svc_full(op.vs))
    svc = nl.nested(CMD_ATTR_SERVICE, *_svc_key(op.vs))
    if op.kind == "del_service":
        return head + svc
    assert op.rs is not None
    return head + svc + nl.nested(CMD_ATTR_DEST, *_dest(op.rs, op.kind != "del_dest"))


def _parse_service(a: dict[int, bytes]) -> VirtualServer | None:
    if nl.get_u16(a.get(SVC_AF, b"\0\0")) != socket.AF_INET or SVC_FWMARK in a and \
            nl.get_u32(a[SVC_FWMARK]):
        return None
    proto = PROTO_NAME.get(nl.get_u16(a[SVC_PROTOCOL]))
    if proto is None:
        return None
    flags = struct.unpack_from("=I", a[SVC_FLAGS])[0] if SVC_FLAGS in a else 0
    timeout = nl.get_u32(a[SVC_TIMEOUT]) if SVC_TIMEOUT in a else 0
    if not flags & SVC_F_PERSISTENT:
        timeout = 0
    mask = socket.inet_ntoa(a[SVC_NETMASK][:4]) if SVC_NETMASK in a else FULL_MASK
    return VirtualServer(proto, socket.inet_ntoa(a[SVC_ADDR][:4]), nl.get_be16(a[SVC_PORT]),
                         nl.get_str(a.get(SVC_SCHED_NAME, b"")), flags & ~0x3, timeout,
                         mask if timeout else FULL_MASK)


def _parse_dest(a: dict[int, bytes]) -> RealServer:
    return RealServer(socket.inet_ntoa(a[DEST_ADDR][:4]), nl.get_be16(a[DEST_PORT]),
                      nl.get_u32(a[DEST_WEIGHT]), nl.get_u32(a[DEST_FWD_METHOD]) & 7,
                      nl.get_u32(a.get(DEST_ACTIVE_CONNS, b"\0" * 4)),
                      nl.get_u32(a.get(DEST_INACT_CONNS, b"\0" * 4)))


class KernelIPVS:
    """The node's IPVS table (this network namespace's), read and changed in batches."""

    def __init__(self):
        self.family = probe()
        self._nl = nl.Socket(nl.NETLINK_GENERIC)

    def close(self) -> None:
        self._nl.close()

    def header(self) -> str:
        """ipvsadm's first line, from IPVS_CMD_GET_INFO."""
        try:
            a = nl.parse_attrs(self._get(CMD_GET_INFO), 4)
            v, size = nl.get_u32(a[INFO_VERSION]), nl.get_u32(a[INFO_CONN_TAB_SIZE])
        except (nl.NetlinkError, KeyError):
            return "IP Virtual Server version 1.2.1 (size=4096)"
        return f"IP Virtual Server version {v >> 16 & 0xFF}.{v >> 8 & 0xFF}.{v & 0xFF} (size={size})"

    def _get(self, cmd: int) -> bytes:
        """A non-dump request whose answer is a message of our family."""
        s = self._nl
        seq = s._next()
        payload = struct.pack("=BBH", cmd, 1, 0)
        s.sock.sendall(nl._HDR.pack(16 + len(payload), self.family, nl.NLM_F_REQUEST, seq, 0)
                       + payload)
        while True:
            for kind, _f, mseq, body in s._messages():
                if mseq != seq:
                    continue
                if kind == nl.NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    raise nl.NetlinkError(err, "IPVS get")
                return body

    def read(self) -> Table:
        """Every IPv4 (non-fwmark) virtual server with its dests, in list order."""
        out: Table = {}
        for kind, body in self._nl.dump(self.family, struct.pack("=BBH", CMD_GET_SERVICE, 1, 0)):
            if kind != self.family:
                continue
            top = nl.parse_attrs(body, 4)
            if CMD_ATTR_SERVICE not in top:
                continue
            vs = _parse_service(nl.parse_attrs(top[CMD_ATTR_SERVICE]))
            if vs is not None:
                out[vs.key] = Entry(vs, self.read_dests(vs))
        return out

    def read_dests(self, vs: VirtualServer) -> dict:
        body = struct.pack("=BBH", CMD_GET_DEST, 1, 0) + nl.nested(CMD_ATTR_SERVICE,
                                                                   *_svc_key(vs))
        dests = {}
        for kind, msg in self._nl.dump(self.family, body):
            top = nl.parse_attrs(msg, 4)
            if kind == self.family and CMD_ATTR_DEST in top:
                rs = _parse_dest(nl.parse_attrs(top[CMD_ATTR_DEST]))
                dests[rs.key] = rs
        return dests

    def apply(self, ops: Iterable[Op]) -> list[tuple[Op, int]]:
        """Run the commands in order (batched); [(op, errno)] of those refused."""
        ops = list(ops)
        reqs = []
        for op in ops:
            flags = nl.NLM_F_CREATE | nl.NLM_F_EXCL if op.kind.startswith("add") else 0
            reqs.append((self.family, flags, encode(op)))
        errs = self._nl.batch(reqs)
        return [(op, e) for op, e in zip(ops, errs) if e]


class PyrouteIPVS:
    """The same contract through pyroute2's IPVS API alone (slow, one request
    per command): the reference the fast path is checked against."""

    def __init__(self):
        self._loop = asyncio.SelectorEventLoop()
        try:
            self._ipvs = _open(self._loop)
        except IPVSUnavailable:
            self._loop.close()
            raise

    def close(self) -> None:
        self._ipvs.close()
        self._loop.close()

    def read(self) -> Table:
        from pyroute2 import IPVSService
        out: Table = {}
        for msg in self._ipvs.service("dump"):
            s = msg.get_attr("IPVS_CMD_ATTR_SERVICE")
            if s.get_attr("IPVS_SVC_ATTR_AF") != socket.AF_INET or s.get_attr(
                    "IPVS_SVC_ATTR_FWMARK"):
                continue
            proto = PROTO_NAME.get(s.get_attr("IPVS_SVC_ATTR_PROTOCOL"))
            if proto is None:
                continue
            fl = s.get_attr("IPVS_SVC_ATTR_FLAGS")
            flags = fl["flags"] if fl is not None else 0
            timeout = s.get_attr("IPVS_SVC_ATTR_TIMEOUT") or 0
            if not flags & SVC_F_PERSISTENT:
                timeout = 0
            mask = s.get_attr("IPVS_SVC_ATTR_NETMASK") or FULL_MASK
            vs = VirtualServer(proto, s.get_attr("IPVS_SVC_ATTR_ADDR"),
                               s.get_attr("IPVS_SVC_ATTR_PORT"),
                               s.get_attr("IPVS_SVC_ATTR_SCHED_NAME"), flags & ~0x3, timeout,
                               mask if timeout else FULL_MASK)
            key = IPVSService(af=socket.AF_INET, protocol=PROTO_NUM[proto], addr=vs.addr,
                              port=vs.port)
            dests = {}
            for dm in self._ipvs.dest("dump", service=key):
                d = dm.get_attr("IPVS_CMD_ATTR_DEST")
                rs = RealServer(d.get_attr("IPVS_DEST_ATTR_ADDR"),
                                d.get_attr("IPVS_DEST_ATTR_PORT"),
                                d.get_attr("IPVS_DEST_ATTR_WEIGHT"),
                                d.get_attr("IPVS_DEST_ATTR_FWD_METHOD") & 7,
                                d.get_attr("IPVS_DEST_ATTR_ACTIVE_CONNS") or 0,
                                d.get_attr("IPVS_DEST_ATTR_INACT_CONNS") or 0)
                dests[rs.key] = rs
            out[vs.key] = Entry(vs, dests)
        return out

    def apply(self, ops: Iterable[Op]) -> list[tuple[Op, int]]:
        from pyroute2 import IPVSDest, IPVSService
        from pyroute2.netlink.exceptions import NetlinkError
        failed = []
        for op in ops:
            vs = op.vs
            flags = (vs.flags & ~SVC_F_PERSISTENT) | (SVC_F_PERSISTENT if vs.timeout else 0)
            svc = IPVSService(af=socket.AF_INET, protocol=PROTO_NUM[vs.proto], addr=vs.addr,
                              port=vs.port, sched_name=vs.scheduler, timeout=vs.timeout,
                              netmask=vs.netmask if vs.timeout else FULL_MASK,
                              flags={"flags": flags, "mask": 0xFFFFFFFF})
            try:
                if op.kind in ("add_service", "set_service", "del_service"):
                    self._ipvs.service({"add_service": "add", "set_service": "set",
                                        "del_service": "del"}[op.kind], service=svc)
                else:
                    rs = op.rs
                    dest = IPVSDest(addr=rs.addr, port=rs.port, weight=rs.weight,
                                    fwd_method=rs.fwd if rs.fwd != 1 else 0)
                    self._ipvs.dest({"add_dest": "add", "set_dest": "set",
                                     "del_dest": "del"}[op.kind], service=svc, dest=dest)
            except NetlinkError as e:
                failed.append((op, e.code))
        return failed
