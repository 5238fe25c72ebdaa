"""The binder: POST pods/binding for each decision, many in flight at once.

Binding is the scheduler's only write per pod and, end to end, the bottleneck
(the API server does a read-modify-write of the pod). The scheduling loop must
not wait for it: decisions are handed over with ``submit`` and ``parallelism``
workers POST them concurrently over the client's keep-alive connections. The
outcome goes to ``on_done(item, error_or_None, seconds)``, called on the event
loop; the driver confirms (``done``) or forgets the assumption and requeues.
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from kcore.client import errors as E

__all__ = ["BindRequest", "Binder"]


@dataclass(eq=False, slots=True)
class BindRequest:
    namespace: str
    name: str
    uid: str | None
    node: str
    token: object           # the driver's (its QueuedPod)
    submitted: float = 0.0


class Binder:
    def __init__(self, client, on_done: Callable[[BindRequest, Exception | None, float], None],
                 parallelism: int = 128) -> None:
        self.client = client
        self.on_done = on_done
        self.parallelism = max(1, parallelism)
        self._pending: deque[BindRequest] = deque()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self.in_flight = 0
        self.bound = 0
        self.failed = 0

    def __len__(self) -> int:
        return len(self._pending) + self.in_flight

    def start(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._worker()) for _ in range(self.parallelism)]

    async def stop(self) -> None:
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._workers = []

    def submit(self, req: BindRequest) -> None:
        req.submitted = time.perf_counter()
        self._pending.append(req)
        self._wake.set()

    async def _worker(self) -> None:
        pending = self._pending
        while True:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            req = pending.popleft()
            self.in_flight += 1
            t0 = time.perf_counter()
            err: Exception | None = None
            try:
                await self.client.bind(req.namespace, req.name, req.node, req.uid)
                self.bound += 1
            except asyncio.CancelledError:
                raise
            except E.ApiError as e:
                err = e
                self.failed += 1
            except Exception as e:  # noqa: BLE001 - reported to the driver as a failure
                err = e
                self.failed += 1
            finally:
                self.in_flight -= 1
            self.on_done(req, err, time.perf_counter() - t0)
