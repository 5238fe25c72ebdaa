"""The garbage collector: owners take their dependents with them.

It watches every deletable resource the server lists (events excepted) and
keeps a graph of objects by uid, linked through `metadata.ownerReferences`.
An owner named by a reference but not (yet) seen is a *virtual* node, checked
against the API server before anything is done about it.

- Background: an owner deleted outright leaves dependents whose owners are
  all gone; each is deleted (uid precondition) as soon as the collector
  confirms with the API server that no owner exists any more.
- Foreground: the API server keeps a `foregroundDeletion` owner (deletion
  timestamp set); the collector deletes its dependents and removes the
  finalizer once no dependent with `blockOwnerDeletion` remains, at which
  point the server deletes the owner. A dependent that has dependents of its
  own is deleted the same way (Foreground), so the chain unwinds bottom-up.
- Orphan: an `orphan` owner has its reference removed from every dependent,
  then its finalizer removed.

A dependent with at least one live owner stays (references to vanished or
foreground-deleting owners are removed from it). The API server keeps the
orphan/foregroundDeletion finalizers only with `--enable-garbage-collector`.
"""
from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass, field

from kcore.client import errors as E
from kcore.client.resources import WELL_KNOWN, Resource
from kcore.client.workqueue import RateLimitingQueue
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)

IGNORED = {("", "events"), ("events.k8s.io", "events"), ("", "bindings"),
           ("", "componentstatuses")}
ORPHAN = "orphan"
FOREGROUND = "foregroundDeletion"
ABSENT_CACHE = 1000


@dataclass
class GNode:
    uid: str
    res: Resource | None
    api_version: str
    kind: str
    namespace: str
    name: str
    owners: list[dict] = field(default_factory=list)
    dependents: set[str] = field(default_factory=set)
    virtual: bool = False
    deleting_dependents: bool = False


def monitored_resources(all_resources: list[Resource]) -> list[Resource]:
    out = []
    for r in all_resources:
        if (r.group, r.plural) in IGNORED:
            continue
        if r.verbs and not {"list", "watch", "delete"} <= set(r.verbs):
            continue
        out.append(r)
    return out


class GarbageCollector(Controller):
    name = "garbagecollector"
    component = "garbage-collector-controller"

    def __init__(self, ctx, workers: int | None = None):
        super().__init__(ctx, workers or ctx.options.concurrent_gc_syncs)
        self.queue.name = "garbage_collector_attempt_to_delete"
        self.orphan_queue = RateLimitingQueue(name="garbage_collector_attempt_to_orphan")
        self.graph: dict[str, GNode] = {}
        self.absent: OrderedDict[str, bool] = OrderedDict()
        self.deleted = 0
        self.orphaned = 0
        resources = ctx.mapper.all() or WELL_KNOWN
        self.monitored = monitored_resources(resources)
        for res in self.monitored:
            inf = self.informer(res)
            inf.add_event_handler(
                on_add=lambda o, r=res: self._upsert(r, o),
                on_update=lambda old, new, r=res: self._upsert(r, new),
                on_delete=lambda o, r=res: self._removed(o["metadata"].get("uid", "")))

    def loops(self):
        return [lambda: self._worker(self.orphan_queue, self.attempt_to_orphan)]

    def metrics(self) -> list[str]:
        return ["# TYPE garbagecollector_graph_nodes gauge",
                f"garbagecollector_graph_nodes {len(self.graph)}",
                "# TYPE garbagecollector_deletions_total counter",
                f"garbagecollector_deletions_total {self.deleted}",
                "# TYPE garbagecollector_orphaned_total counter",
                f"garbagecollector_orphaned_total {self.orphaned}"]

    # -- the graph ------------------------------------------------------------------------
    def _forget_absent(self, uid: str) -> None:
        self.absent.pop(uid, None)

    def _mark_absent(self, uid: str) -> None:
        self.absent[uid] = True
        self.absent.move_to_end(uid)
        while len(self.absent) > ABSENT_CACHE:
            self.absent.popitem(last=False)

    def _link(self, n: GNode, ref: dict) -> None:
        uid = ref.get("uid")
        if not uid:
            return
        o = self.graph.get(uid)
        if o is None:
            ores = self.ctx.mapper.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
            ns = n.namespace if (ores is None or ores.namespaced) else ""
            o = GNode(uid, ores, ref.get("apiVersion", ""), ref.get("kind", ""), ns,
                      ref.get("name", ""), virtual=True)
            self.graph[uid] = o
            self.queue.add(uid)          # is the owner there at all?
        o.dependents.add(n.uid)

    def _unlink(self, n: GNode, ref: dict) -> None:
        o = self.graph.get(ref.get("uid", ""))
        if o is None:
            return
        o.dependents.discard(n.uid)
        if o.deleting_dependents:
            self.queue.add(o.uid)
        if o.virtual and not o.dependents:
            del self.graph[o.uid]

    def _upsert(self, res: Resource, obj: dict) -> None:
        md = obj.get("metadata") or {}
        uid = md.get("uid")
        if not uid:
            return
        self._forget_absent(uid)
        owners = list(md.get("ownerReferences") or [])
        n = self.graph.get(uid)
        if n is None:
            n = GNode(uid, res, obj.get("apiVersion") or res.api_version,
                      obj.get("kind") or res.kind, md.get("namespace", ""), md.get("name", ""))
            self.graph[uid] = n
            n.owners = owners
            for ref in owners:
                self._link(n, ref)
        else:
            n.virtual = False
            n.res, n.namespace, n.name = res, md.get("namespace", ""), md.get("name", "")
            n.api_version, n.kind = obj.get("apiVersion") or res.api_version, \
                obj.get("kind") or res.kind
            old = {r.get("uid"): r for r in n.owners}
            new = {r.get("uid"): r for r in owners}
            n.owners = owners
            for u, r in old.items():
                if u not in new:
                    self._unlink(n, r)
            for u, r in new.items():
                if u not in old:
                    self._link(n, r)
                elif old[u].get("blockOwnerDeletion") and not r.get("blockOwnerDeletion"):
                    o = self.graph.get(u)
                    if o is not None and o.deleting_dependents:
                        self.queue.add(u)
        fins = md.get("finalizers") or []
        deleting = bool(md.get("deletionTimestamp"))
        if deleting and ORPHAN in fins:
            self.orphan_queue.add(uid)
        if deleting and FOREGROUND in fins:
            if not n.deleting_dependents:
                n.deleting_dependents = True
                for d in n.dependents:
                    self.queue.add(d)
            self.queue.add(uid)
        else:
            n.deleting_dependents = False
        if owners and any(self.graph.get(r.get("uid", "")) is None or
                          self.graph[r["uid"]].virtual or r.get("uid") in self.absent
                          for r in owners):
            self.queue.add(uid)

    def _removed(self, uid: str) -> None:
        n = self.graph.pop(uid, None)
        self._mark_absent(uid)
        if n is None:
            return
        for ref in n.owners:
            o = self.graph.get(ref.get("uid", ""))
            if o is not None:
                o.dependents.discard(uid)
                if o.deleting_dependents:
                    self.queue.add(o.uid)
                if o.virtual and not o.dependents:
                    del self.graph[o.uid]
        for d in n.dependents:
            self.queue.add(d)
        if n.dependents:
            # the dependents still name this owner: keep it as a known-absent virtual node
            self.graph[uid] = GNode(uid, n.res, n.api_version, n.kind, n.namespace, n.name,
                                    dependents=set(n.dependents), virtual=True)

    # -- API helpers ----------------------------------------------------------------------
    async def _get(self, n: GNode) -> dict | None:
        if n.res is None:
            return None
        try:
            obj = await self.client.get(n.res, n.name, n.namespace or None)
        except E.NotFound:
            return None
        if (obj.get("metadata") or {}).get("uid") != n.uid:
            return None
        return obj

    async def _owner_state(self, ref: dict, namespace: str) -> str:
        """solid | dangling | waiting (the owner is deleting its dependents first)."""
        uid = ref.get("uid", "")
        if uid in self.absent:
            return "dangling"
        res = self.ctx.mapper.for_kind(ref.get("apiVersion", ""), ref.get("kind", ""))
        if res is None:
            return "solid"         # unknown kind: never delete on its account
        if res.namespaced and not namespace:
            return "dangling"      # a cluster-scoped object cannot have a namespaced owner
        try:
            owner = await self.client.get(res, ref.get("name", ""),
                                          namespace if res.namespaced else None)
        except E.NotFound:
            self._mark_absent(uid)
            return "dangling"
        md = owner.get("metadata") or {}
        if md.get("uid") != uid:
            self._mark_absent(uid)
            return "dangling"
        if md.get("deletionTimestamp") and FOREGROUND in (md.get("finalizers") or []):
            return "waiting"
        return "solid"

    async def _remove_finalizer(self, n: GNode, obj: dict, finalizer: str) -> None:
        for _ in range(5):
            md = obj["metadata"]
            fins = [f for f in md.get("finalizers") or [] if f != finalizer]
            try:
                await self.client.patch(n.res, n.name, {"metadata": {
                    "finalizers": fins or None, "resourceVersion": md["resourceVersion"]}},
                    n.namespace or None)
                return
            except E.NotFound:
                return
            except E.Conflict:
                fresh = await self._get(n)
                if fresh is None or finalizer not in (fresh["metadata"].get("finalizers")
                                                      or []):
                    return
                obj = fresh
        raise E.Conflict(f"could not remove finalizer {finalizer} from {n.kind} {n.name}")

    async def _delete(self, n: GNode, policy: str) -> None:
        log.info("garbage collector: deleting %s %s/%s (%s)", n.kind, n.namespace, n.name,
                 policy)
        try:
            await self.client.delete(n.res, n.name, n.namespace or None,
                                     propagation_policy=policy, preconditions={"uid": n.uid})
            self.deleted += 1
        except (E.NotFound, E.Conflict):
            pass

    # -- attempt to delete ------------------------------------------------------------------
    async def sync(self, uid: str) -> None:
        n = self.graph.get(uid)
        if n is None:
            return
        if n.virtual:
            obj = await self._get(n) if n.res is not None else None
            if obj is None and n.res is not None:
                self._mark_absent(uid)
                for d in n.dependents:
                    self.queue.add(d)
            return
        if n.res is None:
            return
        if not n.deleting_dependents and all(self._live_owner(r) for r in n.owners):
            return      # every owner is known, present and not waiting: nothing to do
        latest = await self._get(n)
        if latest is None:
            self._removed(uid)
            return
        md = latest["metadata"]
        fins = md.get("finalizers") or []
        if md.get("deletionTimestamp") and FOREGROUND in fins:
            await self._deleting_dependents(n, latest)
            return
        if md.get("deletionTimestamp"):
            return
        refs = md.get("ownerReferences") or []
        if not refs:
            return
        solid, dangling, waiting = [], [], []
        for ref in refs:
            state = await self._owner_state(ref, n.namespace)
            (solid if state == "solid" else dangling if state == "dangling" else
             waiting).append(ref)
        if solid:
            gone = dangling + waiting
            if gone:
                try:
                    await self.client.patch(n.res, n.name, {"metadata": {
                        "ownerReferences": [{"$patch": "delete", "uid": r["uid"]}
                                            for r in gone], "uid": uid}},
                        n.namespace or None, patch_type="strategic")
                except (E.NotFound, E.Invalid, E.Conflict):
                    pass
            return
        if waiting and n.dependents:
            await self._delete(n, "Foreground")
            return
        policy = "Orphan" if ORPHAN in fins else "Foreground" if FOREGROUND in fins \
            else "Background"
        await self._delete(n, policy)

    def _live_owner(self, ref: dict) -> bool:
        o = self.graph.get(ref.get("uid", ""))
        return o is not None and not o.virtual and not o.deleting_dependents and \
            ref.get("uid") not in self.absent

    async def _deleting_dependents(self, n: GNode, latest: dict) -> None:
        blocking = []
        for d_uid in list(n.dependents):
            d = self.graph.get(d_uid)
            if d is None or d.virtual:
                continue
            ref = next((r for r in d.owners if r.get("uid") == n.uid), None)
            if ref is not None and ref.get("blockOwnerDeletion"):
                blocking.append(d)
        if not blocking:
            await self._remove_finalizer(n, latest, FOREGROUND)
            return
        for d in blocking:
            if not d.deleting_dependents:
                self.queue.add(d.uid)

    # -- attempt to orphan ------------------------------------------------------------------
    async def attempt_to_orphan(self, uid: str) -> None:
        n = self.graph.get(uid)
        if n is None or n.res is None:
            return
        owner = await self._get(n)
        if owner is None:
            return
        md = owner["metadata"]
        if not md.get("deletionTimestamp") or ORPHAN not in (md.get("finalizers") or []):
            return
        for d_uid in list(n.dependents):
            d = self.graph.get(d_uid)
            if d is None or d.res is None or d.virtual:
                continue
            try:
                await self.client.patch(d.res, d.name, {"metadata": {
                    "ownerReferences": [{"$patch": "delete", "uid": uid}], "uid": d.uid}},
                    d.namespace or None, patch_type="strategic")
                self.orphaned += 1
            except (E.NotFound, E.Invalid):
                continue
        await self._remove_finalizer(n, owner, ORPHAN)
