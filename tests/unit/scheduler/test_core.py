"""The fast scheduler as a driver sees it: events, decisions, messages, explain."""
from __future__ import annotations

import subprocess
import sys

import pytest

from kcore.scheduler import ReferenceScheduler, Scheduler, binding_for
from kcore.scheduler.nodetable import POD_CNT

from .conftest import make_node, make_pod


def cluster(*nodes, seed=0, config=None, **kw):
    s = Scheduler(config, seed=seed, **kw)
    for n in nodes:
        s.add_node(n)
    return s


def charged(s, node):
    s.table.prepare()
    return int(s.table.cols[POD_CNT, s.table.row_of[node]])


def test_import_does_not_load_numba():
    code = "import sys, kcore.scheduler; print('numba' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_assume_confirm_forget_delete():
    s = cluster(make_node("a", cpu="1", pods="2"))
    pod = make_pod("p", "600m")
    d = s.schedule(pod)
    assert d.node == "a" and d.pod == "uid-default-p" and d.scheduled
    assert charged(s, "a") == 1
    # an informer update of the still-pending pod keeps the assumption
    s.update_pod(None, pod)
    assert charged(s, "a") == 1
    # the bind failed: forget frees the node
    s.forget(pod)
    assert charged(s, "a") == 0
    assert s.schedule(pod).node == "a"
    # the informer reports it bound: confirmed; forget no longer applies
    bound = make_pod("p", "600m", node="a")
    s.add_pod(bound)
    s.forget(bound)
    assert charged(s, "a") == 1
    assert s.schedule(make_pod("q", "600m")).node is None        # 600m + 600m > 1 cpu
    s.delete_pod(bound)
    assert charged(s, "a") == 0
    assert s.schedule(make_pod("q", "600m")).node == "a"
    # a finished pod stops counting
    done = make_pod("q", "600m", node="a")
    done["status"] = {"phase": "Succeeded"}
    s.update_pod(None, done)
    assert charged(s, "a") == 0


def test_pods_bound_before_their_node_appears():
    s = cluster()
    s.add_pod(make_pod("early", "1", node="late"))
    s.add_node(make_node("late", cpu="1"))
    assert charged(s, "late") == 1
    assert s.schedule(make_pod("x", "500m")).message.startswith(
        "0/1 nodes are available: 1 Insufficient cpu.")


def test_failed_scheduling_message_in_kube_words():
    nodes = [make_node(f"n{i}", cpu="1") for i in range(9)] + [
        make_node("t", cpu="8", taints=[{"key": "k", "value": "v", "effect": "NoSchedule"}])]
    s = cluster(*nodes)
    d = s.schedule(make_pod("big", "2"))
    assert d.node is None
    assert d.message == (
        "0/10 nodes are available: 1 node(s) had untolerated taint {k: v}, 9 Insufficient cpu. "
        "preemption: 0/10 nodes are available: 1 Preemption is not helpful for scheduling, "
        "9 No preemption victims found for incoming pod.")
    never = make_pod("never", "2", preemptionPolicy="Never")
    assert s.schedule(never).message.endswith(
        "9 Insufficient cpu. preemption: not eligible due to preemptionPolicy=Never.")
    assert cluster().schedule(make_pod("x")).message == "no nodes available to schedule pods"


def test_first_failing_filter_wins_and_all_fit_reasons_count():
    s = cluster(
        make_node("cordoned", unschedulable=True, cpu="0"),
        make_node("small", cpu="100m", memory="1Mi", pods="1"),
        make_node("wrongzone", labels={"zone": "b"}))
    s.add_pod(make_pod("filler", node="small"))
    d = s.schedule(make_pod("p", "1", "1Gi", nodeSelector={"zone": "a"}))
    # "small" fails only NodeAffinity (the first failing filter), not fit
    assert d.message == (
        "0/3 nodes are available: 1 node(s) were unschedulable, "
        "2 node(s) didn't match Pod's node affinity/selector. "
        "preemption: 0/3 nodes are available: 3 Preemption is not helpful for scheduling.")
    d = s.schedule(make_pod("p", "8", "1Gi"))
    # every insufficient resource of a node is counted; strings sort as text
    assert d.message.startswith(
        "0/3 nodes are available: 1 Insufficient memory, 1 Too many pods, "
        "1 node(s) were unschedulable, 2 Insufficient cpu. preemption: 0/3 nodes are available: "
        "1 Preemption is not helpful for scheduling, 2 No preemption victims found")


def test_host_ports():
    s = cluster(make_node("a"), make_node("b"))
    web = {"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 80}]}]}
    first = s.schedule(make_pod("w1", **web)).node
    second = s.schedule(make_pod("w2", **web)).node
    assert {first, second} == {"a", "b"}
    d = s.schedule(make_pod("w3", **web))
    assert d.message.startswith(
        "0/2 nodes are available: 2 node(s) didn't have free ports for the requested pod ports.")
    assert "2 No preemption victims found" in d.message
    udp = {"containers": [{"name": "c", "ports": [
        {"containerPort": 80, "hostPort": 80, "protocol": "UDP"}]}]}
    assert s.schedule(make_pod("u", **udp)).node is not None


def test_explain_matches_reference_scores():
    nodes = [make_node(f"n{i}", cpu=str(2 + i % 3), labels={"zone": "ab"[i % 2]},
                       taints=[{"key": "p", "value": "", "effect": "PreferNoSchedule"}]
                       if i % 4 == 0 else []) for i in range(8)]
    nodes.append(make_node("down", unschedulable=True))
    s = cluster(*nodes)
    ref = ReferenceScheduler()
    for n in nodes:
        ref.add_node(n)
    pod = make_pod("x", "500m", "1Gi", affinity={"nodeAffinity": {
        "preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 4, "preference": {"matchExpressions": [
                {"key": "zone", "operator": "In", "values": ["b"]}]}}]}})
    e = s.explain(pod, top=3)
    want = ref.scores(pod)
    assert e.nodes == 9 and e.feasible == 8 and e.filtered == {"node(s) were unschedulable": 1}
    assert e.verdicts == {"down": ("NodeUnschedulable", ("node(s) were unschedulable",))}
    assert e.best == max(want.values())
    assert e.tied == sum(v == e.best for v in want.values())
    assert len(e.top) == 3
    for ns in e.top:
        assert ns.total == want[ns.node] == sum(p.weighted for p in ns.plugins)
    assert [ns.total for ns in e.top] == sorted(want.values(), reverse=True)[:3]
    assert "feasible" in e.format()
    # explain changes nothing and draws nothing
    assert s.draws == 0 and s.schedule(pod) == ref.schedule(pod)


def test_normalisation_max_leaves_feasible_set_on_replay():
    """Shape A prefers the one ssd node; shape B fills it; A's cached scores
    must be rebuilt because its NodeAffinity maximum is gone (and again when
    the ssd node frees up)."""
    nodes = [make_node("ssd", pods="2", labels={"disk": "ssd"})] + [
        make_node(f"hdd{i}", pods="50") for i in range(5)]
    pref = {"affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
        {"weight": 10, "preference": {"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}]}}]}}}
    for mode in ({"cache_after": 1, "replay_fraction": 1e9}, {"cache": False}):
        s = cluster(*nodes, **mode)
        ref = ReferenceScheduler()
        for n in nodes:
            ref.add_node(n)
        seq = []
        a = [make_pod(f"a{i}", "100m", **pref) for i in range(2)]
        b = [make_pod(f"b{i}", "100m") for i in range(4)]
        seq.append([a[0]])
        seq.append(b[:2] + [make_pod("onssd", "100m", node=None, nodeName="ssd")])
        seq.append([a[1], make_pod("a9", "100m", **pref)])
        for batch in seq:
            assert s.schedule_many(batch) == [ref.schedule(p) for p in batch]
        for p in b[:2]:
            s.delete_pod(p)
            ref.delete_pod(p)
        later = [make_pod(f"c{i}", "100m", **pref) for i in range(3)]
        assert s.schedule_many(later) == [ref.schedule(p) for p in later]


def test_huge_allocatable_takes_the_integer_path():
    nodes = [make_node(f"n{i}", cpu="64", memory="128Ti" if i == 0 else "1Ti") for i in range(4)]
    s = cluster(*nodes, cache_after=1)
    ref = ReferenceScheduler()
    for n in nodes:
        ref.add_node(n)
    pods = [make_pod(f"p{i}", "3", f"{(i % 5) * 7 + 1}Ti") for i in range(12)]
    assert s.schedule_many(pods) == [ref.schedule(p) for p in pods]


def test_profiles_by_scheduler_name():
    s = Scheduler({"profiles": [{"schedulerName": "a"}, {"schedulerName": "b"}]})
    s.add_node(make_node("n"))
    assert s.responsible_for(make_pod("x", schedulerName="b"))
    assert not s.responsible_for(make_pod("x"))
    assert s.schedule(make_pod("x", schedulerName="b")).node == "n"
    assert "no profile" in s.schedule(make_pod("y")).message


def test_binding_for():
    pod = make_pod("web", namespace="prod")
    assert binding_for(pod, "n1") == {
        "apiVersion": "v1", "kind": "Binding",
        "metadata": {"name": "web", "namespace": "prod", "uid": "uid-prod-web"},
        "target": {"apiVersion": "v1", "kind": "Node", "name": "n1"}}


@pytest.mark.parametrize("seed", [0, 1, 2**63 + 5])
def test_ties_are_seeded_and_uniform_enough(seed):
    counts = {}
    for trial in range(200):
        s = cluster(*[make_node(f"n{i}") for i in range(4)], seed=seed + trial)
        node = s.schedule(make_pod("p", "1")).node
        counts[node] = counts.get(node, 0) + 1
    assert set(counts) == {"n0", "n1", "n2", "n3"}
    assert min(counts.values()) > 25
    again = cluster(*[make_node(f"n{i}") for i in range(4)], seed=seed)
    first = cluster(*[make_node(f"n{i}") for i in range(4)], seed=seed)
    assert again.schedule(make_pod("p", "1")) == first.schedule(make_pod("p", "1"))


@pytest.mark.parametrize("config", [None, {"profiles": [{"pluginConfig": [
    {"name": "NodeResourcesFit", "args": {"ignoredResources": ["example.com/skip"],
                                          "scoringStrategy": {"resources": [
        {"name": "cpu", "weight": 2}, {"name": "example.com/gpu", "weight": 3},
        {"name": "ephemeral-storage", "weight": 1}, {"name": "pods", "weight": 9}]}}},
    {"name": "NodeResourcesBalancedAllocation", "args": {"resources": [
        {"name": "memory"}, {"name": "example.com/gpu"}, {"name": "cpu"}]}}]}]}])
def test_compiled_terms_are_the_plugins_terms(config):
    """The kernel vector holds exactly the terms the plugins define."""
    s = cluster(make_node("a", extra={"example.com/gpu": "2"}), config=config)
    prof = s.config.profiles[0]
    fit = prof.plugin("NodeResourcesFit")
    bal = prof.plugin("NodeResourcesBalancedAllocation")
    pods = [make_pod("p"), make_pod("p", "1"), make_pod("p", "1", "1Gi"),
            make_pod("p", "0", "0", extra={"example.com/gpu": "1", "example.com/skip": "3",
                                           "ephemeral-storage": "1Gi"}),
            make_pod("p", "250m", extra={"hugepages-2Mi": "4Mi"})]
    for pod in pods:
        shape = s._shape_of(pod["spec"])
        pv = s._compile(shape).tolist()
        nfit, nsc, nbal = pv[7], pv[8], pv[9]
        terms = pv[10:]
        want_fit = [x for t in fit.fit_terms(shape.info, s.table) for x in t]
        want_sc = [x for t in fit.score_terms(shape.info, s.table) for x in t]
        want_bal = [] if bal.skipped(shape.info) else [
            x for t in bal.terms(shape.info, s.table) for x in t]
        assert sorted(zip(*[iter(terms[:3 * nfit])] * 3)) == sorted(zip(*[iter(want_fit)] * 3))
        assert terms[3 * nfit:3 * nfit + 4 * nsc] == want_sc
        assert terms[3 * nfit + 4 * nsc:] == want_bal
        assert nbal == len(want_bal) // 3
