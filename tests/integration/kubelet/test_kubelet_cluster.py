"""The whole loop with real processes: kcore apiserver + controller-manager +
scheduler + kubelets, driven by real kubectl.

- the acceptance scenario: `kubectl create deployment web --image=python
  --replicas=3 -- python3 -m http.server 8000` on kubelets with a network
  namespace per pod (root), pods Running and answering on their own IPs, logs,
  scale, rollout status/undo, `kubectl delete ns` cascading to the processes;
- self-repair: 3 kubelets, an RC of 6, kill -9 one kubelet: the node goes
  NotReady, its pods are evicted and the RC is back to 6 Running elsewhere;
- hollow nodes: 200 register and stay Ready under the node lifecycle controller,
  and their pods go Running.
Skipped when this tree has no controller-manager/scheduler."""
from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import time
import urllib.request

import pytest

from .kubelet_harness import KUBECTL, Cluster, free_port, kcore_commands, pod_phase, wait_for

HAVE = {"controller-manager", "scheduler"} <= kcore_commands()
pytestmark = [pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed"),
              pytest.mark.skipif(not HAVE, reason="no controller-manager/scheduler here")]


def _netns_ok() -> bool:
    sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))
    try:
        from netns import available
    finally:
        sys.path.pop(0)
    return available()


def pods_json(cluster: Cluster, ns: str, selector: str = "") -> list[dict]:
    args = ["-n", ns, "get", "pods", "-o", "json"] + (["-l", selector] if selector else [])
    return json.loads(cluster.kubectl(*args).stdout)["items"]


def running(pods: list[dict]) -> list[dict]:
    return [p for p in pods if pod_phase(p) == "Running"
            and not p["metadata"].get("deletionTimestamp")
            and all(c.get("ready") for c in p["status"].get("containerStatuses") or [])]


@pytest.mark.skipif(not _netns_ok(), reason="needs root and ip netns")
def test_deployment_acceptance():
    net = random.randrange(150, 250)
    c = Cluster(controllers=True, cm_flags=[
        "--allocate-node-cidrs=true", f"--cluster-cidr=10.{net}.0.0/16",
        "--node-monitor-period=1s"]).start()
    try:
        flags = ("--pod-network=netns", "--node-status-update-frequency=1s",
                 "--node-lease-renew-interval=2s", "--crash-loop-backoff=1s")
        c.kubelet("acc-1", *flags)
        c.kubelet("acc-2", *flags)
        wait_for(lambda: all((c.http("GET", f"/api/v1/nodes/{n}")[1].get("spec") or {}).get(
            "podCIDR") for n in ("acc-1", "acc-2")), 20, what="node CIDRs")
        c.kubectl("create", "namespace", "acc")
        out = c.kubectl("-n", "acc", "create", "deployment", "web", "--image=python",
                        "--replicas=3", "--", "python3", "-m", "http.server", "8000").stdout
        assert "deployment.apps/web created" in out
        pods = wait_for(lambda: (lambda r: r if len(r) == 3 else None)(
            running(pods_json(c, "acc", "app=web"))), 60, what="3 web pods Running")
        ips = {p["status"]["podIP"] for p in pods}
        assert len(ips) == 3 and all(ip.startswith(f"10.{net}.") for ip in ips)
        for ip in ips:        # each pod listens on 8000 in its own network namespace
            body = wait_for(lambda ip=ip: urllib.request.urlopen(
                f"http://{ip}:8000/", timeout=3).read(), 20, what=f"GET {ip}:8000")
            assert b"Directory listing" in body
        name = pods[0]["metadata"]["name"]
        wait_for(lambda: "GET / HTTP/1.1" in c.kubectl("-n", "acc", "logs", name).stdout, 10,
                 what="logs of " + name)
        assert "READY" in c.kubectl("-n", "acc", "get", "pods", "-o", "wide").stdout
        c.kubectl("-n", "acc", "logs", "deployment/web")        # kubectl picks a pod
        c.kubectl("-n", "acc", "scale", "deployment", "web", "--replicas=5")
        wait_for(lambda: len(running(pods_json(c, "acc", "app=web"))) == 5, 60,
                 what="5 pods")
        c.kubectl("-n", "acc", "set", "image", "deployment/web", "python=python:3.12")
        st = c.kubectl("-n", "acc", "rollout", "status", "deployment/web", "--timeout=90s",
                       timeout=100).stdout
        assert "successfully rolled out" in st
        imgs = {p["spec"]["containers"][0]["image"] for p in running(pods_json(c, "acc"))}
        assert imgs == {"python:3.12"}
        c.kubectl("-n", "acc", "rollout", "undo", "deployment/web")
        st = c.kubectl("-n", "acc", "rollout", "status", "deployment/web", "--timeout=90s",
                       timeout=100).stdout
        assert "successfully rolled out" in st
        wait_for(lambda: {p["spec"]["containers"][0]["image"]
                          for p in pods_json(c, "acc", "app=web")} == {"python"}, 60,
                 what="undo back to python")
        c.kubectl("delete", "namespace", "acc", "--timeout=90s", timeout=100)
        wait_for(lambda: c.http("GET", "/api/v1/namespaces/acc")[0] == 404, 60)
        for k in c.kubelets:          # every container process and namespace is gone
            wait_for(lambda k=k: not [w for w in _pid_files(k.root)], 30,
                     what=f"{k.name} has no containers")
        ns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        for k in c.kubelets:
            import hashlib
            h = hashlib.sha1(k.name.encode()).hexdigest()[:6]
            assert f"kc{h}-" not in ns
    except BaseException:
        print(c.dump())
        raise
    finally:
        c.stop()


def _pid_files(root: str) -> list[str]:
    import glob
    return glob.glob(os.path.join(root, "pods", "*", "*", "pid"))


RC = """apiVersion: v1
kind: ReplicationController
metadata: {name: keeper}
spec:
  replicas: 6
  selector: {app: keeper}
  template:
    metadata: {labels: {app: keeper}}
    spec:
      terminationGracePeriodSeconds: 1
      tolerations:
      - {key: node.kubernetes.io/unreachable, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      - {key: node.kubernetes.io/not-ready, operator: Exists, effect: NoExecute, tolerationSeconds: 2}
      containers:
      - {name: c, image: busybox, command: [sleep, "3600"]}
"""


def test_self_repair_after_kubelet_kill9():
    c = Cluster(controllers=True, cm_flags=[
        "--node-monitor-period=1s", "--node-monitor-grace-period=4s",
        "--node-startup-grace-period=10s", "--node-eviction-rate=10"]).start()
    try:
        for i in range(3):
            c.kubelet(f"rep-{i}", "--node-lease-renew-interval=1s",
                      "--node-status-update-frequency=1s")
        c.kubectl("apply", "-f", "-", input=RC)
        pods = wait_for(lambda: (lambda r: r if len(r) == 6 else None)(
            running(pods_json(c, "default", "app=keeper"))), 60, what="6 pods Running")
        by_node: dict[str, int] = {}
        for p in pods:
            by_node[p["spec"]["nodeName"]] = by_node.get(p["spec"]["nodeName"], 0) + 1
        victim_name = max(by_node, key=by_node.get)
        victim = next(k for k in c.kubelets if k.name == victim_name)
        t0 = time.monotonic()
        victim.kill9()

        def node_not_ready():
            node = c.http("GET", f"/api/v1/nodes/{victim_name}")[1]
            ready = next(x for x in node["status"]["conditions"] if x["type"] == "Ready")
            taints = {t["key"] for t in (node.get("spec") or {}).get("taints") or []}
            return ready["status"] == "Unknown" and "node.kubernetes.io/unreachable" in taints
        wait_for(node_not_ready, 30, what="victim NotReady and tainted")
        assert "NotReady" in c.kubectl("get", "node", victim_name).stdout

        def repaired():
            ps = pods_json(c, "default", "app=keeper")
            ok = [p for p in running(ps) if p["spec"]["nodeName"] != victim_name]
            left = [p for p in ps if p["spec"].get("nodeName") == victim_name
                    and not p["metadata"].get("deletionTimestamp")]
            return len(ok) == 6 and not left
        wait_for(repaired, 60, what="RC back to 6 Running pods on the other nodes")
        took = time.monotonic() - t0
        rc = json.loads(c.kubectl("get", "rc", "keeper", "-o", "json").stdout)
        wait_for(lambda: json.loads(c.kubectl("get", "rc", "keeper", "-o", "json").stdout)[
            "status"].get("readyReplicas") == 6, 20, what="rc readyReplicas 6")
        assert rc["spec"]["replicas"] == 6
        assert took < 60
    except BaseException:
        print(c.dump())
        raise
    finally:
        c.stop()


def test_kubelet_answers_unknown_status_at_once():
    """The node controller marks a node Unknown when it missed heartbeats (a paused
    kubelet, a slow store during a leader change). The running kubelet sees that on
    its own Node and posts Ready at its next status update, not at the next report
    period (5 minutes), as the kubelet compares with the Node the API serves."""
    c = Cluster(controllers=False).start()
    try:
        c.kubelet("unk-0", "--node-status-update-frequency=1s")

        def ready() -> str:
            node = c.http("GET", "/api/v1/nodes/unk-0")[1]
            return next(x for x in node["status"]["conditions"] if x["type"] == "Ready")[
                "status"]
        wait_for(lambda: ready() == "True", 30, what="unk-0 Ready")
        time.sleep(1.5)                  # past the first status post after registration
        node = c.http("GET", "/api/v1/nodes/unk-0")[1]
        for x in node["status"]["conditions"]:
            x.update(status="Unknown", reason="NodeStatusUnknown",
                     message="Kubelet stopped posting node status.")
        code, body = c.http("PUT", "/api/v1/nodes/unk-0/status", node)
        assert code == 200, body
        assert ready() == "Unknown"
        wait_for(lambda: ready() == "True", 10, what="unk-0 Ready again")
    except BaseException:
        print(c.dump())
        raise
    finally:
        c.stop()

def test_hollow_nodes_stay_ready():
    c = Cluster(controllers=True, cm_flags=[
        "--node-monitor-period=1s", "--node-monitor-grace-period=8s",
        "--node-startup-grace-period=20s"]).start()
    stats = os.path.join(c.root, "hollow.json")
    port = free_port()
    log_path = os.path.join(c.root, "hollow.log")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([
            sys.executable, "-m", "kcore.cli.main", "kubelet", f"--master={c.url}",
            "--hollow-nodes=200", "--hollow-name-prefix=h-", f"--port={port}",
            "--address=127.0.0.1", "--node-ip=127.0.0.1", "--node-lease-renew-interval=2s",
            f"--hollow-stats-file={stats}", f"--root-dir={c.root}/hollow"],
            stdout=log, stderr=subprocess.STDOUT)
    c.procs.append(proc)
    c.logs.append(log_path)
    try:
        def all_ready():
            nodes = c.http("GET", "/api/v1/nodes?labelSelector=kcore.io/hollow%3Dtrue")[1]
            items = nodes.get("items") or []
            return len(items) == 200 and all(
                any(x["type"] == "Ready" and x["status"] == "True"
                    for x in n["status"]["conditions"]) for n in items)
        wait_for(all_ready, 60, what="200 hollow nodes Ready")
        c.kubectl("create", "deployment", "fake", "--image=busybox", "--replicas=20")
        pods = wait_for(lambda: (lambda r: r if len(r) == 20 else None)(
            running(pods_json(c, "default", "app=fake"))), 60, what="20 pods Running")
        assert all(p["spec"]["nodeName"].startswith("h-") for p in pods)
        assert all(p["status"]["podIP"].startswith("10.") for p in pods)
        time.sleep(12)         # longer than the grace period: nobody goes Unknown
        assert all_ready()
        nodes = c.http("GET", "/api/v1/nodes")[1]["items"]
        assert not [n for n in nodes if any(t["key"].startswith("node.kubernetes.io/")
                                            for t in (n.get("spec") or {}).get("taints") or [])]
        with open(stats) as fh:
            s = json.load(fh)
        assert s["nodes"] == 200 and s["renew_failures"] == 0 and s["never_renewed"] == 0
        assert s["oldest_renewal_age_s"] < 6
        c.kubectl("delete", "deployment", "fake")
        wait_for(lambda: not pods_json(c, "default", "app=fake"), 30, what="pods deleted")
    except BaseException:
        print(c.dump())
        raise
    finally:
        c.stop()
