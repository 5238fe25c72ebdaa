"""Real etcdctl (grpc-go) against the native gRPC front end.

The server is the toy registry of tests/unit/test_native_grpc.py in a
process of its own (plaintext, TLS, TLS with client certificates required);
the assertions are on what etcdctl prints, as a user would see it.
"""
from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
TOY = ROOT / "tests" / "unit" / "test_native_grpc.py"
ETCDCTL = shutil.which("etcdctl")

pytestmark = [pytest.mark.etcd,
              pytest.mark.skipif(ETCDCTL is None, reason="needs Debian etcd-client (etcdctl)")]


def _make_certs(directory: Path) -> dict[str, Path]:
    sys.path.insert(0, str(TOY.parent))
    try:
        from test_native_grpc import make_certs
    finally:
        sys.path.remove(str(TOY.parent))
    return make_certs(directory)


class ToyServer:
    def __init__(self, args: list[str]):
        self.proc = subprocess.Popen([sys.executable, str(TOY), *args], cwd=ROOT,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            self.close()
            raise RuntimeError(f"toy server did not start: {line!r}")
        self.port = int(line)

    def close(self) -> None:
        try:
            if self.proc.stdin:
                self.proc.stdin.close()
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class Etcdctl:
    def __init__(self, port: int, tls: list[str] | None = None):
        self.base = [ETCDCTL, f"--endpoints=127.0.0.1:{port}", "--dial-timeout=5s",
                     "--command-timeout=10s", *(tls or [])]
        self.env = {"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"}

    def run(self, *args: str, check: bool = True, input: str | None = None) -> str:
        p = subprocess.run([*self.base, *args], capture_output=True, text=True, timeout=30,
                           env=self.env, input=input, check=False)
        if check and p.returncode != 0:
            raise AssertionError(f"etcdctl {' '.join(args)} failed: {p.stderr}")
        return p.stdout if check else p.stdout + p.stderr

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*self.base, *args], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, env=self.env)


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return _make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(params=["plain", "tls", "tls-client-cert"])
def etcdctl(request, certs):
    args, tls = [], None
    if request.param != "plain":
        args = ["--tls", str(certs["ca"].parent)]
        tls = [f"--cacert={certs['ca']}"]
        if request.param == "tls-client-cert":
            args.append("--client-certs")
            tls += [f"--cert={certs['client']}", f"--key={certs['client_key']}"]
    server = ToyServer(args)
    try:
        yield Etcdctl(server.port, tls)
    finally:
        server.close()


def test_put_get_del(etcdctl):
    assert etcdctl.run("put", "foo", "bar") == "OK\n"
    assert etcdctl.run("put", "foo2", "baz") == "OK\n"
    assert etcdctl.run("get", "foo") == "foo\nbar\n"
    assert etcdctl.run("put", "--prev-kv", "foo", "qux") == "OK\nfoo\nbar\n"
    assert etcdctl.run("get", "--prefix", "--keys-only", "foo") == "foo\n\nfoo2\n\n"
    assert etcdctl.run("del", "foo") == "1\n"
    assert etcdctl.run("get", "foo") == ""


def test_error_codes_reach_etcdctl(etcdctl):
    out = etcdctl.run("put", "", "x", check=False)
    assert "Error: etcdserver: key is not provided" in out
    out = etcdctl.run("member", "list", check=False)
    assert "unknown service etcdserverpb.Cluster" in out
    out = etcdctl.run("compaction", "1", check=False)
    assert "unknown method Compact for service etcdserverpb.KV" in out


def test_watch(etcdctl):
    watcher = etcdctl.popen("watch", "w")
    try:
        time.sleep(0.5)
        etcdctl.run("put", "w", "1")
        etcdctl.run("put", "w", "2")
        etcdctl.run("del", "w")
        lines: list[str] = []
        deadline = time.monotonic() + 10
        while len(lines) < 8 and time.monotonic() < deadline:
            lines.append(watcher.stdout.readline().rstrip("\n"))
        assert lines == ["PUT", "w", "1", "PUT", "w", "2", "DELETE", "w"]
    finally:
        watcher.terminate()
        watcher.wait(10)


def test_lease_keep_alive_once(etcdctl):
    assert etcdctl.run("lease", "keep-alive", "--once", "1234") == \
        "lease 0000000000001234 keepalived with TTL(60)\n"


def test_snapshot_save(etcdctl, tmp_path):
    out = tmp_path / "snap.db"
    etcdctl.run("snapshot", "save", str(out))
    data = out.read_bytes()
    assert len(data) == 4 * 1024 * 1024 + 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_client_cert_required(certs):
    server = ToyServer(["--tls", str(certs["ca"].parent), "--client-certs"])
    try:
        no_cert = Etcdctl(server.port, [f"--cacert={certs['ca']}", "--dial-timeout=2s",
                                        "--command-timeout=3s"])
        out = no_cert.run("put", "k", "v", check=False)
        assert "OK" not in out.splitlines()
        assert "Error" in out
    finally:
        server.close()
