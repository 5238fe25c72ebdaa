"""Two `kcore scheduler --leader-elect` processes: only the lease holder binds; kill -9
it and the other takes over once the lease expires."""
from __future__ import annotations

import shutil
import tempfile

import pytest
from scheduler_harness import Cluster, wait_for

pytestmark = pytest.mark.timeout(120)

FLAGS = ("--leader-elect=true", "--leader-elect-lease-duration=3s",
         "--leader-elect-renew-deadline=2s", "--leader-elect-retry-period=500ms")


@pytest.fixture()
def cluster():
    root = tempfile.mkdtemp(prefix="kcore-sched-le-")
    c = Cluster(root)
    try:
        c.start()
        yield c
    finally:
        c.stop()
        shutil.rmtree(root, ignore_errors=True)


def holder(api) -> str:
    lease = api.lease()
    return (lease or {}).get("spec", {}).get("holderIdentity") or ""


def test_only_the_leader_binds_and_a_killed_leader_is_replaced(cluster):
    api = cluster.api
    for i in range(2):
        api.add_node(f"node-{i}")
    a = cluster.scheduler(*FLAGS, name="a")
    b = cluster.scheduler(*FLAGS, "--bind-transport=client", name="b")   # both transports
    wait_for(lambda: holder(api), 20, what="a lease holder")
    scheds = {s: s for s in (a, b)}

    def leader():
        leading = [s for s in scheds if s.metric("leader_election_master_status") == 1]
        return leading[0] if len(leading) == 1 else None
    lead = wait_for(leader, 20, what="one leader")
    follower = b if lead is a else a
    code, body = lead.get("/leader")
    assert code == 200 and '"leading": true' in body.replace('":true', '": true')

    for i in range(10):
        api.add_pod(f"p{i}")
    wait_for(lambda: all(p["spec"].get("nodeName") for p in api.pods()), 30,
             what="pods bound by the leader")
    assert lead.metric("scheduler_schedule_attempts_total", result="scheduled") == 10
    assert follower.metric("scheduler_schedule_attempts_total") == 0
    # the follower's cache is warm: it knows every node and bound pod
    assert follower.metric("scheduler_cache_size", type="nodes") == 2
    assert follower.metric("scheduler_cache_size", type="pods") == 10
    old = holder(api)

    lead.kill9()
    for i in range(10, 15):
        api.add_pod(f"p{i}")
    wait_for(lambda: holder(api) not in ("", old), 20, what="a new lease holder")
    wait_for(lambda: all(p["spec"].get("nodeName") for p in api.pods()), 30,
             what="pods bound by the new leader")
    assert follower.metric("leader_election_master_status") == 1
    assert follower.metric("scheduler_schedule_attempts_total", result="scheduled") == 5
    lease = api.lease()
    assert lease["spec"]["leaseTransitions"] >= 1
