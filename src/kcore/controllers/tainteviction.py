"""Taint eviction: delete pods from nodes with NoExecute taints they do not tolerate.

A pod that does not tolerate every NoExecute taint of its node is deleted at
once; one that tolerates them for a while (`tolerationSeconds`, the smallest
of the tolerations used) is deleted that long after the taint's `timeAdded`;
one that tolerates them forever stays. A taint removed in time cancels the
eviction. Timers are the workqueue's `add_after`: the sync decides again
when it fires. `--pod-eviction-timeout` stands in as the tolerationSeconds of
pods that carry no not-ready/unreachable toleration at all (an API server
without DefaultTolerationSeconds). Eviction is a delete with the pod's own
grace period, reported as a `TaintManagerEviction` event.
"""
from __future__ import annotations

import logging
import time

from kcore.api.meta import parse_time
from kcore.client import errors as E
from kcore.client.events import NORMAL
from kcore.client.resources import NODES, PODS
from kcore.client.store import NODE_NAME_INDEX, meta_namespace_key
from kcore.controllers import taints as T
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)


def eviction_delay(pod: dict, taints: list[dict], default_seconds: float | None,
                   now: float, seen: float | None = None) -> float | None:
    """Seconds until the pod must go (0: now), None: it may stay. The toleration
    period runs from the latest of the taints' timeAdded and `seen` (when this
    controller first found the pod under them)."""
    if not taints:
        return None
    tols = list((pod.get("spec") or {}).get("tolerations") or [])
    if default_seconds is not None:
        for key in (T.NOT_READY, T.UNREACHABLE):
            if not any(T.tolerates(t, {"key": key, "effect": T.NO_EXECUTE}) for t in tols):
                tols.append({"key": key, "operator": "Exists", "effect": T.NO_EXECUTE,
                             "tolerationSeconds": int(default_seconds)})
    ok, used = T.matching_tolerations(tols, taints)
    if not ok:
        return 0.0
    secs = [t.get("tolerationSeconds") for t in used if t.get("tolerationSeconds") is not None]
    if not secs:
        return None
    wait = max(min(int(s) for s in secs), 0)
    start = seen if seen is not None else 0.0
    for t in taints:
        try:
            added = parse_time(t["timeAdded"]) if t.get("timeAdded") else now
        except ValueError:
            added = now
        start = max(start, added)
    return max(min(start, now) + wait - now, 0.0)


class TaintEvictionController(Controller):
    name = "taint-eviction-controller"
    component = "taint-eviction-controller"

    def __init__(self, ctx, clock=time.time):
        super().__init__(ctx, workers=4)
        self.clock = clock
        self.default_seconds = ctx.options.pod_eviction_timeout
        self.nodes = self.informer(NODES)
        self.pods = self.informer(PODS)
        self.evicted = 0
        self.seen: dict[str, float] = {}      # pod key → first found under NoExecute taints
        self.nodes.add_event_handler(self._node_changed, lambda o, n: self._node_changed(n, o))
        self.pods.add_event_handler(self._pod_changed, lambda o, n: self._pod_changed(n, o),
                                    lambda p: self.seen.pop(meta_namespace_key(p), None))

    def _node_changed(self, node: dict, old: dict | None = None) -> None:
        new_t = T.node_taints(node, T.NO_EXECUTE)
        if old is not None and T.node_taints(old, T.NO_EXECUTE) == new_t:
            return
        if not new_t and old is None:
            return
        for p in self.pods.store.by_index(NODE_NAME_INDEX, node["metadata"]["name"]):
            self.enqueue(p)

    def _pod_changed(self, pod: dict, old: dict | None = None) -> None:
        node = (pod.get("spec") or {}).get("nodeName")
        if not node or pod["metadata"].get("deletionTimestamp"):
            return
        if old is not None and (old.get("spec") or {}).get("nodeName") == node and \
                (old.get("spec") or {}).get("tolerations") == \
                (pod.get("spec") or {}).get("tolerations"):
            return
        n = self.nodes.store.get("", node)
        if n is not None and T.node_taints(n, T.NO_EXECUTE):
            self.enqueue(pod)

    def metrics(self) -> list[str]:
        return ["# TYPE taint_eviction_controller_pod_deletions_total counter",
                f"taint_eviction_controller_pod_deletions_total {self.evicted}"]

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        pod = self.pods.store.get(ns, name)
        if pod is None or pod["metadata"].get("deletionTimestamp"):
            self.seen.pop(key, None)
            return
        node_name = (pod.get("spec") or {}).get("nodeName")
        node = self.nodes.store.get("", node_name) if node_name else None
        if node is None:
            return
        taints = T.node_taints(node, T.NO_EXECUTE)
        now = self.clock()
        if not taints:
            self.seen.pop(key, None)
            return
        seen = self.seen.setdefault(key, now)
        delay = eviction_delay(pod, taints, self.default_seconds, now, seen)
        if delay is None:
            return
        if delay > 0:
            self.queue.add_after(key, delay)
            return
        md = pod["metadata"]
        try:
            await self.client.delete(PODS, name, ns, preconditions={"uid": md["uid"]})
        except (E.NotFound, E.Conflict):
            return
        self.evicted += 1
        self.seen.pop(key, None)
        self.recorder.event(pod, NORMAL, "TaintManagerEviction",
                            f"Marking for deletion Pod {meta_namespace_key(pod)}")
        log.info("evicted pod %s from tainted node %s", key, node_name)
