"""Scheduling plugins, one module each, and the registry that names them.

Every plugin answers per node (the reference definition) and, where it can,
over the whole node table at once (the fast path). Names are kube-scheduler's;
the seed's predicate/priority names are accepted as aliases.
"""
from __future__ import annotations

from .balanced_allocation import BalancedAllocation
from .node_affinity import NodeAffinity
from .node_label import NodeLabel
from .node_name import NodeName
from .node_ports import NodePorts
from .node_resources_fit import NodeResourcesFit
from .node_unschedulable import NodeUnschedulable
from .taint_toleration import TaintToleration

__all__ = [
    "ALIASES",
    "REGISTRY",
    "BalancedAllocation",
    "NodeAffinity",
    "NodeLabel",
    "NodeName",
    "NodePorts",
    "NodeResourcesFit",
    "NodeUnschedulable",
    "TaintToleration",
    "canonical_name",
]

REGISTRY = {
    NodeUnschedulable.name: NodeUnschedulable,
    NodeName.name: NodeName,
    TaintToleration.name: TaintToleration,
    NodeAffinity.name: NodeAffinity,
    NodePorts.name: NodePorts,
    NodeResourcesFit.name: NodeResourcesFit,
    BalancedAllocation.name: BalancedAllocation,
    NodeLabel.name: NodeLabel,
}

#: seed (predicates/priorities era) and older framework names -> plugin name
ALIASES = {
    "LeastRequestedPriority": NodeResourcesFit.name,
    "NodeResourcesLeastAllocated": NodeResourcesFit.name,
    "MostRequestedPriority": NodeResourcesFit.name,
    "NodeResourcesMostAllocated": NodeResourcesFit.name,
    "PodFitsResources": NodeResourcesFit.name,
    "BalancedResourceAllocation": BalancedAllocation.name,
    "CalculateNodeLabelPriority": NodeLabel.name,
    "CheckNodeLabelPresence": NodeLabel.name,
    "NodeAffinityPriority": NodeAffinity.name,
    "MatchNodeSelector": NodeAffinity.name,
    "TaintTolerationPriority": TaintToleration.name,
    "PodToleratesNodeTaints": TaintToleration.name,
    "PodFitsHostPorts": NodePorts.name,
    "HostName": NodeName.name,
    "CheckNodeUnschedulable": NodeUnschedulable.name,
}


def canonical_name(name: str) -> str:
    return ALIASES.get(name, name)
