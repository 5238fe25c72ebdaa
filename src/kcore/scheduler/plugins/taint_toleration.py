"""TaintToleration: NoSchedule/NoExecute taints must be tolerated (filter);
each untolerated PreferNoSchedule taint counts against the node (score,
reverse-normalised: the node with the most such taints scores 0)."""
from __future__ import annotations

import numpy as np

from ..framework import Code, NodeInfo, Status, default_normalize
from ..podinfo import PodInfo, Taint, tolerates_any

HARD = ("NoSchedule", "NoExecute")


def reason(taint: Taint) -> str:
    return f"node(s) had untolerated taint {{{taint.key}: {taint.value}}}"


class TaintToleration:
    name = "TaintToleration"
    failure_code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    normalization = "reverse"

    def __init__(self, args: dict | None = None) -> None:
        pass

    # -- per node (reference) --
    def first_untolerated(self, pod: PodInfo, taints: tuple[Taint, ...]) -> Taint | None:
        for t in taints:
            if t.effect in HARD and not tolerates_any(pod.tolerations, t):
                return t
        return None

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        t = self.first_untolerated(pod, node.spec.taints)
        if t is None:
            return None
        return Status(self.failure_code, (reason(t),), self.name)

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        return sum(1 for t in node.spec.taints
                   if t.effect == "PreferNoSchedule" and not tolerates_any(pod.tolerations, t))

    def normalize(self, pod: PodInfo, scores: list[int]) -> list[int]:
        return default_normalize(scores, reverse=True)

    # -- whole table --
    def _untolerated_words(self, pod: PodInfo, table, effects: tuple[str, ...]) -> np.ndarray:
        codes = [b for b, t in enumerate(table.taints)
                 if t.effect in effects and not tolerates_any(pod.tolerations, t)]
        return table.taint_words(codes)

    def static_mask(self, pod: PodInfo, table) -> np.ndarray | None:
        words = self._untolerated_words(pod, table, HARD)
        if not words.any():
            return None
        return ~(table.taint_bits[:table.n] & words).any(axis=1)

    def static_raw(self, pod: PodInfo, table) -> np.ndarray | None:
        words = self._untolerated_words(pod, table, ("PreferNoSchedule",))
        if not words.any():
            return None
        return np.bitwise_count(table.taint_bits[:table.n] & words).sum(axis=1).astype(np.int64)

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = self.static_mask(pod, table)
        return np.zeros(table.n, np.bool_) if m is None else ~m

    def failure_reasons(self, pod: PodInfo, table, rows: np.ndarray) -> list[tuple[str, int]]:
        """(reason, count) for failing rows: the first untolerated taint in each node's order."""
        by_list: dict[tuple[int, ...], int] = {}
        for r in rows.tolist():
            lst = table.taint_lists[r]
            by_list[lst] = by_list.get(lst, 0) + 1
        out: dict[str, int] = {}
        for lst, cnt in by_list.items():
            t = self.first_untolerated(pod, tuple(table.taints[b] for b in lst))
            if t is not None:
                out[reason(t)] = out.get(reason(t), 0) + cnt
        return list(out.items())
