"""The HPA's arithmetic (replica_calculator.py) and how pods and PodMetrics are
read (podautoscaler.pod_sample), without processes."""
from __future__ import annotations

import math

from hypothesis import given
from hypothesis import strategies as st

from kcore.api.meta import rfc3339
from kcore.controllers.podautoscaler import pod_sample
from kcore.controllers.replica_calculator import (
    PodSample,
    Recommendation,
    Unavailable,
    clamp,
    cpu_replicas,
    decide,
    stabilize,
)

NOW = 1_000_000.0


def running(name: str, usage: int | None, request: int = 100) -> PodSample:
    return PodSample(name, started=NOW - 3600, ready="True", ready_changed=NOW - 3500,
                     request_milli=request, usage_milli=usage, metric_time=NOW,
                     metric_window=10)


def test_scale_up_is_ceil_of_ratio_times_ready_pods():
    # 2 pods at 90% of 100m with a 50% target: ceil(1.8 * 2) = 4
    r = cpu_replicas(2, [running("a", 90), running("b", 90)], 50, 0.1, NOW)
    assert r == Recommendation(4, 90, 90)


def test_within_tolerance_keeps_the_current_count():
    r = cpu_replicas(3, [running(n, 54) for n in "abc"], 50, 0.1, NOW)
    assert isinstance(r, Recommendation) and r.replicas == 3 and r.utilization == 54


def test_scale_down():
    r = cpu_replicas(3, [running(n, 0) for n in "abc"], 50, 0.1, NOW)
    assert r.replicas == 0 and r.utilization == 0


def test_missing_metrics_count_as_full_request_on_scale_down():
    # a: 10% (ratio 0.2) but b has no metrics: b counts as 100% → (10+100)/2 = 55% ~ 1.1
    r = cpu_replicas(2, [running("a", 10), running("b", None)], 50, 0.1, NOW)
    assert r.replicas == 2


def test_missing_metrics_count_as_zero_on_scale_up():
    # a: 200% (ratio 4); b missing → 0: (200+0)/2 = 100% → ratio 2 → ceil(2*2) = 4
    r = cpu_replicas(2, [running("a", 200), running("b", None)], 50, 0.1, NOW)
    assert r.replicas == 4


def test_pending_and_unready_pods_count_as_zero_on_scale_up():
    pending = PodSample("p", phase="Pending", request_milli=100)
    r = cpu_replicas(2, [running("a", 100), pending], 50, 0.1, NOW)
    assert r.replicas == 2                      # (100+0)/2 = 50%: at target
    young_unready = PodSample("y", ready="False", started=NOW - 5, ready_changed=NOW - 5,
                              request_milli=100, usage_milli=500, metric_time=NOW,
                              metric_window=1)
    r = cpu_replicas(2, [running("a", 100), young_unready], 50, 0.1, NOW)
    assert r.replicas == 2


def test_ignored_and_errors():
    deleting = PodSample("d", deleting=True, request_milli=100, usage_milli=100)
    assert isinstance(cpu_replicas(1, [deleting], 50, 0.1, NOW), Unavailable)
    assert isinstance(cpu_replicas(1, [], 50, 0.1, NOW), Unavailable)
    no_req = PodSample("x", started=NOW - 999, ready="True", usage_milli=5,
                       missing_request="c")
    r = cpu_replicas(1, [no_req], 50, 0.1, NOW)
    assert isinstance(r, Unavailable) and "missing request for cpu in container c" in r.message


def test_stabilize_keeps_the_highest_recommendation_of_the_window():
    h: list = []
    best, h = stabilize(h, 3, 0.0, 10)
    assert best == 3
    best, h = stabilize(h, 1, 5.0, 10)
    assert best == 3                           # 3 still in the window
    best, h = stabilize(h, 1, 10.5, 10)
    assert best == 1 and [r for _, r in h] == [1, 1]
    best, h = stabilize(h, 4, 11.0, 10)
    assert best == 4                           # scale-ups are not delayed


def test_clamp_and_decide():
    assert clamp(1, 10, 1, 20) == (4, "ScaleUpLimit")
    assert clamp(5, 10, 1, 8) == (8, "TooManyReplicas")
    assert clamp(3, 0, 1, 8) == (1, "TooFewReplicas")
    assert decide(0, 1, 3, None, None).rescale is False           # scaling disabled
    assert decide(5, 1, 3, None, None).desired == 3
    assert decide(0, 0, 3, None, None).desired == 0
    d = decide(1, 1, 3, Recommendation(3, 100, 100), 3)
    assert d.desired == 3 and d.rescale and "above target" in d.reason
    d = decide(3, 1, 3, Recommendation(0, 0, 0), 0)
    assert d.desired == 1 and d.reason == "All metrics below target"
    assert decide(2, 1, 3, Unavailable("x", "y"), None).rescale is False


@given(current=st.integers(1, 20), usages=st.lists(st.integers(0, 2000), min_size=1,
                                                    max_size=20),
       target=st.integers(1, 150), tol=st.floats(0, 0.5))
def test_all_ready_matches_kubes_formula(current, usages, target, tol):
    pods = [running(f"p{i}", u) for i, u in enumerate(usages)]
    r = cpu_replicas(current, pods, target, tol, NOW)
    util = int(sum(usages) * 100 / (100 * len(usages)))
    ratio = util / target
    want = current if abs(1 - ratio) <= tol else math.ceil(ratio * len(usages))
    assert r.replicas == want and r.utilization == util
    d = decide(current, 1, 10, r, stabilize([], r.replicas, NOW, 300)[0])
    assert 1 <= d.desired <= 10 and d.desired <= max(2 * current, 4)


@given(st.lists(st.tuples(st.floats(0, 100), st.integers(0, 50)), max_size=30),
       st.floats(0, 60))
def test_stabilized_is_max_of_window(recs, window):
    h: list = []
    t = 0.0
    for dt, r in recs:
        t += dt
        best, h = stabilize(h, r, t, window)
        assert best >= r
        assert best == max(rr for tt, rr in h if tt >= t - window)


def test_pod_sample_reads_requests_readiness_and_metrics():
    pod = {"metadata": {"name": "w"},
           "spec": {"containers": [{"name": "a", "resources": {"requests": {"cpu": "100m"}}},
                                   {"name": "b", "resources": {"requests": {"cpu": "0.5"}}}]},
           "status": {"phase": "Running", "startTime": rfc3339(NOW - 60),
                      "conditions": [{"type": "Ready", "status": "True",
                                      "lastTransitionTime": rfc3339(NOW - 50)}]}}
    m = {"timestamp": rfc3339(NOW), "window": "1.5s",
         "containers": [{"name": "a", "usage": {"cpu": "250000000n"}},
                        {"name": "b", "usage": {"cpu": "100m"}}]}
    s = pod_sample(pod, m)
    assert (s.request_milli, s.usage_milli, s.metric_window) == (600, 350, 1.5)
    assert s.ready == "True" and s.started == NOW - 60 and s.metric_time == NOW
    pod["spec"]["containers"][1]["resources"] = {}
    s = pod_sample(pod, None)
    assert s.request_milli is None and s.missing_request == "b" and s.usage_milli is None
