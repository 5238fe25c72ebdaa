"""`kcore scheduler` against a real `kcore apiserver`: pods go Pending → bound with a
Scheduled event, an unschedulable pod gets kube's FailedScheduling and binds once a
node fits, `kcore scheduler explain` and /explain show verdicts and scores,
/healthz and /metrics answer."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile

import pytest
from scheduler_harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster():
    root = tempfile.mkdtemp(prefix="kcore-sched-it-")
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def sched(cluster):
    for i in range(3):
        cluster.api.add_node(f"node-{i}", cpu="4", memory="8Gi",
                             labels={"zone": "a" if i < 2 else "b"})
    return cluster.scheduler("--leader-elect=false", "--seed=7", "--secure-port=0")


def bound(api, names, ns="default"):
    pods = {p["metadata"]["name"]: p for p in api.pods(ns)}
    return all(pods.get(n, {}).get("spec", {}).get("nodeName") for n in names)


def test_pending_pods_are_bound_with_a_scheduled_event(cluster, sched):
    api = cluster.api
    names = [f"web-{i}" for i in range(12)]
    for n in names:
        assert api.add_pod(n)["status"]["phase"] == "Pending"
    wait_for(lambda: bound(api, names), 30, what="pods bound")
    nodes = {}
    for n in names:
        p = api.pod(n)
        nodes[n] = p["spec"]["nodeName"]
        cond = [c for c in p["status"]["conditions"] if c["type"] == "PodScheduled"]
        assert cond and cond[0]["status"] == "True"
    # LeastAllocated + balanced spread identical pods over the three nodes
    assert set(nodes.values()) == {"node-0", "node-1", "node-2"}

    def scheduled_events():
        evs = api.events(reason="Scheduled")
        got = {e["involvedObject"]["name"]: e for e in evs}
        return got if all(n in got for n in names) else None
    got = wait_for(scheduled_events, 20, what="Scheduled events")
    for n in names:
        e = got[n]
        assert e["message"] == f"Successfully assigned default/{n} to {nodes[n]}"
        assert e["type"] == "Normal" and e["source"]["component"] == "default-scheduler"
    assert sched.metric("scheduler_schedule_attempts_total", result="scheduled") >= 12
    assert sched.metric("scheduler_binding_duration_seconds_count") >= 12
    assert sched.metric("scheduler_pending_pods", queue="active") == 0
    assert sched.get("/healthz") == (200, "ok")
    # the same endpoints over HTTPS (a self-signed serving certificate)
    import re
    import ssl
    import urllib.request
    https = re.search(r"https://127\.0\.0\.1:\d+", sched.log()).group(0)
    ctx = ssl.create_default_context()
    ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
    with urllib.request.urlopen(https + "/metrics", context=ctx, timeout=10) as r:
        assert b"scheduler_schedule_attempts_total" in r.read()


def test_unschedulable_pod_gets_failed_scheduling_then_binds_when_a_node_is_added(
        cluster, sched):
    api = cluster.api
    api.add_pod("huge", cpu="10", memory="1Gi")
    want = ("0/3 nodes are available: 3 Insufficient cpu. preemption: 0/3 nodes are "
            "available: 3 No preemption victims found for incoming pod.")
    ev = wait_for(lambda: api.events(name="huge", reason="FailedScheduling"), 20,
                  what="FailedScheduling")
    assert ev[0]["message"] == want and ev[0]["type"] == "Warning"
    cond = wait_for(lambda: [c for c in api.pod("huge")["status"].get("conditions") or []
                             if c["type"] == "PodScheduled" and c["status"] == "False"], 20,
                    what="PodScheduled=False")
    assert cond[0]["reason"] == "Unschedulable" and cond[0]["message"] == want
    assert sched.metric("scheduler_pending_pods", queue="unschedulable") == 1
    assert not api.pod("huge")["spec"].get("nodeName")

    api.add_node("big-node", cpu="16", memory="32Gi")
    p = wait_for(lambda: api.pod("huge")["spec"].get("nodeName") and api.pod("huge"), 20,
                 what="huge bound after the node was added")
    assert p["spec"]["nodeName"] == "big-node"
    wait_for(lambda: api.events(name="huge", reason="Scheduled"), 20, what="Scheduled")
    assert sched.metric("scheduler_pending_pods", queue="unschedulable") == 0


def test_pods_for_other_schedulers_and_node_selectors(cluster, sched):
    api = cluster.api
    api.add_pod("other", schedulerName="someone-else")
    api.add_pod("zone-b", nodeSelector={"zone": "b"})
    wait_for(lambda: api.pod("zone-b")["spec"].get("nodeName"), 20, what="zone-b bound")
    assert api.pod("zone-b")["spec"]["nodeName"] == "node-2"
    assert not api.pod("other")["spec"].get("nodeName")
    assert not api.events(name="other")


def test_explain_cli_and_endpoint(cluster, sched):
    api = cluster.api
    api.add_pod("picky", cpu="1", nodeSelector={"zone": "a"})
    wait_for(lambda: api.pod("picky")["spec"].get("nodeName"), 20, what="picky bound")
    api.add_pod("never", cpu="1", nodeSelector={"zone": "nowhere"})
    wait_for(lambda: api.events(name="never", reason="FailedScheduling"), 20,
             what="never fails")
    out = subprocess.run([sys.executable, "-m", "kcore.cli.main", "scheduler", "explain",
                          "default/never", f"--master={cluster.url}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    text = out.stdout
    assert "pod default/never: 0/4 nodes feasible" in text
    assert "4  node(s) didn't match Pod's node affinity/selector" in text
    assert "node-0: NodeAffinity: node(s) didn't match Pod's node affinity/selector" in text
    assert "0/4 nodes are available: 4 node(s) didn't match Pod's node affinity/selector." \
        in text

    out = subprocess.run([sys.executable, "-m", "kcore.cli.main", "scheduler", "explain",
                          "default/picky", f"--master={cluster.url}", "--top=2"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("pod is bound to node-")
    assert "pod default/picky: 2/4 nodes feasible" in out.stdout
    assert "NodeResourcesFit" in out.stdout and "TaintToleration" in out.stdout
    rows = [ln for ln in lines if ln.startswith("  node-") and ":" not in ln]
    assert len(rows) == 2 and {r.split()[0] for r in rows} == {"node-0", "node-1"}
    # nothing changed: the explained pods are where they were
    assert not api.pod("never")["spec"].get("nodeName")

    code, body = sched.get("/explain?pod=default/never")
    assert code == 200 and "pod default/never: 0/4 nodes feasible" in body
    assert sched.get("/explain?pod=default/missing")[0] == 404

    out = subprocess.run([sys.executable, "-m", "kcore.cli.main", "scheduler", "explain",
                          "default/missing", f"--master={cluster.url}"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 1 and 'pods "missing" not found' in out.stderr


def test_deleting_a_bound_pod_frees_room_for_a_parked_one(cluster, sched):
    api = cluster.api
    api.add_node("small", cpu="2", memory="4Gi", taints=[
        {"key": "dedicated", "value": "x", "effect": "NoSchedule"}])
    tol = [{"key": "dedicated", "operator": "Equal", "value": "x", "effect": "NoSchedule"}]
    sel = {"kubernetes.io/hostname": "small"}
    api.add_pod("first", cpu="1500m", tolerations=tol, nodeSelector=sel)
    wait_for(lambda: api.pod("first")["spec"].get("nodeName"), 20, what="first bound")
    api.add_pod("second", cpu="1500m", tolerations=tol, nodeSelector=sel)
    wait_for(lambda: api.events(name="second", reason="FailedScheduling"), 20,
             what="second parked")
    api.ok("DELETE", "/api/v1/namespaces/default/pods/first",
           {"kind": "DeleteOptions", "apiVersion": "v1", "gracePeriodSeconds": 0})
    p = wait_for(lambda: api.pod("second")["spec"].get("nodeName") and api.pod("second"), 20,
                 what="second bound after first was deleted")
    assert p["spec"]["nodeName"] == "small"


def test_direct_binding_answers_like_the_client(cluster, sched):
    import asyncio

    from kcore.client import AlreadyExists, Client, ClientConfig, Conflict, NotFound
    from kcore.scheduler.binder import DirectBinding

    api = cluster.api
    api.add_pod("direct", schedulerName="nobody")
    api.add_pod("via-client", schedulerName="nobody")

    async def go():
        d = DirectBinding(ClientConfig(server=cluster.url))
        c = Client(cluster.url)
        try:
            assert await d.bind("default", "direct", "node-0", None) == {
                "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "code": 201}
            await c.bind("default", "via-client", "node-1")
            errors = []
            for tr in (d, c):
                for name, node in (("direct", "node-1"), ("missing", "node-1")):
                    try:
                        await tr.bind("default", name, node)
                    except (Conflict, NotFound) as e:
                        errors.append((type(e).__name__, e.code, e.message))
            assert errors[:2] == errors[2:]
            assert errors[0][:2] == ("Conflict", 409) and "already assigned" in errors[0][2]
            assert errors[1] == ("NotFound", 404, 'pods "missing" not found')
            # the server closed the kept-alive connection: one transparent reconnect
            d.w.close()
            await asyncio.sleep(0.05)
            try:
                await d.bind("default", "direct", "node-1")
            except AlreadyExists:
                raise AssertionError("wrong class") from None
            except Conflict as e:
                assert "already assigned" in e.message
        finally:
            d.close_now()
            await c.close()
    asyncio.run(go())
    assert api.pod("direct")["spec"]["nodeName"] == "node-0"
