"""A throw-away network made of namespaces for the proxy tests.

    lab = Lab()
    node = lab.netns("node")                      # "<tag>node"
    api = lab.hub()                               # bridge here, 10.<net>.255.1
    lab.join(node)                                # node reaches `api` over mgmt0
    lab.veth(node, "cli0", client, "eth0", "192.168.7.1/24", "192.168.7.2/24")
    p = lab.spawn(node, [...], "proxy.log")       # process inside the namespace
    lab.close()                                   # processes (by pid), namespaces, links

Every name carries a per-run tag; close() removes exactly what this Lab made,
also after failures (use it in a fixture's finally). Deleting a namespace
deletes its interfaces, including the far end of a veth in this namespace.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
NETTOOLS = os.path.join(HERE, "..", "..", "ipvs", "nettools.py")
CLUSTER_CIDR = "10.244.0.0/16"
SERVICE_RANGE = "10.96.0.0/24"


class Api:
    """Plain JSON over HTTP to the API server (what a test writes and reads)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return json.loads(r.read() or b"{}")
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read()[:300]!r}") from None

    def service(self, name: str, ports: list[dict], type_: str = "NodePort",
                ns: str = "default", **spec) -> dict:
        return self.call("POST", f"/api/v1/namespaces/{ns}/services",
                         {"metadata": {"name": name}, "spec": {"type": type_, "ports": ports,
                                                               **spec}})

    def endpoints(self, name: str, ips: list[str], ports: list[dict], ns: str = "default",
                  annotations: dict | None = None) -> dict:
        path = f"/api/v1/namespaces/{ns}/endpoints"
        obj = {"metadata": {"name": name, "annotations": annotations or {}},
               "subsets": [{"addresses": [{"ip": ip} for ip in ips], "ports": ports}]
               if ips else []}
        try:
            cur = self.call("GET", f"{path}/{name}")
        except AssertionError:
            return self.call("POST", path, obj)
        obj["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
        return self.call("PUT", f"{path}/{name}", obj)

    def delete(self, kind: str, name: str, ns: str = "default") -> None:
        self.call("DELETE", f"/api/v1/namespaces/{ns}/{kind}/{name}")


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_until(fn, timeout: float = 20.0, interval: float = 0.2, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def available() -> bool:
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("iptables-restore"):
        return False
    name = f"kpprobe{os.getpid() % 100000}"
    ok = subprocess.run(["ip", "netns", "add", name], capture_output=True).returncode == 0
    if ok:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)
    return ok


def sh(*args: str, check: bool = True, input: str | None = None, timeout: float = 60
       ) -> subprocess.CompletedProcess:
    p = subprocess.run(list(args), capture_output=True, text=True, input=input, timeout=timeout)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {p.stderr.strip()}")
    return p


class Lab:
    def __init__(self):
        self.tag = f"kp{os.getpid() % 1000}{random.randrange(100)}"
        self.net = 100 + random.randrange(100)   # 10.<net>.255.x for links into this namespace
        self.namespaces: list[str] = []
        self.root_links: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.logs: dict[str, str] = {}
        self._links = 0

    def netns(self, short: str) -> str:
        name = f"{self.tag}{short}"
        sh("ip", "netns", "add", name)
        self.namespaces.append(name)
        self.ip(name, "link", "set", "lo", "up")
        return name

    def ip(self, ns: str | None, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return sh("ip", *(["-n", ns] if ns else []), *args, check=check)

    def exec(self, ns: str | None, *args: str, check: bool = True, timeout: float = 60,
             input: str | None = None) -> subprocess.CompletedProcess:
        pre = ["ip", "netns", "exec", ns] if ns else []
        return sh(*pre, *args, check=check, timeout=timeout, input=input)

    def veth(self, ns_a: str | None, if_a: str, ns_b: str | None, if_b: str,
             addr_a: str = "", addr_b: str = "") -> None:
        """A veth pair between two namespaces (None: the test's own), with addresses."""
        if ns_a is None:
            if_a = f"{self.tag}{if_a}"[:15]
            self.root_links.append(if_a)
        if ns_b is None:
            if_b = f"{self.tag}{if_b}"[:15]
            self.root_links.append(if_b)
        tmp = f"{self.tag}t{self._links}"[:15]
        self._links += 1
        self.ip(ns_a, "link", "add", if_a, "type", "veth", "peer", "name", tmp)
        if ns_b is not None:
            self.ip(ns_a, "link", "set", tmp, "netns", ns_b)
        self.ip(ns_b, "link", "set", tmp, "name", if_b)
        for ns, ifname, addr in ((ns_a, if_a, addr_a), (ns_b, if_b, addr_b)):
            if addr:
                self.ip(ns, "addr", "add", addr, "dev", ifname)
            self.ip(ns, "link", "set", ifname, "up")

    def hub(self) -> str:
        """A bridge in this namespace (10.<net>.255.1/24) that namespaces join to
        reach processes here (the API server); returns its address."""
        br = f"{self.tag}br"[:15]
        if br not in self.root_links:
            sh("ip", "link", "add", br, "type", "bridge")
            self.root_links.append(br)
            sh("ip", "addr", "add", f"10.{self.net}.255.1/24", "dev", br)
            sh("ip", "link", "set", br, "up")
        return f"10.{self.net}.255.1"

    def join(self, ns: str) -> str:
        """Attach `ns` to the hub (interface mgmt0); returns its address there."""
        self.hub()
        i = self._joined = getattr(self, "_joined", 0) + 1
        addr = f"10.{self.net}.255.{10 + i}"
        self.veth(None, f"h{i}", ns, "mgmt0", "", f"{addr}/24")
        sh("ip", "link", "set", f"{self.tag}h{i}"[:15], "master", f"{self.tag}br"[:15])
        return addr

    def spawn(self, ns: str | None, args: list[str], log: str,
              env: dict | None = None) -> subprocess.Popen:
        pre = ["ip", "netns", "exec", ns] if ns else []
        fh = open(log, "ab")
        p = subprocess.Popen(pre + args, stdout=fh, stderr=subprocess.STDOUT,
                             env={**os.environ, **(env or {})}, start_new_session=True)
        fh.close()
        self.procs.append(p)
        self.logs[str(p.pid)] = log
        return p

    def nettools(self, ns: str, *args: str, timeout: float = 120) -> dict:
        p = self.exec(ns, sys.executable, NETTOOLS, *args, timeout=timeout)
        return json.loads(p.stdout)

    def serve(self, ns: str, name: str, port: int, log: str) -> subprocess.Popen:
        p = self.spawn(ns, [sys.executable, NETTOOLS, "serve", name, str(port)], log)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with open(log) as fh:
                if "ready" in fh.read():
                    return p
            if p.poll() is not None:
                raise RuntimeError(f"server {name} exited: {open(log).read()}")
            time.sleep(0.05)
        raise TimeoutError(f"server {name} not ready")

    @staticmethod
    def stop(p: subprocess.Popen, timeout: float = 10) -> None:
        if p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            p.wait(5)

    def close(self) -> None:
        for p in reversed(self.procs):
            self.stop(p)
        for ns in reversed(self.namespaces):
            sh("ip", "netns", "del", ns, check=False)
        for link in self.root_links:
            if os.path.exists(f"/sys/class/net/{link}"):
                sh("ip", "link", "del", link, check=False)
