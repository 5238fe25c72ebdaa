"""NodePorts: a pod's host ports must be free on the node (0.0.0.0 conflicts
with every address; a specific address conflicts with itself and 0.0.0.0)."""
from __future__ import annotations

import numpy as np

from ..framework import Code, NodeInfo, Status
from ..podinfo import PodInfo

REASON = "node(s) didn't have free ports for the requested pod ports"


class NodePorts:
    name = "NodePorts"
    reason = REASON
    failure_code = Code.UNSCHEDULABLE

    def __init__(self, args: dict | None = None) -> None:
        pass

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        for hp in pod.host_ports:
            if node.port_conflict(hp):
                return Status(self.failure_code, (REASON,), self.name)
        return None

    def conflict_rows(self, pod: PodInfo, table) -> list[int]:
        return table.port_conflict_rows(pod.host_ports) if pod.host_ports else []

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = np.zeros(table.n, np.bool_)
        m[self.conflict_rows(pod, table)] = True
        return m
