"""`kcore up` / `kcore status` / `kcore down`: the whole cluster on this machine,
driven with real kubectl over the admin kubeconfig and etcdctl on the store;
a second `up` on the same data dir resumes with its objects."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time

import pytest
from store_harness import ETCDCTL, free_port

KUBECTL = shutil.which("kubectl")
pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")


def kcore(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "kcore.cli.main", *args], capture_output=True,
                          text=True, timeout=timeout)


def test_up_status_down_resume(tmpdir_path):
    d = os.path.join(tmpdir_path, "cluster")
    ports = {k: free_port() for k in ("insecure", "secure", "etcd", "cm", "sched", "kubelet")}
    up_args = ["up", f"--data-dir={d}", f"--insecure-port={ports['insecure']}",
               f"--secure-port={ports['secure']}", "--bind-address=127.0.0.1",
               f"--etcd-port={ports['etcd']}", f"--controller-manager-port={ports['cm']}",
               f"--scheduler-port={ports['sched']}", f"--kubelet-port={ports['kubelet']}",
               "--proxy-mode=none", "--node-name=up-node", "--hollow-nodes=3"]
    env = {**os.environ, "KUBECONFIG": os.path.join(d, "admin.kubeconfig"), "HOME": tmpdir_path}

    def kubectl(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([KUBECTL, f"--cache-dir={tmpdir_path}/kc", *args],
                              capture_output=True, text=True, timeout=60, env=env)
    try:
        p = kcore(*up_args)
        assert p.returncode == 0, p.stdout + p.stderr
        assert f"export KUBECONFIG={d}/admin.kubeconfig" in p.stdout
        for name in ("apiserver", "controller-manager", "scheduler", "kubelet", "hollow-nodes"):
            assert name in p.stdout
        assert kcore("status", f"--data-dir={d}").returncode == 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "nodes").stdout
            if out.count(" Ready ") >= 4:
                break
            time.sleep(1)
        assert "up-node" in out and out.count(" Ready ") >= 4, out
        r = kubectl("create", "deployment", "web", "--image=python", "--replicas=2", "--",
                    sys.executable, "-c", "import time; print('hi', flush=True); time.sleep(300)")
        assert r.returncode == 0, r.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "deployment", "web").stdout
            if " 2/2 " in out:
                break
            time.sleep(1)
        assert " 2/2 " in out, out + kubectl("get", "pods", "-o", "wide").stdout
        if ETCDCTL:
            e = subprocess.run([ETCDCTL, f"--endpoints=127.0.0.1:{ports['etcd']}", "get",
                                "/registry/deployments/default/web", "--keys-only"],
                               capture_output=True, text=True, timeout=20,
                               env={**os.environ, "ETCDCTL_API": "3"})
            assert "/registry/deployments/default/web" in e.stdout
        # down: every component stops, nothing is left running
        p = kcore("down", f"--data-dir={d}")
        assert p.returncode == 0
        assert kcore("status", f"--data-dir={d}").returncode != 0
        assert subprocess.run(["pgrep", "-f", d], capture_output=True).returncode != 0
        # up again on the same data dir: the cluster resumes with its objects
        p = kcore(*up_args)
        assert p.returncode == 0, p.stdout + p.stderr
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            out = kubectl("get", "deployment", "web").stdout
            if " 2/2 " in out:
                break
            time.sleep(1)
        assert " 2/2 " in out, out
    finally:
        kcore("down", f"--data-dir={d}", "--timeout=15s")
