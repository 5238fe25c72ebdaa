"""The kubelet's pure parts: images, back-off, probes' thresholds, pod phase and
status, node objects, env, pod IPs, flags."""
from __future__ import annotations

import asyncio
import base64

import pytest

from kcore.kubelet import images
from kcore.kubelet import node as N
from kcore.kubelet.backoff import Backoff
from kcore.kubelet.envvars import EnvError, container_env
from kcore.kubelet.hostinfo import HostInfo
from kcore.kubelet.podips import PodIPAllocator
from kcore.kubelet.podstatus import CStatus, phase, pod_status, qos_class
from kcore.kubelet.probes import FAILURE, SUCCESS, ProbeCounter, ProbeSpec
from kcore.kubelet.runtime.process import _expand

HOST = HostInfo("h", 4, 8 * 2**30, 100 * 2**30, "6.1.0", "Debian", "amd64", "mid", "bid", "uuid")


@pytest.mark.parametrize("image,ref", [
    ("python", "docker.io/library/python:latest"),
    ("nginx:1.25", "docker.io/library/nginx:1.25"),
    ("me/app", "docker.io/me/app:latest"),
    ("registry.k8s.io/pause:3.9", "registry.k8s.io/pause:3.9"),
    ("localhost:5000/x", "localhost:5000/x:latest"),
    ("a@sha256:00", "docker.io/library/a@sha256:00"),
])
def test_normalize(image, ref):
    assert images.normalize(image) == ref


def test_registry_list():
    allow = ["docker.io/library/python", "busybox", "registry.k8s.io", "nginx:1.25",
             "localhost:5000", "ghcr.io/org/*"]
    for ok in ("python", "python:3.12", "busybox:1.36", "registry.k8s.io/pause:3.9",
               "nginx:1.25", "localhost:5000/x", "ghcr.io/org/tool:v1"):
        assert images.allowed(ok, allow), ok
    for bad in ("nginx", "nginx:1.26", "me/app", "ghcr.io/other/tool", "example.com/nope:1"):
        assert not images.allowed(bad, allow), bad
    assert images.allowed("anything/at:all", [])
    with pytest.raises(images.PullError) as e:
        images.pull("nope", ["python"])
    assert "failed to pull and unpack image \"docker.io/library/nope:latest\"" in e.value.message
    assert images.pull("python", []).startswith("docker.io/library/python@sha256:")
    assert images.image_id("python") == images.image_id("python:latest")


def test_backoff_doubles_caps_and_resets():
    b = Backoff(base=10, max=40, reset_after=100)
    k = "c"
    assert not b.in_backoff_since(k, 0, 0)           # first failure: restart at once
    assert b.next(k, 0) == 10
    assert b.in_backoff_since(k, 5, 10) and not b.in_backoff_since(k, 5, 16)
    assert [b.next(k, t) for t in (20, 30, 40, 50)] == [20, 40, 40, 40]
    assert b.next(k, 500) == 10                     # quiet long enough: starts over
    b.reset(k)
    assert b.delay(k) == 0


def test_probe_counter_thresholds():
    r = ProbeCounter.for_spec(ProbeSpec.from_api("readiness", {"successThreshold": 2,
                                                              "failureThreshold": 2}))
    assert r.result == FAILURE
    assert not r.observe(True) and r.observe(True) and r.result == SUCCESS
    assert not r.observe(False) and not r.observe(True) and not r.observe(False)
    assert r.observe(False) and r.result == FAILURE
    live = ProbeSpec.from_api("liveness", {"successThreshold": 5, "periodSeconds": 2,
                                           "initialDelaySeconds": 1, "timeoutSeconds": 3})
    assert (live.success_threshold, live.period, live.initial_delay, live.timeout) == (1, 2, 1, 3)
    c = ProbeCounter.for_spec(live)
    assert c.result == SUCCESS and not c.observe(False) and not c.observe(False)
    assert c.observe(False) and c.result == FAILURE


def cs(name, state, **kw):
    return CStatus(name, "python", state=state, **kw)


def test_phase_rules():
    run, done0 = cs("a", "running"), cs("b", "terminated", exit_code=0)
    failed, waiting = cs("c", "terminated", exit_code=1), cs("d", "waiting")
    restarting = cs("e", "waiting", reason="CrashLoopBackOff",
                    last_termination={"exitCode": 1})
    assert phase([], [waiting, run], "Always", True) == "Pending"
    assert phase([], [run, done0], "Never", True) == "Running"
    assert phase([], [done0], "Never", True) == "Succeeded"
    assert phase([], [done0, failed], "Never", True) == "Failed"
    assert phase([], [failed], "OnFailure", True) == "Running"
    assert phase([], [done0], "Always", True) == "Running"
    assert phase([], [restarting], "Always", True) == "Running"
    assert phase([failed], [waiting], "Never", False) == "Failed"
    assert phase([run], [waiting], "Always", False) == "Pending"


def test_pod_status_conditions_and_transitions():
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [
        {"name": "b", "resources": {"requests": {"cpu": "1"}}}, {"name": "a"}]},
        "status": {"conditions": [{"type": "PodScheduled", "status": "True",
                                   "lastTransitionTime": "2020-01-01T00:00:00Z"}]}}
    st = pod_status(pod, [], [cs("b", "running", started_at=1, ready=False),
                              cs("a", "running", started_at=1, ready=True)],
                    init_done=True, sandbox_ready=True, host_ip="1.2.3.4", pod_ip="10.0.0.2",
                    start_time=1, now=100)
    assert st["phase"] == "Running" and st["podIP"] == "10.0.0.2"
    assert st["podIPs"] == [{"ip": "10.0.0.2"}] and st["hostIPs"] == [{"ip": "1.2.3.4"}]
    assert [c["name"] for c in st["containerStatuses"]] == ["a", "b"]
    conds = {c["type"]: c for c in st["conditions"]}
    assert conds["PodScheduled"]["lastTransitionTime"] == "2020-01-01T00:00:00Z"
    assert conds["Ready"]["status"] == "False"
    assert conds["Ready"]["message"] == "containers with unready status: [b]"
    assert st["qosClass"] == "Burstable"
    pod["status"] = st
    st2 = pod_status(pod, [], [cs("b", "running", started_at=1, ready=False),
                               cs("a", "running", started_at=1, ready=True)],
                     init_done=True, sandbox_ready=True, host_ip="1.2.3.4",
                     pod_ip="10.0.0.2", start_time=1, now=5000)
    assert {c["type"]: c["lastTransitionTime"] for c in st2["conditions"]} == \
        {c["type"]: c["lastTransitionTime"] for c in st["conditions"]}
    term = cs("x", "terminated", exit_code=137, signal=9, reason="Error", started_at=1,
              finished_at=2, container_id="kcore://1").to_api()
    assert term["state"]["terminated"]["exitCode"] == 137
    assert term["state"]["terminated"]["signal"] == 9
    assert term["image"] == "docker.io/library/python:latest"


def test_qos():
    g = {"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}
    assert qos_class(g) == "Guaranteed"
    assert qos_class({"containers": [{}]}) == "BestEffort"
    assert qos_class({"containers": [{"resources": {"limits": {"cpu": "1"}}}]}) == "Burstable"


def test_node_object_and_conditions():
    cfg = N.NodeSpecConfig("n1", "10.0.0.5", "n1", 10250,
                           N.default_labels("n1", HOST, N.parse_labels(["zone=a"])),
                           N.parse_taints(["dedicated=gpu:NoSchedule", "spot:NoExecute"]),
                           N.capacity_from_host(HOST, memory="4Gi"), "10.244.1.0/24")
    obj = N.node_object(cfg, HOST, 1000.0)
    assert obj["metadata"]["labels"]["kubernetes.io/arch"] == "amd64"
    assert obj["metadata"]["labels"]["zone"] == "a"
    assert obj["spec"]["taints"] == [{"key": "dedicated", "value": "gpu",
                                      "effect": "NoSchedule"},
                                     {"key": "spot", "effect": "NoExecute"}]
    assert obj["spec"]["podCIDR"] == "10.244.1.0/24"
    st = obj["status"]
    assert st["capacity"]["cpu"] == "4" and st["capacity"]["memory"] == "4Gi"
    assert st["capacity"]["pods"] == "110" and st["allocatable"] == st["capacity"]
    assert st["daemonEndpoints"] == {"kubeletEndpoint": {"Port": 10250}}
    assert set(st["nodeInfo"]) >= {"machineID", "systemUUID", "bootID", "kernelVersion",
                                   "osImage", "containerRuntimeVersion", "kubeletVersion",
                                   "kubeProxyVersion", "operatingSystem", "architecture"}
    c1 = N.conditions(1000.0, N.Pressure(), True)
    c2 = N.conditions(2000.0, N.Pressure(memory=True), True, c1)
    by = lambda cs: {c["type"]: c for c in cs}  # noqa: E731
    assert by(c2)["Ready"]["lastTransitionTime"] == by(c1)["Ready"]["lastTransitionTime"]
    assert by(c2)["Ready"]["lastHeartbeatTime"] != by(c1)["Ready"]["lastHeartbeatTime"]
    assert by(c2)["MemoryPressure"]["status"] == "True"
    assert by(c2)["MemoryPressure"]["lastTransitionTime"] != \
        by(c1)["MemoryPressure"]["lastTransitionTime"]
    lease = N.lease_object("n1", "uid-1", 1000.5)
    assert lease["spec"]["renewTime"].endswith(".500000Z")
    assert lease["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    with pytest.raises(ValueError):
        N.parse_taints(["x=y:Bogus"])
    with pytest.raises(ValueError):
        N.parse_labels(["novalue"])


def test_pod_ips():
    a = PodIPAllocator("10.244.3.0/30")
    assert a.gateway == "10.244.3.1" and a.allocate("u1") == "10.244.3.2"
    assert a.allocate("u1") == "10.244.3.2"
    with pytest.raises(RuntimeError):
        a.allocate("u2")
    a.release("u1")
    assert a.allocate("u2") == "10.244.3.2"
    assert PodIPAllocator("", "192.168.1.5").allocate("x") == "192.168.1.5"


def test_container_env():
    pod = {"metadata": {"name": "p", "namespace": "ns", "uid": "u", "labels": {"app": "w"}},
           "spec": {"nodeName": "n1"}}
    cm = {"data": {"A": "1", "B": "2"}}
    sec = {"data": {"PW": base64.b64encode(b"s3cret").decode()}}

    async def lookup(kind, ns, name):
        return {("configmaps", "cfg"): cm, ("secrets", "sec"): sec}.get((kind, name))

    c = {"envFrom": [{"configMapRef": {"name": "cfg"}, "prefix": "CFG_"}],
         "env": [{"name": "X", "value": "x"}, {"name": "Y", "value": "$(X)-$(NOPE)-$$(X)"},
                 {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}},
                 {"name": "APP", "valueFrom": {"fieldRef": {
                     "fieldPath": "metadata.labels['app']"}}},
                 {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                 {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "sec", "key": "PW"}}},
                 {"name": "MEM", "valueFrom": {"resourceFieldRef": {
                     "resource": "limits.memory", "divisor": "1Mi"}}}],
         "resources": {"limits": {"memory": "64Mi"}}}
    env = asyncio.run(container_env(pod, c, pod_ip="10.1.1.1", host_ip="1.1.1.1",
                                    lookup=lookup))
    assert env["CFG_A"] == "1" and env["X"] == "x" and env["Y"] == "x-$(NOPE)-$(X)"
    assert (env["NODE"], env["APP"], env["IP"], env["PW"], env["MEM"]) == (
        "n1", "w", "10.1.1.1", "s3cret", "64")
    assert env["HOSTNAME"] == "p" and "PATH" in env
    with pytest.raises(EnvError, match='configmap "missing" not found'):
        asyncio.run(container_env(pod, {"envFrom": [{"configMapRef": {"name": "missing"}}]},
                                  pod_ip="", host_ip="", lookup=lookup))
    with pytest.raises(EnvError, match="couldn't find key Z"):
        asyncio.run(container_env(pod, {"env": [{"name": "Z", "valueFrom": {
            "configMapKeyRef": {"name": "cfg", "key": "Z"}}}]}, pod_ip="", host_ip="",
            lookup=lookup))


def test_command_expansion():
    env = {"A": "1"}
    assert _expand("x$(A)y", env) == "x1y"
    assert _expand("$(B)", env) == "$(B)"
    assert _expand("$$(A)", env) == "$(A)"


def test_flags_to_config(tmp_path):
    from kcore.cli.kubelet import kubelet_config, kubelet_flags
    fs = kubelet_flags()
    o, _ = fs.parse(["--node-name=N1", f"--root-dir={tmp_path}", "--port=0",
                     "--node-labels=a=1,b=2", "--register-with-taints=k=v:NoSchedule",
                     "--node-status-update-frequency=2s", "--crash-loop-backoff=500ms",
                     "--max-pods=20", "--image-registries=docker.io", "--runtime=fake"])
    cfg = kubelet_config(o)
    assert cfg.node_name == "n1" and cfg.labels == {"a": "1", "b": "2"}
    assert cfg.taints == [{"key": "k", "value": "v", "effect": "NoSchedule"}]
    assert cfg.node_status_update_frequency == 2.0 and cfg.crash_backoff_base == 0.5
    assert cfg.pods == 20 and cfg.runtime == "fake" and cfg.image_registries == ["docker.io"]
    o, _ = fs.parse(["--runtime=docker"])
    with pytest.raises(ValueError):
        kubelet_config(o)
