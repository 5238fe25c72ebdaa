"""Real processes for integration tests: kcore etcd members and real etcd,
on free 127.0.0.1 ports, in temporary data dirs, always stopped afterwards."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import pytest

ETCDCTL = shutil.which("etcdctl")
ETCD = shutil.which("etcd")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(f"port {port} not listening after {timeout}s")


class Member:
    """One `kcore etcd` process; restartable on the same data dir and ports."""

    def __init__(self, data_dir: str, name: str = "m1", extra: list[str] | None = None,
                 scheme: str = "http"):
        self.data_dir = data_dir
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.extra = list(extra or [])
        self.scheme = scheme
        self.proc: subprocess.Popen | None = None
        self.log_path = os.path.join(os.path.dirname(data_dir.rstrip("/")) or ".",
                                     f"{name}.log")

    @property
    def endpoint(self) -> str:
        return f"127.0.0.1:{self.client_port}"

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self.client_port}"

    def args(self) -> list[str]:
        peer = f"http://127.0.0.1:{self.peer_port}"
        return [sys.executable, "-m", "kcore.cli.main", "etcd", "--name", self.name,
                "--data-dir", self.data_dir,
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"{self.name}={peer}", *self.extra]

    def start(self, wait: bool = True) -> "Member":
        self.logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(self.args(), stdout=self.logf, stderr=subprocess.STDOUT)
        if wait:
            try:
                wait_port(self.client_port, self.proc)
            except Exception:
                self.logf.flush()
                raise RuntimeError(f"kcore etcd did not start:\n{self.log()}") from None
        return self

    def log(self) -> str:
        try:
            with open(self.log_path, "rb") as fh:
                return fh.read().decode(errors="replace")[-5000:]
        except OSError:
            return ""

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


@pytest.fixture
def tmpdir_path():
    d = tempfile.mkdtemp(prefix="kcore-test-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


FRONTENDS = os.environ.get("KCORE_TEST_FRONTENDS", "native,grpc").split(",")


@pytest.fixture(params=FRONTENDS)
def member(tmpdir_path, request):
    """A running `kcore etcd`, once per gRPC front end (native HTTP/2 and grpc.aio)."""
    m = Member(os.path.join(tmpdir_path, "data"), extra=[f"--frontend={request.param}"])
    m.start()
    yield m
    m.stop()


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
