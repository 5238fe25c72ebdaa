"""Real processes for the kubelet tests: `kcore apiserver` (and controller-manager /
scheduler when this tree has them), `kcore kubelet`s, real kubectl with a fresh
cache dir. Free 127.0.0.1 ports, temp dirs; everything started here is stopped by
PID, container process groups and network namespaces of our nodes are removed,
even after failures."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request

from store_harness import wait_until  # tests/integration (its conftest imports it too)

KUBECTL = shutil.which("kubectl")
# the mount point kubelets create on the host for pods' service-account volumes
SA_MOUNT_POINT = "/var/run/secrets/kubernetes.io/serviceaccount"


def missing_dirs(path: str) -> list[str]:
    """path and its ancestors that do not exist yet, deepest first."""
    path = os.path.realpath(path)
    out = []
    while path != "/" and not os.path.exists(path):
        out.append(path)
        path = os.path.dirname(path)
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def kcore_commands() -> set[str]:
    out = subprocess.run([sys.executable, "-m", "kcore.cli.main", "--help"],
                         capture_output=True, text=True).stdout
    return {ln.strip() for ln in out.splitlines()[2:] if ln.strip()}


def _tail(path: str, n: int = 3000) -> str:
    try:
        with open(path, "rb") as fh:
            return fh.read().decode(errors="replace")[-n:]
    except OSError:
        return ""


def _stop(proc: subprocess.Popen | None, sig=signal.SIGTERM, timeout: float = 15) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


def wait_for(fn, timeout: float = 30, interval: float = 0.2, what: str = ""):
    """store_harness.wait_until with this harness's defaults; TimeoutError at the end."""
    return wait_until(fn, timeout, what or repr(fn), interval, error=TimeoutError)


class Kubelet:
    def __init__(self, cluster: Cluster, name: str, extra: list[str]):
        self.cluster, self.name = cluster, name
        self.root = os.path.join(cluster.root, f"kubelet-{name}")
        self.port = free_port()
        self.log_path = os.path.join(cluster.root, f"kubelet-{name}.log")
        args = [sys.executable, "-m", "kcore.cli.main", "kubelet", f"--master={cluster.url}",
                f"--node-name={name}", f"--root-dir={self.root}", f"--port={self.port}",
                "--address=127.0.0.1", "--node-ip=127.0.0.1", *extra]
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def wait_ready(self, timeout: float = 30) -> None:
        def ok():
            if self.proc.poll() is not None:
                raise RuntimeError(f"kubelet exited:\n{self.log()}")
            code, node = self.cluster.http("GET", f"/api/v1/nodes/{self.name}")
            return code == 200 and any(c["type"] == "Ready" and c["status"] == "True"
                                       for c in node.get("status", {}).get("conditions", []))
        wait_for(ok, timeout, what=f"node {self.name} Ready")

    def get(self, path: str):
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=10) as r:
            return r.read()

    def log(self) -> str:
        return _tail(self.log_path)

    def stop(self, sig=signal.SIGTERM) -> None:
        _stop(self.proc, sig)

    def kill9(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def cleanup(self) -> None:
        """Whatever the kubelet could not clean (it was killed): its containers' process
        groups (pid files) and its network namespaces and links."""
        self.stop()
        from kcore.kubelet.runtime.process import reap_leftovers
        reap_leftovers(self.root)
        import hashlib
        h = hashlib.sha1(self.name.encode()).hexdigest()[:6]
        out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout \
            if shutil.which("ip") else ""
        for line in out.splitlines():
            ns = line.split()[0] if line.split() else ""
            if ns.startswith(f"kc{h}-"):
                subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        if shutil.which("ip"):
            links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True,
                                   text=True).stdout
            for line in links.splitlines():
                parts = line.split(":")
                if len(parts) > 1:
                    name = parts[1].strip().split("@")[0]
                    if name == f"kc{h}br" or (name.startswith(f"k{h[:5]}") and len(name) == 15):
                        subprocess.run(["ip", "link", "del", name], capture_output=True)


class Cluster:
    """A kcore API server on a free port, plus the kubelets (and controllers) tests add."""

    def __init__(self, controllers: bool = False, cm_flags: list[str] | None = None,
                 apiserver_flags: list[str] | None = None, scheduler: bool = True):
        self.has_controllers = False
        self.apiserver_flags = list(apiserver_flags or [])
        self.want_scheduler = scheduler
        self.host_dirs = missing_dirs(SA_MOUNT_POINT)     # removed again at stop()
        self.root = tempfile.mkdtemp(prefix="kcore-kubelet-")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.cache_dir = os.path.join(self.root, "kubectl-cache")
        self.kubelets: list[Kubelet] = []
        self.procs: list[subprocess.Popen] = []
        self.logs: list[str] = []
        self.want_controllers = controllers
        self.cm_flags = list(cm_flags or [])

    def start(self) -> Cluster:
        args = [sys.executable, "-m", "kcore.cli.main", "apiserver",
                f"--insecure-port={self.port}", f"--data-dir={os.path.join(self.root, 'data')}",
                "--secure-port=-1", *self.apiserver_flags]     # (a later flag wins)
        self.log_path = self._spawn("apiserver", args)
        wait_for(lambda: self.http("GET", "/readyz")[0] == 200, 30,
                 what=f"apiserver\n{_tail(self.log_path)}")
        if self.want_controllers:
            cmds = kcore_commands()
            self.has_controllers = {"controller-manager", "scheduler"} <= cmds
            if "controller-manager" in cmds:
                self._spawn("controller-manager", [
                    sys.executable, "-m", "kcore.cli.main", "controller-manager",
                    f"--master={self.url}", "--leader-elect=false", "--port=0",
                    *self.cm_flags])
            if "scheduler" in cmds and self.want_scheduler:
                self._spawn("scheduler", [sys.executable, "-m", "kcore.cli.main", "scheduler",
                                          f"--master={self.url}", "--leader-elect=false",
                                          "--port=0", "--secure-port=-1"])
        return self

    def _spawn(self, name: str, args: list[str]) -> str:
        path = os.path.join(self.root, f"{name}.log")
        with open(path, "ab") as log:
            self.procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT))
        self.logs.append(path)
        return path

    def kubelet(self, name: str, *extra: str, wait: bool = True) -> Kubelet:
        k = Kubelet(self, name, list(extra))
        self.kubelets.append(k)
        if wait:
            k.wait_ready()
        return k

    def stop(self) -> None:
        for k in self.kubelets:
            try:
                k.cleanup()
            except Exception:  # noqa: BLE001 - clean the rest anyway
                pass
        for p in reversed(self.procs):   # (an API server with open watches is slow to exit)
            _stop(p, timeout=5)
        shutil.rmtree(self.root, ignore_errors=True)
        for d in self.host_dirs:          # (rmdir: only when empty)
            try:
                os.rmdir(d)
            except OSError:
                pass

    def dump(self) -> str:
        parts = [f"--- {os.path.basename(p)} ---\n{_tail(p, 1500)}" for p in self.logs]
        parts += [f"--- kubelet {k.name} ---\n{_tail(k.log_path, 2500)}" for k in self.kubelets]
        return "\n".join(parts)

    # -- clients --------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30) -> subprocess.CompletedProcess:
        cmd = [KUBECTL, f"--server={self.url}", f"--cache-dir={self.cache_dir}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "HOME": self.root, "KUBECONFIG": "/dev/null"})
        if check and p.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed ({p.returncode}):\n"
                                 f"{p.stdout}\n{p.stderr}\n{self.dump()}")
        return p

    def kubectl_bg(self, *args: str) -> subprocess.Popen:
        cmd = [KUBECTL, f"--server={self.url}", f"--cache-dir={self.cache_dir}", *args]
        return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env={**os.environ, "HOME": self.root, "KUBECONFIG": "/dev/null"})

    def http(self, method: str, path: str, body=None, ctype: str = "application/json"):
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, _json(raw)
        except urllib.error.HTTPError as e:
            return e.code, _json(e.read())
        except OSError as e:
            return 0, str(e)

    def pod(self, name: str, ns: str = "default") -> dict:
        code, obj = self.http("GET", f"/api/v1/namespaces/{ns}/pods/{name}")
        return obj if code == 200 else {}

    def create_pod(self, manifest: dict, node: str | None = None, ns: str = "default") -> dict:
        """Create, then bind through pods/<name>/binding (what a scheduler does)."""
        code, obj = self.http("POST", f"/api/v1/namespaces/{ns}/pods", manifest)
        assert code == 201, obj
        if node:
            self.bind(obj["metadata"]["name"], node, ns)
        return obj

    def bind(self, name: str, node: str, ns: str = "default") -> None:
        code, obj = self.http("POST", f"/api/v1/namespaces/{ns}/pods/{name}/binding", {
            "apiVersion": "v1", "kind": "Binding", "metadata": {"name": name},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        assert code == 201, obj


def _json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


def pod_phase(pod: dict) -> str:
    return (pod.get("status") or {}).get("phase", "")


def container_status(pod: dict, name: str) -> dict:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        if c["name"] == name:
            return c
    return {}


def is_ready(pod: dict) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True"
               for c in (pod.get("status") or {}).get("conditions") or [])


def pgid_alive(pid: int) -> bool:
    try:
        os.killpg(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
