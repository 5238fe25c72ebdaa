"""Taints and tolerations: matching (the scheduler's and the eviction controller's
rule) and changing a node's taints safely.

`update_taints` reads the node, edits `spec.taints` and writes it back with a
merge patch guarded by the resourceVersion it read, retrying on conflict, so
concurrent writers (the kubelet's status, the NoSchedule and NoExecute
tainters) never lose each other's changes.
"""
from __future__ import annotations

from kcore.api.meta import rfc3339
from kcore.client import errors as E
from kcore.client.resources import NODES

NOT_READY = "node.kubernetes.io/not-ready"
UNREACHABLE = "node.kubernetes.io/unreachable"
UNSCHEDULABLE = "node.kubernetes.io/unschedulable"
MEMORY_PRESSURE = "node.kubernetes.io/memory-pressure"
DISK_PRESSURE = "node.kubernetes.io/disk-pressure"
PID_PRESSURE = "node.kubernetes.io/pid-pressure"
NETWORK_UNAVAILABLE = "node.kubernetes.io/network-unavailable"
NO_EXECUTE = "NoExecute"
NO_SCHEDULE = "NoSchedule"


def taint(key: str, effect: str, stamp: bool = False) -> dict:
    t = {"key": key, "effect": effect}
    if stamp:
        t["timeAdded"] = rfc3339()
    return t


def same_taint(a: dict, b: dict) -> bool:
    return a.get("key") == b.get("key") and a.get("effect") == b.get("effect")


def node_taints(node: dict, effect: str | None = None) -> list[dict]:
    ts = (node.get("spec") or {}).get("taints") or []
    return [t for t in ts if effect is None or t.get("effect") == effect]


def tolerates(tol: dict, t: dict) -> bool:
    """kube's Toleration.ToleratesTaint."""
    eff = tol.get("effect") or ""
    if eff and eff != t.get("effect"):
        return False
    key = tol.get("key") or ""
    op = tol.get("operator") or "Equal"
    if key and key != t.get("key"):
        return False
    if not key and op != "Exists":
        return False
    if op == "Exists":
        return True
    return (tol.get("value") or "") == (t.get("value") or "")


def matching_tolerations(tolerations: list[dict], taints: list[dict]
                         ) -> tuple[bool, list[dict]]:
    """(all taints tolerated, the tolerations used)."""
    used: list[dict] = []
    for t in taints:
        hit = [tol for tol in tolerations if tolerates(tol, t)]
        if not hit:
            return False, []
        used.extend(hit)
    return True, used


async def update_taints(client, name: str, add: list[dict] = (), remove: list[dict] = (),
                        attempts: int = 5) -> dict | None:
    """Add taints (if absent, keeping an existing one's timeAdded) and remove others
    (by key and effect). Returns the node, or None when it is gone."""
    for i in range(attempts):
        try:
            node = await client.get(NODES, name)
        except E.NotFound:
            return None
        cur = list((node.get("spec") or {}).get("taints") or [])
        new = [t for t in cur if not any(same_taint(t, r) for r in remove)]
        for a in add:
            if not any(same_taint(t, a) for t in new):
                new.append(dict(a))
        if new == cur:
            return node
        try:
            return await client.patch(NODES, name, {
                "metadata": {"resourceVersion": node["metadata"]["resourceVersion"]},
                "spec": {"taints": new or None}})
        except E.Conflict:
            if i == attempts - 1:
                raise
        except E.NotFound:
            return None
    return None
