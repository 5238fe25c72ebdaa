"""Node IPAM: give each node a pod CIDR (`spec.podCIDR`, `spec.podCIDRs`).

`--cluster-cidr` is cut into blocks of `--node-cidr-mask-size`; blocks
overlapping `--service-cluster-ip-range` are never handed out. At start the
blocks nodes already carry are marked used; then every node without one gets
the next free block (a merge patch), and a deleted node's block is released.
A full range is reported as a `CIDRNotAvailable` event on the node.
"""
from __future__ import annotations

import ipaddress
import logging

from kcore.client import errors as E
from kcore.client.events import WARNING
from kcore.client.resources import NODES
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)


class CIDRExhausted(Exception):
    pass


class CIDRSet:
    """The blocks of a cluster CIDR, as a set of used indexes (kube's cidrset)."""

    def __init__(self, cluster_cidr: str, mask: int, reserved: list[str] = ()):
        self.net = ipaddress.ip_network(cluster_cidr, strict=False)
        if not self.net.prefixlen <= mask <= self.net.max_prefixlen:
            raise ValueError(f"mask /{mask} does not fit in {cluster_cidr}")
        self.mask = mask
        self.size = 1 << (mask - self.net.prefixlen)
        self.used: set[int] = set()
        self.next = 0
        for r in reserved:
            self.occupy(r)

    def _index(self, cidr) -> int:
        return (int(cidr.network_address) - int(self.net.network_address)) >> \
            (self.net.max_prefixlen - self.mask)

    def block(self, i: int) -> str:
        base = int(self.net.network_address) + (i << (self.net.max_prefixlen - self.mask))
        return str(ipaddress.ip_network((base, self.mask)))

    def _range(self, cidr: str) -> range:
        n = ipaddress.ip_network(cidr, strict=False)
        if n.version != self.net.version or not n.overlaps(self.net):
            return range(0)
        lo = max(int(n.network_address), int(self.net.network_address))
        hi = min(int(n.broadcast_address), int(self.net.broadcast_address))
        shift = self.net.max_prefixlen - self.mask
        base = int(self.net.network_address)
        return range((lo - base) >> shift, ((hi - base) >> shift) + 1)

    def occupy(self, cidr: str) -> None:
        self.used.update(self._range(cidr))

    def release(self, cidr: str) -> None:
        n = ipaddress.ip_network(cidr, strict=False)
        if n.prefixlen == self.mask and n.subnet_of(self.net):
            self.used.discard(self._index(n))

    def allocate(self) -> str:
        for k in range(self.size):
            i = (self.next + k) % self.size
            if i not in self.used:
                self.used.add(i)
                self.next = (i + 1) % self.size
                return self.block(i)
        raise CIDRExhausted(f"no remaining CIDRs left to allocate in {self.net}")


class NodeIpamController(Controller):
    name = "nodeipam"
    component = "cidrAllocator"

    def __init__(self, ctx):
        super().__init__(ctx, workers=1)
        o = ctx.options
        reserved = [o.service_cluster_ip_range] if o.service_cluster_ip_range else []
        self.cidrs = CIDRSet(o.cluster_cidr, o.node_cidr_mask_size, reserved)
        self.nodes = self.informer(NODES)
        self.nodes.add_event_handler(self._node, lambda o_, n: self._node(n), self._deleted)
        self._started = False

    def _node(self, node: dict) -> None:
        if self._started and not (node.get("spec") or {}).get("podCIDR"):
            self.enqueue(node)

    def _deleted(self, node: dict) -> None:
        for c in (node.get("spec") or {}).get("podCIDRs") or \
                [(node.get("spec") or {}).get("podCIDR")]:
            if c:
                self.cidrs.release(c)

    async def started(self) -> None:
        for node in self.nodes.store.list():
            for c in (node.get("spec") or {}).get("podCIDRs") or \
                    [(node.get("spec") or {}).get("podCIDR")]:
                if c:
                    self.cidrs.occupy(c)
        self._started = True
        for node in self.nodes.store.list():
            self._node(node)

    async def sync(self, key: str) -> None:
        node = self.nodes.store.get("", key)
        if node is None or (node.get("spec") or {}).get("podCIDR"):
            return
        try:
            cidr = self.cidrs.allocate()
        except CIDRExhausted as e:
            self.recorder.event(node, WARNING, "CIDRNotAvailable",
                                f"Node {key} status is now: CIDRNotAvailable")
            log.warning("node %s: %s", key, e)
            self.queue.add_after(key, 30.0)
            return
        try:
            # guarded by the cached resourceVersion (one request per node); on a
            # conflict look at the node afresh
            rv = node["metadata"]["resourceVersion"]
            for _ in range(3):
                try:
                    await self.client.patch(NODES, key, {
                        "metadata": {"resourceVersion": rv},
                        "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}})
                    break
                except E.Conflict:
                    fresh = await self.client.get(NODES, key)
                    if (fresh.get("spec") or {}).get("podCIDR"):
                        self.cidrs.release(cidr)
                        self.cidrs.occupy(fresh["spec"]["podCIDR"])
                        return
                    rv = fresh["metadata"]["resourceVersion"]
            else:
                raise E.Conflict(f"node {key} kept changing")
        except E.NotFound:
            self.cidrs.release(cidr)
            return
        except E.ApiError:
            self.cidrs.release(cidr)
            raise
        log.info("node %s: podCIDR %s", key, cidr)
