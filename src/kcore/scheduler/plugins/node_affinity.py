"""NodeAffinity: ``spec.nodeSelector`` and required node affinity must match
(filter); preferred terms add their weights (score, normalised so the best
feasible node gets 100).

Semantics are kube's label selectors: ``In``/``NotIn`` (a missing label
satisfies ``NotIn``), ``Exists``/``DoesNotExist``, ``Gt``/``Lt`` (the label
must parse as an int64); ``matchFields`` compare ``metadata.name``. Terms are
ORed, requirements inside a term ANDed; an empty or invalid term matches
nothing.
"""
from __future__ import annotations

import numpy as np

from ..framework import Code, NodeInfo, Status, default_normalize
from ..podinfo import PodInfo, Requirement, SelectorTerm, parse_int64

REASON = "node(s) didn't match Pod's node affinity/selector"


# ---- per node (reference) ------------------------------------------------------------

def requirement_matches(req: Requirement, labels: dict[str, str], node_name: str) -> bool:
    if req.field:
        value = node_name if req.key == "metadata.name" else ""
        return (value == req.values[0]) == (req.operator == "In")
    op = req.operator
    if op == "In":
        return req.key in labels and labels[req.key] in req.values
    if op == "NotIn":
        return not (req.key in labels and labels[req.key] in req.values)
    if op == "Exists":
        return req.key in labels
    if op == "DoesNotExist":
        return req.key not in labels
    if req.key not in labels:
        return False
    have = parse_int64(labels[req.key])
    if have is None:
        return False
    want = parse_int64(req.values[0])
    return have > want if op == "Gt" else have < want


def term_matches(term: SelectorTerm, labels: dict[str, str], node_name: str) -> bool:
    if not term.valid():
        return False
    return all(requirement_matches(r, labels, node_name) for r in term.requirements)


def required_matches(pod: PodInfo, labels: dict[str, str], node_name: str) -> bool:
    for k, v in pod.node_selector:
        if labels.get(k) != v:
            return False
    if pod.required is not None:
        return any(term_matches(t, labels, node_name) for t in pod.required.terms)
    return True


# ---- whole table -----------------------------------------------------------------------

def requirement_mask(req: Requirement, table) -> np.ndarray:
    n = table.n
    if req.field:
        if req.key == "metadata.name":
            m = np.zeros(n, np.bool_)
            row = table.row_of.get(req.values[0])
            if row is not None:
                m[row] = True
        else:
            m = np.full(n, req.values[0] == "", np.bool_)
        return m if req.operator == "In" else ~m
    codes = table.labels.get(req.key)
    op = req.operator
    if op in ("In", "NotIn"):
        if codes is None:
            m = np.zeros(n, np.bool_)
        else:
            want = [c for c in (table.label_code(req.key, v) for v in req.values) if c is not None]
            m = np.isin(codes[:n], np.array(want, np.int32))
        return m if op == "In" else ~m
    if op in ("Exists", "DoesNotExist"):
        m = np.zeros(n, np.bool_) if codes is None else codes[:n] >= 0
        return m if op == "Exists" else ~m
    values, ok = table.label_numeric(req.key)
    want = parse_int64(req.values[0])
    return ok & ((values > want) if op == "Gt" else (values < want))


def term_mask(term: SelectorTerm, table) -> np.ndarray:
    m = np.zeros(table.n, np.bool_) if not term.valid() else np.ones(table.n, np.bool_)
    if term.valid():
        for r in term.requirements:
            m &= requirement_mask(r, table)
    return m


def required_mask(pod: PodInfo, table) -> np.ndarray | None:
    if not pod.node_selector and pod.required is None:
        return None
    m = np.ones(table.n, np.bool_)
    for k, v in pod.node_selector:
        m &= requirement_mask(Requirement(k, "In", (v,)), table)
    if pod.required is not None:
        any_term = np.zeros(table.n, np.bool_)
        for t in pod.required.terms:
            any_term |= term_mask(t, table)
        m &= any_term
    return m


class NodeAffinity:
    name = "NodeAffinity"
    reason = REASON
    failure_code = Code.UNSCHEDULABLE_AND_UNRESOLVABLE
    normalization = "forward"

    def __init__(self, args: dict | None = None) -> None:
        pass

    def filter(self, pod: PodInfo, node: NodeInfo) -> Status | None:
        if required_matches(pod, node.spec.label_map(), node.spec.name):
            return None
        return Status(self.failure_code, (REASON,), self.name)

    def score(self, pod: PodInfo, node: NodeInfo) -> int:
        labels = node.spec.label_map()
        return sum(w for w, t in pod.preferred if term_matches(t, labels, node.spec.name))

    def normalize(self, pod: PodInfo, scores: list[int]) -> list[int]:
        return default_normalize(scores, reverse=False)

    def static_mask(self, pod: PodInfo, table) -> np.ndarray | None:
        return required_mask(pod, table)

    def static_raw(self, pod: PodInfo, table) -> np.ndarray | None:
        if not pod.preferred:
            return None
        raw = np.zeros(table.n, np.int64)
        for w, t in pod.preferred:
            raw += w * term_mask(t, table)
        return raw if raw.any() else None

    def failing(self, pod: PodInfo, table) -> np.ndarray:
        m = self.static_mask(pod, table)
        return np.zeros(table.n, np.bool_) if m is None else ~m
