"""The workqueue's contract: a key queued once, never held by two workers, per-key
backoff, overall token bucket, delays, forget, shutdown."""
from __future__ import annotations

import asyncio
import random

import pytest

from kcore.client.workqueue import (
    BucketRateLimiter,
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimitingQueue,
    ShutDown,
    WorkQueue,
    default_controller_rate_limiter,
)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 20))


def test_a_key_is_queued_once():
    async def main():
        q = WorkQueue()
        for _ in range(5):
            q.add("a")
        q.add("b")
        q.add("a")
        assert len(q) == 2
        assert await q.get() == "a"
        assert await q.get() == "b"
        assert len(q) == 0
    run(main())


def test_fifo_order():
    async def main():
        q = WorkQueue()
        for k in "cab":
            q.add(k)
        assert [await q.get() for _ in range(3)] == ["c", "a", "b"]
    run(main())


def test_added_while_processing_is_requeued_on_done():
    async def main():
        q = WorkQueue()
        q.add("a")
        k = await q.get()
        q.add("a")
        q.add("a")
        assert len(q) == 0           # not handed out while held
        q.done(k)
        assert len(q) == 1
        assert await q.get() == "a"
        q.done("a")
        assert len(q) == 0
    run(main())


def test_no_two_workers_hold_a_key_and_no_add_is_lost():
    """Many workers, few keys added at random times, also while being processed:
    at no moment do two workers hold the same key, and every add is followed by
    a processing of that key that starts after the add."""
    async def main():
        rng = random.Random(7)
        q = WorkQueue()
        keys = [f"k{i}" for i in range(5)]
        holding: dict[str, int] = {k: 0 for k in keys}
        last_add: dict[str, int] = {}
        last_start: dict[str, int] = {}
        clock = [0]
        violations = []

        async def worker():
            while True:
                try:
                    k = await q.get()
                except ShutDown:
                    return
                holding[k] += 1
                if holding[k] > 1:
                    violations.append(k)
                clock[0] += 1
                last_start[k] = clock[0]
                await asyncio.sleep(rng.random() * 0.002)
                holding[k] -= 1
                q.done(k)

        workers = [asyncio.create_task(worker()) for _ in range(8)]
        for _ in range(2000):
            k = rng.choice(keys)
            clock[0] += 1
            last_add[k] = clock[0]
            q.add(k)
            if rng.random() < 0.3:
                await asyncio.sleep(0)
            if rng.random() < 0.05:
                await asyncio.sleep(0.001)
        while len(q) or any(holding.values()) or any(q.is_processing(k) for k in keys):
            await asyncio.sleep(0.005)
        await q.shutdown_with_drain()
        await asyncio.gather(*workers)
        assert not violations
        for k in keys:
            assert last_start[k] > last_add[k], k
    run(main())


def test_shutdown_wakes_workers_and_drains_queue():
    async def main():
        q = WorkQueue()
        got = []

        async def worker():
            try:
                while True:
                    k = await q.get()
                    got.append(k)
                    q.done(k)
            except ShutDown:
                return "stopped"
        q.add("x")
        ws = [asyncio.create_task(worker()) for _ in range(3)]
        await asyncio.sleep(0.01)
        q.add("y")
        q.shutdown()
        q.add("z")                    # ignored once shutting down
        assert await asyncio.gather(*ws) == ["stopped"] * 3
        assert got == ["x", "y"]
        with pytest.raises(ShutDown):
            await q.get()
    run(main())


def test_shutdown_with_drain_waits_for_processing():
    async def main():
        q = WorkQueue()
        q.add("a")
        k = await q.get()
        done = asyncio.create_task(q.shutdown_with_drain())
        await asyncio.sleep(0.02)
        assert not done.done()
        q.done(k)
        await asyncio.wait_for(done, 1)
    run(main())


def test_add_after_delays_and_earliest_deadline_wins():
    async def main():
        q = DelayingQueue()
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        q.add_after("a", 0.2)
        q.add_after("a", 0.05)        # earlier wins
        q.add_after("a", 0.5)         # later ignored
        q.add_after("b", 0.1)
        assert q.waiting() == 2 and len(q) == 0
        assert await q.get() == "a"
        t_a = loop.time() - t0
        assert await q.get() == "b"
        t_b = loop.time() - t0
        assert 0.04 <= t_a < 0.15 and 0.09 <= t_b < 0.3
        q.done("a")
        q.done("b")
        await asyncio.sleep(0.5)
        assert len(q) == 0            # the superseded deadlines did not add again
        q.add_after("c", 0)           # no delay: at once
        assert len(q) == 1
    run(main())


def test_exponential_backoff_per_item_and_forget():
    rl = ItemExponentialFailureRateLimiter(0.005, 1000.0)
    assert [rl.when("a") for _ in range(4)] == [0.005, 0.01, 0.02, 0.04]
    assert rl.when("b") == 0.005
    assert rl.num_requeues("a") == 4
    for _ in range(40):
        d = rl.when("a")
    assert d == 1000.0
    rl.forget("a")
    assert rl.num_requeues("a") == 0 and rl.when("a") == 0.005


def test_fast_slow():
    rl = ItemFastSlowRateLimiter(0.1, 5.0, 2)
    assert [rl.when("x") for _ in range(4)] == [0.1, 0.1, 5.0, 5.0]


def test_token_bucket_overall_limit():
    now = [100.0]
    rl = BucketRateLimiter(10.0, 3, clock=lambda: now[0])
    assert [rl.when(i) for i in range(3)] == [0, 0, 0]          # the burst
    assert rl.when(3) == pytest.approx(0.1)
    assert rl.when(4) == pytest.approx(0.2)
    now[0] += 1.0                                             # refill (capped at burst)
    assert rl.when(5) == 0


def test_max_of_and_default_limiter():
    rl = default_controller_rate_limiter()
    assert rl.when("k") == 0.005          # the bucket has burst to spare
    assert rl.when("k") == 0.01
    rl.forget("k")
    assert rl.num_requeues("k") == 0
    m = MaxOfRateLimiter(ItemExponentialFailureRateLimiter(1.0, 10.0),
                         ItemExponentialFailureRateLimiter(0.5, 100.0))
    assert [m.when("x") for _ in range(6)] == [1.0, 2.0, 4.0, 8.0, 10.0, 16.0]


def test_rate_limited_requeue_then_forget():
    async def main():
        q = RateLimitingQueue(ItemExponentialFailureRateLimiter(0.01, 1.0))
        q.add("k")
        loop = asyncio.get_running_loop()
        delays = []
        for _ in range(4):
            t0 = loop.time()
            k = await q.get()
            delays.append(loop.time() - t0)
            q.add_rate_limited(k)       # a failed sync
            q.done(k)
        assert q.num_requeues("k") == 4
        k = await q.get()
        q.forget(k)
        q.done(k)
        assert q.num_requeues("k") == 0
        assert delays[1] >= 0.009 and delays[3] >= 0.035   # 10 ms, 20 ms, 40 ms
        assert q.retries_total == 4
    run(main())


def test_cancelled_waiter_passes_its_wakeup_on():
    async def main():
        q = WorkQueue()
        t1 = asyncio.create_task(q.get())
        t2 = asyncio.create_task(q.get())
        await asyncio.sleep(0)
        q.add("a")
        t1.cancel()
        assert await asyncio.wait_for(t2, 1) == "a"
    run(main())
