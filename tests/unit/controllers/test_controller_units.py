"""Pure parts of the controllers: rollout arithmetic, template hashing, deletion
order, expectations, CIDR allocation, endpoint subsets, taints and tolerations,
quota usage, the --controllers selection."""
from __future__ import annotations

import pytest

from kcore.api.meta import rfc3339
from kcore.client.resources import PODS, SERVICES, Resource
from kcore.controllers import deployment as D
from kcore.controllers.context import Options
from kcore.controllers.endpoints import endpoint_subsets
from kcore.controllers.expectations import Expectations
from kcore.controllers.manager import select_controllers
from kcore.controllers.nodeipam import CIDRExhausted, CIDRSet
from kcore.controllers.nodelifecycle import no_schedule_taints
from kcore.controllers.pods import deletion_order, is_available
from kcore.controllers.replication import selector_of, slow_start_batch
from kcore.controllers.resourcequota import compute_usage
from kcore.controllers.tainteviction import eviction_delay
from kcore.controllers.taints import matching_tolerations, tolerates


def dep(replicas=10, surge="25%", unavailable="25%", strategy="RollingUpdate"):
    d = {"metadata": {"name": "d", "generation": 1},
         "spec": {"replicas": replicas, "strategy": {"type": strategy}}}
    if strategy == "RollingUpdate":
        d["spec"]["strategy"]["rollingUpdate"] = {"maxSurge": surge,
                                                  "maxUnavailable": unavailable}
    return d


def rs(name, replicas, available=0, created="2024-01-01T00:00:00Z"):
    return {"metadata": {"name": name, "creationTimestamp": created},
            "spec": {"replicas": replicas}, "status": {"availableReplicas": available}}


def test_fenceposts_round_surge_up_and_unavailable_down():
    assert D.resolve_fenceposts(dep(10)) == (3, 2)
    assert D.resolve_fenceposts(dep(1)) == (1, 0)
    assert D.resolve_fenceposts(dep(4, surge=0, unavailable=0)) == (0, 1)
    assert D.max_unavailable(dep(3, unavailable=5)) == 3
    assert D.max_unavailable(dep(3, strategy="Recreate")) == 0
    assert D.max_surge(dep(10, surge="50%")) == 5


def test_new_rs_grows_within_surge():
    d = dep(10)                                   # surge 3
    old, new = rs("old", 10), rs("new", 0)
    assert D.new_rs_replicas(d, [old, new], new) == 3
    assert D.new_rs_replicas(d, [rs("old", 8), rs("new", 3)], rs("new", 3)) == 5
    assert D.new_rs_replicas(d, [rs("old", 13)], None) == 0
    assert D.new_rs_replicas(dep(5, strategy="Recreate"), [], None) == 5


def test_template_hash_ignores_zero_values_and_the_hash_label():
    a = {"metadata": {"labels": {"app": "w"}, "creationTimestamp": None},
         "spec": {"containers": [{"name": "c", "image": "i", "stdin": False}],
                  "hostNetwork": False}}
    b = {"metadata": {"labels": {"app": "w", "pod-template-hash": "x"}},
         "spec": {"containers": [{"name": "c", "image": "i"}]}}
    assert D.equal_ignore_hash(a, b)
    assert D.template_hash(a) == D.template_hash(b)
    assert D.template_hash(a) != D.template_hash(a, 1)
    assert set(D.template_hash(a)) <= set(D.SAFE_ALPHABET)
    c = {"metadata": {"labels": {"app": "w"}},
         "spec": {"containers": [{"name": "c", "image": "j"}]}}
    assert not D.equal_ignore_hash(a, c)


def test_progress_conditions_and_completion():
    d = dep(3)
    d["spec"]["progressDeadlineSeconds"] = 10
    st = {"updatedReplicas": 3, "replicas": 3, "availableReplicas": 3,
          "observedGeneration": 1}
    assert D.deployment_complete(d, st)
    assert not D.deployment_complete(d, {**st, "replicas": 4})
    d["status"] = {"updatedReplicas": 1}
    assert D.deployment_progressing(d, {"updatedReplicas": 2})
    cond = D.new_condition("Progressing", "True", D.RS_UPDATED, "m", now=1000.0)
    assert D.timed_out(d, {"conditions": [cond]}, 1011.0)
    assert not D.timed_out(d, {"conditions": [cond]}, 1009.0)
    st2: dict = {}
    D.set_condition(st2, D.new_condition("Available", "True", "R", "m", now=1.0))
    D.set_condition(st2, D.new_condition("Available", "True", "R", "m2", now=2.0))
    assert st2["conditions"][0]["message"] == "m"      # same status and reason: unchanged


def pod(name, node="", phase="Pending", ready=None, created="2024-01-01T00:00:00Z",
        restarts=0, ip="", labels=None, deleting=False):
    p = {"metadata": {"name": name, "namespace": "ns", "uid": "u-" + name,
                      "creationTimestamp": created, "labels": labels or {}},
         "spec": {"nodeName": node} if node else {},
         "status": {"phase": phase, "containerStatuses": [{"restartCount": restarts}]}}
    if ready is not None:
        p["status"]["conditions"] = [{"type": "Ready", "status": "True" if ready else "False",
                                      "lastTransitionTime": ready if isinstance(ready, str)
                                      else rfc3339()}]
    if ip:
        p["status"]["podIP"] = ip
    if deleting:
        p["metadata"]["deletionTimestamp"] = rfc3339()
    return p


def test_scale_down_prefers_unscheduled_pending_unready_newest():
    pods = [pod("running-old", "n1", "Running", True, "2024-01-01T00:00:00Z"),
            pod("running-new", "n1", "Running", True, "2024-01-02T00:00:00Z"),
            pod("unready", "n2", "Running", False),
            pod("pending", "n2", "Pending"),
            pod("unscheduled")]
    assert [p["metadata"]["name"] for p in deletion_order(pods)] == \
        ["unscheduled", "pending", "unready", "running-new", "running-old"]


def test_available_after_min_ready_seconds():
    p = pod("a", "n", "Running", "2024-01-01T00:00:00Z")
    assert is_available(p, 0)
    import calendar
    t = calendar.timegm((2024, 1, 1, 0, 0, 0))
    assert not is_available(p, 10, now=t + 5)
    assert is_available(p, 10, now=t + 10)


def test_expectations():
    now = [0.0]
    e = Expectations(clock=lambda: now[0], timeout=300)
    assert e.satisfied("k")
    e.expect_creations("k", 2)
    assert not e.satisfied("k")
    e.creation_observed("k")
    e.creation_observed("k")
    assert e.satisfied("k")
    e.expect_deletions("k", ["ns/a", "ns/b"])
    e.deletion_observed("k", "ns/other")          # not one of ours
    e.deletion_observed("k", "ns/a")
    assert not e.satisfied("k") and e.pending("k") == (0, 1)
    now[0] = 301
    assert e.satisfied("k")                       # expired


def test_slow_start_batches_stop_at_first_failure():
    import asyncio

    from kcore.client import errors as E
    calls = []

    async def ok():
        calls.append(1)

    async def failing():
        calls.append(1)
        if len(calls) > 3:
            raise E.Forbidden("exceeded quota")
    assert asyncio.run(slow_start_batch(10, 1, ok)) == (10, None)
    assert len(calls) == 10                       # batches 1, 2, 4, 3
    calls.clear()
    done, err = asyncio.run(slow_start_batch(10, 1, failing))
    assert done == 3 and isinstance(err, E.Forbidden) and len(calls) == 7   # 1+2, then 4


def test_selectors_of_rc_and_rs():
    rc = {"kind": "ReplicationController", "spec": {"selector": {"app": "a"}}}
    assert [r.key for r in selector_of(rc)] == ["app"]
    rc2 = {"kind": "ReplicationController",
           "spec": {"template": {"metadata": {"labels": {"x": "y"}}}}}
    assert [r.key for r in selector_of(rc2)] == ["x"]
    rset = {"kind": "ReplicaSet", "spec": {"selector": {"matchExpressions": [
        {"key": "t", "operator": "In", "values": ["a", "b"]}]}}}
    assert selector_of(rset)[0].op == "in"
    assert selector_of({"kind": "ReplicaSet", "spec": {"selector": {}}}) is None


def test_cidr_set_skips_the_service_range_and_reuses_released_blocks():
    s = CIDRSet("10.0.0.0/22", 24, reserved=["10.0.1.0/25"])
    got = [s.allocate() for _ in range(3)]
    assert got == ["10.0.0.0/24", "10.0.2.0/24", "10.0.3.0/24"]
    with pytest.raises(CIDRExhausted):
        s.allocate()
    s.release("10.0.2.0/24")
    assert s.allocate() == "10.0.2.0/24"
    s6 = CIDRSet("fd00::/48", 64)
    assert s6.allocate() == "fd00::/64"


def test_endpoint_subsets_ready_not_ready_named_ports():
    svc = {"metadata": {"name": "web"}, "spec": {"ports": [
        {"name": "http", "port": 80, "targetPort": "web", "protocol": "TCP"},
        {"name": "metrics", "port": 9000, "targetPort": 9100}]}}
    named = {"containers": [{"name": "c", "ports": [{"name": "web", "containerPort": 8080}]}]}
    a = pod("a", "n1", "Running", True, ip="10.1.0.1")
    a["spec"].update(named)
    b = pod("b", "n1", "Running", False, ip="10.1.0.2")
    b["spec"].update(named)
    c = pod("c", "n2", "Running", True, ip="10.1.0.3")          # no port named "web"
    gone = pod("d", "n2", "Running", True, ip="10.1.0.4", deleting=True)
    noip = pod("e", "n2", "Pending")
    subsets = endpoint_subsets(svc, [a, b, c, gone, noip])
    assert len(subsets) == 2
    full = next(s for s in subsets if len(s["ports"]) == 2)
    assert [x["ip"] for x in full["addresses"]] == ["10.1.0.1"]
    assert [x["ip"] for x in full["notReadyAddresses"]] == ["10.1.0.2"]
    assert {p["port"] for p in full["ports"]} == {8080, 9100}
    assert full["addresses"][0]["targetRef"] == {"kind": "Pod", "namespace": "ns",
                                                 "name": "a", "uid": "u-a"}
    only = next(s for s in subsets if len(s["ports"]) == 1)
    assert [x["ip"] for x in only["addresses"]] == ["10.1.0.3"]
    svc["spec"]["publishNotReadyAddresses"] = True
    full = next(s for s in endpoint_subsets(svc, [a, b]) if len(s["ports"]) == 2)
    assert len(full["addresses"]) == 2 and "notReadyAddresses" not in full


def test_tolerations_and_eviction_delay():
    unreach = {"key": "node.kubernetes.io/unreachable", "effect": "NoExecute",
               "timeAdded": rfc3339(1000.0)}
    assert tolerates({"operator": "Exists"}, unreach)
    assert tolerates({"key": unreach["key"], "operator": "Exists", "effect": "NoExecute"},
                     unreach)
    assert not tolerates({"key": unreach["key"], "operator": "Exists",
                          "effect": "NoSchedule"}, unreach)
    assert tolerates({"key": "k", "value": "v"}, {"key": "k", "value": "v",
                                                   "effect": "NoSchedule"})
    assert not tolerates({"key": "k", "value": "w"}, {"key": "k", "value": "v",
                                                       "effect": "NoSchedule"})
    ok, used = matching_tolerations([], [unreach])
    assert not ok
    p = {"spec": {"tolerations": [{"key": unreach["key"], "operator": "Exists",
                                   "effect": "NoExecute", "tolerationSeconds": 30}]}}
    assert eviction_delay(p, [unreach], None, now=1010.0) == 20.0
    assert eviction_delay(p, [unreach], None, now=1010.0, seen=1005.0) == 25.0
    assert eviction_delay(p, [unreach], None, now=1040.0) == 0.0
    forever = {"spec": {"tolerations": [{"operator": "Exists"}]}}
    assert eviction_delay(forever, [unreach], None, now=1010.0) is None
    assert eviction_delay({"spec": {}}, [unreach], None, now=1010.0) == 0.0
    assert eviction_delay({"spec": {}}, [unreach], 300, now=1010.0) == 290.0
    other = {"key": "dedicated", "effect": "NoExecute"}
    assert eviction_delay(p, [unreach, other], None, now=1010.0) == 0.0
    assert eviction_delay(p, [], None, now=1010.0) is None


def test_no_schedule_taints_follow_conditions():
    n = {"spec": {"unschedulable": True}, "status": {"conditions": [
        {"type": "Ready", "status": "Unknown"}, {"type": "DiskPressure", "status": "True"}]}}
    keys = {t["key"] for t in no_schedule_taints(n)}
    assert keys == {"node.kubernetes.io/unreachable", "node.kubernetes.io/disk-pressure",
                    "node.kubernetes.io/unschedulable"}
    n["status"]["conditions"][0]["status"] = "False"
    assert "node.kubernetes.io/not-ready" in {t["key"] for t in no_schedule_taints(n)}


def test_quota_usage_matches_the_api_servers_rules():
    pods = [{"spec": {"containers": [{"resources": {"requests": {"cpu": "250m",
                                                                 "memory": "64Mi"},
                                                    "limits": {"cpu": "1"}}}]},
             "status": {"phase": "Running"}},
            {"spec": {"containers": [{"resources": {"requests": {"cpu": "500m"}}}]}},
            {"spec": {"containers": [{}]}, "status": {"phase": "Succeeded"}}]
    svcs = [{"spec": {"type": "NodePort", "ports": [{"nodePort": 30001}, {"nodePort": 30002}]}}]
    deploys = Resource("apps", "v1", "deployments", "Deployment")
    hard = {"pods": "10", "requests.cpu": "2", "cpu": "2", "requests.memory": "1Gi",
            "limits.cpu": "4", "services.nodeports": "5", "count/deployments.apps": "3",
            "count/pods": "9"}
    used = compute_usage(hard, [], {PODS: pods, SERVICES: svcs, deploys: [{}, {}]})
    assert used == {"pods": "2", "requests.cpu": "750m", "cpu": "750m",
                    "requests.memory": "64Mi", "limits.cpu": "1", "services.nodeports": "2",
                    "count/deployments.apps": "2", "count/pods": "2"}
    assert compute_usage({"pods": "5"}, ["BestEffort"], {PODS: pods})["pods"] == "0"


def test_controller_selection():
    o = Options()
    names = select_controllers(["*"], o)
    assert "nodeipam" not in names and "garbagecollector" in names
    o.allocate_node_cidrs = True
    assert "nodeipam" in select_controllers(["*", "-podgc"], o)
    assert "podgc" not in select_controllers(["*", "-podgc"], o)
    assert select_controllers(["replicaset", "deployment"], o) == ["replicaset", "deployment"]
    with pytest.raises(ValueError):
        select_controllers(["nope"], o)
