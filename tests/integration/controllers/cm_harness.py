"""Real processes for the controller tests: a `kcore apiserver` on the embedded store
and `kcore controller-manager`s on free 127.0.0.1 ports, real kubectl with a fresh
cache dir, the official Python client, and a fake kubelet (a thread that heartbeats
nodes and plays the kubelet's part on pods through the API, until the real kubelet
lands). Processes are stopped by PID, temp dirs removed even on failure."""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: str, n: int = 4000) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def wait_until(pred, timeout: float, step: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(step)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Proc:
    def __init__(self, name: str, args: list[str], root: str):
        self.name, self.args = name, args
        self.log_path = os.path.join(root, f"{name}.log")
        self.proc: subprocess.Popen | None = None

    def start(self) -> Proc:
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        finally:
            log.close()
        return self

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill9(self) -> None:
        if self.alive():
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def stop(self, grace: float = 5.0) -> None:
        if self.alive():
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.kill9()

    def log(self) -> str:
        return _tail(self.log_path)


def wait_http(url: str, proc: Proc, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not proc.alive():
            raise RuntimeError(f"{proc.name} exited:\n{proc.log()}")
        try:
            with urllib.request.urlopen(url, timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"{url} not ready:\n{proc.log()}")


FAST_CM_FLAGS = [
    "--node-monitor-period=0.5s", "--node-monitor-grace-period=3s",
    "--node-startup-grace-period=3s", "--node-eviction-rate=20",
    "--resource-quota-sync-period=2s", "--kube-api-qps=200", "--kube-api-burst=400",
]


class Cluster:
    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="kcore-cm-test-")
        self.api_port = free_port()
        self.url = f"http://127.0.0.1:{self.api_port}"
        self.api: Proc | None = None
        self.cms: list[Proc] = []
        self.cm_ports: list[int] = []
        self.cache_dir = os.path.join(self.root, "kubectl-cache")
        self._py = None

    def start_apiserver(self, *extra: str) -> Cluster:
        self.api = Proc("apiserver", [
            sys.executable, "-m", "kcore.cli.main", "apiserver",
            f"--insecure-port={self.api_port}", "--secure-port=-1",
            f"--data-dir={os.path.join(self.root, 'data')}",
            "--service-cluster-ip-range=10.0.0.0/24", *extra], self.root).start()
        wait_http(self.url + "/readyz", self.api)
        return self

    def start_cm(self, *extra: str, name: str | None = None, wait: bool = True,
                 master: bool = True) -> Proc:
        port = free_port()
        name = name or f"cm{len(self.cms)}"
        cm = Proc(name, [sys.executable, "-m", "kcore.cli.main", "controller-manager",
                         *([f"--master={self.url}"] if master else []), f"--port={port}",
                         *extra], self.root).start()
        self.cms.append(cm)
        self.cm_ports.append(port)
        if wait:
            wait_http(f"http://127.0.0.1:{port}/healthz", cm)
        return cm

    def stop(self) -> None:
        if os.environ.get("KCORE_TEST_KEEP_LOGS"):
            print(self.logs())
        for cm in self.cms:
            cm.stop()
        if self.api is not None:
            self.api.stop(3)
        shutil.rmtree(self.root, ignore_errors=True)

    def logs(self) -> str:
        out = [f"--- apiserver ---\n{self.api.log()[-1500:]}" if self.api else ""]
        out += [f"--- {c.name} ---\n{c.log()[-3000:]}" for c in self.cms]
        return "\n".join(out)

    # -- clients ------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 60) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, f"--server={self.url}", f"--cache-dir={self.cache_dir}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "HOME": self.root, "KUBECONFIG": "/dev/null"})
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}\n{self.logs()}")
        return p

    def kjson(self, *args: str):
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def py(self):
        """The official kubernetes Python client, configured for this cluster."""
        if self._py is None:
            from kubernetes import client
            cfg = client.Configuration()
            cfg.host = self.url
            self._py = client.ApiClient(cfg)
        return self._py

    def metrics(self, i: int = 0) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{self.cm_ports[i]}/metrics",
                                    timeout=5) as r:
            return r.read().decode()


# ------------------------------------------------------------------- fake kubelet --
class FakeKubelet:
    """Plays the kubelets of `nodes` through the API, as the real kubelet will: keeps
    the Node Ready (status heartbeat) and its Lease renewed, marks pods bound to them
    Running and Ready with an IP, and finishes their graceful deletions. `schedule`
    also binds pending pods to live nodes (the scheduler's part). `stop(node)` is a
    kill -9 of that node's kubelet; `start(node)` brings it back."""

    def __init__(self, url: str, nodes: list[str] = (), schedule: bool = False,
                 all_pods: bool = False, period: float = 0.2):
        self.url = url
        self.live: set[str] = set(nodes)
        self.known: set[str] = set(nodes)
        self.schedule = schedule
        self.all_pods = all_pods
        self.period = period
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)
        self._ip = 0
        self.errors: list[str] = []

    def __enter__(self) -> FakeKubelet:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(10)

    def stop(self, node: str) -> None:
        self.live.discard(node)

    def start(self, node: str) -> None:
        self.known.add(node)
        self.live.add(node)

    async def _main(self) -> None:
        from kcore.api.meta import rfc3339
        from kcore.client import LEASES, NODES, PODS, AlreadyExists, ApiError, Client, NotFound
        from kcore.client.leaderelection import micro_time
        async with Client(self.url) as c:
            last_status: dict[str, float] = {}
            rr = 0
            while not self._stop.is_set():
                try:
                    for n in sorted(self.live):
                        now = time.monotonic()
                        try:
                            node = await c.get(NODES, n)
                        except NotFound:
                            node = None
                        ready = {"type": "Ready", "status": "True", "reason": "KubeletReady",
                                 "message": "kubelet is posting ready status",
                                 "lastHeartbeatTime": rfc3339(), "lastTransitionTime":
                                 rfc3339()}
                        if node is None:
                            try:
                                await c.create(NODES, {"metadata": {"name": n, "labels": {
                                    "kubernetes.io/hostname": n}},
                                    "status": {"conditions": [ready], "capacity": {
                                        "cpu": "4", "memory": "8Gi", "pods": "110"}}})
                            except AlreadyExists:
                                pass
                            last_status[n] = now
                        else:
                            conds = (node.get("status") or {}).get("conditions") or []
                            cur = next((x for x in conds if x.get("type") == "Ready"), None)
                            if cur is None or cur.get("status") != "True" or \
                                    now - last_status.get(n, 0) > 5:
                                if cur is not None and cur.get("status") == "True":
                                    ready["lastTransitionTime"] = cur.get(
                                        "lastTransitionTime", ready["lastTransitionTime"])
                                node.setdefault("status", {})["conditions"] = [
                                    x for x in conds if x.get("type") != "Ready"] + [ready]
                                try:
                                    await c.update_status(NODES, node)
                                    last_status[n] = now
                                except ApiError:
                                    pass
                        try:
                            lease = await c.get(LEASES, n, "kube-node-lease")
                            lease["spec"]["renewTime"] = micro_time()
                            await c.update(LEASES, lease)
                        except NotFound:
                            try:
                                await c.create(LEASES, {
                                    "metadata": {"name": n, "namespace": "kube-node-lease"},
                                    "spec": {"holderIdentity": n, "leaseDurationSeconds": 40,
                                             "renewTime": micro_time()}})
                            except AlreadyExists:
                                pass
                        except ApiError:
                            pass
                    items, _ = await c.list_all(PODS)
                    live = sorted(self.live)
                    for p in items:
                        md, spec = p["metadata"], p.get("spec") or {}
                        node = spec.get("nodeName")
                        mine = node in self.live or (self.all_pods and not node and
                                                     not self.schedule)
                        if not node and self.schedule and live and \
                                not md.get("deletionTimestamp"):
                            target = live[rr % len(live)]
                            rr += 1
                            try:
                                await c.bind(md["namespace"], md["name"], target)
                            except ApiError:
                                pass
                            continue
                        if not mine:
                            continue
                        if md.get("deletionTimestamp"):
                            try:
                                await c.delete(PODS, md["name"], md["namespace"],
                                               grace_period_seconds=0)
                            except ApiError:
                                pass
                            continue
                        st = p.get("status") or {}
                        if st.get("phase") == "Running":
                            continue
                        self._ip += 1
                        p["status"] = {
                            "phase": "Running", "hostIP": "127.0.0.1",
                            "podIP": f"10.244.{self._ip // 250}.{self._ip % 250 + 1}",
                            "startTime": rfc3339(),
                            "conditions": [{"type": t, "status": "True",
                                            "lastTransitionTime": rfc3339()}
                                           for t in ("Initialized", "Ready",
                                                     "ContainersReady", "PodScheduled")],
                            "containerStatuses": [
                                {"name": ct.get("name", "c"), "ready": True,
                                 "restartCount": 0, "image": ct.get("image", ""),
                                 "imageID": "", "started": True,
                                 "state": {"running": {"startedAt": rfc3339()}}}
                                for ct in spec.get("containers") or []]}
                        try:
                            await c.update_status(PODS, p)
                        except ApiError:
                            pass
                except ApiError as e:
                    self.errors.append(str(e))
                await asyncio.sleep(self.period)
