"""A rate-limited workqueue, as client-go's: what controllers' workers pull keys from.

Guarantees (the reason controllers use it rather than a plain queue):
- a key is queued at most once however often it is added (`dirty` set);
- a key is never handed to two workers at once: added while a worker holds
  it, it is queued again only when that worker calls `done` (`processing`);
- failures back off per key (`add_rate_limited`: 5 ms doubling to 1000 s by
  default) under an overall token bucket (10 qps, burst 100), and `forget`
  resets a key's backoff after a success;
- `add_after` delays a key (an earlier deadline wins); `shutdown` wakes every
  waiting worker; workers then drain what is queued and `get` raises ShutDown.

    q = RateLimitingQueue(name="replicaset")
    q.add("default/web")
    key = await q.get()
    try: await sync(key); q.forget(key)
    except Exception: q.add_rate_limited(key)
    finally: q.done(key)
"""
from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable
from typing import Protocol

from kcore.client.flowcontrol import TokenBucket


class ShutDown(Exception):
    """The queue was shut down and is empty: the worker should return."""


# -------------------------------------------------------------------- rate limiters --
class RateLimiter(Protocol):
    def when(self, item: Hashable) -> float: ...
    def forget(self, item: Hashable) -> None: ...
    def num_requeues(self, item: Hashable) -> int: ...


class ItemExponentialFailureRateLimiter:
    """base · 2^failures, capped at max_delay, per item."""

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0):
        self.base, self.max = base_delay, max_delay
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self.failures.get(item, 0)
        self.failures[item] = n + 1
        if n >= 64:
            return self.max
        return min(self.base * (2 ** n), self.max)

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


class ItemFastSlowRateLimiter:
    """fast_delay for the first max_fast_attempts retries, slow_delay after."""

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int):
        self.fast, self.slow, self.max_fast = fast_delay, slow_delay, max_fast_attempts
        self.failures: dict[Hashable, int] = {}

    def when(self, item: Hashable) -> float:
        n = self.failures.get(item, 0) + 1
        self.failures[item] = n
        return self.fast if n <= self.max_fast else self.slow

    def forget(self, item: Hashable) -> None:
        self.failures.pop(item, None)

    def num_requeues(self, item: Hashable) -> int:
        return self.failures.get(item, 0)


class BucketRateLimiter:
    """An overall token bucket: every retry takes a token (no per-item state)."""

    def __init__(self, qps: float = 10.0, burst: int = 100,
                 clock: Callable[[], float] = time.monotonic):
        self.bucket = TokenBucket(qps, burst, clock)

    def when(self, item: Hashable) -> float:
        return self.bucket.reserve()

    def forget(self, item: Hashable) -> None:
        pass

    def num_requeues(self, item: Hashable) -> int:
        return 0


class MaxOfRateLimiter:
    """The longest delay of several limiters (all are consulted, so all advance)."""

    def __init__(self, *limiters: RateLimiter):
        self.limiters = limiters

    def when(self, item: Hashable) -> float:
        return max(lim.when(item) for lim in self.limiters)

    def forget(self, item: Hashable) -> None:
        for lim in self.limiters:
            lim.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return max(lim.num_requeues(item) for lim in self.limiters)


def default_controller_rate_limiter() -> MaxOfRateLimiter:
    """client-go's DefaultControllerRateLimiter: per-item 5 ms → 1000 s, overall 10 qps
    with a burst of 100."""
    return MaxOfRateLimiter(ItemExponentialFailureRateLimiter(0.005, 1000.0),
                            BucketRateLimiter(10.0, 100))


# --------------------------------------------------------------------------- queues --
class WorkQueue:
    """FIFO of keys with the dirty/processing sets (client-go's workqueue.Type)."""

    def __init__(self, name: str = ""):
        self.name = name
        self._queue: deque = deque()
        self._dirty: set = set()
        self._processing: set = set()
        self._waiters: deque[asyncio.Future] = deque()
        self._shutting_down = False
        self._drain = False
        self._drained: asyncio.Event | None = None
        self._started_at: dict[Hashable, float] = {}
        # metrics
        self.adds_total = 0
        self.retries_total = 0
        self.work_seconds_total = 0.0
        self.processed_total = 0

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def shutting_down(self) -> bool:
        return self._shutting_down

    def add(self, item: Hashable) -> None:
        if self._shutting_down:
            return
        if item in self._dirty:
            return
        self.adds_total += 1
        self._dirty.add(item)
        if item in self._processing:
            return          # queued again by done()
        self._queue.append(item)
        self._wake_one()

    def _wake_one(self) -> None:
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)
                return

    async def get(self) -> Hashable:
        """The next key; the caller must call done(key). Raises ShutDown once the
        queue is shut down and empty."""
        while not self._queue:
            if self._shutting_down:
                raise ShutDown(self.name)
            fut = asyncio.get_running_loop().create_future()
            self._waiters.append(fut)
            try:
                await fut
            except asyncio.CancelledError:
                if fut.done() and not fut.cancelled() and self._queue:
                    self._wake_one()   # pass the wake-up on
                raise
        item = self._queue.popleft()
        self._processing.add(item)
        self._dirty.discard(item)
        self._started_at[item] = time.monotonic()
        return item

    def done(self, item: Hashable) -> None:
        """The worker finished with the key; if it was added meanwhile, queue it now."""
        self._processing.discard(item)
        t0 = self._started_at.pop(item, None)
        if t0 is not None:
            self.work_seconds_total += time.monotonic() - t0
            self.processed_total += 1
        if item in self._dirty:
            self._queue.append(item)
            self._wake_one()
        elif not self._processing and self._drained is not None:
            self._drained.set()

    def shutdown(self) -> None:
        """Stop accepting keys and wake every waiting worker."""
        self._shutting_down = True
        while self._waiters:
            w = self._waiters.popleft()
            if not w.done():
                w.set_result(None)

    async def shutdown_with_drain(self) -> None:
        """Shut down, then wait until the keys being processed are done."""
        self.shutdown()
        if self._processing:
            self._drained = asyncio.Event()
            await self._drained.wait()

    def is_processing(self, item: Hashable) -> bool:
        return item in self._processing

    def unfinished_work_seconds(self) -> float:
        now = time.monotonic()
        return sum(now - t for t in self._started_at.values())


class DelayingQueue(WorkQueue):
    """Adds `add_after(key, delay)`: the key is added when the delay expires; a key
    already waiting keeps the earlier of the two deadlines."""

    def __init__(self, name: str = ""):
        super().__init__(name)
        self._heap: list[tuple[float, int, Hashable]] = []
        self._waiting: dict[Hashable, float] = {}
        self._seq = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0

    def add_after(self, item: Hashable, delay: float) -> None:
        if self._shutting_down:
            return
        if delay <= 0:
            self.add(item)
            return
        loop = asyncio.get_running_loop()
        at = loop.time() + delay
        cur = self._waiting.get(item)
        if cur is not None and cur <= at:
            return
        self._waiting[item] = at
        heapq.heappush(self._heap, (at, next(self._seq), item))
        self._arm(loop)

    def _arm(self, loop: asyncio.AbstractEventLoop) -> None:
        while self._heap and self._waiting.get(self._heap[0][2]) != self._heap[0][0]:
            heapq.heappop(self._heap)      # superseded entries
        if not self._heap:
            return
        at = self._heap[0][0]
        if self._timer is not None and not self._timer.cancelled() and self._timer_at <= at:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = loop.call_at(at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        loop = asyncio.get_running_loop()
        now = loop.time()
        while self._heap and self._heap[0][0] <= now:
            at, _, item = heapq.heappop(self._heap)
            if self._waiting.get(item) == at:
                del self._waiting[item]
                self.add(item)
        self._arm(loop)

    def waiting(self) -> int:
        return len(self._waiting)

    def shutdown(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._heap.clear()
        self._waiting.clear()
        super().shutdown()


class RateLimitingQueue(DelayingQueue):
    """Adds per-key backoff: `add_rate_limited`, `forget`, `num_requeues`."""

    def __init__(self, rate_limiter: RateLimiter | None = None, name: str = ""):
        super().__init__(name)
        self.rate_limiter = rate_limiter or default_controller_rate_limiter()

    def add_rate_limited(self, item: Hashable) -> None:
        self.retries_total += 1
        self.add_after(item, self.rate_limiter.when(item))

    def forget(self, item: Hashable) -> None:
        self.rate_limiter.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return self.rate_limiter.num_requeues(item)
