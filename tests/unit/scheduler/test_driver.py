"""The driver between informers and the core, with a scripted client: which informer
events reach the core and the queue, what a failed binding does, events written."""
from __future__ import annotations

import asyncio

import pytest

from kcore.client import errors as E
from kcore.scheduler import load_config
from kcore.scheduler.driver import SchedulerDriver, node_changed

from .conftest import make_node, make_pod


class FakeClient:
    """Records bindings, events and status patches; fails binds as told."""

    def __init__(self):
        self.binds: list[tuple[str, str, str]] = []
        self.fail: dict[str, list[Exception]] = {}
        self.events: list[dict] = []
        self.patches: list[tuple[str, dict]] = []

    async def bind(self, ns, name, node, uid=None):
        await asyncio.sleep(0)
        errs = self.fail.get(name)
        if errs:
            raise errs.pop(0)
        self.binds.append((ns, name, node))
        return {}

    async def create(self, res, obj, ns=None, **kw):
        self.events.append(obj)
        return obj

    async def patch(self, res, name, patch, ns=None, **kw):
        if res.plural == "events":
            for e in self.events:
                if e["metadata"]["name"] == name:
                    e.update(patch)
        else:
            self.patches.append((name, patch))
        return {}

    async def close(self):
        pass


def pod(name, cpu="1", **kw):
    p = make_pod(name, cpu=cpu, **kw)
    p["metadata"]["uid"] = f"uid-{name}"
    return p


async def until(cond, timeout=5.0):
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise TimeoutError
        await asyncio.sleep(0.01)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def driver(client, **kw):
    return SchedulerDriver(client, load_config({}), seed=3, initial_backoff=0.05,
                           max_backoff=0.1, **kw)


def reasons(client, name):
    return [(e["reason"], e["message"]) for e in client.events
            if e["involvedObject"]["name"] == name]


def test_informer_events_feed_core_and_queue():
    async def go():
        c = FakeClient()
        d = driver(c)
        d._node_add(make_node("n1", cpu="2"))
        d._pod_add(pod("bound", node="n1"))
        d._pod_add(pod("mine"))
        d._pod_add(pod("theirs", schedulerName="other"))
        d._pod_add({**pod("done"), "status": {"phase": "Succeeded"}})
        assert set(d.queue.pods) == {"default/mine"}
        assert d._cache_sizes() == {"nodes": 1, "pods": 1, "assumed_pods": 0}
        # someone else binds "mine": it leaves the queue and is charged
        d._pod_update(pod("mine"), pod("mine", node="n1"))
        assert len(d.queue) == 0 and d._cache_sizes()["pods"] == 2
    run(go())


def test_pods_bound_with_scheduled_events_and_a_parked_pod_moves_on_node_add():
    async def go():
        c = FakeClient()
        d = driver(c)
        d._node_add(make_node("n1", cpu="2"))
        for name in ("a", "b", "c"):
            d._pod_add(pod(name))
        task = asyncio.get_running_loop().create_task(d.lead())
        await until(lambda: len(c.binds) == 2 and d.queue.pending()["unschedulable"] == 1)
        assert {b[1] for b in c.binds} == {"a", "b"}
        await d.recorder.flush()
        assert reasons(c, "a") == [("Scheduled", "Successfully assigned default/a to n1")]
        msg = ("0/1 nodes are available: 1 Insufficient cpu. preemption: 0/1 nodes are "
               "available: 1 No preemption victims found for incoming pod.")
        assert reasons(c, "c") == [("FailedScheduling", msg)]
        await until(lambda: c.patches)
        name, patch = c.patches[0]
        cond = patch["status"]["conditions"][0]
        assert name == "c" and (cond["status"], cond["reason"], cond["message"]) == \
            ("False", "Unschedulable", msg)
        # heartbeat-only update: stays parked; a new node: moves and binds
        n1 = make_node("n1", cpu="2")
        n1["status"]["conditions"] = [{"type": "Ready", "status": "True",
                                       "lastHeartbeatTime": "t1"}]
        beat = {**n1, "status": {**n1["status"], "conditions": [
            {"type": "Ready", "status": "True", "lastHeartbeatTime": "t2"}]}}
        d._node_update(make_node("n1", cpu="2"), n1)        # Ready appears: c is retried
        await until(lambda: len(reasons(c, "c")) == 1 and
                    d.queue.pending()["unschedulable"] == 1, timeout=10)
        d._node_update(n1, beat)
        assert d.queue.pending()["unschedulable"] == 1
        d._node_add(make_node("n2", cpu="2"))
        await until(lambda: len(c.binds) == 3)
        assert c.binds[-1] == ("default", "c", "n2")
        assert len(d.queue) == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.stop()
    run(go())


def test_failed_binding_forgets_the_assumption_and_retries_with_backoff():
    async def go():
        c = FakeClient()
        c.fail["a"] = [E.Conflict("Operation cannot be fulfilled on pods \"a\": the object "
                                  "has been modified")]
        c.fail["gone"] = [E.NotFound('pods "gone" not found')]
        d = driver(c)
        d._node_add(make_node("n1", cpu="1"))      # room for exactly one 1-cpu pod
        d._pod_add(pod("a"))
        d._pod_add(pod("gone"))
        task = asyncio.get_running_loop().create_task(d.lead())
        await until(lambda: c.binds)
        # "a" failed first: the node was un-charged, so "gone" could take it, and
        # "gone"'s NotFound un-charged it again so "a" binds on its retry
        assert c.binds == [("default", "a", "n1")]
        assert "default/gone" not in d.queue and len(d.queue) == 0
        assert d._cache_sizes()["assumed_pods"] == 1
        await d.recorder.flush()
        assert ("FailedScheduling", 'running Bind plugin "DefaultBinder": Operation cannot '
                'be fulfilled on pods "a": the object has been modified') in reasons(c, "a")
        assert reasons(c, "a")[-1] == ("Scheduled", "Successfully assigned default/a to n1")
        assert [r for r, _ in reasons(c, "gone")] == ["FailedScheduling"]   # first try only
        assert d.queue.get("default/a") is None
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.stop()
    run(go())


def test_binding_backlog_limits_what_is_popped():
    async def go():
        c = FakeClient()
        gate = asyncio.Event()

        async def slow_bind(ns, name, node, uid=None):
            await gate.wait()
            c.binds.append((ns, name, node))
        c.bind = slow_bind
        d = driver(c, batch_size=4, parallel_binds=2, max_binding_backlog=4)
        d._node_add(make_node("n1", cpu="100"))
        for i in range(10):
            d._pod_add(pod(f"p{i}", priority=i))
        task = asyncio.get_running_loop().create_task(d.lead())
        await until(lambda: d.queue.pending()["in-flight"] == 4)
        await asyncio.sleep(0.05)
        assert d.queue.pending() == {"active": 6, "backoff": 0, "unschedulable": 0,
                                     "in-flight": 4}
        gate.set()
        await until(lambda: len(c.binds) == 10)
        # priorities decide the order of scheduling (and so of binding, mostly)
        assert {b[1] for b in c.binds[:4]} == {"p9", "p8", "p7", "p6"}
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.stop()
    run(go())


def test_deleted_pending_pod_leaves_the_queue_and_assigned_delete_moves_parked():
    async def go():
        c = FakeClient()
        d = driver(c)
        d._node_add(make_node("n1", cpu="1"))
        d._pod_add(pod("x", node="n1"))
        d._pod_add(pod("y"))
        task = asyncio.get_running_loop().create_task(d.lead())
        await until(lambda: d.queue.pending()["unschedulable"] == 1)
        d._pod_delete(pod("x", node="n1"))
        await until(lambda: c.binds == [("default", "y", "n1")])
        d._pod_add(pod("z"))
        await until(lambda: d.queue.pending()["unschedulable"] == 1)
        d._pod_delete(pod("z"))
        assert len(d.queue) == 0
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await d.stop()
    run(go())


@pytest.mark.parametrize("change,moves", [
    ({}, False),
    ({"metadata": {"name": "n", "labels": {"a": "b"}}}, True),
    ({"spec": {"unschedulable": True}}, True),
    ({"spec": {"taints": [{"key": "k", "effect": "NoSchedule"}]}}, True),
    ({"status": {"allocatable": {"cpu": "8"}}}, True),
    ({"status": {"allocatable": {"cpu": "4"}, "conditions": [
        {"type": "Ready", "status": "False"}]}}, True),
    ({"status": {"allocatable": {"cpu": "4"}, "conditions": [
        {"type": "Ready", "status": "True", "lastHeartbeatTime": "t2"}]}}, False),
])
def test_node_changed(change, moves):
    old = {"metadata": {"name": "n"}, "spec": {},
           "status": {"allocatable": {"cpu": "4"}, "conditions": [
               {"type": "Ready", "status": "True", "lastHeartbeatTime": "t1"}]}}
    assert node_changed(old, {**old, **change}) is moves
