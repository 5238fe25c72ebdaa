"""Pod networking with network namespaces (`--pod-network=netns`, root only).

The node gets a bridge whose address is the first host of its pod CIDR; each
pod gets a namespace `kc<node>-<uid>` with a veth whose host end is on the
bridge and whose pod end is `eth0` with the next free IP of the CIDR and a
default route via the bridge. Nodes on one machine reach each other's pods
through the host's routes to their bridges (forwarding is turned on).
Everything this node made is named with its prefix, so a restart (or
`close()`) removes what a previous run left."""
from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil

from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.runtime.base import PodRef

log = logging.getLogger("kcore.kubelet.netns")


class NetworkError(Exception):
    pass


async def _ip(*args: str, check: bool = True) -> str:
    p = await asyncio.create_subprocess_exec("ip", *args, stdout=asyncio.subprocess.PIPE,
                                             stderr=asyncio.subprocess.PIPE)
    out, err = await p.communicate()
    if check and p.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode().strip()}")
    return out.decode()


def available() -> str:
    """'' when netns networking can work here, else why not."""
    if os.geteuid() != 0:
        return "--pod-network=netns needs root"
    if shutil.which("ip") is None:
        return "--pod-network=netns needs iproute2 (ip)"
    return ""


class NetnsNetwork:
    def __init__(self, node_name: str, ips: PodIPAllocator):
        if ips.net is None:
            raise NetworkError("--pod-network=netns needs a pod CIDR (node spec.podCIDR or "
                               "--pod-cidr)")
        h = hashlib.sha1(node_name.encode()).hexdigest()[:6]
        self.prefix = f"kc{h}"
        self.bridge = f"{self.prefix}br"
        self.vprefix = f"k{h[:5]}"
        self.ips = ips
        self.namespaces: dict[str, str] = {}
        self._ready = False
        self._lock = asyncio.Lock()

    def ns_name(self, ref: PodRef) -> str:
        return f"{self.prefix}-{ref.uid.replace('-', '')[:16]}"

    def _veth(self, ref: PodRef) -> tuple[str, str]:
        u = hashlib.sha1(ref.uid.encode()).hexdigest()[:8]
        return f"{self.vprefix}v{u}", f"{self.vprefix}p{u}"

    async def _ensure_bridge(self) -> None:
        if self._ready:
            return
        await self.cleanup_leftovers()
        await _ip("link", "add", self.bridge, "type", "bridge")
        await _ip("addr", "add", f"{self.ips.gateway}/{self.ips.prefixlen}", "dev",
                  self.bridge)
        await _ip("link", "set", self.bridge, "up")
        try:
            with open("/proc/sys/net/ipv4/ip_forward", "w") as fh:
                fh.write("1")
        except OSError as e:
            log.warning("cannot enable ip_forward: %s", e)
        self._ready = True

    async def setup(self, ref: PodRef) -> tuple[str, str]:
        async with self._lock:
            await self._ensure_bridge()
            ns = self.ns_name(ref)
            if ref.uid in self.namespaces:
                return self.ips.allocate(ref.uid), ns
            ip = self.ips.allocate(ref.uid)
            host_if, pod_if = self._veth(ref)
            try:
                await _ip("netns", "add", ns)
                await _ip("link", "add", host_if, "type", "veth", "peer", "name", pod_if)
                await _ip("link", "set", pod_if, "netns", ns)
                await _ip("link", "set", host_if, "master", self.bridge)
                await _ip("link", "set", host_if, "up")
                ex = ("netns", "exec", ns, "ip")
                await _ip(*ex, "link", "set", pod_if, "name", "eth0")
                await _ip(*ex, "addr", "add", f"{ip}/{self.ips.prefixlen}", "dev", "eth0")
                await _ip(*ex, "link", "set", "eth0", "up")
                await _ip(*ex, "link", "set", "lo", "up")
                await _ip(*ex, "route", "add", "default", "via", self.ips.gateway)
            except NetworkError:
                await _ip("netns", "del", ns, check=False)
                await _ip("link", "del", host_if, check=False)
                self.ips.release(ref.uid)
                raise
            self.namespaces[ref.uid] = ns
            return ip, ns

    async def teardown(self, ref: PodRef) -> None:
        async with self._lock:
            ns = self.namespaces.pop(ref.uid, None)
            if ns is None:
                return
            await _ip("netns", "del", ns, check=False)
            await _ip("link", "del", self._veth(ref)[0], check=False)
            self.ips.release(ref.uid)

    async def cleanup_leftovers(self) -> None:
        out = await _ip("netns", "list", check=False)
        for line in out.splitlines():
            name = line.split()[0] if line.split() else ""
            if name.startswith(self.prefix + "-"):
                await _ip("netns", "del", name, check=False)
        links = await _ip("-o", "link", "show", check=False)
        for line in links.splitlines():
            parts = line.split(":")
            if len(parts) > 1:
                name = parts[1].strip().split("@")[0]
                if name == self.bridge or (name.startswith(self.vprefix) and
                                           name[6:7] in ("v", "p") and len(name) == 15):
                    await _ip("link", "del", name, check=False)

    async def close(self) -> None:
        async with self._lock:
            for uid, ns in list(self.namespaces.items()):
                await _ip("netns", "del", ns, check=False)
                self.ips.release(uid)
            self.namespaces.clear()
            await self.cleanup_leftovers()
            self._ready = False
