"""The horizontal pod autoscaler's arithmetic, pure (kube's replica_calculator
and the normalisation in horizontal.go): no clock, no client.

    rec = cpu_replicas(current, pods, target_percent, tolerance, now, init, delay)
    desired, history = stabilize(history, rec.replicas, now, window)
    desired, reason = clamp(current, desired, min_replicas, max_replicas)

CPU utilisation is the pods' usage over the sum of their containers' CPU
requests. desired = ceil(ratio × ready pods), unless the ratio is within the
tolerance of 1. Pods without metrics count as using nothing when scaling up
and their full request (at least the target) when scaling down; unready pods
count as using nothing on a scale-up; neither may turn the direction around.
Scale-downs are stabilised: the highest recommendation of the window wins.
"""
from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class PodSample:
    """What the calculation needs of one pod selected by the scale target."""
    name: str
    phase: str = "Running"
    deleting: bool = False
    ready: str | None = "True"           # the Ready condition's status (None: none)
    ready_changed: float | None = None   # its lastTransitionTime
    started: float | None = 0.0          # status.startTime
    request_milli: int | None = None     # sum of container cpu requests (None: one lacks)
    missing_request: str = ""            # a container without a cpu request
    usage_milli: int | None = None       # from metrics.k8s.io (None: no metrics)
    metric_time: float = 0.0
    metric_window: float = 0.0


@dataclass(frozen=True)
class Recommendation:
    replicas: int
    utilization: int                 # percent of the requests, what status reports
    raw_milli: int                   # average usage per pod with metrics


@dataclass(frozen=True)
class Unavailable:
    """No recommendation: the reason kube's FailedGetResourceMetric events give."""
    reason: str
    message: str


@dataclass(frozen=True)
class Groups:
    ready: int
    unready: frozenset
    missing: frozenset
    ignored: frozenset


def group_pods(pods: list[PodSample], now: float, cpu_init_period: float,
               readiness_delay: float) -> Groups:
    ready, unready, missing, ignored = 0, set(), set(), set()
    for p in pods:
        if p.deleting or p.phase == "Failed":
            ignored.add(p.name)
            continue
        if p.phase == "Pending":
            unready.add(p.name)
            continue
        if p.usage_milli is None:
            missing.add(p.name)
            continue
        if p.ready is None or p.started is None:
            bad = True
        elif p.started + cpu_init_period > now:
            # young pod: its sample must be ready and cover a window after it became ready
            bad = p.ready == "False" or (p.ready_changed is not None and
                                         p.metric_time < p.ready_changed + p.metric_window)
        else:
            # never ready since it started: unready
            bad = p.ready == "False" and p.ready_changed is not None and \
                p.started + readiness_delay > p.ready_changed
        if bad:
            unready.add(p.name)
        else:
            ready += 1
    return Groups(ready, frozenset(unready), frozenset(missing), frozenset(ignored))


def utilization(usage: dict[str, int], requests: dict[str, int], target: int
                ) -> tuple[float, int, int] | None:
    """(usage ratio, utilisation %, average raw usage) over the pods in usage;
    None when their requests add up to nothing."""
    total_use = sum(usage.values())
    total_req = sum(requests.get(n, 0) for n in usage)
    if total_req <= 0 or not usage:
        return None
    util = int(total_use * 100 / total_req)
    return util / target, util, total_use // len(usage)


def cpu_replicas(current: int, pods: list[PodSample], target: int, tolerance: float,
                 now: float, cpu_init_period: float = 300.0, readiness_delay: float = 30.0
                 ) -> Recommendation | Unavailable:
    if not pods:
        return Unavailable("FailedGetResourceMetric", "no pods returned by selector while "
                           "calculating replica count")
    g = group_pods(pods, now, cpu_init_period, readiness_delay)
    usage = {p.name: p.usage_milli for p in pods if p.usage_milli is not None
             and p.name not in g.ignored and p.name not in g.unready}
    if not usage:
        return Unavailable("FailedGetResourceMetric", "did not receive metrics for targeted "
                           "pods (pods might be unready)")
    requests: dict[str, int] = {}
    for p in pods:
        if p.request_milli is None:
            return Unavailable("FailedGetResourceMetric", f"missing request for cpu in "
                               f"container {p.missing_request} of Pod {p.name}")
        requests[p.name] = p.request_milli
    u = utilization(usage, requests, target)
    if u is None:
        return Unavailable("FailedGetResourceMetric", "no metrics returned matched known pods")
    ratio, util, raw = u
    scale_up_unready = bool(g.unready) and ratio > 1.0
    if not scale_up_unready and not g.missing:
        if abs(1.0 - ratio) <= tolerance:
            return Recommendation(current, util, raw)
        return Recommendation(math.ceil(ratio * g.ready), util, raw)
    if g.missing:
        if ratio < 1.0:
            fill = max(target, 100)
            for n in g.missing:
                usage[n] = requests[n] * fill // 100
        elif ratio > 1.0:
            for n in g.missing:
                usage[n] = 0
    if scale_up_unready:
        for n in g.unready:
            usage[n] = 0
    u2 = utilization(usage, requests, target)
    if u2 is None:
        return Recommendation(current, util, raw)
    new_ratio = u2[0]
    if abs(1.0 - new_ratio) <= tolerance or (ratio < 1.0 < new_ratio) or \
            (ratio > 1.0 > new_ratio):
        return Recommendation(current, util, raw)
    n = math.ceil(new_ratio * len(usage))
    if (new_ratio < 1.0 and n > current) or (new_ratio > 1.0 and n < current):
        return Recommendation(current, util, raw)
    return Recommendation(n, util, raw)


def stabilize(history: list[tuple[float, int]], recommendation: int, now: float,
              window: float) -> tuple[int, list[tuple[float, int]]]:
    """(the highest recommendation within the window, including this one; the
    history with this one recorded and samples older than the window dropped)."""
    kept = [(t, r) for t, r in history if t >= now - window]
    best = max([recommendation, *(r for _, r in kept)])
    return best, [*kept, (now, recommendation)]


def scale_up_limit(current: int) -> int:
    """No more than doubling (at least 4) in one step: a bogus usage spike cannot
    explode the replica count."""
    return max(2 * current, 4)


def clamp(current: int, desired: int, min_replicas: int, max_replicas: int
          ) -> tuple[int, str]:
    limit = scale_up_limit(current)
    if max_replicas > limit:
        upper, why = limit, "ScaleUpLimit"
    else:
        upper, why = max_replicas, "TooManyReplicas"
    if desired < min_replicas:
        return min_replicas, "TooFewReplicas"
    if desired > upper:
        return upper, why
    return desired, "DesiredWithinRange"


@dataclass(frozen=True)
class Decision:
    desired: int
    rescale: bool
    reason: str
    recommendation: Recommendation | Unavailable | None = None


def decide(current: int, min_replicas: int, max_replicas: int,
           rec: Recommendation | Unavailable | None, stabilized: int | None) -> Decision:
    """What reconcileAutoscaler does with the scale's replicas and the (stabilised)
    recommendation. rec is None when the metrics were not consulted."""
    if current == 0 and min_replicas != 0:
        return Decision(0, False, "ScalingDisabled", rec)
    if current > max_replicas:
        return Decision(max_replicas, True, "Current number of replicas above Spec."
                        "MaxReplicas", rec)
    if current < min_replicas:
        return Decision(min_replicas, True, "Current number of replicas below Spec."
                        "MinReplicas", rec)
    if rec is None or isinstance(rec, Unavailable) or stabilized is None:
        return Decision(current, False, "", rec)
    desired, _ = clamp(current, stabilized, min_replicas, max_replicas)
    return Decision(desired, desired != current,
                    "cpu resource utilization (percentage of request) above target"
                    if desired > current else "All metrics below target", rec)


def needs_metrics(current: int, min_replicas: int, max_replicas: int) -> bool:
    return not (current == 0 and min_replicas != 0) and min_replicas <= current <= max_replicas
