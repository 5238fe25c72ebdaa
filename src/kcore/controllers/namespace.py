"""Namespace deletion: empty a Terminating namespace, then let it go.

The API server marks a deleted namespace Terminating while its
`spec.finalizers` holds `kubernetes`. This controller deletes every
namespaced object in it (each resource the server's discovery lists as
deletable: a deletecollection, or one delete per object), then checks what is
left: pods still terminating, objects held by finalizers. While anything
remains it records why in the namespace's conditions (NamespaceContentRemaining,
NamespaceFinalizersRemaining, NamespaceDeletionContentFailure) and looks again
shortly; once empty it removes `kubernetes` through `/finalize`, and the API
server deletes the namespace.
"""
from __future__ import annotations

import logging
import time

from kcore.api.meta import rfc3339
from kcore.client import errors as E
from kcore.client.resources import NAMESPACES, Resource
from kcore.controllers.controller import Controller

log = logging.getLogger(__name__)

FINALIZER = "kubernetes"
SKIP = {"bindings", "localsubjectaccessreviews", "tokenreviews", "subjectaccessreviews",
        "selfsubjectaccessreviews", "selfsubjectrulesreviews"}
DISCOVERY_TTL = 30.0
RETRY_CONTENT = 1.0


class NamespaceController(Controller):
    name = "namespace"
    component = "namespace-controller"

    def __init__(self, ctx, workers: int | None = None):
        super().__init__(ctx, workers or ctx.options.concurrent_namespace_syncs)
        self.namespaces = self.informer(NAMESPACES)
        self.namespaces.add_event_handler(self._changed, lambda o, n: self._changed(n))
        self._discovered_at = 0.0

    def _changed(self, ns: dict) -> None:
        if ns["metadata"].get("deletionTimestamp"):
            self.enqueue(ns)

    async def _resources(self) -> list[Resource]:
        now = time.monotonic()
        if now - self._discovered_at > DISCOVERY_TTL:
            try:
                await self.ctx.mapper.refresh(self.client)
                self._discovered_at = now
            except E.ApiError as e:
                log.warning("namespace controller: discovery failed: %s", e)
        return [r for r in self.ctx.mapper.all() if r.namespaced and r.plural not in SKIP
                and (not r.verbs or ("delete" in r.verbs and "list" in r.verbs))]

    async def sync(self, key: str) -> None:
        try:
            ns = await self.client.get(NAMESPACES, key)
        except E.NotFound:
            return
        md = ns["metadata"]
        if not md.get("deletionTimestamp"):
            return
        if FINALIZER not in ((ns.get("spec") or {}).get("finalizers") or []):
            return
        resources = await self._resources()
        failures: list[str] = []
        for r in resources:
            try:
                if not r.verbs or "deletecollection" in r.verbs:
                    await self.client.delete_collection(r, key,
                                                        propagation_policy="Background")
                else:
                    items, _ = await self.client.list_all(r, key)
                    for it in items:
                        if it["metadata"].get("deletionTimestamp"):
                            continue
                        try:
                            await self.client.delete(r, it["metadata"]["name"], key,
                                                     propagation_policy="Background")
                        except E.NotFound:
                            pass
            except (E.NotFound, E.MethodNotAllowed):
                continue
            except E.ApiError as e:
                failures.append(f"{r.group_resource}: {e.message}")
        remaining: dict[str, int] = {}
        finalizers: dict[str, int] = {}
        wait = 0.0
        for r in resources:
            try:
                items, _ = await self.client.list_all(r, key)
            except E.ApiError:
                continue
            if not items:
                continue
            remaining[r.group_resource] = len(items)
            for it in items:
                for f in it["metadata"].get("finalizers") or []:
                    finalizers[f] = finalizers.get(f, 0) + 1
                grace = it["metadata"].get("deletionGracePeriodSeconds")
                if grace:
                    wait = max(wait, min(float(grace), 5.0))
        await self._set_conditions(ns, remaining, finalizers, failures)
        if failures:
            raise E.InternalError("failed to delete namespace content: " + "; ".join(failures))
        if remaining:
            log.info("namespace %s: waiting for %s", key, ", ".join(
                f"{n} {r}" for r, n in sorted(remaining.items())))
            self.queue.add_after(key, max(wait, RETRY_CONTENT))
            return
        ns["spec"]["finalizers"] = [f for f in ns["spec"].get("finalizers") or []
                                    if f != FINALIZER]
        try:
            await self.client.finalize_namespace(ns)
        except E.NotFound:
            return
        log.info("namespace %s: content deleted, finalized", key)

    async def _set_conditions(self, ns: dict, remaining: dict[str, int],
                              finalizers: dict[str, int], failures: list[str]) -> None:
        now = rfc3339()

        def cond(ctype: str, bad: bool, reason_bad: str, msg: str) -> dict:
            return {"type": ctype, "status": "True" if bad else "False",
                    "lastTransitionTime": now,
                    "reason": reason_bad if bad else "ContentDeleted" if ctype != (
                        "NamespaceFinalizersRemaining") else "ContentHasNoFinalizers",
                    "message": msg if bad else "All content successfully deleted, may be "
                    "waiting on finalization" if ctype == "NamespaceContentRemaining" else
                    "All content-preserving finalizers finished" if ctype ==
                    "NamespaceFinalizersRemaining" else "All content successfully deleted"}
        want = [
            cond("NamespaceDeletionContentFailure", bool(failures), "ContentDeletionFailed",
                 "Failed to delete all resource types, " + str(len(failures)) +
                 " remaining: " + "; ".join(failures)),
            cond("NamespaceContentRemaining", bool(remaining), "SomeResourcesRemain",
                 "Some resources are remaining: " + ", ".join(
                     f"{r} has {n} resource instances" for r, n in sorted(remaining.items()))),
            cond("NamespaceFinalizersRemaining", bool(finalizers), "SomeFinalizersRemain",
                 "Some content in the namespace has finalizers remaining: " + ", ".join(
                     f"{f} in {n} resource instances" for f, n in sorted(finalizers.items()))),
        ]
        st = dict(ns.get("status") or {})
        old = {c.get("type"): c for c in st.get("conditions") or []}
        conds = []
        changed = False
        for c in want:
            o = old.get(c["type"])
            if o is not None and o.get("status") == c["status"] and \
                    o.get("message") == c["message"]:
                conds.append(o)
            else:
                conds.append(c)
                changed = True
        if not changed:
            return
        st["conditions"] = conds
        obj = dict(ns)
        obj["status"] = st
        try:
            out = await self.client.update_status(NAMESPACES, obj)
            ns["metadata"] = out["metadata"]
            ns["status"] = out.get("status") or {}
        except (E.Conflict, E.NotFound):
            pass
