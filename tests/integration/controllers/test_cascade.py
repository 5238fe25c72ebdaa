"""Garbage collection (background, foreground, orphan), namespace deletion,
service accounts and token secrets, endpoints and quota status — through real
kubectl and the Python client."""
from __future__ import annotations

import time

from .cm_harness import FakeKubelet, wait_until


def names(cluster, kind: str, ns: str) -> list[str]:
    return sorted(i["metadata"]["name"] for i in cluster.kjson("get", kind, "-n", ns)["items"])


def setup_deploy(cluster, ns: str, name: str, replicas: int = 2) -> None:
    cluster.kubectl("create", "deployment", name, "-n", ns, "--image=busybox",
                    f"--replicas={replicas}")
    wait_until(lambda: len([p for p in names(cluster, "pods", ns) if p.startswith(name)])
               == replicas, 15, what=f"{name} pods")


def test_gc_background_foreground_orphan(cluster):
    ns = "gc"
    cluster.kubectl("create", "namespace", ns)
    setup_deploy(cluster, ns, "bg")
    setup_deploy(cluster, ns, "fg")
    setup_deploy(cluster, ns, "orph")
    # background (kubectl's default): the deployment goes at once, the GC follows
    cluster.kubectl("delete", "deployment", "bg", "-n", ns)
    wait_until(lambda: not [r for r in names(cluster, "rs", ns) if r.startswith("bg")] and
               not [p for p in names(cluster, "pods", ns) if p.startswith("bg")], 15,
               what="bg ReplicaSet and pods collected")
    # foreground: kubectl waits; when it returns the ReplicaSet and pods are gone
    t0 = time.monotonic()
    cluster.kubectl("delete", "deployment", "fg", "-n", ns, "--cascade=foreground",
                    "--timeout=30s")
    assert time.monotonic() - t0 < 20
    assert not [r for r in names(cluster, "rs", ns) if r.startswith("fg")]
    assert not [p for p in names(cluster, "pods", ns) if p.startswith("fg")]
    assert "fg" not in names(cluster, "deploy", ns)
    # orphan: the deployment goes, its ReplicaSet and pods stay without the reference
    cluster.kubectl("delete", "deployment", "orph", "-n", ns, "--cascade=orphan")
    assert "orph" not in names(cluster, "deploy", ns)
    time.sleep(1.0)
    rs = [r for r in cluster.kjson("get", "rs", "-n", ns)["items"]
          if r["metadata"]["name"].startswith("orph")]
    assert len(rs) == 1 and not rs[0]["metadata"].get("ownerReferences")
    assert len([p for p in names(cluster, "pods", ns) if p.startswith("orph")]) == 2
    # a chain through the Python client: configmap owned by a configmap owned by another
    from kubernetes import client
    core = client.CoreV1Api(cluster.py())
    top = core.create_namespaced_config_map(ns, {"metadata": {"name": "top"}})
    mid = core.create_namespaced_config_map(ns, {"metadata": {"name": "mid", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "top", "uid": top.metadata.uid,
         "blockOwnerDeletion": True}]}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "leaf", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "mid", "uid": mid.metadata.uid,
         "blockOwnerDeletion": True}]}})
    core.delete_namespaced_config_map("top", ns, propagation_policy="Foreground")
    wait_until(lambda: not {"top", "mid", "leaf"} & set(names(cluster, "configmaps", ns)),
               15, what="the chain collected")
    # a dependent with two owners survives the loss of one
    a = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner-a"}})
    b = core.create_namespaced_config_map(ns, {"metadata": {"name": "owner-b"}})
    core.create_namespaced_config_map(ns, {"metadata": {"name": "shared", "ownerReferences": [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner-a", "uid": a.metadata.uid},
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner-b", "uid": b.metadata.uid}]}})
    core.delete_namespaced_config_map("owner-a", ns)
    wait_until(lambda: [r.name for r in core.read_namespaced_config_map(
        "shared", ns).metadata.owner_references or []] == ["owner-b"], 10,
        what="the dangling reference removed")
    core.delete_namespaced_config_map("owner-b", ns)
    wait_until(lambda: "shared" not in names(cluster, "configmaps", ns), 10,
               what="shared collected with its last owner")


def test_service_accounts_and_token_secrets(cluster):
    cluster.kubectl("create", "namespace", "sa1")
    sa = wait_until(lambda: (lambda r: r.returncode == 0 and r)(cluster.kubectl(
        "get", "sa", "default", "-n", "sa1", "-o", "json", check=False)), 10,
        what="default service account")
    import json
    sa = json.loads(sa.stdout)
    secret_name = wait_until(lambda: (cluster.kjson("get", "sa", "default", "-n", "sa1")
                                      .get("secrets") or [{}])[0].get("name"), 10,
                             what="token secret referenced")
    s = cluster.kjson("get", "secret", secret_name, "-n", "sa1")
    assert s["type"] == "kubernetes.io/service-account-token"
    ann = s["metadata"]["annotations"]
    assert ann["kubernetes.io/service-account.name"] == "default"
    assert ann["kubernetes.io/service-account.uid"] == sa["metadata"]["uid"]
    cluster.kubectl("delete", "sa", "default", "-n", "sa1")
    wait_until(lambda: cluster.kubectl("get", "secret", secret_name, "-n", "sa1",
                                       check=False).returncode != 0, 10,
               what="token secret of the deleted account removed")
    new = wait_until(lambda: cluster.kjson("get", "sa", "default", "-n", "sa1")
                     ["metadata"]["uid"], 10, what="default recreated")
    assert new != sa["metadata"]["uid"]


def test_endpoints_follow_pod_readiness(cluster):
    ns = "ep"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=nginx",
                    "--replicas=3", "--port=8080")
    cluster.kubectl("create", "-f", "-", input=f"""apiVersion: v1
kind: Service
metadata: {{name: web, namespace: {ns}}}
spec:
  selector: {{app: web}}
  ports:
  - {{name: http, port: 80, targetPort: 8080}}
""")
    ep = wait_until(lambda: cluster.kjson("get", "endpoints", "web", "-n", ns), 10,
                    what="endpoints object")
    assert not any(s.get("addresses") for s in ep.get("subsets") or [])
    with FakeKubelet(cluster.url, nodes=["epn"], schedule=True):
        def ready_ips():
            e = cluster.kjson("get", "endpoints", "web", "-n", ns)
            return [a["ip"] for s in e.get("subsets") or [] for a in s.get("addresses") or []]
        ips = wait_until(lambda: len(ready_ips()) == 3 and ready_ips(), 15, what="3 ready")
        e = cluster.kjson("get", "endpoints", "web", "-n", ns)
        assert e["subsets"][0]["ports"] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
        addr = e["subsets"][0]["addresses"][0]
        assert addr["nodeName"] == "epn" and addr["targetRef"]["kind"] == "Pod"
        pods = {p["status"]["podIP"]: p for p in
                cluster.kjson("get", "pods", "-n", ns)["items"]}
        assert set(ips) == set(pods)
        # a pod turning not-ready moves to notReadyAddresses
        from kubernetes import client
        core = client.CoreV1Api(cluster.py())
        ip0 = sorted(ips)[0]
        name0 = pods[ip0]["metadata"]["name"]
        p = core.read_namespaced_pod_status(name0, ns)
        for c in p.status.conditions:
            if c.type == "Ready":
                c.status = "False"
        core.replace_namespaced_pod_status(name0, ns, p)
        wait_until(lambda: [a["ip"] for s in cluster.kjson("get", "endpoints", "web", "-n",
                                                           ns).get("subsets") or []
                            for a in s.get("notReadyAddresses") or []] == [ip0], 10,
                   what="not-ready address")
    cluster.kubectl("delete", "service", "web", "-n", ns)
    wait_until(lambda: cluster.kubectl("get", "endpoints", "web", "-n", ns,
                                       check=False).returncode != 0, 10,
               what="endpoints deleted with the service")


def test_quota_status_is_recomputed(cluster):
    ns = "quota"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "quota", "q", "-n", ns,
                    "--hard=pods=10,configmaps=5,count/deployments.apps=2")
    for i in range(3):
        cluster.kubectl("create", "configmap", f"c{i}", "-n", ns)
    cluster.kubectl("create", "deployment", "d", "-n", ns, "--image=x", "--replicas=2")
    # root-ca-cert-publisher's kube-root-ca.crt counts too, as in kube
    want = {"pods": "2", "configmaps": "4", "count/deployments.apps": "1"}
    wait_until(lambda: cluster.kjson("get", "quota", "q", "-n", ns)["status"].get("used")
               == want, 15, what=f"used {want}")
    # drift that admission never sees is repaired by the periodic recount
    cluster.kubectl("delete", "configmap", "c0", "-n", ns)
    cluster.kubectl("delete", "deployment", "d", "-n", ns)
    wait_until(lambda: cluster.kjson("get", "quota", "q", "-n", ns)["status"].get("used")
               == {"pods": "0", "configmaps": "3", "count/deployments.apps": "0"}, 15,
               what="usage released")


def test_namespace_deletion_cascades(cluster):
    ns = "doomed"
    cluster.kubectl("create", "namespace", ns)
    cluster.kubectl("create", "deployment", "d", "-n", ns, "--image=x", "--replicas=2")
    cluster.kubectl("create", "configmap", "cm", "-n", ns, "--from-literal=a=b")
    cluster.kubectl("create", "service", "clusterip", "s", "-n", ns, "--tcp=80:80")
    cluster.kubectl("create", "quota", "q", "-n", ns, "--hard=pods=5")
    wait_until(lambda: len(names(cluster, "pods", ns)) == 2, 15, what="pods")
    t0 = time.monotonic()
    out = cluster.kubectl("delete", "namespace", ns, "--timeout=60s").stdout
    took = time.monotonic() - t0
    assert f'namespace "{ns}" deleted' in out
    assert took < 30, took
    r = cluster.kubectl("get", "namespace", ns, check=False)
    assert r.returncode != 0 and "NotFound" in r.stderr
    r = cluster.kubectl("delete", "namespace", "default", check=False)
    assert r.returncode != 0 and "forbidden" in r.stderr
