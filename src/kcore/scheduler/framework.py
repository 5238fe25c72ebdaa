"""The scheduling framework: extension points, statuses and profiles, in one place.

A scheduling cycle for one pod runs, in order:

- **PreFilter** — per-pod work done once (parse requests, tolerations, selectors).
- **Filter** — may the pod run on this node? Plugins run in profile order; a
  node's verdict is the first non-success status (kube stops at the first).
- **PreScore** — per-pod scoring state (a plugin may answer *Skip*, as
  BalancedAllocation does for best-effort pods).
- **Score** / **NormalizeScore** — an integer per feasible node, then scaled
  to ``[0, MAX_NODE_SCORE]`` over the feasible nodes; the node's total is the
  weighted sum.
- **Reserve** — the chosen node is charged for the pod in the scheduler's
  cache (an *assumed* pod) before the bind is confirmed or forgotten.
- **Bind** — the decision leaves the pure core as a ``Binding`` object that a
  driver posts to the API server.

Plugins implement these per node (``filter(pod, node)``, ``score(pod, node)``,
``normalize(scores)``) — that is the obviously-correct definition the
reference scheduler runs — and, for the fast path, over the whole node table
at once (``static_mask``/``static_raw`` for label- and taint-only verdicts;
resource terms compiled into the Numba kernels). ``tests/unit/scheduler``
checks that both give identical decisions.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

    from .nodeinfo import NodeSpec
    from .nodetable import NodeTable
    from .podinfo import HostPort, PodInfo

__all__ = [
    "MAX_NODE_SCORE",
    "BindPlugin",
    "Code",
    "FilterPlugin",
    "NodeInfo",
    "NormalizeScorePlugin",
    "PreFilterPlugin",
    "PreScorePlugin",
    "ReservePlugin",
    "ScorePlugin",
    "Status",
    "VectorFilter",
    "VectorScore",
    "binding_for",
    "default_normalize",
    "num_feasible_nodes_to_find",
]

MAX_NODE_SCORE = 100


class Code(enum.IntEnum):
    SUCCESS = 0
    UNSCHEDULABLE = 1                    # preemption might help
    UNSCHEDULABLE_AND_UNRESOLVABLE = 2   # preemption cannot help
    SKIP = 3
    ERROR = 4


@dataclass(frozen=True, slots=True)
class Status:
    code: Code
    reasons: tuple[str, ...] = ()
    plugin: str = ""

    @property
    def success(self) -> bool:
        return self.code == Code.SUCCESS


@dataclass(slots=True)
class NodeInfo:
    """One node as the per-node (reference) plugins see it: its spec plus the
    pods charged to it (bound and assumed)."""
    spec: NodeSpec
    requested: dict[str, int] = field(default_factory=dict)   # sum of pod requests
    nonzero_cpu: int = 0
    nonzero_memory: int = 0
    pod_count: int = 0
    used_ports: dict[tuple[str, str, int], int] = field(default_factory=dict)  # (ip, proto, port)

    def port_conflict(self, hp: HostPort) -> bool:
        """kube's ``HostPortInfo.CheckConflict``: 0.0.0.0 conflicts with any ip."""
        if hp.ip == "0.0.0.0":
            return any(p == hp.port and proto == hp.protocol
                       for (_ip, proto, p) in self.used_ports)
        return ((hp.ip, hp.protocol, hp.port) in self.used_ports
                or ("0.0.0.0", hp.protocol, hp.port) in self.used_ports)


# ---- extension points (per node: the reference contract) -------------------------------

@runtime_checkable
class PreFilterPlugin(Protocol):
    name: str

    def pre_filter(self, pod: PodInfo) -> Status | None: ...


@runtime_checkable
class FilterPlugin(Protocol):
    name: str
    #: the Code a failing node gets (decides the preemption wording)
    failure_code: Code

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None: ...


@runtime_checkable
class PreScorePlugin(Protocol):
    name: str

    def pre_score(self, pod: PodInfo) -> Status | None: ...


@runtime_checkable
class ScorePlugin(Protocol):
    name: str

    def score(self, pod: PodInfo, node: NodeInfo) -> int: ...


@runtime_checkable
class NormalizeScorePlugin(Protocol):
    name: str

    def normalize(self, pod: PodInfo, scores: list[int]) -> list[int]: ...


@runtime_checkable
class ReservePlugin(Protocol):
    """Charged in the cache at Reserve; forgotten if binding fails."""
    name: str

    def reserve(self, pod_key: str, node_name: str) -> None: ...

    def unreserve(self, pod_key: str) -> None: ...


@runtime_checkable
class BindPlugin(Protocol):
    name: str

    def bind(self, pod: dict, node_name: str) -> dict: ...


# ---- the same extension points over the whole node table (the fast path) ---------------

@runtime_checkable
class VectorFilter(Protocol):
    """A filter whose verdict depends only on node labels/taints/flags/name:
    computed once per pod shape for every row, cached until nodes change."""

    def static_mask(self, pod: PodInfo, table: NodeTable) -> np.ndarray | None: ...


@runtime_checkable
class VectorScore(Protocol):
    """A label/taint score: raw values for every row (``None`` = all zero)."""
    #: "forward" (DefaultNormalizeScore), "reverse" (reversed) or "none"
    normalization: str

    def static_raw(self, pod: PodInfo, table: NodeTable) -> np.ndarray | None: ...


def default_normalize(scores: list[int], reverse: bool) -> list[int]:
    """kube's ``helper.DefaultNormalizeScore(MaxNodeScore, reverse, scores)``."""
    top = max(scores, default=0)
    top = max(top, 0)
    if top == 0:
        return [MAX_NODE_SCORE] * len(scores) if reverse else list(scores)
    out = []
    for s in scores:
        v = MAX_NODE_SCORE * s // top
        out.append(MAX_NODE_SCORE - v if reverse else v)
    return out


def binding_for(pod: dict, node_name: str) -> dict:
    """DefaultBinder's ``pods/binding`` body for a decision."""
    meta = pod.get("metadata") or {}
    bmeta = {"name": meta.get("name", ""), "namespace": meta.get("namespace") or "default"}
    if meta.get("uid"):
        bmeta["uid"] = meta["uid"]
    return {"apiVersion": "v1", "kind": "Binding", "metadata": bmeta,
            "target": {"apiVersion": "v1", "kind": "Node", "name": node_name}}


MIN_FEASIBLE_NODES_TO_FIND = 100
MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND = 5


def num_feasible_nodes_to_find(percentage: int, num_all_nodes: int) -> int:
    """kube's ``numFeasibleNodesToFind``; 0 means kube's adaptive percentage.
    kcore's default is 100 (every feasible node is scored)."""
    if num_all_nodes < MIN_FEASIBLE_NODES_TO_FIND or percentage >= 100:
        return num_all_nodes
    if percentage == 0:
        percentage = 50 - num_all_nodes // 125
        percentage = max(percentage, MIN_FEASIBLE_NODES_PERCENTAGE_TO_FIND)
    num = num_all_nodes * percentage // 100
    return max(num, MIN_FEASIBLE_NODES_TO_FIND)
