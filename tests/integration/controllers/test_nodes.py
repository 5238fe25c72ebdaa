"""Node lifecycle and IPAM: a node whose kubelet stops heartbeating goes Unknown, gets
the unreachable NoExecute/NoSchedule taints, its pods are evicted after their
toleration and the RC recreates them on the healthy node; the node comes back and
the taints go. Nodes get pod CIDRs from --cluster-cidr."""
from __future__ import annotations

import ipaddress
import time

from .cm_harness import FakeKubelet, wait_until


def node(cluster, name: str) -> dict:
    return cluster.kjson("get", "node", name)


def ready(n: dict) -> str:
    return next((c["status"] for c in n["status"].get("conditions") or []
                 if c["type"] == "Ready"), "")


def taint_keys(n: dict, effect: str) -> set[str]:
    return {t["key"] for t in n["spec"].get("taints") or [] if t["effect"] == effect}


RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: app, namespace: nl}
spec:
  replicas: 4
  selector: {app: nl}
  template:
    metadata: {labels: {app: nl}}
    spec:
      containers: [{name: c, image: busybox}]
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute,
         tolerationSeconds: 2}
"""


def test_dead_node_is_tainted_its_pods_evicted_and_recreated(cluster):
    cluster.kubectl("create", "namespace", "nl")
    with FakeKubelet(cluster.url, nodes=["good", "bad"], schedule=True) as k:
        wait_until(lambda: cluster.kubectl("get", "node", "bad", check=False).returncode
                   == 0, 10, what="nodes registered")
        cluster.kubectl("create", "-f", "-", input=RC)

        def spread():
            ps = [p for p in cluster.kjson("get", "pods", "-n", "nl")["items"]
                  if p["status"].get("phase") == "Running"]
            nodes = [p["spec"].get("nodeName") for p in ps]
            return len(ps) == 4 and nodes.count("bad") == 2 and nodes
        wait_until(spread, 20, what="4 running pods, 2 on bad")
        on_bad = {p["metadata"]["name"] for p in cluster.kjson("get", "pods", "-n", "nl")[
            "items"] if p["spec"].get("nodeName") == "bad"}
        k.stop("bad")                                   # kill -9 of bad's kubelet
        stopped = time.monotonic()
        wait_until(lambda: ready(node(cluster, "bad")) == "Unknown", 10, what="Unknown")
        went_unknown = time.monotonic() - stopped
        n = node(cluster, "bad")
        conds = {c["type"]: c for c in n["status"]["conditions"]}
        assert conds["Ready"]["reason"] == "NodeStatusUnknown"
        assert conds["Ready"]["message"] == "Kubelet stopped posting node status."
        assert 2.0 <= went_unknown <= 6.0, went_unknown      # grace period 3 s
        wait_until(lambda: "node.kubernetes.io/unreachable" in taint_keys(
            node(cluster, "bad"), "NoExecute"), 10, what="NoExecute taint")
        wait_until(lambda: "node.kubernetes.io/unreachable" in taint_keys(
            node(cluster, "bad"), "NoSchedule"), 10, what="NoSchedule taint")
        assert cluster.kubectl("get", "nodes").stdout.count("NotReady") == 1

        # evicted after the 2 s toleration: Terminating (no kubelet finishes them) ...
        def evicted():
            ps = {p["metadata"]["name"]: p for p in
                  cluster.kjson("get", "pods", "-n", "nl")["items"]}
            return all(ps.get(name, {}).get("metadata", {}).get("deletionTimestamp")
                       for name in on_bad)
        wait_until(evicted, 15, what="pods on bad marked for deletion")
        ev = cluster.kubectl("get", "events", "-n", "nl").stdout
        assert "TaintManagerEviction" in ev
        # ... and the RC has 4 running pods again, all on the good node
        def healed():
            ps = [p for p in cluster.kjson("get", "pods", "-n", "nl")["items"]
                  if not p["metadata"].get("deletionTimestamp")]
            return len(ps) == 4 and all(p["spec"].get("nodeName") == "good" and
                                        p["status"].get("phase") == "Running" for p in ps)
        wait_until(healed, 20, what="4 pods running on good")

        k.start("bad")                                  # the kubelet comes back
        wait_until(lambda: ready(node(cluster, "bad")) == "True", 10, what="Ready again")
        wait_until(lambda: not taint_keys(node(cluster, "bad"), "NoExecute") and
                   not taint_keys(node(cluster, "bad"), "NoSchedule"), 10,
                   what="taints removed")
        # the revived kubelet finishes the evicted pods' graceful deletion
        wait_until(lambda: not [p for p in cluster.kjson("get", "pods", "-n", "nl")["items"]
                                if p["metadata"]["name"] in on_bad], 10, what="old pods gone")
        metrics = cluster.metrics()
        assert "node_collector_evictions_total 1" in metrics
        assert "taint_eviction_controller_pod_deletions_total 2" in metrics
    for n in ("good", "bad"):
        cluster.kubectl("delete", "node", n)


def test_node_cidrs_are_allocated_and_released(cluster):
    for i in range(3):
        cluster.kubectl("create", "-f", "-", input=f"""apiVersion: v1
kind: Node
metadata: {{name: ipam-{i}}}
""")

    def cidrs():
        ns = [cluster.kjson("get", "node", f"ipam-{i}") for i in range(3)]
        got = [n["spec"].get("podCIDR") for n in ns]
        return all(got) and got
    got = wait_until(cidrs, 10, what="podCIDRs")
    nets = [ipaddress.ip_network(c) for c in got]
    assert len(set(got)) == 3
    assert all(n.prefixlen == 24 and n.subnet_of(ipaddress.ip_network("10.244.0.0/16"))
               for n in nets)
    n0 = cluster.kjson("get", "node", "ipam-0")
    assert n0["spec"]["podCIDRs"] == [n0["spec"]["podCIDR"]]
    cluster.kubectl("delete", "node", "ipam-0")
    cluster.kubectl("create", "-f", "-", input="apiVersion: v1\nkind: Node\n"
                    "metadata: {name: ipam-3}\n")
    c3 = wait_until(lambda: cluster.kjson("get", "node", "ipam-3")["spec"].get("podCIDR"),
                    10, what="podCIDR for a new node")
    assert c3 not in got[1:]
    for i in (1, 2, 3):
        cluster.kubectl("delete", "node", f"ipam-{i}")
