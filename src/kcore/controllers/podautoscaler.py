"""The horizontal pod autoscaler (autoscaling/v1, CPU utilisation).

Every --horizontal-pod-autoscaler-sync-period each HorizontalPodAutoscaler is
reconciled: the target's `scale` subresource gives the replicas and the pod
selector, metrics.k8s.io the pods' CPU usage, the pod informer their CPU
requests and readiness; replica_calculator.py (pure) recommends, stabilises
scale-downs over --horizontal-pod-autoscaler-downscale-stabilization and
clamps; a change is written through `scale`, then the HPA's status
(currentReplicas, desiredReplicas, currentCPUUtilizationPercentage,
lastScaleTime). Events as kube's: SuccessfulRescale, FailedGetScale,
FailedGetResourceMetric, FailedRescale.
"""
from __future__ import annotations

import logging
import time

from kcore.api import labels as L
from kcore.api.meta import parse_time_or_none, rfc3339
from kcore.api.quantity import QuantityError, parse_quantity
from kcore.client import errors as E
from kcore.client.events import NORMAL, WARNING
from kcore.client.resources import HORIZONTAL_POD_AUTOSCALERS, PODS, Resource
from kcore.client.store import deep_copy, meta_namespace_key
from kcore.controllers.controller import Controller, periodic
from kcore.controllers.replica_calculator import (
    PodSample,
    Recommendation,
    Unavailable,
    cpu_replicas,
    decide,
    needs_metrics,
    stabilize,
)
from kcore.durations import parse_duration

log = logging.getLogger(__name__)

DEFAULT_TARGET_CPU = 80


def _milli(v) -> int | None:
    try:
        return int(parse_quantity(v) * 1000)
    except (QuantityError, ValueError, TypeError, ZeroDivisionError):
        return None


def pod_sample(pod: dict, metrics: dict | None) -> PodSample:
    """A pod and its PodMetrics (None: none reported) as the calculator sees them."""
    md, spec, st = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    request, missing = 0, ""
    for c in spec.get("containers") or []:
        m = _milli(((c.get("resources") or {}).get("requests") or {}).get("cpu"))
        if m is None:
            missing = missing or c.get("name", "")
        else:
            request += m
    cond = next((c for c in st.get("conditions") or [] if c.get("type") == "Ready"), None)
    usage = window = None
    ts = 0.0
    if metrics is not None:
        usage = sum(_milli((c.get("usage") or {}).get("cpu", "0")) or 0
                    for c in metrics.get("containers") or [])
        ts = parse_time_or_none(metrics.get("timestamp")) or 0.0
        try:
            window = parse_duration(metrics.get("window") or "0s")
        except ValueError:
            window = 0.0
    return PodSample(
        name=md.get("name", ""), phase=st.get("phase", "Pending"),
        deleting=bool(md.get("deletionTimestamp")),
        ready=cond.get("status") if cond else None,
        ready_changed=parse_time_or_none(cond.get("lastTransitionTime")) if cond else None,
        started=parse_time_or_none(st.get("startTime")),
        request_milli=None if missing else request, missing_request=missing,
        usage_milli=usage, metric_time=ts, metric_window=window or 0.0)


class HorizontalController(Controller):
    name = "horizontalpodautoscaling"
    component = "horizontal-pod-autoscaler"

    def __init__(self, ctx, clock=time.time):
        super().__init__(ctx, workers=ctx.options.concurrent_horizontal_pod_autoscaler_syncs)
        o = ctx.options
        self.sync_period = o.horizontal_pod_autoscaler_sync_period
        self.window = o.horizontal_pod_autoscaler_downscale_stabilization
        self.tolerance = o.horizontal_pod_autoscaler_tolerance
        self.cpu_init_period = o.horizontal_pod_autoscaler_cpu_initialization_period
        self.readiness_delay = o.horizontal_pod_autoscaler_initial_readiness_delay
        self.clock = clock
        self.hpas = self.informer(HORIZONTAL_POD_AUTOSCALERS)
        self.pods = self.informer(PODS)
        self.hpas.add_event_handler(self.enqueue, self._updated, self._deleted)
        self.recommendations: dict[str, list[tuple[float, int]]] = {}
        self.rescales = 0

    def _updated(self, old: dict, new: dict) -> None:
        if old["metadata"].get("generation") != new["metadata"].get("generation"):
            self.enqueue(new)            # a spec change; our own status writes are not

    def _deleted(self, obj: dict) -> None:
        self.recommendations.pop(meta_namespace_key(obj), None)

    def loops(self):
        return [lambda: periodic(self._resync, self.sync_period, self.name)]

    async def _resync(self) -> None:
        for h in self.hpas.store.list():
            self.enqueue(h)

    def _target(self, ref: dict) -> Resource | None:
        kind, av = ref.get("kind", ""), ref.get("apiVersion", "")
        if av:
            return self.ctx.mapper.for_kind(av, kind)
        return next((r for r in self.ctx.mapper.all() if r.kind == kind), None)

    async def _pod_metrics(self, ns: str, selector: str) -> dict[str, dict]:
        body = await self.client.request_json(
            "GET", f"/apis/metrics.k8s.io/v1beta1/namespaces/{ns}/pods",
            params={"labelSelector": selector})
        return {(i.get("metadata") or {}).get("name", ""): i for i in body.get("items") or []}

    async def sync(self, key: str) -> None:
        ns, _, name = key.partition("/")
        cached = self.hpas.store.get(ns, name)
        if cached is None:
            self.recommendations.pop(key, None)
            return
        hpa = deep_copy(cached)
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        res = self._target(ref)
        if res is None:
            self.recorder.event(hpa, WARNING, "FailedGetScale", f"the server could not find "
                                f"the requested resource {ref.get('kind')}")
            return
        try:
            scale = await self.client.get_scale(res, ref.get("name", ""), ns)
        except E.ApiError as e:
            self.recorder.event(hpa, WARNING, "FailedGetScale", str(e))
            return
        current = int((scale.get("spec") or {}).get("replicas") or 0)
        mn = int(spec.get("minReplicas") or 1)
        mx = int(spec.get("maxReplicas") or 1)
        target = int(spec.get("targetCPUUtilizationPercentage") or DEFAULT_TARGET_CPU)
        now = self.clock()
        rec: Recommendation | Unavailable | None = None
        stabilized = None
        if needs_metrics(current, mn, mx):
            rec = await self._recommend(ns, scale, current, target, now)
            if isinstance(rec, Recommendation):
                stabilized, self.recommendations[key] = stabilize(
                    self.recommendations.get(key, []), rec.replicas, now, self.window)
            else:
                self.recorder.event(hpa, WARNING, rec.reason, rec.message)
        d = decide(current, mn, mx, rec, stabilized)
        old_status = hpa.get("status") or {}
        status = {"currentReplicas": current,
                  "desiredReplicas": d.desired if not isinstance(rec, Unavailable)
                  else int(old_status.get("desiredReplicas") or current)}
        if old_status.get("lastScaleTime"):
            status["lastScaleTime"] = old_status["lastScaleTime"]
        if d.rescale:
            try:
                await self.client.scale(res, ref.get("name", ""), ns, d.desired)
            except E.ApiError as e:
                self.recorder.event(hpa, WARNING, "FailedRescale",
                                    f"New size: {d.desired}; reason: {d.reason}; error: {e}")
                raise
            self.rescales += 1
            log.info("%s: scaled %s %s from %d to %d (%s)", key, res.kind, ref.get("name"),
                     current, d.desired, d.reason)
            self.recorder.event(hpa, NORMAL, "SuccessfulRescale",
                                f"New size: {d.desired}; reason: {d.reason}")
            status["lastScaleTime"] = rfc3339(now)
        if isinstance(rec, Recommendation):
            status["currentCPUUtilizationPercentage"] = rec.utilization
        gen = hpa["metadata"].get("generation")
        if gen is not None:
            status["observedGeneration"] = gen
        if status != old_status:
            hpa["status"] = status
            await self.client.update_status(HORIZONTAL_POD_AUTOSCALERS, hpa, ns)

    async def _recommend(self, ns: str, scale: dict, current: int, target: int,
                         now: float) -> Recommendation | Unavailable:
        selector = (scale.get("status") or {}).get("selector") or ""
        try:
            reqs = L.parse_label_selector(selector)
        except L.SelectorError as e:
            return Unavailable("InvalidSelector", f"couldn't convert selector into a "
                               f"corresponding internal selector object: {e}")
        if not selector:
            return Unavailable("InvalidSelector", "the scale target has no selector")
        pods = [p for p in self.pods.store.list(ns)
                if L.matches(reqs, p["metadata"].get("labels"))]
        try:
            metrics = await self._pod_metrics(ns, selector)
        except (E.ApiError, E.TransportError) as e:
            return Unavailable("FailedGetResourceMetric", f"unable to get metrics for "
                               f"resource cpu: {e}")
        samples = [pod_sample(p, metrics.get(p["metadata"]["name"])) for p in pods]
        return cpu_replicas(current, samples, target, self.tolerance, now,
                            self.cpu_init_period, self.readiness_delay)

    def metrics(self) -> list[str]:
        return ["# TYPE kcore_hpa_rescales_total counter",
                f'kcore_hpa_rescales_total{{name="{self.name}"}} {self.rescales}']
