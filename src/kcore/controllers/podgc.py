"""Pod garbage collection: pods nobody else will ever remove.

Every 20 s: terminated pods beyond `--terminated-pod-gc-threshold` (oldest
first), pods bound to a node that no longer exists (after the node has been
missing for 40 s), and terminating pods that were never scheduled are
deleted with a zero grace period (no kubelet is left to finish them).
"""
from __future__ import annotations

import logging
import time

from kcore.client import errors as E
from kcore.client.resources import NODES, PODS
from kcore.controllers.controller import Controller, periodic
from kcore.controllers.pods import created, is_terminal

log = logging.getLogger(__name__)

GC_PERIOD = 20.0
QUARANTINE = 40.0


class PodGCController(Controller):
    name = "podgc"
    component = "pod-garbage-collector"

    def __init__(self, ctx, clock=time.monotonic):
        super().__init__(ctx, workers=1)
        self.threshold = ctx.options.terminated_pod_gc_threshold
        self.clock = clock
        self.pods = self.informer(PODS)
        self.nodes = self.informer(NODES)
        self.missing_since: dict[str, float] = {}
        self.deleted = 0

    def loops(self):
        return [lambda: periodic(self.gc, GC_PERIOD, "podgc")]

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        pod = self.pods.store.get(ns, name)
        if pod is None:
            return
        try:
            await self.client.delete(PODS, name, ns, grace_period_seconds=0,
                                     preconditions={"uid": pod["metadata"]["uid"]})
            self.deleted += 1
        except (E.NotFound, E.Conflict):
            pass

    async def gc(self) -> None:
        pods = self.pods.store.list()
        if self.threshold > 0:
            done = sorted((p for p in pods if is_terminal(p)), key=created)
            for p in done[:max(len(done) - self.threshold, 0)]:
                self.enqueue(p)
        now = self.clock()
        names = {n["metadata"]["name"] for n in self.nodes.store.list()}
        for n in list(self.missing_since):
            if n in names:
                del self.missing_since[n]
        for p in pods:
            node = (p.get("spec") or {}).get("nodeName")
            if node and node not in names:
                since = self.missing_since.setdefault(node, now)
                if now - since >= QUARANTINE:
                    self.enqueue(p)
            elif not node and p["metadata"].get("deletionTimestamp"):
                self.enqueue(p)
