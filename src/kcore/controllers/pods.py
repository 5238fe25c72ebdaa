"""What controllers ask of a pod: is it active, ready, available, and since when."""
from __future__ import annotations

import time

from kcore.api.meta import parse_time


def condition(obj: dict, ctype: str) -> dict | None:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return c
    return None


def is_terminal(pod: dict) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")


def is_terminating(obj: dict) -> bool:
    return bool((obj.get("metadata") or {}).get("deletionTimestamp"))


def is_active(pod: dict) -> bool:
    """Counts toward replicas: not finished and not being deleted."""
    return not is_terminal(pod) and not is_terminating(pod)


def is_ready(pod: dict) -> bool:
    c = condition(pod, "Ready")
    return c is not None and c.get("status") == "True"


def ready_since(pod: dict) -> float | None:
    c = condition(pod, "Ready")
    if c is None or c.get("status") != "True":
        return None
    ts = c.get("lastTransitionTime")
    if not ts:
        return None
    try:
        return parse_time(ts)
    except ValueError:
        return None


def is_available(pod: dict, min_ready_seconds: int, now: float | None = None) -> bool:
    if not is_ready(pod):
        return False
    if not min_ready_seconds:
        return True
    since = ready_since(pod)
    if since is None:
        return False
    return (time.time() if now is None else now) - since >= min_ready_seconds


def restart_count(pod: dict) -> int:
    return sum(int(s.get("restartCount") or 0)
               for s in (pod.get("status") or {}).get("containerStatuses") or [])


def created(obj: dict) -> float:
    ts = (obj.get("metadata") or {}).get("creationTimestamp")
    try:
        return parse_time(ts) if ts else 0.0
    except ValueError:
        return 0.0


_PHASE_RANK = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pods: list[dict]) -> list[dict]:
    """Pods in the order a scale-down deletes them (kube's ActivePodsWithRanks):
    unscheduled first, then Pending < Unknown < Running, not ready before ready,
    pods on nodes crowded with siblings first, ready for less time first, more
    restarts first, newest first."""
    per_node: dict[str, int] = {}
    for p in pods:
        n = (p.get("spec") or {}).get("nodeName") or ""
        if n:
            per_node[n] = per_node.get(n, 0) + 1

    def key(p: dict):
        spec, st = p.get("spec") or {}, p.get("status") or {}
        node = spec.get("nodeName") or ""
        since = ready_since(p)
        return (1 if node else 0,
                _PHASE_RANK.get(st.get("phase", "Pending"), 0),
                1 if is_ready(p) else 0,
                -per_node.get(node, 0),
                -(since or 0.0),
                -restart_count(p),
                -created(p),
                (p.get("metadata") or {}).get("name", ""))
    return sorted(pods, key=key)
