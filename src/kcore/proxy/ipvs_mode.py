"""IPVS mode: virtual servers in the kernel through netlink, ClusterIPs bound to
the dummy interface kube-ipvs0 (so they answer ping), iptables only for
masquerade.

    p = IPVSProxier(scheduler="rr", node=NodeConfig(cluster_cidr="10.244.0.0/16"))
    p.sync_blocking(state)          # or `await p.sync(state)` from the event loop

Each sync diffs the desired table (ipvs.desired) against the kernel's and
issues only the difference (ipvs.plan). The kernel is read in full on the
first sync, on every full (periodic) sync and after a refused command;
between those, the proxier's record of what it applied stands in for it,
except for services with quiesced real servers, whose counters are re-read
so that a real server is deleted once its connections have ended.
"""
from __future__ import annotations

import errno
import logging

from kcore.proxy import links
from kcore.proxy.iptables import Iptables, RuleApplier, node_sysctls
from kcore.proxy.iptables_rules import NodeConfig, ipvs_jump_rules, render_ipvs
from kcore.proxy.ipvs import Table, VirtualServer, apply_to, bound_addresses, desired, plan
from kcore.proxy.ipvs_kernel import KernelIPVS
from kcore.proxy.proxier import SyncResult, ThreadedProxier
from kcore.proxy.servicemap import ProxyState

log = logging.getLogger("kcore.proxy")


class IPVSProxier(ThreadedProxier):
    mode = "ipvs"

    def __init__(self, scheduler: str = "rr", node: NodeConfig | None = None,
                 sched_flags: int = 0, node_port_range: tuple[int, int] = (30000, 32767),
                 kernel=None, link: links.DummyLink | None = None, ipt: Iptables | None = None,
                 sysctls: bool = True, masquerade: bool = True):
        super().__init__()
        self.scheduler, self.sched_flags = scheduler, sched_flags
        self.node = node or NodeConfig()
        self.node_port_range = node_port_range
        self.kernel = kernel
        self.link = link or links.DummyLink()
        self.applier = RuleApplier(ipt or Iptables(), ipvs_jump_rules()) if masquerade else None
        self._sysctls = sysctls
        self._have: Table | None = None
        self._bound: set[str] | None = None
        self._node_ips: list[str] | None = None
        self._dirty = True
        self.failures = 0

    # -- the sync ---------------------------------------------------------------------------
    def _setup(self) -> None:
        if self.kernel is None:
            self.kernel = KernelIPVS()
        self.link.ensure()
        if self._sysctls:
            node_sysctls("ipvs")

    def node_ips(self, refresh: bool = False) -> list[str]:
        if refresh or self._node_ips is None:
            self._node_ips = links.node_addresses(self.node.node_port_addresses,
                                                  exclude=(self.link.name,))
        return self._node_ips

    def _owned(self, vs: VirtualServer, bound: set[str], nodes: set[str]) -> bool:
        lo, hi = self.node_port_range
        return vs.addr in bound or (vs.addr in nodes and lo <= vs.port <= hi)

    def sync_blocking(self, state: ProxyState, full: bool = False) -> SyncResult:
        if self.kernel is None:
            self._setup()
        nodes = self.node_ips(refresh=full)
        want = desired(state, self.scheduler, nodes, self.sched_flags)
        fresh = full or self._dirty or self._have is None
        if fresh:
            have = self.kernel.read()
            bound = self.link.addresses()
        else:
            have = self._have
            bound = set(self._bound or ())
            for key, e in have.items():   # counters of quiesced dests, for graceful deletion
                w = want.get(key)
                if w is not None and any(rk not in w.dests for rk in e.dests):
                    e.dests = self.kernel.read_dests(e.vs)
        want_addrs = bound_addresses(want, nodes)
        added = sorted(want_addrs - bound)
        bad_addrs = self.link.add(added)
        for a, e in bad_addrs.items():
            log.error("ipvs: cannot bind %s to %s: %s", a, self.link.name, errno.errorcode.get(e, e))
        node_set = set(nodes)
        ops = plan(want, have, lambda vs: self._owned(vs, bound | want_addrs, node_set))
        failed = self.kernel.apply(ops)
        for op, e in failed:
            log.error("ipvs: %s: %s", op, errno.errorcode.get(e, e))
        refused = {id(op) for op, _ in failed}
        self._have = apply_to(have, [op for op in ops if id(op) not in refused])
        self._dirty = bool(failed)
        self.failures += len(failed)
        in_use = {k[1] for k in self._have}
        removed = sorted((bound - want_addrs) - in_use)
        if removed:
            self.link.remove(removed)
        self._bound = ((bound | set(added)) - set(bad_addrs)) - set(removed)
        changed = bool(ops or added or removed)
        if self.applier is not None:
            changed |= self.applier.apply(render_ipvs(self.node), force=full)
        pending = sum(1 for k, e in self._have.items() if k in want
                      for rk in e.dests if rk not in want[k].dests)
        return SyncResult(changed, len(ops), pending,
                          f"{len(want)} virtual servers, {len(failed)} refused")

    # -- reading and cleaning -----------------------------------------------------------------
    def table(self) -> Table:
        if self.kernel is None:
            self._setup()
        return self.kernel.read()

    def cleanup_blocking(self) -> None:
        """Delete the virtual servers this proxy owns, kube-ipvs0 and the masquerade rules."""
        if self.kernel is None:
            self.kernel = KernelIPVS()
        bound = self.link.addresses() if self.link.exists() else set()
        nodes = set(self.node_ips(refresh=True))
        have = self.kernel.read()
        ops = plan({}, have, lambda vs: self._owned(vs, bound, nodes))
        self.kernel.apply(ops)
        self.link.delete()
        if self.applier is not None:
            self.applier.cleanup([("nat", "KUBE-POSTROUTING"), ("nat", "KUBE-MARK-MASQ"),
                                  ("filter", "KUBE-FORWARD")])
        self._have, self._bound, self._dirty = None, None, True

    def close_blocking(self) -> None:
        if self.kernel is not None:
            self.kernel.close()
            self.kernel = None
