"""Informers: list + watch one resource into an indexed cache and tell handlers.

The reflector lists (paged), then watches from the list's resourceVersion
with bookmarks; a watch that ends (server timeout) is resumed from the last
resourceVersion seen; a 410 Gone relists; a broken connection is retried
with exponential backoff (0.8 s doubling to 30 s, jittered), resuming the
watch when the server is back. A relist diffs the new list against the cache
and delivers adds, updates and deletes for what changed meanwhile.

A `SharedInformer` owns one reflector and one `Indexer` and fans events out
to any number of handlers, in order, on the event loop: no threads. Handlers
are plain callables (or coroutine functions, awaited in turn) and should be
quick — the usual handler only puts a key on a workqueue. Resync re-delivers
every cached object as an update (old is new) every `resync_period`.

`SharedInformerFactory` hands out one informer per (resource, namespace,
selectors), so every controller in a process shares one list+watch:

    factory = SharedInformerFactory(client)
    pods = factory.informer(PODS)                       # indexed by namespace, node, owner
    pods.add_event_handler(on_add=..., on_update=..., on_delete=...)
    factory.start()
    await factory.wait_for_cache_sync()
    pods.store.by_index("node", "node-1")
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kcore.client import errors as E
from kcore.client.resources import PODS, Resource
from kcore.client.store import (
    CONTROLLER_UID_INDEX,
    NODE_NAME_INDEX,
    OWNER_UID_INDEX,
    STANDARD_INDEXERS,
    Indexer,
    IndexFunc,
)

log = logging.getLogger(__name__)


@dataclass
class _Handler:
    on_add: Callable | None
    on_update: Callable | None
    on_delete: Callable | None
    resync_period: float = 0.0
    next_resync: float = 0.0


@dataclass
class ReflectorStats:
    lists: int = 0
    watches: int = 0
    relists_on_gone: int = 0
    errors: int = 0
    events: int = 0
    last_error: str = ""
    extra: dict = field(default_factory=dict)


class SharedInformer:
    def __init__(self, client, res: Resource, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "",
                 resync_period: float = 0.0, indexers: dict[str, IndexFunc] | None = None,
                 page_size: int = 500, watch_timeout: tuple[int, int] = (300, 600),
                 min_backoff: float = 0.8, max_backoff: float = 30.0):
        self.client, self.res = client, res
        self.namespace = namespace
        self.label_selector, self.field_selector = label_selector, field_selector
        self.resync_period = resync_period
        self.store = Indexer(indexers)
        self.handlers: list[_Handler] = []
        self.page_size = page_size
        self.watch_timeout = watch_timeout
        self.min_backoff, self.max_backoff = min_backoff, max_backoff
        self.last_sync_resource_version = ""
        self.stats = ReflectorStats()
        self._synced = asyncio.Event()
        self._task: asyncio.Task | None = None
        self._resync_task: asyncio.Task | None = None
        self._stopped = False

    # -- configuration --------------------------------------------------------------------
    def add_indexers(self, indexers: dict[str, IndexFunc]) -> None:
        self.store.add_indexers(indexers)

    def add_event_handler(self, on_add: Callable | None = None,
                          on_update: Callable | None = None,
                          on_delete: Callable | None = None,
                          resync_period: float | None = None) -> _Handler:
        """Register handlers; a handler added after the cache synced first gets an add
        for every cached object (as in client-go)."""
        period = self.resync_period if resync_period is None else resync_period
        h = _Handler(on_add, on_update, on_delete, period,
                     time.monotonic() + period if period else 0.0)
        self.handlers.append(h)
        if self._synced.is_set() and on_add is not None:
            for obj in list(self.store.items.values()):
                self._call_soon(on_add, obj)
        if period and self._task is not None and self._resync_task is None:
            self._resync_task = asyncio.get_running_loop().create_task(self._resync_loop())
        return h

    def remove_event_handler(self, h: _Handler) -> None:
        if h in self.handlers:
            self.handlers.remove(h)

    # -- lifecycle ------------------------------------------------------------------------
    def has_synced(self) -> bool:
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._synced.wait(), timeout)
            return True
        except TimeoutError:
            return False

    def start(self) -> None:
        if self._task is not None:
            return
        loop = asyncio.get_running_loop()
        self._task = loop.create_task(self._run(), name=f"reflector {self.res}")
        if any(h.resync_period for h in self.handlers) or self.resync_period:
            self._resync_task = loop.create_task(self._resync_loop())

    async def stop(self) -> None:
        self._stopped = True
        for t in (self._task, self._resync_task):
            if t is not None:
                t.cancel()
        for t in (self._task, self._resync_task):
            if t is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await t
        self._task = self._resync_task = None

    # -- delivery -------------------------------------------------------------------------
    def _call_soon(self, fn: Callable, *args) -> None:
        try:
            r = fn(*args)
            if asyncio.iscoroutine(r):
                asyncio.get_running_loop().create_task(r)
        except Exception:
            log.exception("%s handler failed", self.res)

    async def _deliver(self, kind: str, *args) -> None:
        for h in list(self.handlers):
            fn = h.on_add if kind == "add" else h.on_update if kind == "update" else h.on_delete
            if fn is None:
                continue
            try:
                r = fn(*args)
                if asyncio.iscoroutine(r):
                    await r
            except Exception:
                log.exception("%s %s handler failed", self.res, kind)

    async def _resync_loop(self) -> None:
        while not self._stopped:
            periods = [h.resync_period for h in self.handlers if h.resync_period]
            await asyncio.sleep(min(periods) if periods else 1.0)
            if not self._synced.is_set():
                continue
            now = time.monotonic()
            for h in list(self.handlers):
                if not h.resync_period or now < h.next_resync or h.on_update is None:
                    continue
                h.next_resync = now + h.resync_period
                for obj in list(self.store.items.values()):
                    try:
                        r = h.on_update(obj, obj)
                        if asyncio.iscoroutine(r):
                            await r
                    except Exception:
                        log.exception("%s resync handler failed", self.res)

    # -- the reflector --------------------------------------------------------------------
    async def _list(self) -> str:
        items, rv = await self.client.list_all(
            self.res, self.namespace, label_selector=self.label_selector,
            field_selector=self.field_selector, page_size=self.page_size)
        self.stats.lists += 1
        kind = self.res.kind
        av = self.res.api_version
        old = self.store.items
        new_keys = set()
        events = []
        for obj in items:
            obj.setdefault("kind", kind)
            obj.setdefault("apiVersion", av)
            key = self.store.key_func(obj)
            new_keys.add(key)
            prev = old.get(key)
            if prev is None:
                events.append(("add", obj))
            elif (prev.get("metadata") or {}).get("resourceVersion") != \
                    (obj.get("metadata") or {}).get("resourceVersion"):
                events.append(("update", prev, obj))
        gone = [o for k, o in old.items() if k not in new_keys]
        self.store.replace(items)
        for o in gone:
            await self._deliver("delete", o)
        for ev in events:
            await self._deliver(*ev)
        self.last_sync_resource_version = rv
        self._synced.set()
        return rv

    async def _watch(self, rv: str) -> str:
        """Watch from rv until the server ends the stream; returns the last rv."""
        self.stats.watches += 1
        lo, hi = self.watch_timeout
        async for ev in self.client.watch(
                self.res, self.namespace, resource_version=rv,
                label_selector=self.label_selector, field_selector=self.field_selector,
                timeout_seconds=random.randint(lo, hi), allow_bookmarks=True):
            obj = ev.object
            new_rv = (obj.get("metadata") or {}).get("resourceVersion") or rv
            if ev.type == "BOOKMARK":
                rv = new_rv
                self.last_sync_resource_version = rv
                continue
            self.stats.events += 1
            if ev.type in ("ADDED", "MODIFIED"):
                prev = self.store.add(obj)
                if prev is None:
                    await self._deliver("add", obj)
                else:
                    await self._deliver("update", prev, obj)
            elif ev.type == "DELETED":
                self.store.delete(obj)
                await self._deliver("delete", obj)
            rv = new_rv
            self.last_sync_resource_version = rv
        return rv

    async def _run(self) -> None:
        backoff = self.min_backoff
        rv = ""
        while not self._stopped:
            try:
                if not rv:
                    rv = await self._list()
                    backoff = self.min_backoff
                rv = await self._watch(rv)
                backoff = self.min_backoff
            except asyncio.CancelledError:
                raise
            except E.Gone as e:
                self.stats.relists_on_gone += 1
                log.info("%s: watch expired (%s); listing again", self.res, e.message)
                rv = ""
            except E.ApiError as e:
                self.stats.errors += 1
                self.stats.last_error = str(e)
                log.warning("%s: list/watch failed: %s (retrying in %.1fs)", self.res, e,
                            backoff)
                await asyncio.sleep(backoff * (1 + random.random() * 0.5))
                backoff = min(backoff * 2, self.max_backoff)
                if not isinstance(e, E.TransportError):
                    rv = ""     # the server answered but refused the watch: list anew
            except Exception as e:
                self.stats.errors += 1
                self.stats.last_error = repr(e)
                log.exception("%s: reflector error", self.res)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                rv = ""


class SharedInformerFactory:
    """One informer per (resource, namespace, label selector, field selector)."""

    def __init__(self, client, resync_period: float = 0.0, namespace: str | None = None,
                 **informer_options):
        self.client = client
        self.resync_period = resync_period
        self.namespace = namespace
        self.options = informer_options
        self.informers: dict[tuple, SharedInformer] = {}
        self._started = False

    def informer(self, res: Resource, *, namespace: str | None = None,
                 label_selector: str = "", field_selector: str = "",
                 indexers: dict[str, IndexFunc] | None = None,
                 resync_period: float | None = None) -> SharedInformer:
        ns = namespace if namespace is not None else self.namespace
        key = (res.group, res.version, res.plural, ns, label_selector, field_selector)
        inf = self.informers.get(key)
        if inf is None:
            std = {OWNER_UID_INDEX: STANDARD_INDEXERS[OWNER_UID_INDEX],
                   CONTROLLER_UID_INDEX: STANDARD_INDEXERS[CONTROLLER_UID_INDEX]}
            if res == PODS:
                std[NODE_NAME_INDEX] = STANDARD_INDEXERS[NODE_NAME_INDEX]
            inf = SharedInformer(self.client, res, namespace=ns,
                                 label_selector=label_selector, field_selector=field_selector,
                                 resync_period=self.resync_period if resync_period is None
                                 else resync_period, indexers=std, **self.options)
            self.informers[key] = inf
            if self._started:
                inf.start()
        if indexers:
            inf.add_indexers(indexers)
        return inf

    def start(self) -> None:
        """Start every informer not yet running (call again after adding more)."""
        self._started = True
        for inf in self.informers.values():
            inf.start()

    async def wait_for_cache_sync(self, timeout: float | None = None) -> bool:
        infs = list(self.informers.values())
        if not infs:
            return True
        try:
            await asyncio.wait_for(asyncio.gather(*(i._synced.wait() for i in infs)), timeout)
            return True
        except TimeoutError:
            return False

    async def shutdown(self) -> None:
        await asyncio.gather(*(i.stop() for i in self.informers.values()),
                             return_exceptions=True)
        self._started = False


async def wait_for_cache_sync(*informers: SharedInformer, timeout: float | None = None
                              ) -> bool:
    try:
        await asyncio.wait_for(asyncio.gather(*(i._synced.wait() for i in informers)),
                               timeout)
        return True
    except TimeoutError:
        return False
