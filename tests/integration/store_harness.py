"""Real processes for the store's integration tests: kcore etcd members and
clusters on free 127.0.0.1 ports (or test network namespaces), in temporary
data dirs, always stopped afterwards; and etcdctl. Imported by name (not via
conftest) so it cannot collide with other suites' conftest modules."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest

ETCDCTL = shutil.which("etcdctl")
ETCD = shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0,
              host: str = "127.0.0.1") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


def wait_until(fn, timeout: float, what: str, interval: float = 0.5,
               error: type[Exception] = AssertionError):
    """Poll fn until it returns something true (returned); exceptions count as not yet.
    `error` (AssertionError) naming `what` and the last result at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = fn()
            if last:
                return last
        except Exception as e:  # noqa: BLE001 - keep polling
            last = e
        time.sleep(interval)
    raise error(f"timed out waiting for {what}: {last!r}")


class Member:
    """One `kcore etcd` process; restartable on the same data dir and ports."""

    def __init__(self, data_dir: str, name: str = "m1", extra: list[str] | None = None,
                 scheme: str = "http", peer_scheme: str = "http"):
        self.data_dir = data_dir
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra = list(extra or [])
        self.scheme = scheme
        self.peer_scheme = peer_scheme
        self.initial_cluster: str | None = None   # set by Cluster
        self.state = "new"
        self.listen_peer_port = self.peer_port     # differs when a proxy sits in front
        self.host = "127.0.0.1"                    # a test host's address (netns)
        self.cmd_prefix: list[str] = []            # e.g. ip netns exec NS
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir.rstrip("/")) or ".",
                                     f"{name}.log")

    @property
    def endpoint(self) -> str:
        return f"{self.host}:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"{self.peer_scheme}://{self.host}:{self.peer_port}"

    def args(self) -> list[str]:
        peer = self.peer_url
        listen = f"{self.peer_scheme}://{self.host}:{self.listen_peer_port}"
        return [*self.cmd_prefix, sys.executable, "-m", "kcore.cli.main", "etcd", "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", listen, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", self.initial_cluster or f"{self.name}={peer}",
                "--initial-cluster-state", self.state, *self.extra]

    def start(self, wait: bool = True) -> "Member":
        os.makedirs(os.path.dirname(self.log_path), exist_ok=True)
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_port(self.client_port, self.proc, host=self.host)
            except Exception:
                self.logf.flush()
                raise RuntimeError(f"kcore etcd did not start:\n{self.log()}") from None
            if self.initial_cluster is None:
                # a lone member: also wait for it to lead, as etcd serves clients only
                # once ready (its first write must not race the election on a busy box)
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline and "became leader" not in self.log():
                    time.sleep(0.02)
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode(errors="replace")[-5000:]
        except OSError:
            return ""

    def signal(self, sig) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)

    def kill9(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        if getattr(self, "logf", None):
            self.logf.close()


class Cluster:
    """N `kcore etcd` members on loopback sharing one --initial-cluster."""

    def __init__(self, root: str, n: int = 3, extra: list[str] | None = None,
                 peer_scheme: str = "http"):
        self.root = root
        self.extra = list(extra or [])
        self.members = [Member(os.path.join(root, f"m{i}"), name=f"m{i}", extra=self.extra,
                               peer_scheme=peer_scheme) for i in range(1, n + 1)]
        ic = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        for m in self.members:
            m.initial_cluster = ic

    @property
    def endpoints(self) -> str:
        return ",".join(m.endpoint for m in self.members if m.proc and m.proc.poll() is None)

    def start(self) -> "Cluster":
        for m in self.members:
            m.start(wait=False)
        for m in self.members:
            wait_port(m.client_port, m.proc, host=m.host)
        return self

    def stop(self) -> None:
        for m in self.members:
            m.stop()

    def by_name(self, name: str) -> Member:
        return next(m for m in self.members if m.name == name)


FRONTENDS = os.environ.get("KCORE_TEST_FRONTENDS", "native,grpc").split(",")


def etcdctl(endpoint: str, *args: str, input: str | None = None, timeout: float = 30,
            check: bool = True, extra_env: dict | None = None,
            tls: list[str] | None = None) -> subprocess.CompletedProcess:
    if ETCDCTL is None:
        pytest.skip("etcdctl (Debian etcd-client) not installed")
    env = {**os.environ, "ETCDCTL_API": "3", **(extra_env or {})}
    cmd = [ETCDCTL, f"--endpoints={endpoint}", *(tls or []), *args]
    p = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout,
                       env=env)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({p.returncode}):\n{p.stdout}\n{p.stderr}")
    return p
