"""A real `kcore kubelet` (process runtime) against a real `kcore apiserver`, driven
with real kubectl: registration and heartbeats, a real `python3 -m http.server`
pod, logs (-f, --tail, --previous, --timestamps), crash loops, liveness restarts,
image pull back-off, restart policies, init containers, graceful delete."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.request

import pytest

from .kubelet_harness import (
    KUBECTL,
    Cluster,
    container_status,
    free_port,
    is_ready,
    pgid_alive,
    pod_phase,
    wait_for,
)

pytestmark = pytest.mark.skipif(KUBECTL is None, reason="kubectl not installed")
PY = sys.executable


@pytest.fixture(scope="module")
def cluster():
    c = Cluster().start()
    try:
        c.kubelet("node-a", "--crash-loop-backoff=1s", "--crash-loop-backoff-max=4s",
                  "--image-pull-backoff=1s", "--image-pull-backoff-max=2s",
                  "--node-status-update-frequency=1s", "--node-lease-renew-interval=1s",
                  "--image-registries=docker.io/library/python,busybox,registry.k8s.io",
                  "--node-labels=zone=a,tier=test", "--register-with-taints=dedicated=x:"
                  "PreferNoSchedule", "--cpu=3", "--memory=4Gi")
        yield c
    finally:
        c.stop()


def pod(name: str, containers: list[dict], **spec) -> dict:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"containers": containers, "terminationGracePeriodSeconds": 5, **spec}}


def wait_pod(cluster, name, pred, timeout=30, what=""):
    return wait_for(lambda: (lambda p: p if p and pred(p) else None)(cluster.pod(name)),
                    timeout, what=what or name)


def test_node_registered_with_heartbeats(cluster):
    node = json.loads(cluster.kubectl("get", "node", "node-a", "-o", "json").stdout)
    md, st = node["metadata"], node["status"]
    assert md["labels"]["kubernetes.io/hostname"] == "node-a"
    assert md["labels"]["kubernetes.io/os"] == "linux"
    assert md["labels"]["zone"] == "a" and md["labels"]["tier"] == "test"
    assert node["spec"]["taints"] == [{"key": "dedicated", "value": "x",
                                       "effect": "PreferNoSchedule"}]
    assert st["capacity"]["cpu"] == "3" and st["capacity"]["memory"] == "4Gi"
    assert st["capacity"]["pods"] == "110" and st["allocatable"]["cpu"] == "3"
    assert {a["type"]: a["address"] for a in st["addresses"]} == {
        "InternalIP": "127.0.0.1", "Hostname": "node-a"}
    port = st["daemonEndpoints"]["kubeletEndpoint"]["Port"]
    assert port == cluster.kubelets[0].port
    assert st["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert all(st["nodeInfo"][k] for k in ("kernelVersion", "osImage", "architecture",
                                          "containerRuntimeVersion", "operatingSystem"))
    conds = {c["type"]: c["status"] for c in st["conditions"]}
    assert conds == {"Ready": "True", "MemoryPressure": "False", "DiskPressure": "False",
                     "PIDPressure": "False"}
    assert "Ready" in cluster.kubectl("get", "nodes").stdout
    lease = lambda: cluster.http(  # noqa: E731
        "GET", "/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/node-a")[1]
    first = lease()
    assert first["spec"]["holderIdentity"] == "node-a"
    assert first["spec"]["leaseDurationSeconds"] == 40
    assert first["metadata"]["ownerReferences"][0]["uid"] == md["uid"]
    wait_for(lambda: lease()["spec"]["renewTime"] != first["spec"]["renewTime"], 10,
             what="lease renewal")


def test_python_client_reads_node(cluster):
    kubernetes = pytest.importorskip("kubernetes")
    conf = kubernetes.client.Configuration()
    conf.host = cluster.url
    with kubernetes.client.ApiClient(conf) as api:
        node = kubernetes.client.CoreV1Api(api).read_node("node-a")
        assert node.status.node_info.kubelet_version.startswith("v1.")
        assert node.status.daemon_endpoints.kubelet_endpoint.port == cluster.kubelets[0].port


def test_kubelet_http_api(cluster):
    k = cluster.kubelets[0]
    assert k.get("/healthz") == b"ok"
    assert json.loads(k.get("/pods"))["kind"] == "PodList"
    s = json.loads(k.get("/stats/summary"))
    assert s["node"]["nodeName"] == "node-a"
    assert s["node"]["memory"]["availableBytes"] > 0
    assert s["node"]["fs"]["capacityBytes"] > 0
    assert "usageCoreNanoSeconds" in s["node"]["cpu"]


def test_http_server_pod_runs_and_logs(cluster):
    port = free_port()
    cluster.create_pod(pod("web", [{
        "name": "web", "image": "python:3.11",
        "command": ["python3", "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        "env": [{"name": "GREETING", "value": "hi"},
                {"name": "MY_NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        "readinessProbe": {"httpGet": {"path": "/", "port": port}, "periodSeconds": 1},
        "livenessProbe": {"tcpSocket": {"port": port}, "periodSeconds": 2,
                          "initialDelaySeconds": 2}}]), node="node-a")
    p = wait_pod(cluster, "web", lambda p: pod_phase(p) == "Running" and is_ready(p),
                 what="web Running and Ready")
    st = p["status"]
    assert st["podIP"] == "127.0.0.1" and st["hostIP"] == "127.0.0.1" and st["startTime"]
    cs = container_status(p, "web")
    assert cs["ready"] and cs["restartCount"] == 0 and "running" in cs["state"]
    assert cs["image"] == "docker.io/library/python:3.11"
    assert cs["imageID"].startswith("docker.io/library/python@sha256:")
    assert cs["containerID"].startswith("kcore://")
    types = {c["type"]: c["status"] for c in st["conditions"]}
    assert types["PodScheduled"] == types["Initialized"] == types["ContainersReady"] == "True"
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as r:
        assert r.status == 200
    summary = json.loads(cluster.kubelets[0].get("/stats/summary"))
    ps = next(x for x in summary["pods"] if x["podRef"]["name"] == "web")
    assert ps["containers"][0]["name"] == "web"
    assert ps["containers"][0]["memory"]["workingSetBytes"] > 1 << 20      # a real python
    assert ps["containers"][0]["cpu"]["usageCoreNanoSeconds"] > 0
    kubernetes = pytest.importorskip("kubernetes")
    conf = kubernetes.client.Configuration()
    conf.host = cluster.url
    with kubernetes.client.ApiClient(conf) as api:   # the client deserializes our status
        typed = kubernetes.client.CoreV1Api(api).read_namespaced_pod("web", "default")
        assert typed.status.container_statuses[0].state.running.started_at is not None
        assert typed.status.pod_ip == "127.0.0.1"
    out = cluster.kubectl("get", "pod", "web").stdout
    assert "1/1" in out and "Running" in out
    wait_for(lambda: '"GET / HTTP/1.1" 200' in cluster.kubectl("logs", "web").stdout, 10,
             what="request in logs")
    tail = cluster.kubectl("logs", "web", "--tail=1").stdout
    assert len(tail.strip().splitlines()) == 1
    ts = cluster.kubectl("logs", "web", "--tail=2", "--timestamps").stdout.splitlines()
    assert len(ts) == 2 and ts[0][:4].isdigit() and "Z " in ts[0]
    follow = cluster.kubectl_bg("logs", "-f", "--tail=1", "web", "-c", "web")
    try:
        time.sleep(1.5)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/marker-path", timeout=5):
            pass
    except urllib.error.HTTPError:
        pass
    try:
        wait_for(lambda: follow.poll() is None, 2)
        cluster.kubectl("delete", "pod", "web", "--wait=false")
        out, err = follow.communicate(timeout=20)   # -f ends when the container stops
    finally:
        if follow.poll() is None:
            follow.kill()
    assert b"/marker-path" in out, err
    assert len(out.decode().strip().splitlines()) >= 2
    wait_for(lambda: cluster.http("GET", "/api/v1/namespaces/default/pods/web")[0] == 404,
             20, what="web deleted")


def test_crash_loop_backoff_and_previous_logs(cluster):
    cluster.create_pod(pod("crash", [{"name": "c", "image": "busybox",
                                      "command": ["sh", "-c", "echo run $$; exit 3"]}]),
                       node="node-a")
    p = wait_pod(cluster, "crash", lambda p: container_status(p, "c").get("restartCount", 0)
                 >= 2 and "waiting" in container_status(p, "c").get("state", {}), 30,
                 what="crash restarted twice and waiting")
    cs = container_status(p, "c")
    assert cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert "back-off" in cs["state"]["waiting"]["message"]
    last = cs["lastState"]["terminated"]
    assert last["exitCode"] == 3 and last["reason"] == "Error"
    assert last["startedAt"] and last["finishedAt"] and last["containerID"]
    assert pod_phase(p) == "Running"
    wait_for(lambda: "CrashLoopBackOff" in cluster.kubectl("get", "pod", "crash").stdout, 10)
    assert cluster.kubectl("logs", "crash", "--previous").stdout.startswith("run ")
    ev = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=crash").stdout
    assert "BackOff" in ev and "Started" in ev
    cluster.kubectl("delete", "pod", "crash", "--wait=true", timeout=40)


def test_liveness_failure_restarts(cluster):
    marker = os.path.join(cluster.root, "alive")
    open(marker, "w").close()
    cluster.create_pod(pod("live", [{
        "name": "app", "image": "busybox", "command": ["sleep", "3600"],
        "livenessProbe": {"exec": {"command": ["test", "-f", marker]}, "periodSeconds": 1,
                          "failureThreshold": 2}}], terminationGracePeriodSeconds=1),
        node="node-a")
    wait_pod(cluster, "live", lambda p: pod_phase(p) == "Running" and is_ready(p))
    os.unlink(marker)
    p = wait_pod(cluster, "live", lambda p: container_status(p, "app").get("restartCount", 0)
                 >= 1, 30, what="liveness restart")
    assert p["status"]["containerStatuses"][0]["lastState"]["terminated"]["exitCode"] in (
        137, 143)
    ev = cluster.kubectl("get", "events", "--field-selector", "involvedObject.name=live").stdout
    assert "Liveness probe failed" in ev and "will be restarted" in ev
    cluster.kubectl("delete", "pod", "live", "--grace-period=1", timeout=40)


def test_image_pull_backoff(cluster):
    cluster.create_pod(pod("noimg", [{"name": "c", "image": "example.com/nope:1",
                                      "command": ["true"]}]), node="node-a")
    p = wait_pod(cluster, "noimg", lambda p: container_status(p, "c").get("state", {}).get(
        "waiting", {}).get("reason") in ("ErrImagePull", "ImagePullBackOff"), 20)
    wait_pod(cluster, "noimg", lambda p: container_status(p, "c")["state"]["waiting"][
        "reason"] == "ImagePullBackOff", 20)
    assert pod_phase(p) == "Pending"
    out = cluster.kubectl("get", "pod", "noimg").stdout
    assert "ImagePullBackOff" in out or "ErrImagePull" in out
    err = cluster.kubectl("logs", "noimg", check=False)
    assert err.returncode != 0 and "waiting to start" in err.stderr
    ev = cluster.kubectl("describe", "pod", "noimg").stdout
    assert 'Failed to pull image "example.com/nope:1"' in ev
    cluster.kubectl("delete", "pod", "noimg", timeout=40)


def test_restart_policies_and_init_containers(cluster):
    out_file = os.path.join(cluster.root, "init-out")
    cluster.create_pod(pod("ok", [{"name": "c", "image": "busybox",
                                   "command": ["sh", "-c", f"cat {out_file}"]}],
                           restartPolicy="Never",
                           initContainers=[{"name": "prep", "image": "busybox",
                                            "command": ["sh", "-c",
                                                        f"echo prepared > {out_file}"]}]),
                       node="node-a")
    cluster.create_pod(pod("bad", [{"name": "c", "image": "busybox",
                                    "command": ["sh", "-c", "exit 7"]}],
                           restartPolicy="Never"), node="node-a")
    cluster.create_pod(pod("retry", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", f"test -f {out_file}.2 || {{ touch {out_file}.2; exit 1; }}"]}],
        restartPolicy="OnFailure"), node="node-a")
    ok = wait_pod(cluster, "ok", lambda p: pod_phase(p) == "Succeeded", 30)
    assert ok["status"]["initContainerStatuses"][0]["state"]["terminated"]["reason"] == \
        "Completed"
    assert cluster.kubectl("logs", "ok").stdout.strip() == "prepared"
    assert cluster.kubectl("logs", "ok", "-c", "prep").stdout == ""
    bad = wait_pod(cluster, "bad", lambda p: pod_phase(p) == "Failed", 30)
    assert container_status(bad, "c")["state"]["terminated"]["exitCode"] == 7
    retry = wait_pod(cluster, "retry", lambda p: pod_phase(p) == "Succeeded", 30)
    assert container_status(retry, "c")["restartCount"] == 1
    assert "Completed" in cluster.kubectl("get", "pod", "ok").stdout
    for name in ("ok", "bad", "retry"):
        cluster.kubectl("delete", "pod", name, timeout=30)


def test_graceful_delete(cluster):
    script = ("trap 'echo got TERM; sleep 1; echo bye; exit 0' TERM; echo started; "
              "while true; do sleep 0.2; done")
    cluster.create_pod(pod("polite", [{"name": "c", "image": "busybox",
                                       "command": ["sh", "-c", script]}],
                           terminationGracePeriodSeconds=10), node="node-a")
    cluster.create_pod(pod("stubborn", [{"name": "c", "image": "busybox", "command": [
        "sh", "-c", "trap '' TERM; while true; do sleep 0.2; done"]}],
        terminationGracePeriodSeconds=2), node="node-a")
    for n in ("polite", "stubborn"):
        wait_pod(cluster, n, lambda p: pod_phase(p) == "Running", 20)
    k = cluster.kubelets[0]
    pods = json.loads(k.get("/pods"))["items"]
    cids = {p["metadata"]["name"]: p for p in pods}
    assert {"polite", "stubborn"} <= set(cids)
    wait_for(lambda: "started" in cluster.kubectl("logs", "polite").stdout, 10)
    pid_files = {}
    for n in ("polite", "stubborn"):
        uid = cids[n]["metadata"]["uid"]
        with open(os.path.join(k.root, "pods", f"default_{n}_{uid}", "c", "pid")) as fh:
            pid_files[n] = int(fh.read().split()[0])
    follow = cluster.kubectl_bg("logs", "-f", "polite")
    t0 = time.monotonic()
    cluster.kubectl("delete", "pod", "polite", "stubborn", "--wait=true", timeout=40)
    took = time.monotonic() - t0
    assert 1.5 < took < 15, took
    out, _ = follow.communicate(timeout=10)
    assert b"got TERM" in out and b"bye" in out
    for n, pid in pid_files.items():       # (a killed child may be a zombie for a moment)
        wait_for(lambda pid=pid: not pgid_alive(pid), 5, what=f"{n}'s processes gone")
    assert not os.path.exists(os.path.join(k.root, "pods", f"default_polite_"
                                           f"{cids['polite']['metadata']['uid']}"))


def test_kubelet_restart_reaps_and_restarts(cluster):
    """A kubelet killed with -9 leaves its containers; the next one reaps them and runs
    the pod again."""
    c = cluster.kubelet("node-r", "--crash-loop-backoff=1s")
    cluster.create_pod(pod("again", [{"name": "c", "image": "busybox",
                                      "command": ["sleep", "3600"]}]), node="node-r")
    p = wait_pod(cluster, "again", lambda p: pod_phase(p) == "Running", 20)
    uid = p["metadata"]["uid"]
    pid_path = os.path.join(c.root, "pods", f"default_again_{uid}", "c", "pid")
    with open(pid_path) as fh:
        old = int(fh.read().split()[0])
    c.kill9()
    assert pgid_alive(old)
    c2 = cluster.kubelet("node-r", "--crash-loop-backoff=1s", wait=False)
    c2.root = c.root
    wait_for(lambda: not pgid_alive(old), 20, what="old container reaped")
    wait_pod(cluster, "again", lambda p: container_status(p, "c").get("containerID") !=
             container_status(p, "c").get("containerID") or pod_phase(p) == "Running", 20)
    wait_for(lambda: os.path.exists(pid_path), 20, what="container started again")
    cluster.kubectl("delete", "pod", "again", "--grace-period=1", timeout=40)
    c2.stop()
    assert not os.path.exists(pid_path)


@pytest.mark.skipif(shutil.which("sleep") is None, reason="coreutils")
def test_no_command_runs_placeholder_and_clean_stop(cluster):
    """A container without command stands in for the image's entrypoint; a kubelet's
    clean stop leaves no process behind."""
    c = cluster.kubelet("node-s")
    cluster.create_pod(pod("plain", [{"name": "nginx", "image": "busybox"}]), node="node-s")
    p = wait_pod(cluster, "plain", lambda p: pod_phase(p) == "Running", 20)
    uid = p["metadata"]["uid"]
    with open(os.path.join(c.root, "pods", f"default_plain_{uid}", "nginx", "pid")) as fh:
        pid = int(fh.read().split()[0])
    c.stop(signal.SIGTERM)
    wait_for(lambda: not pgid_alive(pid), 5, what="container stopped with the kubelet")
    cluster.http("DELETE", "/api/v1/namespaces/default/pods/plain", {"gracePeriodSeconds": 0})
    subprocess.run(["true"])


def test_fake_runtime_kubelet(cluster):
    cluster.kubelet("node-f", "--runtime=fake")
    time.sleep(0.5)          # a pod CIDR assigned after registration (node IPAM) is seen
    code, _ = cluster.http("PATCH", "/api/v1/nodes/node-f", {"spec": {
        "podCIDR": "10.77.3.0/24", "podCIDRs": ["10.77.3.0/24"]}}, "application/merge-patch+json")
    assert code == 200
    time.sleep(0.5)
    cluster.create_pod(pod("fk", [{"name": "a", "image": "whatever"},
                                  {"name": "b", "image": "whatever"}]), node="node-f")
    p = wait_pod(cluster, "fk", lambda p: pod_phase(p) == "Running" and is_ready(p), 20)
    assert p["status"]["podIP"] == "10.77.3.2"
    assert "2/2" in cluster.kubectl("get", "pod", "fk").stdout
    cluster.kubectl("delete", "pod", "fk", timeout=30)
