"""ReplicationController and apps/v1 ReplicaSet: keep `spec.replicas` pods alive.

One implementation for both kinds (they differ in the selector's shape: a
label map for RCs, a LabelSelector for ReplicaSets). A sync:

1. claims pods: adopts matching orphans (adds a controller ownerReference),
   releases owned pods that stopped matching, ignores others' pods;
2. if the owner's expectations are satisfied (every create/delete asked for
   has been seen through the informer), creates the missing pods in slow-start
   batches (1, 2, 4, ...: a failing create — say, quota — stops the rest) or
   deletes the surplus, preferring unscheduled, pending, not-ready, newest pods;
3. writes status: replicas, fullyLabeledReplicas, readyReplicas,
   availableReplicas (ready for minReadySeconds), observedGeneration, and a
   ReplicaFailure condition carrying the API server's message when creating or
   deleting failed.
"""
from __future__ import annotations

import asyncio
import logging
import time

from kcore.api import labels as L
from kcore.api.meta import rfc3339
from kcore.client import errors as E
from kcore.client.events import NORMAL, WARNING
from kcore.client.resources import PODS, REPLICA_SETS, REPLICATION_CONTROLLERS
from kcore.client.store import CONTROLLER_UID_INDEX, deep_copy, meta_namespace_key
from kcore.controllers import ownerrefs
from kcore.controllers.controller import Controller
from kcore.controllers.expectations import Expectations
from kcore.controllers.pods import deletion_order, is_active, is_available, is_ready

log = logging.getLogger(__name__)

BURST_REPLICAS = 500
SLOW_START_INITIAL_BATCH = 1


def selector_of(owner: dict) -> list[L.Requirement] | None:
    """The owner's pod selector as requirements (None: selects nothing)."""
    sel = (owner.get("spec") or {}).get("selector")
    if owner.get("kind") == "ReplicationController":
        if not sel:
            sel = (((owner.get("spec") or {}).get("template") or {}).get("metadata") or {}
                   ).get("labels")
        return L.from_map(sel) if sel else None
    if not sel:
        return None
    try:
        reqs = L.from_label_selector(sel)
    except L.SelectorError:
        return None
    return reqs or None


def pod_from_template(owner: dict) -> dict:
    tmpl = (owner.get("spec") or {}).get("template") or {}
    tmd = tmpl.get("metadata") or {}
    md = owner["metadata"]
    pod_md: dict = {"generateName": f"{md['name']}-", "namespace": md.get("namespace"),
                    "ownerReferences": [ownerrefs.owner_ref_for(owner)]}
    if tmd.get("labels"):
        pod_md["labels"] = dict(tmd["labels"])
    if tmd.get("annotations"):
        pod_md["annotations"] = dict(tmd["annotations"])
    if tmd.get("finalizers"):
        pod_md["finalizers"] = list(tmd["finalizers"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_md,
            "spec": deep_copy(tmpl.get("spec") or {})}


def _terminating_namespace(e: E.ApiError) -> bool:
    return isinstance(e, E.Forbidden) and "because it is being terminated" in e.message


async def slow_start_batch(count: int, initial: int, fn) -> tuple[int, E.ApiError | None]:
    """Call fn() count times in growing concurrent batches (1, 2, 4, ...); stop after
    the first batch with a failure. Returns (successes, first error)."""
    done, batch = 0, min(initial, count)
    while batch > 0:
        results = await asyncio.gather(*(fn() for _ in range(batch)), return_exceptions=True)
        errs = [r for r in results if isinstance(r, BaseException)]
        done += len(results) - len(errs)
        if errs:
            for r in errs:
                if not isinstance(r, E.ApiError):
                    raise r
            return done, errs[0]
        remaining = count - done
        batch = min(2 * batch, remaining)
    return done, None


class ReplicaManager(Controller):
    """The ReplicaSet controller (res=REPLICA_SETS) or the replication manager
    (res=REPLICATION_CONTROLLERS)."""

    def __init__(self, ctx, res=REPLICA_SETS, workers: int = 5,
                 burst_replicas: int = BURST_REPLICAS):
        self.res = res
        self.kind = res.kind
        self.name = "replicaset" if res == REPLICA_SETS else "replicationcontroller"
        self.component = "replicaset-controller" if res == REPLICA_SETS else \
            "replication-controller"
        super().__init__(ctx, workers)
        self.burst_replicas = burst_replicas
        self.expectations = Expectations()
        self.owners = self.informer(res)
        self.pods = self.informer(PODS)
        self.owners.add_event_handler(self._owner_added, self._owner_updated,
                                      self._owner_deleted)
        self.pods.add_event_handler(self._pod_added, self._pod_updated, self._pod_deleted)

    # -- event handlers -----------------------------------------------------------------
    def _owner_added(self, o: dict) -> None:
        self.enqueue(o)

    def _owner_updated(self, old: dict, new: dict) -> None:
        self.enqueue(new)

    def _owner_deleted(self, o: dict) -> None:
        self.expectations.delete(meta_namespace_key(o))
        self.enqueue(o)

    def _resolve(self, pod: dict, ref: dict | None) -> dict | None:
        if ref is None or ref.get("kind") != self.kind:
            return None
        owner = self.owners.store.get(pod["metadata"].get("namespace"), ref.get("name", ""))
        if owner is None or owner["metadata"].get("uid") != ref.get("uid"):
            return None
        return owner

    def _owners_matching(self, pod: dict) -> list[dict]:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        out = []
        for o in self.owners.store.list(pod["metadata"].get("namespace", "")):
            sel = selector_of(o)
            if sel is not None and L.matches(sel, labels):
                out.append(o)
        return out

    def _pod_added(self, pod: dict) -> None:
        if pod["metadata"].get("deletionTimestamp"):
            self._pod_deleted(pod)
            return
        ref = ownerrefs.controller_ref(pod)
        if ref is not None:
            owner = self._resolve(pod, ref)
            if owner is not None:
                self.expectations.creation_observed(meta_namespace_key(owner))
                self.enqueue(owner)
            return
        for o in self._owners_matching(pod):
            self.enqueue(o)

    def _pod_updated(self, old: dict, new: dict) -> None:
        omd, nmd = old["metadata"], new["metadata"]
        if omd.get("resourceVersion") == nmd.get("resourceVersion"):
            return
        labels_changed = omd.get("labels") != nmd.get("labels")
        if nmd.get("deletionTimestamp") and not omd.get("deletionTimestamp"):
            self._pod_deleted(new)
            if labels_changed:
                self._pod_deleted(old)
            return
        oref, nref = ownerrefs.controller_ref(old), ownerrefs.controller_ref(new)
        if oref != nref and oref is not None:
            o = self._resolve(old, oref)
            if o is not None:
                self.enqueue(o)
        if nref is not None:
            o = self._resolve(new, nref)
            if o is not None:
                self.enqueue(o)
                mrs = int((o.get("spec") or {}).get("minReadySeconds") or 0)
                if mrs > 0 and not is_ready(old) and is_ready(new):
                    self.enqueue_after(o, mrs + 1)
            return
        if labels_changed or oref != nref:
            for o in self._owners_matching(new):
                self.enqueue(o)

    def _pod_deleted(self, pod: dict) -> None:
        ref = ownerrefs.controller_ref(pod)
        owner = self._resolve(pod, ref)
        if owner is None:
            return
        key = meta_namespace_key(owner)
        self.expectations.deletion_observed(key, meta_namespace_key(pod))
        self.enqueue(owner)

    # -- sync ---------------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        owner = self.owners.store.get(ns, name)
        if owner is None:
            self.expectations.delete(key)
            return
        need_sync = self.expectations.satisfied(key)
        sel = selector_of(owner)
        claimed = await self._claim_pods(owner, sel)
        manage_err: E.ApiError | None = None
        if need_sync and not owner["metadata"].get("deletionTimestamp") and sel is not None:
            manage_err = await self._manage(owner, key, claimed)
        await self._update_status(owner, claimed, manage_err)
        if manage_err is not None:
            raise manage_err
        mrs = int((owner.get("spec") or {}).get("minReadySeconds") or 0)
        if mrs > 0:
            ready = sum(1 for p in claimed if is_ready(p))
            if ready != sum(1 for p in claimed if is_available(p, mrs)):
                self.queue.add_after(key, float(mrs))

    async def _claim_pods(self, owner: dict, sel) -> list[dict]:
        md = owner["metadata"]
        uid = md["uid"]
        deleting = bool(md.get("deletionTimestamp"))
        out: list[dict] = []
        candidates = {meta_namespace_key(p): p for p in self.pods.store.list(md["namespace"])
                      if is_active(p)}
        for p in self.pods.store.by_index(CONTROLLER_UID_INDEX, uid):
            if is_active(p):
                candidates[meta_namespace_key(p)] = p
        for p in candidates.values():
            ref = ownerrefs.controller_ref(p)
            matches = sel is not None and L.matches(sel, p["metadata"].get("labels"))
            if ref is not None:
                if ref.get("uid") != uid:
                    continue
                if matches:
                    out.append(p)
                elif not deleting:
                    try:
                        await ownerrefs.release(self.client, PODS, p, uid)
                    except (E.NotFound, E.Invalid, E.Conflict):
                        pass
                continue
            if deleting or not matches or p["metadata"].get("deletionTimestamp"):
                continue
            try:
                adopted = await ownerrefs.adopt(self.client, PODS, p, owner)
            except (E.NotFound, E.Invalid, E.Conflict):
                continue
            out.append(adopted)
        return out

    async def _manage(self, owner: dict, key: str, pods: list[dict]) -> E.ApiError | None:
        want = int((owner.get("spec") or {}).get("replicas", 1) or 0)
        diff = len(pods) - want
        if diff < 0:
            n = min(-diff, self.burst_replicas)
            self.expectations.expect_creations(key, n)
            template = pod_from_template(owner)

            async def create() -> None:
                try:
                    pod = await self.client.create(PODS, deep_copy(template))
                except E.ApiError as e:
                    if _terminating_namespace(e):
                        return
                    self.recorder.event(owner, WARNING, "FailedCreate",
                                        f"Error creating: {e.message}")
                    raise
                self.recorder.event(owner, NORMAL, "SuccessfulCreate",
                                    f"Created pod: {pod['metadata']['name']}")
            done, err = await slow_start_batch(n, SLOW_START_INITIAL_BATCH, create)
            if n - done > 0:
                self.expectations.lower_creations(key, n - done)
            return err
        if diff > 0:
            n = min(diff, self.burst_replicas)
            victims = deletion_order(pods)[:n]
            self.expectations.expect_deletions(key, [meta_namespace_key(p) for p in victims])
            results = await asyncio.gather(*(self._delete_pod(owner, key, p) for p in victims),
                                           return_exceptions=True)
            for r in results:
                if isinstance(r, E.ApiError):
                    return r
                if isinstance(r, BaseException):
                    raise r
        return None

    async def _delete_pod(self, owner: dict, key: str, pod: dict) -> None:
        md = pod["metadata"]
        try:
            await self.client.delete(PODS, md["name"], md["namespace"],
                                     preconditions={"uid": md["uid"]})
        except E.NotFound:
            self.expectations.deletion_observed(key, meta_namespace_key(pod))
            return
        except E.ApiError as e:
            self.expectations.deletion_observed(key, meta_namespace_key(pod))
            self.recorder.event(owner, WARNING, "FailedDelete",
                                f"Error deleting: {e.message}")
            raise
        self.recorder.event(owner, NORMAL, "SuccessfulDelete", f"Deleted pod: {md['name']}")

    async def _update_status(self, owner: dict, pods: list[dict],
                             manage_err: E.ApiError | None) -> None:
        spec = owner.get("spec") or {}
        mrs = int(spec.get("minReadySeconds") or 0)
        tmpl_labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        now = time.time()
        st = deep_copy(owner.get("status") or {})
        new = dict(st)
        new["replicas"] = len(pods)
        new["fullyLabeledReplicas"] = sum(
            1 for p in pods if all((p["metadata"].get("labels") or {}).get(k) == v
                                   for k, v in tmpl_labels.items()))
        new["readyReplicas"] = sum(1 for p in pods if is_ready(p))
        new["availableReplicas"] = sum(1 for p in pods if is_available(p, mrs, now))
        new["observedGeneration"] = owner["metadata"].get("generation", 1)
        conds = [c for c in new.get("conditions") or []]
        failure = next((c for c in conds if c.get("type") == "ReplicaFailure"), None)
        if manage_err is not None and failure is None:
            want = int(spec.get("replicas", 1) or 0)
            reason = "FailedCreate" if len(pods) < want else "FailedDelete"
            conds.append({"type": "ReplicaFailure", "status": "True",
                          "lastTransitionTime": rfc3339(now), "reason": reason,
                          "message": manage_err.message})
        elif manage_err is None and failure is not None:
            conds = [c for c in conds if c.get("type") != "ReplicaFailure"]
        if conds:
            new["conditions"] = conds
        else:
            new.pop("conditions", None)
        for k in ("fullyLabeledReplicas", "readyReplicas", "availableReplicas"):
            if not new[k]:
                new.pop(k)
        if new == st:
            return
        obj = deep_copy(owner)
        obj["status"] = new
        for attempt in range(2):
            try:
                await self.client.update_status(self.res, obj)
                return
            except E.Conflict:
                if attempt:
                    raise
                md = owner["metadata"]
                fresh = await self.client.get(self.res, md["name"], md["namespace"])
                if fresh["metadata"].get("uid") != md.get("uid"):
                    return
                fresh["status"] = new
                obj = fresh
            except E.NotFound:
                return


def new_replicaset_controller(ctx) -> ReplicaManager:
    return ReplicaManager(ctx, REPLICA_SETS, ctx.options.concurrent_replicaset_syncs)


def new_replication_controller(ctx) -> ReplicaManager:
    return ReplicaManager(ctx, REPLICATION_CONTROLLERS, ctx.options.concurrent_rc_syncs)
