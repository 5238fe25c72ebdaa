"""Pod IPs from a CIDR: the network address, the gateway (first host) and the
broadcast are never handed out; a released IP is reused last."""
from __future__ import annotations

import ipaddress
from collections import deque


class PodIPAllocator:
    def __init__(self, cidr: str, fallback_ip: str = "127.0.0.1"):
        self.fallback = fallback_ip
        self.by_uid: dict[str, str] = {}
        self.cidr = cidr
        self.net = ipaddress.ip_network(cidr, strict=False) if cidr else None
        self._free: deque[str] = deque()
        self._next = 2          # .0 network, .1 gateway

    @property
    def gateway(self) -> str:
        return str(self.net.network_address + 1) if self.net else ""

    @property
    def prefixlen(self) -> int:
        return self.net.prefixlen if self.net else 32

    def allocate(self, uid: str) -> str:
        if uid in self.by_uid:
            return self.by_uid[uid]
        if self.net is None:
            return self.fallback
        if self._free:
            ip = self._free.popleft()
        else:
            if self._next >= self.net.num_addresses - 1:
                raise RuntimeError(f"pod CIDR {self.cidr} is full")
            ip = str(self.net.network_address + self._next)
            self._next += 1
        self.by_uid[uid] = ip
        return ip

    def release(self, uid: str) -> None:
        ip = self.by_uid.pop(uid, None)
        if ip is not None and self.net is not None:
            self._free.append(ip)
