"""NodeLabel (the seed's CalculateNodeLabelPriority / CheckNodeLabelPresence):
nodes must have ``presentLabels`` and lack ``absentLabels`` (filter); each
satisfied ``presentLabelsPreference``/``absentLabelsPreference`` is worth
MAX_NODE_SCORE and the score is their average (no normalisation). The seed's
per-priority form ``{label, presence}`` is accepted too."""
from __future__ import annotations

import numpy as np

from ..framework import MAX_NODE_SCORE, Code, NodeInfo, Status
from ..podinfo import PodInfo

REASON = "node(s) didn't have the requested labels"


class NodeLabel:
    name = "NodeLabel"
    reason = REASON
    failure_code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    normalization = "none"

    def __init__(self, args: dict | None = None) -> None:
        args = dict(args or {})
        pref = args.get("labelPreference")
        if pref is None and "label" in args:
            pref = args
        self.present = tuple(args.get("presentLabels") or ())
        self.absent = tuple(args.get("absentLabels") or ())
        self.present_pref = tuple(args.get("presentLabelsPreference") or ())
        self.absent_pref = tuple(args.get("absentLabelsPreference") or ())
        if pref is not None:
            if pref.get("presence", True):
                self.present_pref += (pref["label"],)
            else:
                self.absent_pref += (pref["label"],)

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        labels = node.spec.label_map()
        if all(k in labels for k in self.present) and not any(k in labels for k in self.absent):
            return None
        return Status(self.failure_code, (REASON,), self.name)

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        n = len(self.present_pref) + len(self.absent_pref)
        if n == 0:
            return 0
        labels = node.spec.label_map()
        s = sum(MAX_NODE_SCORE for k in self.present_pref if k in labels)
        s += sum(MAX_NODE_SCORE for k in self.absent_pref if k not in labels)
        return s // n

    def _has(self, table, key: str) -> np.ndarray:
        codes = table.labels.get(key)
        return np.zeros(table.n, np.bool_) if codes is None else codes[:table.n] >= 0

    def static_mask(self, pod: PodInfo, table) -> np.ndarray | None:
        if not self.present and not self.absent:
            return None
        m = np.ones(table.n, np.bool_)
        for k in self.present:
            m &= self._has(table, k)
        for k in self.absent:
            m &= ~self._has(table, k)
        return m

    def static_raw(self, pod: PodInfo, table) -> np.ndarray | None:
        n = len(self.present_pref) + len(self.absent_pref)
        if n == 0:
            return None
        s = np.zeros(table.n, np.int64)
        for k in self.present_pref:
            s += MAX_NODE_SCORE * self._has(table, k)
        for k in self.absent_pref:
            s += MAX_NODE_SCORE * ~self._has(table, k)
        return s // n

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = self.static_mask(pod, table)
        return np.zeros(table.n, np.bool_) if m is None else ~m
