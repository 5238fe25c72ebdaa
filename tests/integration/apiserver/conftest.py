"""Real `kcore apiserver` processes for the API tests, on both backends:
the embedded store (default) and a real etcd subprocess (--etcd-servers).
Free 127.0.0.1 ports, temporary dirs removed afterwards, processes stopped by PID."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import urllib.request

import pytest

KUBECTL = shutil.which("kubectl")
ETCD = shutil.which("etcd")
BACKENDS = os.environ.get("KCORE_APISERVER_BACKENDS", "embedded,etcd,kcore").split(",")


from .apiserver_harness import _stop, _tail, free_port, wait_http  # noqa: E402


def _wait_port(port: int, proc, timeout: float = 20.0) -> None:
    import socket
    import time
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"store exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening")


class Cluster:
    """A running API server (and its etcd when the backend is 'etcd')."""

    def __init__(self, backend: str, root: str):
        self.backend, self.root = backend, root
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.etcd = None
        self.proc = None
        self.cache_dir = os.path.join(root, "kubectl-cache")

    def start(self) -> Cluster:
        args = [sys.executable, "-m", "kcore.cli.main", "apiserver",
                f"--insecure-port={self.port}", "--service-cluster-ip-range=10.0.0.0/24",
                f"--data-dir={os.path.join(self.root, 'data')}",
                "--secure-port=0", "--bind-address=127.0.0.1"]
        if self.backend == "etcd":
            if ETCD is None:
                pytest.skip("etcd (Debian etcd-server) not installed")
            cport, pport = free_port(), free_port()
            elog = open(os.path.join(self.root, "etcd.log"), "ab")
            self.etcd = subprocess.Popen(
                [ETCD, "--name", "t", "--data-dir", os.path.join(self.root, "etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{cport}",
                 "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-cluster", f"t=http://127.0.0.1:{pport}"],
                stdout=elog, stderr=subprocess.STDOUT)
            elog.close()
            wait_http(f"http://127.0.0.1:{cport}/health", self.etcd,
                      os.path.join(self.root, "etcd.log"))
            args.append(f"--etcd-servers=http://127.0.0.1:{cport}")
        elif self.backend == "kcore":
            # `kcore etcd` as a separate store; reads and writes over its pipelined
            # protocol, watches over its gRPC API
            cport, pport, qport = free_port(), free_port(), free_port()
            elog = open(os.path.join(self.root, "kcore-etcd.log"), "ab")
            self.etcd = subprocess.Popen(
                [sys.executable, "-m", "kcore.cli.main", "etcd", "--name", "t",
                 "--data-dir", os.path.join(self.root, "kcore-etcd"),
                 "--listen-client-urls", f"http://127.0.0.1:{cport}",
                 "--advertise-client-urls", f"http://127.0.0.1:{cport}",
                 "--listen-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-advertise-peer-urls", f"http://127.0.0.1:{pport}",
                 "--initial-cluster", f"t=http://127.0.0.1:{pport}",
                 "--listen-pipeline-urls", f"tcp://127.0.0.1:{qport}"],
                stdout=elog, stderr=subprocess.STDOUT)
            elog.close()
            _wait_port(qport, self.etcd)
            args += [f"--etcd-servers=http://127.0.0.1:{cport}",
                     f"--etcd-pipeline-servers=tcp://127.0.0.1:{qport}"]
        self.log_path = os.path.join(self.root, "apiserver.log")
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_http(self.url + "/readyz", self.proc, self.log_path)
        return self

    def stop(self) -> None:
        _stop(self.proc)
        _stop(self.etcd)

    def log(self) -> str:
        return _tail(self.log_path)

    # -- clients --------------------------------------------------------------------------
    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 30) -> subprocess.CompletedProcess:
        if KUBECTL is None:
            pytest.skip("kubectl not installed")
        cmd = [KUBECTL, f"--server={self.url}", f"--cache-dir={self.cache_dir}", *args]
        p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                           env={**os.environ, "HOME": self.root, "KUBECONFIG": "/dev/null"})
        if check and p.returncode != 0:
            raise AssertionError(f"{' '.join(args)} failed ({p.returncode}):\n{p.stdout}\n"
                                 f"{p.stderr}\n--- apiserver log ---\n{self.log()[-1500:]}")
        return p

    def http(self, method: str, path: str, body=None, ctype: str = "application/json",
             headers: dict | None = None):
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
        req = urllib.request.Request(self.url + path, data=data, method=method,
                                     headers={"Content-Type": ctype, **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                raw = r.read()
                return r.status, _maybe_json(raw), dict(r.headers)
        except urllib.error.HTTPError as e:
            raw = e.read()
            return e.code, _maybe_json(raw), dict(e.headers)


def _maybe_json(raw: bytes):
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode(errors="replace")


@contextlib.contextmanager
def running(backend: str, prefix: str = "kcore-apiserver-"):
    """A started Cluster in a temp dir, stopped and removed afterwards."""
    root = tempfile.mkdtemp(prefix=prefix)
    c = Cluster(backend, root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=BACKENDS)
def cluster(request):
    with running(request.param) as c:
        yield c
