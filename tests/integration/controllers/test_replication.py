"""ReplicationControllers and ReplicaSets with real kubectl and the Python client:
scale up and down, no double creates, adoption, readiness in status, quota
failures reported as ReplicaFailure with the API server's message."""
from __future__ import annotations

import time

from .cm_harness import FakeKubelet, wait_until

RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: %(name)s, namespace: %(ns)s}
spec:
  replicas: %(replicas)d
  selector: {app: %(name)s}
  template:
    metadata: {labels: {app: %(name)s}}
    spec:
      containers: [{name: c, image: busybox, resources: {requests: {cpu: 10m}}}]
"""


def pods(cluster, ns: str, selector: str, active_only: bool = True) -> list[dict]:
    items = cluster.kjson("get", "pods", "-n", ns, "-l", selector)["items"]
    if active_only:
        items = [p for p in items if not p["metadata"].get("deletionTimestamp")]
    return items


def test_rc_scale_up_and_down_with_kubectl(cluster):
    cluster.kubectl("create", "namespace", "rc1")
    cluster.kubectl("create", "-f", "-", input=RC % {"name": "web", "ns": "rc1",
                                                     "replicas": 5})
    wait_until(lambda: len(pods(cluster, "rc1", "app=web")) == 5, 15, what="5 pods")
    rc = cluster.kjson("get", "rc", "web", "-n", "rc1")
    wait_until(lambda: cluster.kjson("get", "rc", "web", "-n", "rc1")["status"].get(
        "replicas") == 5, 10, what="status.replicas")
    p = pods(cluster, "rc1", "app=web")[0]
    ref = p["metadata"]["ownerReferences"][0]
    assert ref["kind"] == "ReplicationController" and ref["uid"] == rc["metadata"]["uid"]
    assert ref["controller"] is True and ref["blockOwnerDeletion"] is True
    assert p["metadata"]["generateName"] == "web-"
    cluster.kubectl("scale", "rc", "web", "-n", "rc1", "--replicas=2")
    wait_until(lambda: len(pods(cluster, "rc1", "app=web")) == 2, 15, what="2 pods")
    st = wait_until(lambda: (lambda s: s if s.get("replicas") == 2 and s.get(
        "observedGeneration") == 2 else None)(
        cluster.kjson("get", "rc", "web", "-n", "rc1")["status"]), 10, what="status")
    assert st["observedGeneration"] == 2
    ev = cluster.kubectl("get", "events", "-n", "rc1").stdout
    assert "SuccessfulCreate" in ev and "Created pod: web-" in ev
    assert "SuccessfulDelete" in ev
    time.sleep(1.0)
    assert len(pods(cluster, "rc1", "app=web")) == 2      # stable: no extra creates


def test_no_double_creates_while_the_watch_catches_up(cluster):
    """30 replicas at once: slow-start batches and expectations create exactly 30."""
    cluster.kubectl("create", "namespace", "rc2")
    cluster.kubectl("create", "-f", "-", input=RC % {"name": "many", "ns": "rc2",
                                                     "replicas": 30})
    wait_until(lambda: len(pods(cluster, "rc2", "app=many", False)) >= 30, 30,
               what="30 pods")
    time.sleep(1.5)
    assert len(pods(cluster, "rc2", "app=many", False)) == 30     # none deleted, none extra
    created = [e for e in cluster.kjson("get", "events", "-n", "rc2")["items"]
               if e["reason"] == "SuccessfulCreate"]
    assert len(created) == 25      # kube's spam filter: a burst of 25 events per object


def test_replicaset_with_python_client_adopts_orphans_and_reports_readiness(cluster):
    from kubernetes import client
    core = client.CoreV1Api(cluster.py())
    apps = client.AppsV1Api(cluster.py())
    core.create_namespace({"metadata": {"name": "rs1"}})
    # an orphan pod matching the selector is adopted rather than duplicated
    core.create_namespaced_pod("rs1", {"metadata": {"name": "orphan", "labels": {
        "app": "rsapp"}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}})
    apps.create_namespaced_replica_set("rs1", {
        "metadata": {"name": "rsapp"},
        "spec": {"replicas": 3, "selector": {"matchLabels": {"app": "rsapp"}},
                 "template": {"metadata": {"labels": {"app": "rsapp"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}})
    wait_until(lambda: len(core.list_namespaced_pod("rs1").items) == 3, 15, what="3 pods")
    time.sleep(0.5)
    ps = core.list_namespaced_pod("rs1").items
    assert len(ps) == 3 and "orphan" in [p.metadata.name for p in ps]
    orphan = core.read_namespaced_pod("orphan", "rs1")
    assert orphan.metadata.owner_references[0].name == "rsapp"
    with FakeKubelet(cluster.url, all_pods=True):
        wait_until(lambda: (apps.read_namespaced_replica_set("rsapp", "rs1").status
                            .ready_replicas or 0) == 3, 15, what="readyReplicas 3")
        st = apps.read_namespaced_replica_set("rsapp", "rs1").status
        assert st.available_replicas == 3 and st.fully_labeled_replicas == 3
        assert st.observed_generation == 1
        # a pod that stops matching is released and replaced
        core.patch_namespaced_pod("orphan", "rs1", {"metadata": {"labels": {"app": "other"}}})
        wait_until(lambda: not core.read_namespaced_pod("orphan", "rs1").metadata
                   .owner_references, 10, what="release")
        wait_until(lambda: len([p for p in core.list_namespaced_pod(
            "rs1", label_selector="app=rsapp").items]) == 3, 10, what="replacement")


def test_quota_forbidden_creates_are_reported(cluster):
    cluster.kubectl("create", "namespace", "rc3")
    cluster.kubectl("create", "quota", "q", "-n", "rc3", "--hard=pods=2,requests.cpu=1")
    cluster.kubectl("create", "-f", "-", input=RC % {"name": "big", "ns": "rc3",
                                                     "replicas": 4})

    def failure():
        rc = cluster.kjson("get", "rc", "big", "-n", "rc3")
        for c in rc["status"].get("conditions") or []:
            if c["type"] == "ReplicaFailure":
                return c
        return None
    cond = wait_until(failure, 15, what="ReplicaFailure")
    assert cond["status"] == "True" and cond["reason"] == "FailedCreate"
    assert "exceeded quota: q" in cond["message"]
    assert "requested: pods=1, used: pods=2, limited: pods=2" in cond["message"]
    assert len(pods(cluster, "rc3", "app=big")) == 2
    ev = cluster.kubectl("get", "events", "-n", "rc3").stdout
    assert "FailedCreate" in ev and "is forbidden: exceeded quota: q" in ev
    used = wait_until(lambda: cluster.kjson("get", "quota", "q", "-n", "rc3")["status"]
                      .get("used"), 10, what="quota used")
    assert used == {"pods": "2", "requests.cpu": "20m"}
    # room again: the condition clears once the RC is satisfied
    cluster.kubectl("scale", "rc", "big", "-n", "rc3", "--replicas=2")
    wait_until(lambda: failure() is None, 15, what="condition cleared")
