"""Service ClusterIP and NodePort allocation from the configured ranges.

State is rebuilt from the stored Services at start (the Services are the
truth); allocations are reserved before the create transaction and released
if it fails or when the Service is deleted.
"""
from __future__ import annotations

import ipaddress
import random


class AllocationError(Exception):
    pass


class IPAllocator:
    def __init__(self, cidr: str, rng: random.Random | None = None):
        self.net = ipaddress.ip_network(cidr, strict=False)
        self.used: set[str] = set()
        self.rng = rng or random.Random()
        self.size = self.net.num_addresses
        # network and broadcast addresses are not handed out (IPv4)
        self.first = int(self.net.network_address) + 1
        self.last = int(self.net.broadcast_address) - (1 if self.net.version == 4 else 0)

    def first_ip(self) -> str:
        return str(ipaddress.ip_address(self.first))

    def contains(self, ip: str) -> bool:
        try:
            a = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return a in self.net and self.first <= int(a) <= self.last

    def allocate(self, ip: str) -> None:
        if not self.contains(ip):
            raise AllocationError(f"failed to allocate IP {ip}: the provided IP ({ip}) is not "
                                  f"in the valid range. The range of valid IPs is {self.net}")
        if ip in self.used:
            raise AllocationError(f"failed to allocate IP {ip}: provided IP is already "
                                  f"allocated")
        self.used.add(ip)

    def allocate_next(self) -> str:
        n = self.last - self.first + 1
        if len(self.used) >= n:
            raise AllocationError("failed to allocate a serviceIP: range is full")
        # the low 1/16 of the range is kept for static IPs, as kube does (if large enough)
        lo = self.first
        if n >= 256:
            lo = self.first + max(16, min(256, n // 16))
        for _ in range(64):
            cand = str(ipaddress.ip_address(self.rng.randint(lo, self.last)))
            if cand not in self.used:
                self.used.add(cand)
                return cand
        for i in list(range(lo, self.last + 1)) + list(range(self.first, lo)):
            cand = str(ipaddress.ip_address(i))
            if cand not in self.used:
                self.used.add(cand)
                return cand
        raise AllocationError("failed to allocate a serviceIP: range is full")

    def release(self, ip: str | None) -> None:
        if ip:
            self.used.discard(ip)


class PortAllocator:
    def __init__(self, rng_text: str, rng: random.Random | None = None):
        a, _, b = rng_text.partition("-")
        self.lo = int(a)
        self.hi = int(b) if b else int(a)
        if self.hi < self.lo:
            raise ValueError(f"invalid port range {rng_text}")
        self.used: set[int] = set()
        self.rng = rng or random.Random()
        self.text = f"{self.lo}-{self.hi}"

    def allocate(self, port: int) -> None:
        if not (self.lo <= port <= self.hi):
            raise AllocationError(f"provided port is not in the valid range. The range of "
                                  f"valid ports is {self.text}")
        if port in self.used:
            raise AllocationError("provided port is already allocated")
        self.used.add(port)

    def allocate_next(self) -> int:
        if len(self.used) > self.hi - self.lo:
            raise AllocationError("range is full")
        for _ in range(64):
            p = self.rng.randint(self.lo, self.hi)
            if p not in self.used:
                self.used.add(p)
                return p
        for p in range(self.lo, self.hi + 1):
            if p not in self.used:
                self.used.add(p)
                return p
        raise AllocationError("range is full")

    def release(self, port: int | None) -> None:
        if port:
            self.used.discard(port)
