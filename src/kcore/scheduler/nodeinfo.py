"""What the scheduler reads from a node: allocatable, labels, taints, unschedulable."""
from __future__ import annotations

from dataclasses import dataclass

from .podinfo import Taint, counted_resource
from .quantity import parse_quantity, resource_value

__all__ = ["NodeSpec", "node_spec"]


@dataclass(frozen=True, slots=True)
class NodeSpec:
    name: str
    allocatable: tuple[tuple[str, int], ...]   # counted resources, sorted; cpu in millicores
    pods: int                                  # allocatable pods
    labels: tuple[tuple[str, str], ...]        # sorted
    taints: tuple[Taint, ...]                  # in the node's order (messages name the first)
    unschedulable: bool

    def alloc(self, resource: str) -> int:
        for name, v in self.allocatable:
            if name == resource:
                return v
        return 0

    def label_map(self) -> dict[str, str]:
        return dict(self.labels)


def node_spec(node: dict) -> NodeSpec:
    """Parse a node dict; kube's NodeInfo reads ``status.allocatable`` only."""
    meta = node.get("metadata") or {}
    spec = node.get("spec") or {}
    alloc_raw = ((node.get("status") or {}).get("allocatable")) or {}
    alloc = []
    pods = 0
    for k, v in alloc_raw.items():
        if k == "pods":
            pods = resource_value(k, parse_quantity(v))
        elif counted_resource(k):
            alloc.append((k, resource_value(k, parse_quantity(v))))
    taints = tuple(Taint(str(t.get("key") or ""), str(t.get("value") or ""),
                         str(t.get("effect") or ""))
                   for t in spec.get("taints") or ())
    return NodeSpec(
        name=meta.get("name", ""),
        allocatable=tuple(sorted(alloc)),
        pods=pods,
        labels=tuple(sorted((str(k), str(v)) for k, v in (meta.get("labels") or {}).items())),
        taints=taints,
        unschedulable=bool(spec.get("unschedulable")),
    )
