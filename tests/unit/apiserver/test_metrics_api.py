"""metrics.k8s.io from kubelet summaries: rates over windows, quantities, the
NodeMetrics/PodMetrics objects, and discovery."""
from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from kcore.apiserver.kubelet_endpoint import kubelet_address, kubelet_url
from kcore.apiserver.usage import (
    FIRST_LOOK_WINDOW,
    CpuRates,
    cpu_quantity,
    memory_quantity,
    node_metrics,
    pod_metrics,
    window_string,
)
from kcore.kubelet.timeutil import rfc3339

NODE = {"metadata": {"name": "n1", "labels": {"zone": "a"}},
        "status": {"addresses": [{"type": "Hostname", "address": "n1"},
                                 {"type": "InternalIP", "address": "10.0.0.5"}],
                   "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}}}}


def test_kubelet_address_prefers_internal_ip():
    assert kubelet_address(NODE) == ("10.0.0.5", 10250)
    assert kubelet_address({"status": {}}) is None
    assert kubelet_address(None) is None
    assert kubelet_url(("::1", 5), "/stats/summary") == "http://[::1]:5/stats/summary"


def test_quantities_and_windows():
    assert cpu_quantity(250_000_000) == "250000000n"
    assert cpu_quantity(-5) == "0n"
    assert memory_quantity(10 * 1024 * 1024 + 100) == "10240Ki"
    assert window_string(10) == "10s"
    assert window_string(1.5) == "1.5s"
    assert window_string(75) == "1m15s"


def test_rate_over_newest_sample_at_least_min_window_old():
    r = CpuRates(min_window=1.0)
    assert r.observe("k", 100.0, 0) is None                   # nothing to compare with
    assert r.observe("k", 100.5, 10**9) is None               # too close to the first
    rate, window = r.observe("k", 102.0, 2 * 10**9)           # vs the sample at 100.5
    assert window == 1.5 and rate == int(10**9 / 1.5)
    rate, window = r.observe("k", 103.0, 3 * 10**9)           # vs 102.0
    assert (rate, window) == (10**9, 1.0)


def test_first_look_of_a_container_is_since_it_started():
    r = CpuRates()
    assert r.observe("c", 110.0, 5 * 10**9, started=100.0) == (5 * 10**8, 10.0)


def test_first_look_of_a_node_takes_the_kubelets_rate():
    r = CpuRates()
    assert r.observe("n", 100.0, 10**12, fallback_nanocores=7) == (7, FIRST_LOOK_WINDOW)


def test_old_keys_are_pruned():
    r = CpuRates(keep=10)
    r.observe("a", 0.0, 1)
    r.observe("b", 5.0, 1)
    r.prune(12.0)
    assert set(r.samples) == {"b"}


@given(st.lists(st.tuples(st.floats(0.01, 5), st.integers(0, 4 * 10**9)), min_size=2,
                max_size=30))
def test_rate_is_never_negative_and_window_at_least_min(steps):
    r = CpuRates(min_window=1.0)
    t, cum = 0.0, 0
    for dt, dc in steps:
        t += dt
        cum += dc
        out = r.observe("k", t, cum)
        if out is not None:
            rate, window = out
            assert rate >= 0 and window >= 1.0
            assert rate <= 4 * 10**9 / 0.01 * 30


def test_node_and_pod_metrics_objects():
    now = 1_700_000_000.0
    rates = CpuRates()
    summ = {"cpu": {"usageCoreNanoSeconds": 10**12, "usageNanoCores": 500_000_000},
            "memory": {"workingSetBytes": 2048 * 1024}}
    m = node_metrics(NODE, summ, rates, now)
    assert m["kind"] == "NodeMetrics" and m["apiVersion"] == "metrics.k8s.io/v1beta1"
    assert m["metadata"] == {"name": "n1", "creationTimestamp": rfc3339(now),
                             "labels": {"zone": "a"}}
    assert m["usage"] == {"cpu": "500000000n", "memory": "2048Ki"}
    assert m["timestamp"] == rfc3339(now) and m["window"] == "10s"
    m2 = node_metrics(NODE, {"cpu": {"usageCoreNanoSeconds": 10**12 + 2 * 10**9},
                             "memory": {"workingSetBytes": 0}}, rates, now + 2)
    assert m2["usage"]["cpu"] == "1000000000n" and m2["window"] == "2s"
    assert node_metrics(NODE, {"nodeName": "n1"}, rates, now) is None   # hollow node
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"a": "b"}}}
    sp = {"podRef": {"uid": "u1"}, "containers": [
        {"name": "c", "startTime": rfc3339(now - 4),
         "cpu": {"usageCoreNanoSeconds": 2 * 10**9}, "memory": {"workingSetBytes": 4096}}]}
    pm = pod_metrics(pod, sp, rates, now)
    assert pm["metadata"]["namespace"] == "ns" and pm["metadata"]["labels"] == {"a": "b"}
    assert pm["containers"] == [{"name": "c", "usage": {"cpu": "500000000n",
                                                         "memory": "4Ki"}}]
    assert pm["window"] == "4s"
    assert pod_metrics(pod, {"containers": []}, rates, now) is None


def test_discovery_lists_the_metrics_group():
    from kcore.api.kinds import load
    from kcore.api.metrics import METRICS_KINDS
    from kcore.apiserver import discovery
    from kcore.apiserver.openapi import document
    load()
    groups = discovery.api_group_list(METRICS_KINDS)["groups"]
    assert groups[0]["name"] == "metrics.k8s.io"
    res = discovery.resource_list("metrics.k8s.io/v1beta1", METRICS_KINDS)["resources"]
    assert {(r["name"], r["namespaced"], tuple(r["verbs"])) for r in res} == {
        ("nodes", False, ("get", "list")), ("pods", True, ("get", "list"))}
    doc = document("metrics.k8s.io/v1beta1", METRICS_KINDS)
    assert set(doc["paths"]["/apis/metrics.k8s.io/v1beta1/nodes"]) == {"get"}
    assert "io.k8s.metrics.pkg.apis.metrics.v1beta1.PodMetrics" in doc["components"]["schemas"]
