"""Why a pod fits nowhere, in kube's words, and what the scheduler saw (explain).

kube-scheduler runs the filters of a node in profile order and keeps the
first failing plugin's reasons. The FailedScheduling message counts reasons
over all nodes, formats each as ``"<count> <reason>"``, sorts those strings
and appends what preemption concluded::

    0/3 nodes are available: 1 node(s) had untolerated taint {k: v}, 2 Insufficient cpu.
    preemption: 0/3 nodes are available: 1 Preemption is not helpful for scheduling,
    2 No preemption victims found for incoming pod.

kcore does not preempt: nodes failing an unresolvable filter (taints,
affinity, name, cordon, labels) get "Preemption is not helpful for
scheduling", the others "No preemption victims found for incoming pod".
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .framework import Code
from .plugins.taint_toleration import reason as taint_reason
from .podinfo import PodInfo

__all__ = ["NO_NODES", "Diagnosis", "diagnose", "fit_error_message", "format_fit_error"]

NO_NODES = "no nodes available to schedule pods"
NOT_HELPFUL = "Preemption is not helpful for scheduling"
NO_VICTIMS = "No preemption victims found for incoming pod"


@dataclass
class Diagnosis:
    n: int
    first_failing: np.ndarray            # per row: index of the failing filter, -1 if it fits
    counts: dict[str, int] = field(default_factory=dict)
    unresolvable: int = 0
    resolvable: int = 0
    row_reasons: dict[int, tuple[str, ...]] = field(default_factory=dict)  # with_rows only


def diagnose(profile, pod: PodInfo, table, with_rows: bool = False) -> Diagnosis:
    n = table.n
    remaining = np.ones(n, np.bool_)
    first = np.full(n, -1, np.int64)
    d = Diagnosis(n, first)
    for idx, f in enumerate(profile.filters):
        if not remaining.any():
            break
        if f.name == "NodeResourcesFit":
            rows = np.flatnonzero(remaining)
            per_reason = f.failing_reasons(pod, table, rows)
            fails_sub = np.zeros(len(rows), np.bool_)
            for reason, m in per_reason.items():
                c = int(m.sum())
                if c:
                    d.counts[reason] = d.counts.get(reason, 0) + c
                    fails_sub |= m
            failing_rows = rows[fails_sub]
            if with_rows:
                for k, r in enumerate(rows.tolist()):
                    if fails_sub[k]:
                        d.row_reasons[r] = tuple(reason for reason, m in per_reason.items() if m[k])
        else:
            fails = f.failing(pod, table) & remaining
            failing_rows = np.flatnonzero(fails)
            if len(failing_rows) == 0:
                continue
            if f.name == "TaintToleration":
                for reason, c in f.failure_reasons(pod, table, failing_rows):
                    d.counts[reason] = d.counts.get(reason, 0) + c
                if with_rows:
                    for r in failing_rows.tolist():
                        t = f.first_untolerated(
                            pod, tuple(table.taints[b] for b in table.taint_lists[r]))
                        d.row_reasons[r] = (taint_reason(t),)
            else:
                reason = f.reason
                d.counts[reason] = d.counts.get(reason, 0) + len(failing_rows)
                if with_rows:
                    for r in failing_rows.tolist():
                        d.row_reasons[r] = (reason,)
        if len(failing_rows):
            first[failing_rows] = idx
            remaining[failing_rows] = False
            if f.failure_code == Code.UNSCHEDULABLE_AND_UNRESOLVABLE:
                d.unresolvable += len(failing_rows)
            else:
                d.resolvable += len(failing_rows)
    return d


def format_fit_error(n: int, counts: dict[str, int], unresolvable: int, resolvable: int,
                     preemption_policy: str) -> str:
    if n == 0:
        return NO_NODES
    hist = sorted(f"{c} {r}" for r, c in counts.items() if c)
    msg = f"0/{n} nodes are available: {', '.join(hist)}."
    if preemption_policy == "Never":
        return msg + " preemption: not eligible due to preemptionPolicy=Never."
    pre = []
    if unresolvable:
        pre.append(f"{unresolvable} {NOT_HELPFUL}")
    if resolvable:
        pre.append(f"{resolvable} {NO_VICTIMS}")
    return msg + f" preemption: 0/{n} nodes are available: {', '.join(sorted(pre))}."


def fit_error_message(profile, pod: PodInfo, table) -> str:
    if table.n == 0:
        return NO_NODES
    d = diagnose(profile, pod, table)
    return format_fit_error(d.n, d.counts, d.unresolvable, d.resolvable, pod.preemption_policy)
