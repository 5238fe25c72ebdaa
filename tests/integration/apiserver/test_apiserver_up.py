"""`kcore up`: the API server over the embedded store, the store also on etcd's gRPC API."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile

from .apiserver_harness import _stop, free_port, wait_http


def test_kcore_up_serves_api_and_store():
    root = tempfile.mkdtemp(prefix="kcore-up-")
    port, cport = free_port(), free_port()
    log = os.path.join(root, "log")
    with open(log, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "kcore.cli.main", "up",
                                 f"--data-dir={root}/data", f"--insecure-port={port}",
                                 "--secure-port=0", "--bind-address=127.0.0.1",
                                 f"--listen-client-urls=http://127.0.0.1:{cport}"],
                                stdout=fh, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz/etcd", proc, log)
        etcdctl = shutil.which("etcdctl")
        if etcdctl:
            out = subprocess.run([etcdctl, f"--endpoints=127.0.0.1:{cport}", "get",
                                  "/registry/services/specs/default/kubernetes",
                                  "--print-value-only"], capture_output=True, text=True,
                                 timeout=20, env={**os.environ, "ETCDCTL_API": "3"})
            assert '"clusterIP":"10.0.0.1"' in out.stdout
    finally:
        _stop(proc)
        shutil.rmtree(root, ignore_errors=True)
