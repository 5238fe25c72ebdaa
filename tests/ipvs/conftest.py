"""IPVS for real, inside the test VM (../shared/testvm/vm.sh; docs/proxy.md):

    ../shared/testvm/vm.sh run -v . -t 900 'python3 -m pytest -q tests/ipvs'

The VM's root namespace is the node: IPVS, kube-ipvs0 and the masquerade rule
live there. Pods are namespaces on the bridge kbr0 (10.244.0.0/24), each with
a nettools server answering its name; the client is a namespace routed via
the node (192.168.77.2-9). The tests drive kcore.proxy.ipvs_mode.IPVSProxier
directly with Service/Endpoints dicts (the VM has plain Python: no compiled
deps, so no API server). Stdlib, pytest and pyroute2 only.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(ROOT, "src"))
os.environ["PYTHONPATH"] = os.path.join(ROOT, "src")   # for `python3 -m kcore.cli.main`
NETTOOLS = os.path.join(ROOT, "tests", "ipvs", "nettools.py")
PODS = 3
POD_IPS = [f"10.244.0.{10 + i}" for i in range(PODS)]
CLIENTS = [f"192.168.77.{2 + i}" for i in range(8)]
NODE_IPS = ["10.244.0.1", "192.168.77.1"]


def sh(*args: str, check: bool = True, input: str | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


def have_ipvs() -> bool:
    return os.geteuid() == 0 and os.path.exists("/proc/net/ip_vs")


class Net:
    """Pods and a client around the node (this namespace)."""

    def __init__(self):
        self.netns: list[str] = []
        self.procs: list[subprocess.Popen] = []
        sh("ip", "link", "add", "kbr0", "type", "bridge")
        sh("ip", "addr", "add", "10.244.0.1/24", "dev", "kbr0")
        sh("ip", "link", "set", "kbr0", "up")
        for i, ip in enumerate(POD_IPS):
            ns = f"pod{i}"
            self._ns(ns)
            sh("ip", "link", "add", f"veth{i}", "type", "veth", "peer", "name", "eth0",
               "netns", ns)
            sh("ip", "link", "set", f"veth{i}", "master", "kbr0")
            sh("ip", "link", "set", f"veth{i}", "up")
            sh("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", "eth0")
            sh("ip", "-n", ns, "link", "set", "eth0", "up")
            sh("ip", "-n", ns, "route", "add", "default", "via", "10.244.0.1")
            self.serve(ns, f"pod{i}", 8080)
        self._ns("client")
        sh("ip", "link", "add", "cli0", "type", "veth", "peer", "name", "eth0", "netns", "client")
        sh("ip", "addr", "add", "192.168.77.1/24", "dev", "cli0")
        sh("ip", "link", "set", "cli0", "up")
        for c in CLIENTS:
            sh("ip", "-n", "client", "addr", "add", f"{c}/24", "dev", "eth0")
        sh("ip", "-n", "client", "link", "set", "eth0", "up")
        sh("ip", "-n", "client", "route", "add", "default", "via", "192.168.77.1")

    def _ns(self, name: str) -> None:
        sh("ip", "netns", "add", name)
        self.netns.append(name)
        sh("ip", "-n", name, "link", "set", "lo", "up")

    def serve(self, ns: str, name: str, port: int) -> None:
        p = subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, NETTOOLS, "serve", name,
                              str(port)], stdout=subprocess.PIPE, text=True,
                             start_new_session=True)
        self.procs.append(p)
        assert p.stdout.readline().strip() == "ready"

    def tool(self, *args: str, src: list[str] | None = None, timeout: float = 300) -> dict:
        extra = ["--src", ",".join(src)] if src else []
        p = sh("ip", "netns", "exec", "client", sys.executable, NETTOOLS, *args, *extra,
               timeout=timeout)
        return json.loads(p.stdout)

    def get(self, host: str, port: int, n: int, timeout: float = 2.0,
            src: list[str] | None = None) -> dict:
        return self.tool("get", host, str(port), str(n), str(timeout), src=src)

    def hold(self, host: str, port: int, n: int) -> tuple[subprocess.Popen, list[str]]:
        """n connections opened one after the other and kept open: who answered each."""
        p = subprocess.Popen(["ip", "netns", "exec", "client", sys.executable, NETTOOLS, "hold",
                              host, str(port), str(n), "600"], stdout=subprocess.PIPE,
                             text=True, start_new_session=True)
        self.procs.append(p)
        return p, json.loads(p.stdout.readline())

    def ping(self, addr: str) -> bool:
        return sh("ip", "netns", "exec", "client", sys.executable, NETTOOLS, "ping", addr, "3",
                  check=False).returncode == 0

    @staticmethod
    def stop(p: subprocess.Popen) -> None:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGTERM)
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(5)

    def close(self) -> None:
        for p in self.procs:
            self.stop(p)
        for ns in self.netns:
            sh("ip", "netns", "del", ns, check=False)
        sh("ip", "link", "del", "kbr0", check=False)
        sh("ip", "link", "del", "cli0", check=False)


@pytest.fixture(scope="module")
def net():
    if not have_ipvs():
        pytest.skip("needs root and a kernel with IPVS (run inside the test VM)")
    n = Net()
    try:
        yield n
    finally:
        n.close()
        time.sleep(0.1)
