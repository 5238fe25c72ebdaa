"""NodeUnschedulable: cordoned nodes (``spec.unschedulable``) take no new pods,
unless the pod tolerates the ``node.kubernetes.io/unschedulable:NoSchedule`` taint."""
from __future__ import annotations

import numpy as np

from ..framework import Code, NodeInfo, Status
from ..podinfo import PodInfo, Taint, tolerates_any

REASON = "node(s) were unschedulable"
_TAINT = Taint("node.kubernetes.io/unschedulable", "", "NoSchedule")


class NodeUnschedulable:
    name = "NodeUnschedulable"
    reason = REASON
    failure_code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE

    def __init__(self, args: dict | None = None) -> None:
        pass

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        if node.spec.unschedulable and not tolerates_any(pod.tolerations, _TAINT):
            return Status(self.failure_code, (REASON,), self.name)
        return None

    def static_mask(self, pod: PodInfo, table) -> np.ndarray | None:
        if tolerates_any(pod.tolerations, _TAINT):
            return None
        return ~table.unschedulable[:table.n]

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = self.static_mask(pod, table)
        return np.zeros(table.n, np.bool_) if m is None else ~m
