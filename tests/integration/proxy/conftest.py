"""Fixtures for the proxy tests: a Lab of network namespaces (proxy_lab.py) and a real
`kcore apiserver` on the Lab's hub bridge, reachable from every namespace that
joins it. All of it is removed after the module, also on failure."""
from __future__ import annotations

import os
import sys
import urllib.request

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from proxy_lab import SERVICE_RANGE, Api, Lab, available, free_port, wait_until  # noqa: E402


@pytest.fixture(scope="module")
def lab():
    if not available():
        pytest.skip("needs root, iproute2 and iptables")
    lab = Lab()
    try:
        yield lab
    finally:
        lab.close()


@pytest.fixture(scope="module")
def api(lab, tmp_path_factory):
    root = tmp_path_factory.mktemp("apiserver")
    host = lab.hub()
    port = free_port(host)
    log = str(root / "apiserver.log")
    p = lab.spawn(None, [sys.executable, "-m", "kcore.cli.main", "apiserver",
                         f"--insecure-bind-address={host}", f"--insecure-port={port}",
                         "--secure-port=0", f"--service-cluster-ip-range={SERVICE_RANGE}",
                         f"--data-dir={root / 'data'}", f"--advertise-address={host}"], log)
    url = f"http://{host}:{port}"

    def ready():
        if p.poll() is not None:
            raise AssertionError(f"apiserver exited:\n{open(log).read()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/readyz", timeout=1) as r:
                return r.status == 200
        except OSError:
            return False
    wait_until(ready, 60, what="apiserver /readyz")
    return Api(url)
