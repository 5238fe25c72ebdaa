"""iptables mode: kube-proxy's chains (iptables_rules.render) applied with
`iptables-restore --noflush` when they change.

A ClusterIP here is only a DNAT rule: nothing on the node owns the address,
so it does not answer ping. Chains of services that are gone are flushed and
deleted in the same restore.
"""
from __future__ import annotations

import logging

from kcore.proxy.iptables import ALL_CHAINS, Iptables, RuleApplier, node_sysctls
from kcore.proxy.iptables_rules import NodeConfig, jump_rules, render
from kcore.proxy.proxier import SyncResult, ThreadedProxier
from kcore.proxy.servicemap import ProxyState

log = logging.getLogger("kcore.proxy")


class IptablesProxier(ThreadedProxier):
    mode = "iptables"

    def __init__(self, node: NodeConfig | None = None, ipt: Iptables | None = None,
                 sysctls: bool = True):
        super().__init__()
        self.node = node or NodeConfig()
        self.ipt = ipt or Iptables()
        self.applier = RuleApplier(self.ipt, jump_rules())
        self._sysctls = sysctls
        self._synced = False

    def sync_blocking(self, state: ProxyState, full: bool = False) -> SyncResult:
        if self._sysctls and not self._synced:
            node_sysctls("iptables", localhost_nodeports=True)
        force = False
        if full and self._synced and not self.applier.healthy():
            log.warning("iptables: KUBE-* jumps missing (firewall reload?): restoring all rules")
            force = True
        existing = self.applier.existing_chains(refresh=full or not self._synced)
        text = render(state.services, state.endpoints, self.node, existing)
        changed = self.applier.apply(text, force=force)
        self._synced = True
        n = text.count("\n-A ")
        return SyncResult(changed, 1 if changed else 0, 0, f"{n} rules")

    def cleanup_blocking(self) -> None:
        self.applier.cleanup(ALL_CHAINS)
