"""Events: what a component tells users about objects (`kubectl describe`, `get events`).

`EventRecorder.event(obj, "Normal", "SuccessfulCreate", "Created pod: web-x")`
returns at once; a background task writes core/v1 Events. A repeat of the
same event (same object, type, reason, message and source) within the cache
window is not a new object: the existing Event gets `count + 1` and a new
`lastTimestamp` (a patch), as kube's EventCorrelator does. A spam filter (a
token bucket per source and object: burst 25, one more every 5 minutes) drops
floods. Events of cluster-scoped objects go to the `default` namespace.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict

from kcore.client import errors as E
from kcore.client.flowcontrol import TokenBucket
from kcore.client.resources import EVENTS

log = logging.getLogger(__name__)

NORMAL = "Normal"
WARNING = "Warning"


def _rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def object_reference(obj: dict) -> dict:
    md = obj.get("metadata") or {}
    ref = {"kind": obj.get("kind", ""), "apiVersion": obj.get("apiVersion", ""),
           "name": md.get("name", ""), "uid": md.get("uid", "")}
    if md.get("namespace"):
        ref["namespace"] = md["namespace"]
    if md.get("resourceVersion"):
        ref["resourceVersion"] = md["resourceVersion"]
    return ref


class EventRecorder:
    def __init__(self, client, component: str, host: str = "", *, cache_size: int = 4096,
                 spam_burst: int = 25, spam_qps: float = 1.0 / 300.0, queue_size: int = 1000):
        self.client = client
        self.component, self.host = component, host
        self.cache: OrderedDict[tuple, tuple[str, str, int]] = OrderedDict()
        self.cache_size = cache_size
        self.spam_burst, self.spam_qps = spam_burst, spam_qps
        self._spam: OrderedDict[tuple, TokenBucket] = OrderedDict()
        self._queue: asyncio.Queue | None = None
        self._queue_size = queue_size
        self._task: asyncio.Task | None = None
        self.written = 0
        self.dropped = 0

    # -- API --------------------------------------------------------------------------------
    def event(self, obj: dict, type_: str, reason: str, message: str) -> None:
        """Record an event about obj (non-blocking)."""
        if self._queue is None:
            self._queue = asyncio.Queue(self._queue_size)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._writer())
        ref = object_reference(obj)
        skey = (self.component, self.host, ref.get("kind"), ref.get("namespace"),
                ref.get("name"), ref.get("uid"))
        bucket = self._spam.get(skey)
        if bucket is None:
            bucket = self._spam[skey] = TokenBucket(self.spam_qps, self.spam_burst)
            if len(self._spam) > self.cache_size:
                self._spam.popitem(last=False)
        if not bucket.try_accept():
            self.dropped += 1
            return
        try:
            self._queue.put_nowait((ref, type_, reason, message, time.time()))
        except asyncio.QueueFull:
            self.dropped += 1

    def eventf(self, obj: dict, type_: str, reason: str, fmt: str, *args) -> None:
        self.event(obj, type_, reason, fmt % args if args else fmt)

    async def flush(self, timeout: float = 5.0) -> None:
        """Wait until queued events are written."""
        if self._queue is not None:
            try:
                await asyncio.wait_for(self._queue.join(), timeout)
            except TimeoutError:
                pass

    async def stop(self, timeout: float = 2.0) -> None:
        await self.flush(timeout)
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None

    # -- writer -----------------------------------------------------------------------------
    async def _writer(self) -> None:
        assert self._queue is not None
        while True:
            item = await self._queue.get()
            try:
                await self._write(*item)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - events are best effort
                log.info("event not written: %s", e)
            finally:
                self._queue.task_done()

    async def _write(self, ref: dict, type_: str, reason: str, message: str, ts: float
                     ) -> None:
        ns = ref.get("namespace") or "default"
        key = (ref.get("kind"), ref.get("apiVersion"), ns, ref.get("name"), ref.get("uid"),
               type_, reason, message, self.component, self.host)
        now = _rfc3339(ts)
        hit = self.cache.get(key)
        if hit is not None:
            name, _, count = hit
            try:
                await self.client.patch(EVENTS, name, {"count": count + 1, "lastTimestamp": now},
                                        ns, patch_type="strategic")
                self.cache[key] = (name, now, count + 1)
                self.cache.move_to_end(key)
                self.written += 1
                return
            except E.NotFound:
                self.cache.pop(key, None)
        name = f"{ref.get('name', '')}.{time.time_ns():x}"
        ev = {"apiVersion": "v1", "kind": "Event",
              "metadata": {"name": name, "namespace": ns},
              "involvedObject": ref, "reason": reason, "message": message,
              "source": {"component": self.component, **({"host": self.host}
                                                          if self.host else {})},
              "firstTimestamp": now, "lastTimestamp": now, "count": 1, "type": type_,
              "reportingComponent": self.component, "reportingInstance": self.host}
        try:
            await self.client.create(EVENTS, ev, ns)
        except (E.NotFound, E.Forbidden) as e:
            log.debug("event for %s/%s not written: %s", ns, ref.get("name"), e)
            return
        self.written += 1
        self.cache[key] = (name, now, 1)
        if len(self.cache) > self.cache_size:
            self.cache.popitem(last=False)
