"""NodeName: a pod that names its node (``spec.nodeName``) fits only there."""
from __future__ import annotations

import numpy as np

from ..framework import Code, NodeInfo, Status
from ..podinfo import PodInfo

REASON = "node(s) didn't match the requested node name"


class NodeName:
    name = "NodeName"
    reason = REASON
    failure_code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE

    def __init__(self, args: dict | None = None) -> None:
        pass

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        if pod.node_name and pod.node_name != node.spec.name:
            return Status(self.failure_code, (REASON,), self.name)
        return None

    def static_mask(self, pod: PodInfo, table) -> np.ndarray | None:
        if not pod.node_name:
            return None
        m = np.zeros(table.n, np.bool_)
        row = table.row_of.get(pod.node_name)
        if row is not None:
            m[row] = True
        return m

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = self.static_mask(pod, table)
        return np.zeros(table.n, np.bool_) if m is None else ~m
