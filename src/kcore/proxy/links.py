"""The node's IPv4 addresses and the dummy interface that holds ClusterIPs.

In IPVS (and userspace) mode a ClusterIP is a real local address on a dummy
interface, `kube-ipvs0`, left down as kube-proxy leaves it: the kernel still
installs the /32 as a local route, so the address answers ping and its
virtual servers (or listeners) see the traffic. Addresses are added and
removed in netlink batches (netlink.py); the link itself is made with
pyroute2.
"""
from __future__ import annotations

import ipaddress
import logging
import socket
import struct
from collections.abc import Iterable

from kcore.proxy import netlink as nl

log = logging.getLogger("kcore.proxy")
DUMMY = "kube-ipvs0"
RTM_NEWADDR, RTM_DELADDR, RTM_GETADDR = 20, 21, 22
IFA_ADDRESS, IFA_LOCAL, IFA_LABEL = 1, 2, 3
_IFADDR = struct.Struct("=BBBBI")


def _addr_msgs() -> list[tuple[int, str, str]]:
    """(ifindex, label, address) of every IPv4 address in this namespace."""
    s = nl.Socket(nl.NETLINK_ROUTE)
    try:
        msgs = s.dump(RTM_GETADDR, _IFADDR.pack(socket.AF_INET, 0, 0, 0, 0))
    finally:
        s.close()
    out = []
    for kind, body in msgs:
        if kind != RTM_NEWADDR:
            continue
        family, _plen, _flags, _scope, index = _IFADDR.unpack_from(body)
        if family != socket.AF_INET:
            continue
        a = nl.parse_attrs(body, _IFADDR.size)
        raw = a.get(IFA_LOCAL) or a.get(IFA_ADDRESS)
        if raw:
            out.append((index, nl.get_str(a.get(IFA_LABEL, b"")), socket.inet_ntoa(raw[:4])))
    return out


def node_addresses(cidrs: Iterable[str] = (), exclude: Iterable[str] = (DUMMY,)) -> list[str]:
    """The node's IPv4 addresses for NodePorts: every address outside loopback
    and the dummy interface, filtered by --nodeport-addresses CIDRs if given."""
    nets = [ipaddress.ip_network(c, strict=False) for c in cidrs]
    skip = set(exclude)
    out = []
    for _idx, label, addr in _addr_msgs():
        ip = ipaddress.IPv4Address(addr)
        if ip.is_loopback or label.split(":")[0] in skip:
            continue
        if nets and not any(ip in n for n in nets):
            continue
        out.append(addr)
    return list(dict.fromkeys(out))


class DummyLink:
    """kube-ipvs0: created on demand, addresses synced in batches."""

    def __init__(self, name: str = DUMMY):
        self.name = name
        self.index = 0

    def ensure(self) -> int:
        """Create the dummy link if missing; where the kernel has no dummy driver,
        fall back to `lo` (addresses become lo aliases, as in kube-proxy's
        userspace days)."""
        from pyroute2 import IPRoute
        from pyroute2.netlink.exceptions import NetlinkError
        with nl.pyroute(IPRoute) as ipr:
            found = ipr.link_lookup(ifname=self.name)
            if not found:
                try:
                    ipr.link("add", ifname=self.name, kind="dummy")
                except NetlinkError as e:
                    log.warning("cannot create dummy interface %s (%s): binding service "
                                "addresses to lo instead", self.name, e)
                    self.name = "lo"
                found = ipr.link_lookup(ifname=self.name)
        self.index = found[0]
        return self.index

    def exists(self) -> bool:
        return _has_link(self.name)

    def addresses(self) -> set[str]:
        """The addresses on the link (on lo: those outside 127.0.0.0/8)."""
        if not self.index:
            self.ensure()
        return {a for idx, _l, a in _addr_msgs()
                if idx == self.index and not ipaddress.IPv4Address(a).is_loopback}

    def _change(self, kind: int, flags: int, addrs: Iterable[str]) -> dict[str, int]:
        if not self.index:
            self.ensure()
        addrs = list(addrs)
        if not addrs:
            return {}
        reqs = []
        for a in addrs:
            raw = socket.inet_aton(a)
            body = (_IFADDR.pack(socket.AF_INET, 32, 0, 0, self.index)
                    + nl.attr(IFA_LOCAL, raw) + nl.attr(IFA_ADDRESS, raw))
            reqs.append((kind, flags, body))
        s = nl.Socket(nl.NETLINK_ROUTE)
        try:
            errs = s.batch(reqs)
        finally:
            s.close()
        return {a: e for a, e in zip(addrs, errs) if e}

    def add(self, addrs: Iterable[str]) -> dict[str, int]:
        """Bind addresses (/32); returns {address: errno} of the failures (EEXIST is fine)."""
        errs = self._change(RTM_NEWADDR, nl.NLM_F_CREATE | nl.NLM_F_EXCL, addrs)
        return {a: e for a, e in errs.items() if e != nl.EEXIST}

    def remove(self, addrs: Iterable[str]) -> dict[str, int]:
        errs = self._change(RTM_DELADDR, 0, addrs)
        return {a: e for a, e in errs.items() if e not in (nl.EEXIST, 99)}  # EADDRNOTAVAIL

    def delete(self) -> None:
        if self.name == "lo" or not _has_link(self.name):
            return
        from pyroute2 import IPRoute
        with nl.pyroute(IPRoute) as ipr:
            for idx in ipr.link_lookup(ifname=self.name):
                ipr.link("del", index=idx)
        self.index = 0


def _has_link(name: str) -> bool:
    try:
        socket.if_nametoindex(name)
        return True
    except OSError:
        return False
