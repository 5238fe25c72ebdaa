"""Shared builders for scheduler tests: nodes and pods as plain Kubernetes dicts."""
from __future__ import annotations

import os

import pytest

FULL = os.environ.get("KCORE_FULL") == "1"


def make_node(name, cpu="4", memory="8Gi", pods="110", labels=None, taints=None,
              unschedulable=False, extra=None):
    alloc = {"pods": pods}
    if cpu is not None:
        alloc["cpu"] = cpu
    if memory is not None:
        alloc["memory"] = memory
    alloc.update(extra or {})
    spec = {"taints": list(taints or [])}
    if unschedulable:
        spec["unschedulable"] = True
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": dict(labels or {})},
            "spec": spec, "status": {"allocatable": alloc, "capacity": dict(alloc)}}


def make_pod(name, cpu=None, memory=None, namespace="default", node=None, extra=None,
             **spec_fields):
    req = {}
    if cpu is not None:
        req["cpu"] = cpu
    if memory is not None:
        req["memory"] = memory
    req.update(extra or {})
    spec = {"containers": [{"name": "c", "image": "busybox",
                            "resources": {"requests": req} if req else {}}]}
    if node:
        spec["nodeName"] = node
    spec.update(spec_fields)
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": namespace, "uid": f"uid-{namespace}-{name}"},
            "spec": spec}


@pytest.fixture(scope="session", autouse=True)
def _kernels_loaded():
    """Load (or compile) the Numba kernels once per session, outside any test's timing."""
    from kcore.scheduler import warmup
    warmup()
