"""The restore drill an operator rehearses: a 3-member store behind an API server
holds objects; take a dated backup; lose everything; restore the backup into a
new data dir as one member (--force-new-cluster), put the API server back on it,
grow the store back to 3 with `etcdctl member add`, and find every object."""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.request

import pytest
from store_harness import ETCDCTL, Cluster, Member, etcdctl, free_port, wait_port

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(ETCDCTL is None or KUBECTL is None,
                                reason="needs etcdctl and kubectl")


class APIServer:
    def __init__(self, root: str, endpoints: list[str]):
        self.root = root
        self.port = free_port()
        self.endpoints = endpoints
        self.proc = None

    def start(self) -> "APIServer":
        log = open(os.path.join(self.root, f"apiserver-{self.port}.log"), "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kcore.cli.main", "apiserver",
             f"--insecure-port={self.port}", "--secure-port=-1",
             f"--data-dir={self.root}/apiserver-data",
             f"--etcd-servers={','.join('http://' + e for e in self.endpoints)}"],
            stdout=log, stderr=subprocess.STDOUT)
        log.close()
        wait_port(self.port, self.proc, timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/readyz", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise TimeoutError("API server not ready")

    def kubectl(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
        p = subprocess.run([KUBECTL, f"--server=http://127.0.0.1:{self.port}",
                            f"--cache-dir={self.root}/kc-{self.port}", *args], input=input,
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        return p

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def test_backup_wipe_restore_force_new_cluster_and_grow_back(tmpdir_path):
    c = Cluster(os.path.join(tmpdir_path, "old"), 3).start()
    api = APIServer(tmpdir_path, [m.endpoint for m in c.members])
    new_members: list[Member] = []
    api2 = None
    try:
        api.start()
        for i in range(5):
            api.kubectl("create", "namespace", f"team-{i}")
            api.kubectl("create", "configmap", f"settings-{i}", f"--from-literal=k=v{i}",
                        "-n", f"team-{i}")
        api.kubectl("create", "deployment", "web", "--image=python", "--replicas=3", "-n",
                    "team-0")
        before = sorted(api.kubectl("get", "configmaps", "-A", "-o", "name").stdout.split())
        backups = os.path.join(tmpdir_path, "backups")
        p = subprocess.run([sys.executable, "-m", "kcore.cli.main", "etcd", "backup",
                            f"--endpoints={c.members[1].endpoint}", f"--dir={backups}",
                            "--quiet"], capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        snap = os.path.join(backups, sorted(os.listdir(backups))[-1])

        # disaster: every process gone, every data dir wiped
        api.stop()
        c.stop()
        shutil.rmtree(os.path.join(tmpdir_path, "old"))

        # restore one member from the backup, as a one-member cluster
        m1 = Member(os.path.join(tmpdir_path, "new", "m1"), name="m1")
        os.makedirs(os.path.dirname(m1.data_dir), exist_ok=True)
        p = subprocess.run([sys.executable, "-m", "kcore.cli.main", "etcd", "snapshot",
                            "restore", snap, "--data-dir", m1.data_dir, "--name", "m1",
                            "--initial-cluster", f"m1={m1.peer_url}",
                            "--initial-advertise-peer-urls", m1.peer_url],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stderr
        m1.extra = ["--force-new-cluster"]
        m1.start()
        new_members.append(m1)
        api2 = APIServer(tmpdir_path, [m1.endpoint]).start()
        after = sorted(api2.kubectl("get", "configmaps", "-A", "-o", "name").stdout.split())
        assert after == before
        assert "web" in api2.kubectl("get", "deployments", "-n", "team-0").stdout

        # grow back to three members, one at a time
        for name in ("m2", "m3"):
            m = Member(os.path.join(tmpdir_path, "new", name), name=name)
            out = etcdctl(m1.endpoint, "member", "add", name, f"--peer-urls={m.peer_url}").stdout
            ic = re.search(r'ETCD_INITIAL_CLUSTER="([^"]+)"', out)[1]
            m.initial_cluster, m.state = ic, "existing"
            m.start()
            new_members.append(m)
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:
                lines = etcdctl(m1.endpoint, "member", "list").stdout.strip().splitlines()
                if all(", started, " in ln and not ln.endswith(", , false") for ln in lines):
                    break
                time.sleep(0.3)
        lines = etcdctl(m1.endpoint, "member", "list").stdout.strip().splitlines()
        assert len(lines) == 3 and all(", started, " in ln for ln in lines), lines
        # every member holds the same data
        eps = ",".join(m.endpoint for m in new_members)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            hashes = {h["HashKV"]["hash"] for h in json.loads(
                etcdctl(eps, "endpoint", "hashkv", "-w", "json").stdout)}
            if len(hashes) == 1:
                break
            time.sleep(0.3)
        assert len(hashes) == 1
        # the API server, now on all three, serves every object and takes writes
        api2.stop()
        api2 = APIServer(tmpdir_path, [m.endpoint for m in new_members]).start()
        assert sorted(api2.kubectl("get", "configmaps", "-A", "-o", "name").stdout.split()) \
            == before
        api2.kubectl("create", "configmap", "after-restore", "--from-literal=ok=yes")
        # and the restarted-without-flag first member stays in the 3-member cluster
        m1.stop()
        m1.extra = []
        m1.start()
        assert etcdctl(m1.endpoint, "get", "/registry/configmaps/default/after-restore",
                       "--keys-only").stdout.strip() == "/registry/configmaps/default/after-restore"
    finally:
        for a in (api, api2):
            if a is not None:
                a.stop()
        for m in new_members:
            m.stop()
        c.stop()
