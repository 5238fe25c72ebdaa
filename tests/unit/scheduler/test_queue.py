"""The scheduling queue: order, backoff, parking and the moves between them (time by hand)."""
from __future__ import annotations

import random

from kcore.scheduler.queue import SchedulingQueue, queue_key


def pod(name, priority=None, ns="default", **spec):
    s = dict(spec)
    if priority is not None:
        s["priority"] = priority
    return {"metadata": {"name": name, "namespace": ns, "uid": f"uid-{name}"}, "spec": s}


def names(qps):
    return [qp.pod["metadata"]["name"] for qp in qps]


def test_active_queue_orders_by_priority_then_age():
    q = SchedulingQueue()
    q.add(pod("low-old", 0), now=1.0)
    q.add(pod("high-new", 100), now=3.0)
    q.add(pod("low-new", 0), now=2.0)
    q.add(pod("high-old", 100), now=0.5)
    q.add(pod("negative", -5), now=0.0)
    assert names(q.pop(10, now=4.0)) == ["high-old", "high-new", "low-old", "low-new",
                                          "negative"]
    assert q.pending()["in-flight"] == 5 and not q.has_active()


def test_pop_takes_at_most_n_and_counts_attempts_and_cycles():
    q = SchedulingQueue()
    for i in range(5):
        q.add(pod(f"p{i}"), now=float(i))
    first = q.pop(2, now=10.0)
    assert names(first) == ["p0", "p1"]
    assert [qp.attempts for qp in first] == [1, 1]
    assert [qp.cycle for qp in first] == [1, 2]
    assert q.pending() == {"active": 3, "backoff": 0, "unschedulable": 0, "in-flight": 2}


def test_adding_a_queued_pod_twice_keeps_one_entry():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    q.add(pod("a", labels={"x": "y"}), now=1.0)
    assert len(q) == 1
    assert names(q.pop(10, now=2.0)) == ["a"]
    assert q.pop(10, now=2.0) == []


def test_priority_update_reorders_the_active_queue():
    q = SchedulingQueue()
    q.add(pod("a", 0), now=0.0)
    q.add(pod("b", 0), now=1.0)
    q.update(None, pod("b", 10), now=2.0)
    assert names(q.pop(10, now=3.0)) == ["b", "a"]


def test_backoff_doubles_from_one_to_ten_seconds():
    q = SchedulingQueue(initial_backoff=1.0, max_backoff=10.0)
    qp = q.add(pod("a"), now=0.0)
    durations = []
    for _ in range(7):
        [qp] = q.pop(1, now=qp.timestamp + 100)
        durations.append(q.backoff_duration(qp))
        q.requeue_backoff(qp, now=qp.timestamp + 100)
        q.flush(now=qp.timestamp + 100)
    assert durations == [1, 2, 4, 8, 10, 10, 10]


def test_backoff_pod_becomes_active_only_when_its_time_is_up():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    [qp] = q.pop(1, now=0.0)
    q.requeue_backoff(qp, now=5.0)                  # attempt 1: 1 s
    assert q.pending()["backoff"] == 1 and q.next_backoff_expiry() == 6.0
    assert q.flush(now=5.9) == 0 and not q.has_active()
    assert q.flush(now=6.0) == 1 and q.has_active()
    [again] = q.pop(1, now=6.0)
    assert again is qp and qp.attempts == 2
    q.requeue_backoff(qp, now=7.0)                  # attempt 2: 2 s
    assert q.next_backoff_expiry() == 9.0


def test_unschedulable_pods_wait_for_a_cluster_change():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    q.add(pod("b"), now=0.0)
    for qp in q.pop(2, now=0.0):
        q.requeue_unschedulable(qp, now=0.5)
    assert q.pending()["unschedulable"] == 2
    assert q.flush(now=30.0) == 0                   # not long enough parked, no change
    # a node was added: backoff (1 s from 0.5) has expired at 2.0 → active
    assert q.move_all(now=2.0) == 2
    assert q.pending()["active"] == 2 and q.pending()["unschedulable"] == 0


def test_move_while_still_backing_off_goes_to_backoff():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    [qp] = q.pop(1, now=0.0)
    q.requeue_unschedulable(qp, now=10.0)
    q.move_all(now=10.2)                            # backoff ends at 11.0
    assert q.pending()["backoff"] == 1
    assert q.flush(now=11.0) == 1


def test_a_change_while_in_flight_sends_a_failure_to_backoff_not_parking():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    q.add(pod("b"), now=0.0)
    [a] = q.pop(1, now=0.0)
    q.move_all(now=0.1)                             # a node appeared while a was tried
    q.requeue_unschedulable(a, now=0.2)
    assert q.get("default/a").where == "backoff"
    [b] = q.pop(1, now=0.3)                         # popped after the change
    q.requeue_unschedulable(b, now=0.4)
    assert q.get("default/b").where == "unschedulable"


def test_long_parked_pods_are_flushed_after_sixty_seconds():
    q = SchedulingQueue(max_unschedulable=60.0)
    q.add(pod("a"), now=0.0)
    [qp] = q.pop(1, now=0.0)
    q.requeue_unschedulable(qp, now=1.0)
    assert q.flush(now=60.0) == 0
    assert q.flush(now=61.5, unschedulable=False) == 0
    assert q.flush(now=61.5) == 1


def test_spec_update_of_a_parked_pod_moves_it_status_update_does_not():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    [qp] = q.pop(1, now=0.0)
    q.requeue_unschedulable(qp, now=0.0)
    status_only = {**qp.pod, "status": {"conditions": [{"type": "PodScheduled"}]}}
    q.update(qp.pod, status_only, now=5.0)
    assert qp.where == "unschedulable" and qp.pod is status_only
    q.update(status_only, pod("a", nodeSelector={"zone": "b"}), now=5.0)
    assert qp.where == "active"


def test_deleted_pods_leave_and_in_flight_deletes_are_not_requeued():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    q.add(pod("b"), now=0.0)
    q.add(pod("c"), now=0.0)
    q.delete("default/c")
    [a, b] = q.pop(5, now=0.0)
    q.delete("default/a")                           # deleted (or bound) while in flight
    q.requeue_backoff(a, now=1.0)
    q.requeue_unschedulable(a, now=1.0)
    assert "default/a" not in q and len(q) == 1
    q.done(b)
    assert len(q) == 0
    assert q.pending() == {"active": 0, "backoff": 0, "unschedulable": 0, "in-flight": 0}


def test_a_recreated_pod_is_not_touched_by_the_old_ones_outcome():
    q = SchedulingQueue()
    q.add(pod("a"), now=0.0)
    [old] = q.pop(1, now=0.0)
    q.delete("default/a")
    new = q.add(pod("a"), now=1.0)
    q.requeue_backoff(old, now=2.0)
    q.done(old)
    assert q.get("default/a") is new and new.where == "active"


def test_queue_key_defaults_namespace():
    assert queue_key({"metadata": {"name": "x"}}) == "default/x"


def test_counters_match_contents_under_random_operations():
    rng = random.Random(7)
    q = SchedulingQueue()
    flying = []
    now = 0.0
    for _ in range(3000):
        now += rng.random()
        op = rng.random()
        name = f"p{rng.randrange(40)}"
        if op < 0.3:
            q.add(pod(name, rng.choice([0, 1, 5])), now)
        elif op < 0.4:
            q.delete(f"default/{name}")
        elif op < 0.55:
            flying += q.pop(rng.randrange(1, 5), now)
        elif op < 0.75 and flying:
            qp = flying.pop(rng.randrange(len(flying)))
            rng.choice([q.requeue_backoff, q.requeue_unschedulable,
                        lambda qp, now: q.done(qp)])(qp, now)
        elif op < 0.85:
            q.move_all(now)
        else:
            q.flush(now)
        where = [qp.where for qp in q.pods.values()]
        for state, n in q.pending().items():
            assert where.count(state) == n
        assert all(qp.deleted or qp.where for qp in flying if qp.key in q.pods)
    # everything queued can still be drained
    for qp in flying:
        q.done(qp)
    q.flush(now + 1000)
    q.move_all(now + 2000)
    q.flush(now + 3000)
    got = q.pop(1000, now + 3000)
    assert len(got) == len(q.pods) and all(qp.where == "in-flight" for qp in got)
