"""Which proxy mode this node can run, with kube-proxy's fallbacks.

    mode = select_mode("ipvs")   # "ipvs", or "iptables" when the kernel has no IPVS
    mode = best_mode()           # ipvs -> iptables -> userspace (kcore up --proxy-mode=auto)

Every decision is logged, as kube-proxy logs "Using iptables Proxier" after
"Can't use the IPVS proxier". Probing touches nothing: IPVS is detected by
opening pyroute2's IPVS socket (no ip_vs generic-netlink family: NetlinkError
code 2), iptables by listing the nat table.
"""
from __future__ import annotations

import logging

from kcore.proxy import ipvs_kernel
from kcore.proxy.iptables import Iptables

log = logging.getLogger("kcore.proxy")
MODES = ("iptables", "ipvs", "userspace")


def select_mode(requested: str = "", ipt: Iptables | None = None) -> str:
    """The mode to run for --proxy-mode=requested ("" means iptables, the default)."""
    mode = (requested or "iptables").lower()
    if mode not in MODES:
        raise ValueError(f"unknown proxy mode {requested!r} (iptables, ipvs, userspace)")
    if mode == "ipvs":
        ok, why = ipvs_kernel.available()
        if ok:
            log.info("Using ipvs Proxier")
            return "ipvs"
        log.warning("Can't use the IPVS proxier: %s; falling back to iptables mode", why)
        mode = "iptables"
    if mode == "iptables":
        ok, why = (ipt or Iptables()).available()
        if ok:
            log.info("Using iptables Proxier")
            return "iptables"
        log.warning("Can't use the iptables proxier: %s; falling back to userspace mode", why)
    log.info("Using userspace Proxier")
    return "userspace"


def best_mode(ipt: Iptables | None = None) -> str:
    """The best mode this node supports: ipvs, else iptables, else userspace."""
    mode = select_mode("ipvs", ipt)
    log.info("proxy mode %s selected (preference: ipvs, iptables, userspace)", mode)
    return mode
