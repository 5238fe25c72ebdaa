"""NodeResourcesFit: the pod's requests must fit in what the node has left
(filter: pods, cpu, memory, ephemeral-storage, extended resources), and the
node scores by how much would remain — LeastAllocated, the seed's
LeastRequestedPriority (default) — or how full it would be (MostAllocated).

LeastAllocated per resource is ``(A - R) * 100 // A`` (0 if R > A), averaged by
resource weight with integer division; R counts a container that does not
mention cpu/memory as 100m / 200 MiB (kube's non-zero requests), for the node
and for the pod. Resources whose allocatable is 0 do not count; an extended
resource the pod does not request is not scored.
"""
from __future__ import annotations

import numpy as np

from ..framework import MAX_NODE_SCORE, Code, NodeInfo, Status
from ..nodetable import NZ_CPU, NZ_MEM, POD_CAP, POD_CNT, alloc_row, req_row
from ..podinfo import PodInfo, is_scalar_resource

DEFAULT_RESOURCES = (("cpu", 1), ("memory", 1))
_FIXED_ORDER = ("cpu", "memory", "ephemeral-storage")


def parse_resources(spec, default=DEFAULT_RESOURCES) -> tuple[tuple[str, int], ...]:
    """``[{name, weight}]``; kube validates weights to [1, 100] (the kernels rely on it)."""
    if not spec:
        return default
    out = tuple((str(r["name"]), int(r.get("weight", 1) or 1)) for r in spec)
    for name, w in out:
        if not 1 <= w <= 100:
            raise ValueError(f"resource weight of {name} should be in range [1, 100]")
    return out


def least_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0 or requested > capacity:
        return 0
    return (capacity - requested) * MAX_NODE_SCORE // capacity


def most_requested_score(requested: int, capacity: int) -> int:
    if capacity == 0:
        return 0
    requested = min(requested, capacity)
    return requested * MAX_NODE_SCORE // capacity


def allocatable_requested(node: NodeInfo, resource: str, pod_request: int,
                          use_requested: bool) -> tuple[int, int]:
    """kube's ``calculateResourceAllocatableRequest``: (0, 0) means "do not score"."""
    if pod_request == 0 and is_scalar_resource(resource):
        return 0, 0
    if resource == "cpu":
        base = node.requested.get("cpu", 0) if use_requested else node.nonzero_cpu
        return node.spec.alloc("cpu"), base + pod_request
    if resource == "memory":
        base = node.requested.get("memory", 0) if use_requested else node.nonzero_memory
        return node.spec.alloc("memory"), base + pod_request
    if resource == "ephemeral-storage" or is_scalar_resource(resource):
        return node.spec.alloc(resource), node.requested.get(resource, 0) + pod_request
    return 0, 0


def pod_score_request(pod: PodInfo, resource: str, use_requested: bool) -> int:
    if not use_requested and resource == "cpu":
        return pod.nonzero_cpu
    if not use_requested and resource == "memory":
        return pod.nonzero_memory
    return pod.request(resource)


class NodeResourcesFit:
    name = "NodeResourcesFit"
    failure_code = Code.UNSCHEDULABLE
    normalization = "kernel"

    def __init__(self, args: dict | None = None) -> None:
        args = dict(args or {})
        strategy = dict(args.get("scoringStrategy") or {})
        self.strategy = strategy.get("type") or args.get("strategy") or "LeastAllocated"
        if self.strategy not in ("LeastAllocated", "MostAllocated"):
            raise ValueError(f"NodeResourcesFit: scoring strategy {self.strategy!r} is not supported")
        self.resources = parse_resources(strategy.get("resources") or args.get("resources"))
        self.ignored = frozenset(args.get("ignoredResources") or ())
        self.ignored_groups = frozenset(args.get("ignoredResourceGroups") or ())

    def _ignored(self, resource: str) -> bool:
        if "/" not in resource or "kubernetes.io/" in resource:
            return False
        return resource in self.ignored or resource.split("/", 1)[0] in self.ignored_groups

    def fit_requests(self, pod: PodInfo) -> list[tuple[str, int]]:
        """The (resource, request) pairs the filter checks, in kube's order."""
        reqs = dict(pod.requests)
        out = [(r, reqs[r]) for r in _FIXED_ORDER if reqs.get(r, 0) > 0]
        out += [(r, v) for r, v in pod.requests
                if r not in _FIXED_ORDER and v > 0 and not self._ignored(r)]
        return out

    # -- per node (reference) --
    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        reasons = []
        if node.pod_count + 1 > node.spec.pods:
            reasons.append("Too many pods")
        for r, v in self.fit_requests(pod):
            if v > node.spec.alloc(r) - node.requested.get(r, 0):
                reasons.append(f"Insufficient {r}")
        if reasons:
            return Status(self.failure_code, tuple(reasons), self.name)
        return None

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        fn = least_requested_score if self.strategy == "LeastAllocated" else most_requested_score
        total = weights = 0
        for r, w in self.resources:
            a, q = allocatable_requested(node, r, pod_score_request(pod, r, False), False)
            if a == 0:
                continue
            total += fn(q, a) * w
            weights += w
        return total // weights if weights else 0

    # -- whole table: kernel terms --
    def fit_terms(self, pod: PodInfo, table) -> list[tuple[int, int, int]]:
        """(alloc row, requested row, pod request) per checked resource."""
        out = []
        for r, v in self.fit_requests(pod):
            i = table.resource(r)
            out.append((alloc_row(i), req_row(i), v))
        return out

    def score_terms(self, pod: PodInfo, table) -> list[tuple[int, int, int, int]]:
        """(alloc row, requested row, pod request, weight) per scored resource."""
        return score_terms(pod, table, self.resources, use_requested=False, weighted=True)

    def failing_reasons(self, pod: PodInfo, table, rows: np.ndarray) -> dict[str, np.ndarray]:
        """Per reason, which of ``rows`` fail it (all reasons, as kube reports them)."""
        c = table.cols
        out = {"Too many pods": c[POD_CNT, rows] + 1 > c[POD_CAP, rows]}
        for ar, rr, v in self.fit_terms(pod, table):
            name = table.resources[(ar - alloc_row(0)) // 2]
            out[f"Insufficient {name}"] = v > c[ar, rows] - c[rr, rows]
        return out


def score_terms(pod: PodInfo, table, resources, use_requested: bool,
                weighted: bool) -> list[tuple[int, ...]]:
    out = []
    for r, w in resources:
        v = pod_score_request(pod, r, use_requested)
        if v == 0 and is_scalar_resource(r):
            continue
        if r == "cpu":
            i = table.resource("cpu")
            rr = req_row(i) if use_requested else NZ_CPU
        elif r == "memory":
            i = table.resource("memory")
            rr = req_row(i) if use_requested else NZ_MEM
        elif r == "ephemeral-storage" or is_scalar_resource(r):
            i = table.resource(r)
            rr = req_row(i)
        else:
            continue
        out.append((alloc_row(i), rr, v, w) if weighted else (alloc_row(i), rr, v))
    return out
