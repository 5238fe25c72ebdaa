"""NodeResourcesBalancedAllocation (the seed's BalancedResourceAllocation):
favour nodes whose requested fractions stay close to each other.

With the fractions f_i = min(requested_i / allocatable_i, 1) over the
configured resources whose allocatable is not 0 (actual requests, not the
non-zero defaults), the score is ``int((1 - std) * 100)`` where std is
``|f_0 - f_1| / 2`` for two resources and the population standard deviation
otherwise (0 for one). The float operations are kube's, in kube's order. A pod
requesting none of the resources skips the plugin (kube's PreScore Skip).
"""
from __future__ import annotations

import math

from ..framework import MAX_NODE_SCORE, NodeInfo
from ..podinfo import PodInfo
from .node_resources_fit import (
    DEFAULT_RESOURCES,
    allocatable_requested,
    parse_resources,
    pod_score_request,
    score_terms,
)


def balanced_score(requested: list[int], allocatable: list[int]) -> int:
    fractions = []
    total = 0.0
    for q, a in zip(requested, allocatable):
        if a == 0:
            continue
        f = float(q) / float(a)
        if f > 1:
            f = 1.0
        total += f
        fractions.append(f)
    std = 0.0
    if len(fractions) == 2:
        std = abs((fractions[0] - fractions[1]) / 2)
    elif len(fractions) > 2:
        mean = total / len(fractions)
        acc = 0.0
        for f in fractions:
            acc = acc + (f - mean) * (f - mean)
        std = math.sqrt(acc / len(fractions))
    return int((1 - std) * float(MAX_NODE_SCORE))


class BalancedAllocation:
    name = "NodeResourcesBalancedAllocation"
    normalization = "kernel"

    def __init__(self, args: dict | None = None) -> None:
        args = dict(args or {})
        self.resources = parse_resources(args.get("resources"), DEFAULT_RESOURCES)

    def skipped(self, pod: PodInfo) -> bool:
        """PreScore: best-effort pods (no request for any configured resource) skip."""
        return all(pod_score_request(pod, r, True) == 0 for r, _ in self.resources)

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        if self.skipped(pod):
            return 0
        req, alloc = [], []
        for r, _w in self.resources:
            a, q = allocatable_requested(node, r, pod_score_request(pod, r, True), True)
            if a == 0:
                continue
            req.append(q)
            alloc.append(a)
        return balanced_score(req, alloc)

    def terms(self, pod: PodInfo, table) -> list[tuple[int, int, int]]:
        """(alloc row, requested row, pod request) per resource, in configured order."""
        return score_terms(pod, table, self.resources, use_requested=True, weighted=False)
