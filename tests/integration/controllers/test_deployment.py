"""Deployments driven by real kubectl: rolling update within maxSurge/maxUnavailable,
`kubectl rollout status`, `rollout history`, `rollout undo` (client-side in kubectl
1.32: it reads ReplicaSets by revision annotation and patches the deployment),
Recreate, revision history limit, scaling mid-rollout. A fake kubelet binds and
runs the pods (Ready after a short delay is not needed: readiness is what the
rollout waits for)."""
from __future__ import annotations

import threading
import time

import pytest

from .cm_harness import FakeKubelet, wait_until


@pytest.fixture(scope="module")
def kubelet(cluster):
    with FakeKubelet(cluster.url, nodes=["dn1", "dn2"], schedule=True) as k:
        yield k


def rs_by_revision(cluster, ns: str) -> dict[int, dict]:
    out = {}
    for rs in cluster.kjson("get", "rs", "-n", ns)["items"]:
        rev = int(rs["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
        out[rev] = rs
    return out


def image_of(obj: dict) -> str:
    return obj["spec"]["template"]["spec"]["containers"][0]["image"]


class PodCounter:
    """Samples the active pods of a deployment during a rollout."""

    def __init__(self, cluster, ns: str):
        self.cluster, self.ns = cluster, ns
        self.max_total = 0
        self.min_ready = 10**9
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        from kubernetes import client
        core = client.CoreV1Api(self.cluster.py())
        while not self._stop.is_set():
            items = [p for p in core.list_namespaced_pod(self.ns).items
                     if not p.metadata.deletion_timestamp]
            ready = sum(1 for p in items if any(c.type == "Ready" and c.status == "True"
                                                for c in p.status.conditions or []))
            self.max_total = max(self.max_total, len(items))
            self.min_ready = min(self.min_ready, ready)
            time.sleep(0.05)

    def __enter__(self):
        self._t.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._t.join(5)


def test_rolling_update_status_and_undo(cluster, kubelet):
    ns = "dep1"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=nginx:1.0",
                    "--replicas=4")
    out = cluster.kubectl("rollout", "status", "deployment/web", "-n", ns,
                          "--timeout=40s").stdout
    assert 'deployment "web" successfully rolled out' in out
    d = cluster.kjson("get", "deploy", "web", "-n", ns)
    assert d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "1"
    conds = {c["type"]: c for c in d["status"]["conditions"]}
    assert conds["Available"]["status"] == "True"
    assert conds["Progressing"]["reason"] == "NewReplicaSetAvailable"
    assert d["status"]["updatedReplicas"] == 4 and d["status"]["availableReplicas"] == 4
    rs1 = rs_by_revision(cluster, ns)[1]
    h = rs1["metadata"]["labels"]["pod-template-hash"]
    assert rs1["metadata"]["name"] == f"web-{h}"
    assert rs1["spec"]["selector"]["matchLabels"]["pod-template-hash"] == h
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/desired-replicas"] == "4"
    assert rs1["metadata"]["annotations"]["deployment.kubernetes.io/max-replicas"] == "5"

    # rolling update: 25% surge of 4 = 1 extra pod, 25% unavailable = 1 pod down at most
    with PodCounter(cluster, ns) as pc:
        cluster.kubectl("set", "image", "deployment/web", "-n", ns, "nginx=nginx:2.0")
        out = cluster.kubectl("rollout", "status", "deployment/web", "-n", ns,
                              "--timeout=60s").stdout
    assert "successfully rolled out" in out
    assert pc.max_total <= 5, pc.max_total
    assert pc.min_ready >= 3, pc.min_ready
    revs = rs_by_revision(cluster, ns)
    assert sorted(revs) == [1, 2] and image_of(revs[2]) == "nginx:2.0"
    assert revs[1]["spec"]["replicas"] == 0 and revs[2]["spec"]["replicas"] == 4
    hist = cluster.kubectl("rollout", "history", "deployment/web", "-n", ns).stdout
    assert "1 " in hist and "2 " in hist

    # undo: the revision-1 ReplicaSet is reused and becomes revision 3
    cluster.kubectl("rollout", "undo", "deployment/web", "-n", ns)
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    revs = rs_by_revision(cluster, ns)
    assert sorted(revs) == [2, 3]
    assert revs[3]["metadata"]["name"] == rs1["metadata"]["name"]
    assert revs[3]["metadata"]["annotations"][
        "deployment.kubernetes.io/revision-history"] == "1"
    assert image_of(cluster.kjson("get", "deploy", "web", "-n", ns)) == "nginx:1.0"
    cluster.kubectl("rollout", "undo", "deployment/web", "-n", ns, "--to-revision=2")
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")
    assert image_of(cluster.kjson("get", "deploy", "web", "-n", ns)) == "nginx:2.0"
    assert len(cluster.kjson("get", "rs", "-n", ns)["items"]) == 2   # no new ReplicaSets
    pods = [p for p in cluster.kjson("get", "pods", "-n", ns)["items"]
            if not p["metadata"].get("deletionTimestamp")]
    assert len(pods) == 4 and {image_of({"spec": {"template": p}}) for p in pods} == \
        {"nginx:2.0"}


def test_scale_and_history_limit(cluster, kubelet):
    ns = "dep2"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "deployment", "app", "-n", ns, "--image=img:0", "--replicas=2")
    cluster.kubectl("patch", "deployment", "app", "-n", ns, "-p",
                    '{"spec":{"revisionHistoryLimit":1}}')
    for i in range(1, 4):
        cluster.kubectl("set", "image", "deployment/app", "-n", ns, f"img=img:{i}")
        cluster.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=60s")
    wait_until(lambda: len(cluster.kjson("get", "rs", "-n", ns)["items"]) == 2, 15,
               what="old ReplicaSets cleaned up to the history limit")
    cluster.kubectl("scale", "deployment", "app", "-n", ns, "--replicas=5")
    cluster.kubectl("rollout", "status", "deployment/app", "-n", ns, "--timeout=60s")
    d = cluster.kjson("get", "deploy", "app", "-n", ns)
    assert d["status"]["readyReplicas"] == 5 and d["status"]["replicas"] == 5


def test_recreate_strategy_never_overlaps(cluster, kubelet):
    ns = "dep3"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "-f", "-", input=f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: db, namespace: {ns}}}
spec:
  replicas: 3
  strategy: {{type: Recreate}}
  selector: {{matchLabels: {{app: db}}}}
  template:
    metadata: {{labels: {{app: db}}}}
    spec: {{containers: [{{name: db, image: "db:1"}}]}}
""")
    cluster.kubectl("rollout", "status", "deployment/db", "-n", ns, "--timeout=40s")
    from kubernetes import client
    core = client.CoreV1Api(cluster.py())
    mixed = []
    stop = threading.Event()

    def watch_images():
        while not stop.is_set():
            imgs = {p.spec.containers[0].image for p in core.list_namespaced_pod(ns).items}
            if len(imgs) > 1:
                mixed.append(imgs)
            time.sleep(0.03)
    t = threading.Thread(target=watch_images, daemon=True)
    t.start()
    try:
        cluster.kubectl("set", "image", "deployment/db", "-n", ns, "db=db:2")
        cluster.kubectl("rollout", "status", "deployment/db", "-n", ns, "--timeout=60s")
    finally:
        stop.set()
        t.join(5)
    assert not mixed, mixed[:3]
    imgs = {p.spec.containers[0].image for p in core.list_namespaced_pod(ns).items}
    assert imgs == {"db:2"}
