from __future__ import annotations

import pytest

from .cm_harness import FAST_CM_FLAGS, Cluster


@pytest.fixture(scope="module")
def cluster():
    """One API server and one controller manager (every controller, node IPAM on,
    short node/quota periods) for a test module."""
    c = Cluster()
    try:
        c.start_apiserver()
        c.start_cm("--leader-elect=false", "--allocate-node-cidrs=true",
                   "--cluster-cidr=10.244.0.0/16", "--node-cidr-mask-size=24",
                   "--service-cluster-ip-range=10.0.0.0/24", *FAST_CM_FLAGS)
        yield c
    finally:
        c.stop()
