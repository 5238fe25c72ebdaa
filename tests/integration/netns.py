"""Test hosts as network namespaces on a bridge, created and removed by the test.

`Hosts(n)` makes n namespaces, each with a veth into a bridge in the test's own
namespace, addresses 10.<net>.0.<10+i>/24 (the bridge is .1), and removes all
of it on close, also after failures. `partition(i, j)` drops traffic between
two hosts with iptables inside their namespaces; `heal()` undoes it.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess


def available() -> bool:
    if os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("iptables") is None:
        return False
    name = f"kcprobe{os.getpid() % 100000}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


def sh(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


class Hosts:
    def __init__(self, n: int):
        self.tag = f"kc{os.getpid() % 10000}{random.randrange(100)}"
        self.net = 100 + random.randrange(100)
        self.bridge = f"{self.tag}br"[:15]
        self.names = [f"{self.tag}h{i}" for i in range(n)]
        self.ips = [f"10.{self.net}.0.{10 + i}" for i in range(n)]
        self.gateway = f"10.{self.net}.0.1"
        self.rules: list[tuple[str, list[str]]] = []
        try:
            sh("ip", "link", "add", self.bridge, "type", "bridge")
            sh("ip", "addr", "add", f"{self.gateway}/24", "dev", self.bridge)
            sh("ip", "link", "set", self.bridge, "up")
            for i, ns in enumerate(self.names):
                host_if, ns_if = f"{self.tag}v{i}"[:15], f"{self.tag}p{i}"[:15]
                sh("ip", "netns", "add", ns)
                sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", ns_if)
                sh("ip", "link", "set", ns_if, "netns", ns)
                sh("ip", "link", "set", host_if, "master", self.bridge)
                sh("ip", "link", "set", host_if, "up")
                sh("ip", "netns", "exec", ns, "ip", "addr", "add", f"{self.ips[i]}/24", "dev", ns_if)
                sh("ip", "netns", "exec", ns, "ip", "link", "set", ns_if, "up")
                sh("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        except Exception:
            self.close()
            raise

    def route(self, cidr: str) -> None:
        """Make `cidr` routable from every host (on-link, through its veth): a Service
        CIDR needs a route for the kernel to get far enough to DNAT it."""
        for i, ns in enumerate(self.names):
            sh("ip", "netns", "exec", ns, "ip", "route", "add", cidr, "dev",
               f"{self.tag}p{i}"[:15])

    def exec_prefix(self, i: int) -> list[str]:
        return ["ip", "netns", "exec", self.names[i]]

    def partition(self, i: int, j: int) -> None:
        for a, b in ((i, j), (j, i)):
            rule = ["INPUT", "-s", self.ips[b], "-j", "DROP"]
            sh(*self.exec_prefix(a), "iptables", "-I", *rule)
            self.rules.append((self.names[a], rule))

    def isolate(self, i: int) -> None:
        for j in range(len(self.names)):
            if j != i:
                self.partition(i, j)

    def heal(self) -> None:
        for ns, rule in self.rules:
            sh("ip", "netns", "exec", ns, "iptables", "-D", *rule, check=False)
        self.rules.clear()

    def close(self) -> None:
        self.heal()
        for ns in self.names:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", self.bridge, check=False)
