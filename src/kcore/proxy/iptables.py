"""Applying iptables rules: `iptables-restore --noflush` with the text of
kcore.proxy.iptables_rules, the jump rules from the built-in chains, and the
sysctls a proxying node needs.

    ipt = Iptables()                                   # runs the binaries (-w 5)
    applier = RuleApplier(ipt, jump_rules())
    applier.apply(text)          # False: unchanged since the last apply, skipped

The applier hashes the text it applied and skips an identical one, so a sync
without changes costs no iptables call. A forced apply (the periodic full
sync) re-reads the existing chains and re-ensures the jumps, which is how the
proxy repairs rules someone flushed. Everything acts on the calling process's
network namespace.
"""
from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
from collections.abc import Iterable, Sequence

from kcore.proxy.iptables_rules import KUBE_SERVICES, OWNED_PREFIXES

log = logging.getLogger("kcore.proxy")


class IptablesError(RuntimeError):
    """An iptables command failed; the message carries its stderr."""


class Iptables:
    """The iptables binaries of this node (legacy or nft backend alike)."""

    def __init__(self, iptables: str = "iptables", wait: int = 5):
        self.iptables = iptables
        self.restore_bin = iptables + "-restore"
        self.save_bin = iptables + "-save"
        self.wait = str(wait)

    def available(self) -> tuple[bool, str]:
        """Whether rules can be programmed here (binaries present, nat table usable)."""
        for b in (self.iptables, self.restore_bin, self.save_bin):
            if shutil.which(b) is None:
                return False, f"{b} not found"
        p = self._run([self.iptables, "-w", self.wait, "-t", "nat", "-S", "POSTROUTING"],
                      check=False)
        if p.returncode != 0:
            return False, p.stderr.strip() or f"{self.iptables} -t nat failed"
        return True, ""

    @staticmethod
    def _run(args: Sequence[str], input: str | None = None, check: bool = True
             ) -> subprocess.CompletedProcess:
        try:
            p = subprocess.run(list(args), input=input, capture_output=True, text=True,
                               timeout=120)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise IptablesError(f"{args[0]}: {e}") from None
        if check and p.returncode != 0:
            raise IptablesError(f"{' '.join(args[:4])}...: {p.stderr.strip()}")
        return p

    def restore(self, text: str) -> None:
        """Apply iptables-restore text atomically, leaving other chains alone."""
        self._run([self.restore_bin, "-w", self.wait, "--noflush"], input=text)

    def save(self, table: str) -> str:
        return self._run([self.save_bin, "-t", table]).stdout

    def chains(self, table: str) -> set[str]:
        return {ln[1:].split(" ", 1)[0] for ln in self.save(table).splitlines()
                if ln.startswith(":")}

    def has_rule(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        return self._run([self.iptables, "-w", self.wait, "-t", table, "-C", chain, *rule],
                         check=False).returncode == 0

    def ensure_rule(self, table: str, chain: str, rule: Sequence[str]) -> bool:
        """Insert `rule` at the top of `chain` unless present; True if it was added."""
        base = [self.iptables, "-w", self.wait, "-t", table]
        if self._run(base + ["-C", chain, *rule], check=False).returncode == 0:
            return False
        self._run(base + ["-I", chain, "1", *rule])
        return True

    def delete_rule(self, table: str, chain: str, rule: Sequence[str]) -> None:
        base = [self.iptables, "-w", self.wait, "-t", table]
        while self._run(base + ["-D", chain, *rule], check=False).returncode == 0:
            pass


def _declared(text: str) -> tuple[set[str], set[str]]:
    """(chains declared, chains deleted with -X) in iptables-restore text."""
    declared, deleted = set(), set()
    for ln in text.splitlines():
        if ln.startswith(":"):
            declared.add(ln[1:].split(" ", 1)[0])
        elif ln.startswith("-X "):
            deleted.add(ln[3:].strip())
    return declared, deleted


def _fingerprint(text: str, deleted: set[str]) -> str:
    """Hash of the text without the deletions of stale chains (a re-render after
    they are gone is the same desired state)."""
    keep = [ln for ln in text.splitlines()
            if not (ln.startswith("-X ") or ln.startswith(":") and
                    ln[1:].split(" ", 1)[0] in deleted)]
    return hashlib.sha256("\n".join(keep).encode()).hexdigest()


class RuleApplier:
    """Owns one set of KUBE-* rules in this namespace: applies a new text only
    when it differs, and keeps the jumps from the built-in chains in place."""

    def __init__(self, ipt: Iptables, jumps: Iterable[tuple[str, str, list[str]]]):
        self.ipt = ipt
        self.jumps = list(jumps)
        self.owned_chains: set[str] = set()   # KUBE-SVC/SEP... chains we made (nat)
        self.last_fingerprint = ""
        self.applies = 0
        self.skipped = 0
        self._jumps_ok = False

    def existing_chains(self, refresh: bool = False) -> set[str]:
        if refresh or not self.last_fingerprint:
            self.owned_chains = {c for c in self.ipt.chains("nat") if c.startswith(OWNED_PREFIXES)}
        return set(self.owned_chains)

    def healthy(self) -> bool:
        """kube-proxy's canary: the jumps from the built-in chains are still there
        (a firewall reload flushes them)."""
        try:
            return all(self.ipt.has_rule(t, c, r) for t, c, r in self.jumps)
        except IptablesError:
            return False

    def apply(self, text: str, force: bool = False) -> bool:
        declared, deleted = _declared(text)
        fp = _fingerprint(text, deleted)
        if not force and not deleted and fp == self.last_fingerprint and self._jumps_ok:
            self.skipped += 1
            return False
        self.ipt.restore(text)
        self.applies += 1
        self.last_fingerprint = fp
        self.owned_chains = {c for c in declared - deleted if c.startswith(OWNED_PREFIXES)}
        if force or not self._jumps_ok:
            for table, chain, rule in self.jumps:
                self.ipt.ensure_rule(table, chain, rule)
            self._jumps_ok = True
        return True

    def cleanup(self, tables_chains: Iterable[tuple[str, str]]) -> None:
        """Remove the jumps, then flush and delete our chains (kube-proxy --cleanup)."""
        for table, chain, rule in self.jumps:
            self.ipt.delete_rule(table, chain, rule)
        by_table: dict[str, list[str]] = {}
        for table, chain in tables_chains:
            by_table.setdefault(table, []).append(chain)
        nat_owned = {c for c in self.ipt.chains("nat") if c.startswith(OWNED_PREFIXES)}
        by_table.setdefault("nat", []).extend(sorted(nat_owned))
        lines = []
        for table, chains in by_table.items():
            present = self.ipt.chains(table)
            chains = [c for c in dict.fromkeys(chains) if c in present]
            if not chains:
                continue
            lines.append(f"*{table}")
            lines += [f":{c} - [0:0]" for c in chains]
            lines += [f"-X {c}" for c in chains]
            lines.append("COMMIT")
        if lines:
            self.ipt.restore("\n".join(lines) + "\n")
        self.last_fingerprint = ""
        self._jumps_ok = False


# -- sysctls -------------------------------------------------------------------------------------
def set_sysctl(name: str, value: int) -> bool:
    """Write /proc/sys/<name> if it exists and differs; True if it holds `value` now."""
    path = "/proc/sys/" + name.replace(".", "/")
    try:
        with open(path) as fh:
            if fh.read().strip() == str(value):
                return True
        with open(path, "w") as fh:
            fh.write(str(value))
        return True
    except OSError as e:
        log.warning("sysctl %s=%s: %s", name, value, e)
        return False


def node_sysctls(mode: str, localhost_nodeports: bool = True) -> dict[str, bool]:
    """The sysctls kube-proxy relies on, set in this network namespace.
    net.bridge.* exists only where br_netfilter is loaded (kcore loads no
    modules); when a bridge is in use without it, pods reaching Services
    through the bridge bypass iptables, and that is logged."""
    out = {"net.ipv4.ip_forward": set_sysctl("net.ipv4.ip_forward", 1)}
    if mode == "iptables" and localhost_nodeports:
        out["net.ipv4.conf.all.route_localnet"] = set_sysctl("net.ipv4.conf.all.route_localnet", 1)
    if mode == "ipvs":
        for name in ("net.ipv4.vs.conntrack", "net.ipv4.vs.expire_nodest_conn",
                     "net.ipv4.vs.expire_quiescent_template"):
            out[name] = set_sysctl(name, 1)
    if os.path.exists("/proc/sys/net/bridge/bridge-nf-call-iptables"):
        out["net.bridge.bridge-nf-call-iptables"] = set_sysctl(
            "net.bridge.bridge-nf-call-iptables", 1)
    elif _has_bridge():
        log.warning("a bridge is present but br_netfilter is not loaded: traffic between "
                    "pods on the bridge will not see the Service rules")
    return out


def _has_bridge() -> bool:
    try:
        return any(os.path.isdir(f"/sys/class/net/{n}/bridge") for n in os.listdir("/sys/class/net"))
    except OSError:
        return False


ALL_CHAINS = [("filter", KUBE_SERVICES), ("filter", "KUBE-EXTERNAL-SERVICES"),
              ("filter", "KUBE-FORWARD"), ("nat", KUBE_SERVICES), ("nat", "KUBE-NODEPORTS"),
              ("nat", "KUBE-POSTROUTING"), ("nat", "KUBE-MARK-MASQ")]
