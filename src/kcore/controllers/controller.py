"""The shape every controller shares: informers feed keys to a rate-limited
workqueue; `workers` tasks take keys and call `sync(key)`; a failed sync is
retried with per-key backoff, a successful one resets it.

A controller registers its informers (`self.informer(res)`, from the context's
shared factory) and handlers in `__init__`, so all informers start together;
`run()` waits for *its* informers' caches to sync (one resource the server
refuses does not hold the other controllers back), then runs the workers (and
any periodic loops from `loops()`) until cancelled.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from kcore.client import errors as E
from kcore.client.informer import wait_for_cache_sync
from kcore.client.store import meta_namespace_key
from kcore.client.workqueue import RateLimitingQueue, ShutDown

if TYPE_CHECKING:
    from kcore.controllers.context import ControllerContext

log = logging.getLogger(__name__)


class Controller:
    name = "controller"
    component = "controller-manager"

    def __init__(self, ctx: ControllerContext, workers: int = 1):
        self.ctx = ctx
        self.client = ctx.client_for(self.name)
        self.workers = max(1, workers)
        self.queue = RateLimitingQueue(name=self.name)
        self.recorder = ctx.recorder(self.component, self.client)
        self.syncs = 0
        self.sync_errors = 0
        self.sync_seconds = 0.0
        self.informers: list = []

    def informer(self, res, **kw):
        """A shared informer this controller depends on (run() waits for its sync)."""
        inf = self.ctx.informers.informer(res, **kw)
        if inf not in self.informers:
            self.informers.append(inf)
        return inf

    # -- to override ---------------------------------------------------------------------
    async def sync(self, key: str) -> None:
        raise NotImplementedError

    async def started(self) -> None:
        """Runs once after the caches synced, before the workers start."""

    def loops(self) -> list[Callable[[], Awaitable[None]]]:
        """Periodic coroutines run beside the workers."""
        return []

    # -- helpers --------------------------------------------------------------------------
    def enqueue(self, obj: dict) -> None:
        self.queue.add(meta_namespace_key(obj))

    def enqueue_after(self, obj: dict, delay: float) -> None:
        self.queue.add_after(meta_namespace_key(obj), delay)

    # -- running --------------------------------------------------------------------------
    async def run(self) -> None:
        await wait_for_cache_sync(*self.informers)
        await self.started()
        log.info("started %s (%d workers)", self.name, self.workers)
        tasks = [asyncio.create_task(self._worker(), name=f"{self.name} worker")
                 for _ in range(self.workers)]
        tasks += [asyncio.create_task(self._forever(fn), name=f"{self.name} loop")
                  for fn in self.loops()]
        try:
            await asyncio.gather(*tasks)
        finally:
            self.queue.shutdown()
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t

    async def _forever(self, fn: Callable[[], Awaitable[None]]) -> None:
        await fn()

    async def _worker(self, queue: RateLimitingQueue | None = None,
                      sync: Callable[[str], Awaitable[None]] | None = None) -> None:
        """Take keys from queue (the controller's own by default) and sync them."""
        q = self.queue if queue is None else queue
        fn = self.sync if sync is None else sync
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            t0 = time.monotonic()
            try:
                await fn(key)
                q.forget(key)
            except asyncio.CancelledError:
                q.done(key)
                raise
            except E.Conflict as e:
                self.sync_errors += 1
                log.debug("%s: sync %s: %s (retrying)", self.name, key, e)
                q.add_rate_limited(key)
            except E.ApiError as e:
                self.sync_errors += 1
                log.info("%s: sync %s failed: %s", self.name, key, e)
                q.add_rate_limited(key)
            except Exception:
                self.sync_errors += 1
                log.exception("%s: sync %s failed", self.name, key)
                q.add_rate_limited(key)
            finally:
                self.syncs += 1
                self.sync_seconds += time.monotonic() - t0
            q.done(key)


async def periodic(fn: Callable[[], Awaitable[None]], period: float, name: str = "") -> None:
    """Call fn every period seconds (wait.Until): errors are logged, never fatal."""
    while True:
        t0 = time.monotonic()
        try:
            await fn()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s: periodic task failed", name or getattr(fn, "__name__", "?"))
        await asyncio.sleep(max(period - (time.monotonic() - t0), 0.0))
