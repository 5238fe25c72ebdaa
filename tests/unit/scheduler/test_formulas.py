"""Each scoring formula against values worked out by hand from kube's definitions."""
from __future__ import annotations

import pytest

from kcore.scheduler.framework import NodeInfo, default_normalize, num_feasible_nodes_to_find
from kcore.scheduler.nodeinfo import node_spec
from kcore.scheduler.plugins import (
    BalancedAllocation,
    NodeAffinity,
    NodeLabel,
    NodeResourcesFit,
    TaintToleration,
)
from kcore.scheduler.plugins.balanced_allocation import balanced_score
from kcore.scheduler.plugins.node_resources_fit import least_requested_score, most_requested_score
from kcore.scheduler.podinfo import pod_info

from .conftest import make_node, make_pod


def info(cpu, mem, labels=None, taints=None, requested=None, nz=(0, 0), pods=0, extra=None):
    ni = NodeInfo(node_spec(make_node("n", cpu=cpu, memory=mem, labels=labels, taints=taints,
                                      extra=extra)))
    ni.requested = dict(requested or {})
    ni.nonzero_cpu, ni.nonzero_memory = nz
    ni.pod_count = pods
    return ni


def spec(cpu=None, mem=None, **kw):
    return pod_info(make_pod("p", cpu, mem, **kw)["spec"])


# ---- NodeResourcesFit: LeastAllocated (the seed's LeastRequestedPriority) ----------------

def test_least_requested_per_resource():
    assert least_requested_score(3000, 4000) == 25            # (4000-3000)*100/4000
    assert least_requested_score(5000, 10000) == 50
    assert least_requested_score(1, 3) == 66                  # 66.67 floors
    assert least_requested_score(4001, 4000) == 0             # over capacity
    assert least_requested_score(0, 0) == 0                   # no capacity


def test_least_allocated_two_nodes():
    """kube's 'differently sized nodes' case: 4 cpu/10000 B and 6 cpu/10000 B, pod 3 cpu/5000 B."""
    pl = NodeResourcesFit()
    pod = spec("3", "5000")
    assert pl.score(pod, info("4", "10000")) == (25 + 50) // 2 == 37
    assert pl.score(pod, info("6", "10000")) == (50 + 50) // 2 == 50


def test_least_allocated_counts_existing_nonzero_requests():
    pl = NodeResourcesFit()
    node = info("4", "10000", requested={"cpu": 1000, "memory": 2000}, nz=(1000, 2000))
    # cpu (4000-1000-1000)*100/4000 = 50; memory (10000-2000-3000)*100/10000 = 50
    assert pl.score(spec("1", "3000"), node) == 50


def test_missing_requests_count_as_100m_and_200Mi():
    pl = NodeResourcesFit()
    node = info("1", "1Gi")
    # cpu (1000-100)*100/1000 = 90; memory (1024Mi-200Mi)*100/1024Mi = 80.47 -> 80
    assert pl.score(spec(), node) == (90 + 80) // 2 == 85
    # an explicit zero is not missing: cpu 0 -> 100, memory default -> 80
    assert pl.score(spec("0"), node) == (100 + 80) // 2


def test_resource_weights_and_skipped_resources():
    pl = NodeResourcesFit({"scoringStrategy": {"resources": [
        {"name": "cpu", "weight": 3}, {"name": "memory", "weight": 1},
        {"name": "example.com/gpu", "weight": 5}]}})
    # gpu not requested: not scored; (25*3 + 50*1) / 4 = 31
    assert pl.score(spec("3", "5000"), info("4", "10000", extra={"example.com/gpu": "4"})) == 31
    # gpu requested 1 of 4: (25*3 + 50 + 75*5) / 9 = 55
    pod = spec("3", "5000", extra=None)
    pod = pod_info(make_pod("p", "3", "5000", extra={"example.com/gpu": "1"})["spec"])
    assert pl.score(pod, info("4", "10000", extra={"example.com/gpu": "4"})) == 500 // 9


def test_most_allocated():
    assert most_requested_score(3000, 4000) == 75
    assert most_requested_score(5000, 4000) == 100            # clamped to capacity
    pl = NodeResourcesFit({"scoringStrategy": {"type": "MostAllocated"}})
    assert pl.score(spec("3", "5000"), info("4", "10000")) == (75 + 50) // 2


def test_fit_filter_reasons():
    pl = NodeResourcesFit()
    node = info("1", "1Gi", requested={"cpu": 900}, pods=2)
    node.spec = node_spec(make_node("n", cpu="1", memory="1Gi", pods="2"))
    st = pl.filter(spec("200m", "2Gi"), node)
    assert st.reasons == ("Too many pods", "Insufficient cpu", "Insufficient memory")
    assert pl.filter(spec("100m", "1Gi"), info("1", "1Gi", requested={"cpu": 900})) is None


# ---- BalancedAllocation ----------------------------------------------------------------

def test_balanced_two_resources():
    pl = BalancedAllocation()
    # fractions 0.75 and 0.5: std = 0.125 -> (1 - 0.125) * 100 = 87.5 -> 87
    assert pl.score(spec("3", "5000"), info("4", "10000")) == 87
    assert pl.score(spec("3", "5000"), info("6", "10000")) == 100
    assert balanced_score([5000, 1], [4000, 10]) == int((1 - abs(1.0 - 0.1) / 2) * 100) == 55


def test_balanced_three_resources_std_dev():
    # fractions 0.2, 0.5, 0.8: mean 0.5, variance 0.06, std 0.2449 -> 75.5 -> 75
    assert balanced_score([2, 5, 8], [10, 10, 10]) == 75
    assert balanced_score([5], [10]) == 100                   # one resource: std 0


def test_balanced_uses_actual_requests_and_skips_best_effort():
    pl = BalancedAllocation()
    assert pl.skipped(spec())
    assert pl.score(spec(), info("1", "1Gi")) == 0
    # memory missing -> 0 (not 200Mi): fractions 0.5 and 0 -> 75
    assert pl.score(spec("500m"), info("1", "1Gi")) == 75


# ---- normalisation, affinity, taints, labels -------------------------------------------

def test_default_normalize():
    assert default_normalize([0, 5, 10], reverse=False) == [0, 50, 100]
    assert default_normalize([3, 7], reverse=False) == [42, 100]
    assert default_normalize([0, 1, 2], reverse=True) == [100, 50, 0]
    assert default_normalize([0, 0], reverse=True) == [100, 100]
    assert default_normalize([0, 0], reverse=False) == [0, 0]


def test_node_affinity_preferred_raw_and_normalised():
    pl = NodeAffinity()
    pod = spec(affinity={"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 3, "preference": {"matchExpressions": [
            {"key": "zone", "operator": "In", "values": ["a"]}]}},
        {"weight": 7, "preference": {"matchExpressions": [
            {"key": "num", "operator": "Gt", "values": ["4"]}]}}]}})
    raws = [pl.score(pod, info("1", "1Gi", labels=lab)) for lab in
            ({"zone": "a"}, {"num": "5"}, {"zone": "a", "num": "10"}, {"num": "x"}, {})]
    assert raws == [3, 7, 10, 0, 0]
    assert pl.normalize(pod, raws) == [30, 70, 100, 0, 0]


@pytest.mark.parametrize("op,values,labels,want", [
    ("In", ["a", "b"], {"zone": "b"}, True),
    ("In", ["a"], {}, False),
    ("NotIn", ["a"], {}, True),
    ("NotIn", ["a"], {"zone": "a"}, False),
    ("Exists", [], {"zone": ""}, True),
    ("DoesNotExist", [], {"zone": "a"}, False),
    ("Gt", ["4"], {"zone": "5"}, True),
    ("Gt", ["4"], {"zone": "+5"}, True),
    ("Lt", ["4"], {"zone": "4"}, False),
    ("Lt", ["4"], {"zone": "x"}, False),
    ("Gt", ["x"], {"zone": "5"}, False),          # invalid requirement: term matches nothing
    ("In", [], {"zone": "a"}, False),             # In needs values
])
def test_required_affinity_operators(op, values, labels, want):
    pod = spec(affinity={"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {
        "nodeSelectorTerms": [{"matchExpressions": [
            {"key": "zone", "operator": op, "values": values}]}]}}})
    assert (NodeAffinity().filter(pod, info("1", "1Gi", labels=labels)) is None) == want


def test_taint_toleration_filter_and_score():
    pl = TaintToleration()
    taints = [{"key": "a", "value": "1", "effect": "PreferNoSchedule"},
              {"key": "b", "value": "", "effect": "PreferNoSchedule"},
              {"key": "c", "value": "x", "effect": "NoSchedule"}]
    node = info("1", "1Gi", taints=taints)
    st = pl.filter(spec(), node)
    assert st.reasons == ("node(s) had untolerated taint {c: x}",)
    assert pl.filter(spec(tolerations=[{"key": "c", "operator": "Exists"}]), node) is None
    assert pl.score(spec(), node) == 2
    assert pl.score(spec(tolerations=[{"key": "a", "value": "1"}]), node) == 1
    assert pl.score(spec(tolerations=[{"operator": "Exists"}]), node) == 0
    assert pl.normalize(None, [0, 1, 2]) == [100, 50, 0]


def test_node_label_priority():
    pl = NodeLabel({"presentLabelsPreference": ["zone", "disk"], "absentLabelsPreference": ["gpu"]})
    assert pl.score(spec(), info("1", "1Gi", labels={"zone": "a"})) == 200 // 3
    assert pl.score(spec(), info("1", "1Gi", labels={"zone": "a", "disk": "s"})) == 100
    seed = NodeLabel({"label": "zone", "presence": False})     # the seed's form
    assert seed.score(spec(), info("1", "1Gi", labels={"zone": "a"})) == 0
    assert seed.score(spec(), info("1", "1Gi")) == 100
    flt = NodeLabel({"presentLabels": ["zone"], "absentLabels": ["retiring"]})
    assert flt.filter(spec(), info("1", "1Gi", labels={"zone": "a"})) is None
    assert flt.filter(spec(), info("1", "1Gi", labels={"zone": "a", "retiring": "x"})).reasons \
        == ("node(s) didn't have the requested labels",)


def test_num_feasible_nodes_to_find():
    assert num_feasible_nodes_to_find(100, 5000) == 5000
    assert num_feasible_nodes_to_find(10, 5000) == 500
    assert num_feasible_nodes_to_find(10, 500) == 100          # at least 100
    assert num_feasible_nodes_to_find(10, 99) == 99
    assert num_feasible_nodes_to_find(0, 5000) == 5000 * 10 // 100   # adaptive: 50 - 5000/125
    assert num_feasible_nodes_to_find(0, 10000) == 10000 * 5 // 100  # floor of 5 %
