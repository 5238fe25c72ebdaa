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
                               timeout=600)
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


Chains = dict[str, dict[str, list[str]]]   # table -> chain -> its "-A" rules, in order


def parse_restore(text: str) -> tuple[Chains, dict[str, list[str]]]:
    """iptables-restore text -> ({table: {chain: rules}}, {table: chains deleted with -X})."""
    chains: Chains = {}
    deleted: dict[str, list[str]] = {}
    table = ""
    for ln in text.splitlines():
        if ln.startswith("*"):
            table = ln[1:].strip()
            chains.setdefault(table, {})
            deleted.setdefault(table, [])
        elif ln.startswith(":"):
            chains[table].setdefault(ln[1:].split(" ", 1)[0], [])
        elif ln.startswith("-A "):
            chains[table].setdefault(ln[3:].split(" ", 1)[0], []).append(ln)
        elif ln.startswith("-X "):
            name = ln[3:].strip()
            chains[table].pop(name, None)
            deleted[table].append(name)
    return chains, deleted


def minimal_restore(applied: Chains, text: str) -> tuple[str, Chains]:
    """The part of `text` that changes what `applied` describes: only chains whose
    rules differ (declaring a chain flushes it under --noflush; a chain left out
    stays as it is) and the deletions -- kube-proxy's MinimizeIPTablesRestore
    (KEP-3453). Returns ("" if nothing changed, the new applied state)."""
    new, deleted = parse_restore(text)
    out: list[str] = []
    for table, chains in new.items():
        old = applied.get(table, {})
        changed = [c for c, rules in chains.items() if old.get(c) != rules]
        gone = list(deleted.get(table, ()))   # declared first, so -X never misses
        if not changed and not gone:
            continue
        out.append(f"*{table}")
        out += [f":{c} - [0:0]" for c in changed + gone]
        keep = set(changed)
        out += [ln for ln in text_rules(text, table) if ln[3:].split(" ", 1)[0] in keep]
        out += [f"-X {c}" for c in gone]
        out.append("COMMIT")
    return ("\n".join(out) + "\n" if out else ""), new


def text_rules(text: str, table: str) -> list[str]:
    """The -A lines of one table of iptables-restore text, in order."""
    part = text.split(f"*{table}\n", 1)
    if len(part) < 2:
        return []
    return [ln for ln in part[1].split("\nCOMMIT", 1)[0].splitlines() if ln.startswith("-A ")]


def split_restore(text: str, batch: int) -> list[str]:
    """Cut a large iptables-restore text into several, leaf chains first.

    Measured with iptables-nft 1.8.9: one --noflush restore that declares n
    chains costs O(n^2) (2,000 services x 5 endpoints, 12k chains: 10 s; 4,000:
    51 s) while restores of 3,000 chains each cost ~0.5 s whatever is already
    there. So chains are written in batches of `batch`, each after the chains
    it jumps to; the chains nothing of ours jumps to (KUBE-SERVICES and the
    like: what makes the new chains reachable), the filter table and every
    deletion go last, in one restore. Each restore is atomic; the whole is
    not, but a chain is only reachable once what jumps to it is written."""
    chains, deleted = parse_restore(text)
    out: list[str] = []
    final: list[str] = []
    for table, tchains in chains.items():
        gone = list(deleted.get(table, ()))
        targets = {c: {r.split(" -j ", 1)[1].split(" ", 1)[0] for r in rules if " -j " in r} &
                   tchains.keys() for c, rules in tchains.items()}
        referenced = set().union(*targets.values()) if targets else set()
        if table != "nat" or len(tchains) <= batch:
            final += _table_text(table, list(tchains), tchains, gone)
            continue
        order: list[str] = []
        seen: set[str] = set()
        for root in tchains:             # depth-first, leaves before what jumps to them
            if root in seen:
                continue
            seen.add(root)
            stack = [(root, iter(sorted(targets[root])))]
            while stack:
                node, it = stack[-1]
                nxt = next((t for t in it if t not in seen), None)
                if nxt is None:
                    order.append(node)
                    stack.pop()
                else:
                    seen.add(nxt)
                    stack.append((nxt, iter(sorted(targets[nxt]))))
        roots = [c for c in order if c not in referenced]
        inner = [c for c in order if c in referenced]
        for i in range(0, len(inner), batch):
            out.append("\n".join(_table_text(table, inner[i:i + batch], tchains, [])) + "\n")
        final += _table_text(table, roots, tchains, gone)
    if final:
        out.append("\n".join(final) + "\n")
    return out


def _table_text(table: str, names: list[str], chains: dict[str, list[str]],
                gone: list[str]) -> list[str]:
    return ([f"*{table}"] + [f":{c} - [0:0]" for c in names + gone] +
            [r for c in names for r in chains[c]] + [f"-X {c}" for c in gone] + ["COMMIT"])


class RuleApplier:
    """Owns one set of KUBE-* rules in this namespace: applies a new text only
    when it differs -- and then only the chains that changed -- and keeps the
    jumps from the built-in chains in place. `force` (the periodic full sync)
    writes everything again."""

    def __init__(self, ipt: Iptables, jumps: Iterable[tuple[str, str, list[str]]],
                 partial: bool = True, batch_chains: int = 2000):
        self.ipt = ipt
        self.jumps = list(jumps)
        self.partial = partial
        self.batch_chains = batch_chains
        self.owned_chains: set[str] = set()   # KUBE-SVC/SEP... chains we made (nat)
        self.last_fingerprint = ""
        self.applied: Chains = {}
        self.applies = 0
        self.partial_applies = 0
        self.skipped = 0
        self.last_restore_bytes = 0
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
        restore = text
        if self.partial and self.applied and not force and self._jumps_ok:
            restore, new_state = minimal_restore(self.applied, text)
            self.partial_applies += 1
        else:
            new_state = parse_restore(text)[0]
        try:
            if restore.count("\n:") > self.batch_chains:
                for part in split_restore(restore, self.batch_chains):
                    self.ipt.restore(part)
            elif restore:
                self.ipt.restore(restore)
        except IptablesError:
            self.applied = {}          # unknown state: the next apply writes everything
            self.last_fingerprint = ""
            raise
        self.applies += 1
        self.last_restore_bytes = len(restore)
        self.applied = new_state
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
        self.applied = {}
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
