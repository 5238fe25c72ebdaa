"""Resource quota: recompute every quota's `status.used` from what exists.

Admission (in the API server) charges creates and releases deletes in the
same transaction as the object; this controller is the recount that repairs
drift (graceful deletions, terminal pods, objects gone through paths
admission did not see). A sync reads the quota afresh, lists what it counts
from the API server (reads there wait for the server's own writes, so
nothing admitted before the quota read is missed), and writes the status
guarded by the quota's resourceVersion: if admission charged something
meanwhile the write fails with a conflict and the sync runs again. Syncs run
when a quota changes, when counted objects are deleted or pods finish, and
for every quota each `--resource-quota-sync-period`.

Usage rules are the API server's: `pods`, `services`, `replicationcontrollers`,
`resourcequotas`, `secrets`, `configmaps`, `persistentvolumeclaims` counts,
`count/<resource>[.<group>]`, `requests.*`/`limits.*` and `cpu`/`memory`/
`ephemeral-storage` of non-terminal pods (within the quota's scopes),
`services.nodeports` and `services.loadbalancers`.
"""
from __future__ import annotations

import logging
from fractions import Fraction

from kcore.api.quantity import QuantityError, format_quantity, is_binary, parse_quantity
from kcore.client import errors as E
from kcore.client.resources import (
    CONFIG_MAPS,
    PODS,
    REPLICATION_CONTROLLERS,
    RESOURCE_QUOTAS,
    SECRETS,
    SERVICES,
    Resource,
)
from kcore.client.store import deep_copy
from kcore.controllers.controller import Controller, periodic
from kcore.controllers.pods import is_terminal

log = logging.getLogger(__name__)

COUNTED_PLURALS = {"pods", "services", "replicationcontrollers", "resourcequotas", "secrets",
                   "configmaps", "persistentvolumeclaims"}
COMPUTE = ("cpu", "memory", "ephemeral-storage")


def _q(v) -> Fraction:
    try:
        return parse_quantity(v)
    except QuantityError:
        return Fraction(0)


def pod_in_scope(scope: str, pod: dict) -> bool:
    spec = pod.get("spec") or {}
    if scope == "Terminating":
        return spec.get("activeDeadlineSeconds") is not None
    if scope == "NotTerminating":
        return spec.get("activeDeadlineSeconds") is None
    best = all(not ((c.get("resources") or {}).get("requests") or
                    (c.get("resources") or {}).get("limits"))
               for c in spec.get("containers") or [])
    if scope == "BestEffort":
        return best
    if scope == "NotBestEffort":
        return not best
    return True


def usage_of(res: Resource, obj: dict) -> dict[str, Fraction]:
    """What one object counts against quota."""
    u: dict[str, Fraction] = {f"count/{res.group_resource}": Fraction(1)}
    if res.plural in COUNTED_PLURALS and not res.group:
        u[res.plural] = Fraction(1)
    if res.plural == "pods" and not res.group:
        if is_terminal(obj):
            return {}
        reqs: dict[str, Fraction] = {}
        lims: dict[str, Fraction] = {}
        for c in (obj.get("spec") or {}).get("containers") or []:
            r = c.get("resources") or {}
            for k, v in (r.get("requests") or {}).items():
                reqs[k] = reqs.get(k, Fraction(0)) + _q(v)
            for k, v in (r.get("limits") or {}).items():
                lims[k] = lims.get(k, Fraction(0)) + _q(v)
        for k, v in reqs.items():
            u[f"requests.{k}"] = v
            if k in COMPUTE:
                u[k] = v
        for k, v in lims.items():
            u[f"limits.{k}"] = v
    elif res.plural == "services" and not res.group:
        spec = obj.get("spec") or {}
        t = spec.get("type")
        if t in ("NodePort", "LoadBalancer"):
            u["services.nodeports"] = Fraction(sum(1 for p in spec.get("ports") or []
                                                   if p.get("nodePort")))
        if t == "LoadBalancer":
            u["services.loadbalancers"] = Fraction(1)
    return u


def counts_for(res: Resource, name: str) -> bool:
    """Does resource `res` contribute to the quota resource `name`?"""
    if name == f"count/{res.group_resource}":
        return True
    if res.group:
        return False
    if name == res.plural and res.plural in COUNTED_PLURALS:
        return True
    if res.plural == "pods":
        return name.startswith(("requests.", "limits.")) or name in COMPUTE
    if res.plural == "services":
        return name.startswith("services.")
    return False


def compute_usage(hard: dict, scopes: list[str], objects: dict[Resource, list[dict]]
                  ) -> dict[str, str]:
    """status.used for a quota's hard resources over the namespace's objects."""
    total: dict[str, Fraction] = {r: Fraction(0) for r in hard}
    for res, items in objects.items():
        wanted = [r for r in hard if counts_for(res, r)]
        if not wanted:
            continue
        for obj in items:
            if res.plural == "pods" and not res.group and \
                    not all(pod_in_scope(s, obj) for s in scopes):
                continue
            u = usage_of(res, obj)
            for r in wanted:
                if r in u:
                    total[r] += u[r]
    return {r: format_quantity(v, binary=is_binary(hard.get(r))) for r, v in total.items()}


class ResourceQuotaController(Controller):
    name = "resourcequota"
    component = "resourcequota-controller"

    REPLENISH = (PODS, SERVICES, REPLICATION_CONTROLLERS, SECRETS, CONFIG_MAPS)

    def __init__(self, ctx, workers: int | None = None):
        super().__init__(ctx, workers or ctx.options.concurrent_resource_quota_syncs)
        self.period = ctx.options.resource_quota_sync_period
        self.quotas = self.informer(RESOURCE_QUOTAS)
        self.quotas.add_event_handler(self.enqueue, self._quota_updated)
        for res in self.REPLENISH:
            inf = self.informer(res)
            inf.add_event_handler(on_update=self._obj_updated if res == PODS else None,
                                  on_delete=self._replenish)

    def _quota_updated(self, old: dict, new: dict) -> None:
        if (old.get("spec") or {}) != (new.get("spec") or {}) or \
                ((new.get("status") or {}).get("hard") or {}) != \
                ((new.get("spec") or {}).get("hard") or {}):
            self.enqueue(new)

    def _replenish(self, obj: dict) -> None:
        for q in self.quotas.store.list(obj["metadata"].get("namespace", "")):
            self.enqueue(q)

    def _obj_updated(self, old: dict, new: dict) -> None:
        if is_terminal(new) and not is_terminal(old):
            self._replenish(new)

    def loops(self):
        return [lambda: periodic(self._resync_all, self.period, "quota resync")]

    async def _resync_all(self) -> None:
        for q in self.quotas.store.list():
            self.enqueue(q)

    def _resource_for(self, name: str) -> Resource | None:
        if not name.startswith("count/"):
            return None
        plural, _, group = name[len("count/"):].partition(".")
        for r in self.ctx.mapper.all():
            if r.plural == plural and r.group == group and r.namespaced:
                return r
        return None

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        try:
            q = await self.client.get(RESOURCE_QUOTAS, name, ns)
        except E.NotFound:
            return
        hard = dict(((q.get("spec") or {}).get("hard")) or {})
        scopes = list(((q.get("spec") or {}).get("scopes")) or [])
        needed: list[Resource] = [r for r in (PODS, SERVICES, REPLICATION_CONTROLLERS,
                                              RESOURCE_QUOTAS, SECRETS, CONFIG_MAPS)
                                  if any(counts_for(r, h) for h in hard)]
        for h in hard:
            r = self._resource_for(h)
            if r is not None and r not in needed:
                needed.append(r)
        objects: dict[Resource, list[dict]] = {}
        for r in needed:
            try:
                objects[r], _ = await self.client.list_all(r, ns)
            except (E.NotFound, E.MethodNotAllowed):
                objects[r] = []
        used = compute_usage(hard, scopes, objects)
        st = q.get("status") or {}
        if st.get("hard") == hard and st.get("used") == used:
            return
        obj = deep_copy(q)
        obj["status"] = {"hard": hard, "used": used}
        try:
            await self.client.update_status(RESOURCE_QUOTAS, obj)
        except E.NotFound:
            return
