"""Real `kcore apiserver` and `kcore scheduler` processes for the scheduler tests.

Free 127.0.0.1 ports, a temporary data dir, processes stopped by PID (SIGTERM,
then SIGKILL). Nodes are registered the way a kubelet registers itself: a Node
with status capacity/allocatable and a Ready condition, through the API.
"""
from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tail(path: str, n: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def stop(proc: subprocess.Popen | None, sig: int = signal.SIGTERM) -> None:
    if proc is not None and proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _decode(raw: bytes):
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def wait_for(cond, timeout: float = 20.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = cond()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out waiting for {what} (last: {last!r})")


class API:
    """A tiny synchronous client for assertions (what a user with curl would see)."""

    def __init__(self, url: str):
        self.url = url

    def call(self, method: str, path: str, body=None, ctype="application/json"):
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, _decode(r.read())
        except urllib.error.HTTPError as e:
            return e.code, _decode(e.read())

    def ok(self, method: str, path: str, body=None, ctype="application/json"):
        code, obj = self.call(method, path, body, ctype)
        assert 200 <= code < 300, f"{method} {path}: {code} {obj}"
        return obj

    def add_node(self, name: str, cpu: str = "4", memory: str = "8Gi", pods: str = "110",
                 labels: dict | None = None, taints: list | None = None) -> dict:
        res = {"cpu": cpu, "memory": memory, "pods": pods}
        return self.ok("POST", "/api/v1/nodes", {
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name,
                                                  **(labels or {})}},
            "spec": {"taints": taints} if taints else {},
            "status": {"capacity": res, "allocatable": res,
                       "conditions": [{"type": "Ready", "status": "True",
                                       "reason": "KubeletReady",
                                       "message": "kubelet is posting ready status"}]}})

    def add_pod(self, name: str, cpu: str = "100m", memory: str = "64Mi",
                ns: str = "default", **spec) -> dict:
        return self.ok("POST", f"/api/v1/namespaces/{ns}/pods", {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": ns},
            "spec": {"containers": [{"name": "c", "image": "registry.k8s.io/pause:3.9",
                                     "resources": {"requests": {"cpu": cpu,
                                                                "memory": memory}}}],
                     **spec}})

    def pod(self, name: str, ns: str = "default") -> dict:
        return self.ok("GET", f"/api/v1/namespaces/{ns}/pods/{name}")

    def pods(self, ns: str = "default") -> list[dict]:
        return self.ok("GET", f"/api/v1/namespaces/{ns}/pods")["items"]

    def events(self, ns: str = "default", name: str | None = None,
               reason: str | None = None) -> list[dict]:
        items = self.ok("GET", f"/api/v1/namespaces/{ns}/events")["items"]
        return [e for e in items
                if (name is None or e["involvedObject"].get("name") == name)
                and (reason is None or e["reason"] == reason)]

    def lease(self, name: str = "kube-scheduler", ns: str = "kube-system") -> dict | None:
        code, obj = self.call("GET", f"/apis/coordination.k8s.io/v1/namespaces/{ns}/"
                              f"leases/{name}")
        return obj if code == 200 else None


class Cluster:
    """An API server plus any number of schedulers, under one temp dir."""

    def __init__(self, root: str):
        self.root = root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.api = API(self.url)
        self.apiserver: subprocess.Popen | None = None
        self.schedulers: list[Scheduler] = []

    def start(self) -> Cluster:
        self.log_path = os.path.join(self.root, "apiserver.log")
        with open(self.log_path, "ab") as log:
            self.apiserver = subprocess.Popen(
                [sys.executable, "-m", "kcore.cli.main", "apiserver",
                 f"--insecure-port={self.port}", "--secure-port=-1",
                 f"--data-dir={os.path.join(self.root, 'data')}"],
                stdout=log, stderr=subprocess.STDOUT)
        wait_for(lambda: self._ready(), 40, what=f"apiserver\n{tail(self.log_path)}")
        return self

    def _ready(self) -> bool:
        if self.apiserver.poll() is not None:
            raise RuntimeError(f"apiserver exited:\n{tail(self.log_path)}")
        try:
            return self.api.call("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def scheduler(self, *flags: str, name: str = "") -> Scheduler:
        s = Scheduler(self, name or f"scheduler-{len(self.schedulers)}", list(flags))
        self.schedulers.append(s)
        return s.start()

    def stop(self) -> None:
        for s in self.schedulers:
            s.stop()
        stop(self.apiserver)


class Scheduler:
    def __init__(self, cluster: Cluster, name: str, flags: list[str]):
        self.cluster, self.name, self.flags = cluster, name, flags
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(cluster.root, f"{name}.log")
        self.http = ""

    def start(self) -> Scheduler:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kcore.cli.main", "scheduler",
                 f"--master={self.cluster.url}", "--port=0", *self.flags],
                stdout=log, stderr=subprocess.STDOUT)
        m = wait_for(lambda: self._serving(), 40, what=f"{self.name} serving")
        self.http = m
        wait_for(lambda: self.get("/readyz")[0] == 200, 40, what=f"{self.name} ready")
        return self

    def _serving(self) -> str | None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.name} exited {self.proc.returncode}:\n"
                               f"{tail(self.log_path)}")
        m = re.search(r"serving /healthz and /metrics on (http://127\.0\.0\.1:\d+)",
                      tail(self.log_path, 100000))
        return m.group(1) if m else None

    def get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.http + path, timeout=10) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError as e:
            return 0, str(e)

    def metric(self, name: str, **labels: str) -> float:
        """Sum of a metric's samples matching labels (0 if absent)."""
        code, text = self.get("/metrics")
        assert code == 200, text
        total = 0.0
        for line in text.splitlines():
            if not line.startswith(name):
                continue
            head, _, value = line.rpartition(" ")
            if head != name and not head.startswith(name + "{"):
                continue
            if all(f'{k}="{v}"' in head for k, v in labels.items()):
                total += float(value)
        return total

    def log(self) -> str:
        return tail(self.log_path)

    def kill9(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        stop(self.proc)
