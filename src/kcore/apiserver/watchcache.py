"""A watch cache per resource: lists and watches served from memory.

One store watch per resource prefix feeds an in-memory map of the current
objects and a bounded history of events. Lists read the map at the cache's
revision; watches replay history after the asked revision and then receive
events as they are applied. A revision older than the history's start answers
410 Gone (kube's "too old resource version"); a compacted or broken store
watch makes the cache relist and end its watchers, whose clients relist.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import Callable

import orjson

from kcore.apiserver.storage import Storage, StorageCompacted
from kcore.apiserver.stored import decode_value, json_at

log = logging.getLogger(__name__)


class Entry:
    """One object at one revision. `obj` is shared: never mutate it. `raw`, when
    given, is the stored value `obj` was decoded from (`stored.decode_value`): its
    JSON is then spliced from those bytes instead of encoding `obj` again."""

    __slots__ = ("_json", "_raw", "key", "name", "ns", "obj", "rev")

    def __init__(self, key: bytes, obj: dict, rev: int, raw: bytes | None = None):
        self.key, self.obj, self.rev = key, obj, rev
        md = obj.get("metadata") or {}
        self.ns = md.get("namespace", "")
        self.name = md.get("name", "")
        self._json: bytes | None = None
        self._raw = raw

    @property
    def labels(self) -> dict:
        return (self.obj.get("metadata") or {}).get("labels") or {}

    def json(self) -> bytes:
        j = self._json
        if j is None:
            raw = self._raw
            if raw is not None:
                self._raw = None
                j = json_at(raw, self.rev)
            if j is None:
                j = orjson.dumps(self.obj)
            self._json = j
        return j


_EVENT_HEAD = {t: b'{"type":"' + t.encode() + b'","object":'
               for t in ("ADDED", "MODIFIED", "DELETED")}
_EVENT_TAIL = b"}\n"


class Event:
    __slots__ = ("entry", "prev", "rev", "type")

    def __init__(self, type_: str, entry: Entry, prev: Entry | None, rev: int):
        self.type, self.entry, self.prev, self.rev = type_, entry, prev, rev

    def parts(self, out: list) -> None:
        """Append the newline-terminated JSON watch event, in pieces, to `out`: a
        stream joins a batch's pieces once (the object's JSON is cached on its entry;
        a joined line per event, kept in the history, would be a second copy of it)."""
        out.append(_EVENT_HEAD[self.type])
        out.append(self.entry.json())
        out.append(_EVENT_TAIL)

    def line(self) -> bytes:
        """The newline-terminated JSON watch event."""
        out: list = []
        self.parts(out)
        return b"".join(out)


class TooOld(Exception):
    def __init__(self, asked: int, oldest: int):
        super().__init__(f"too old resource version: {asked} ({oldest})")
        self.asked, self.oldest = asked, oldest


class Watcher:
    """A cache watcher: a filter and a bounded queue of events for one client."""

    MAX_BACKLOG = 20000

    def __init__(self, cache: WatchCache, ns: str | None, pred: Callable | None):
        self.cache, self.ns, self.pred = cache, ns, pred
        self.items: collections.deque = collections.deque()
        self._waiter: asyncio.Future | None = None   # next_batch waiting for events
        self.closed = False
        self.overflow = False

    def offer(self, ev: Event) -> None:
        if self.closed:
            return
        if self.ns is not None and ev.entry.ns != self.ns:
            return
        pred = self.pred
        if pred is None:
            self._put(ev)
            return
        cur = pred(ev.entry.obj) if ev.type != "DELETED" else False
        old = pred(ev.prev.obj) if ev.prev is not None else False
        if ev.type == "DELETED":
            if pred(ev.entry.obj):
                self._put(ev)
        elif cur and old:
            self._put(ev)
        elif cur:
            self._put(Event("ADDED", ev.entry, None, ev.rev))
        elif old:
            self._put(Event("DELETED", ev.entry, ev.prev, ev.rev))

    def _put(self, ev: Event) -> None:
        if len(self.items) >= self.MAX_BACKLOG:
            self.overflow = True
            self.close()
            return
        self.items.append(ev)
        self._wake()

    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    async def next_batch(self, timeout: float | None) -> list[Event] | None:
        """Events ready now (waiting up to timeout); [] on timeout, None when closed.
        The wait is a bare future and a timer (a wait_for would add a Task per batch)."""
        if not self.items:
            if self.closed:
                return None
            loop = asyncio.get_running_loop()
            self._waiter = fut = loop.create_future()
            timer = None if timeout is None else loop.call_later(
                max(timeout, 0.0), _resolve, fut)
            try:
                await fut
            finally:
                self._waiter = None
                if timer is not None:
                    timer.cancel()
            if not self.items:
                return None if self.closed else []
        out = list(self.items)
        self.items.clear()
        return out

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.cache.watchers.discard(self)
            self._wake()


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class WatchCache:
    def __init__(self, storage: Storage, prefix: bytes,
                 decode: Callable[[bytes, int], dict] = decode_value,
                 capacity: int = 100_000, name: str = ""):
        self.storage, self.prefix, self.decode = storage, prefix, decode
        self._splice = decode is decode_value   # entries keep their value for json()
        self.name = name or prefix.decode()
        self.capacity = capacity
        self.objects: dict[bytes, Entry] = {}
        self.history: collections.deque[Event] = collections.deque()
        self.rev = 0
        self.oldest = 0
        self.watchers: set[Watcher] = set()
        self.ready = asyncio.Event()
        self._waiters: list[tuple[int, asyncio.Future]] = []
        self._sorted: list[bytes] | None = None
        self._task: asyncio.Task | None = None
        self.listeners: list[Callable[[Event], None]] = []
        # key -> (value, object) a writer in this process put and will not mutate: the
        # write's event adopts the object instead of decoding the value again
        self._adopt: dict[bytes, tuple[bytes, dict]] = {}

    # -- objects written here ---------------------------------------------------------
    def adopt(self, key: bytes, value: bytes, obj: dict) -> None:
        """`obj` is what the write of `value` to `key` (about to be sent) stores; the
        caller does not change it afterwards (it is shared from then on, as `Entry.obj`
        is). When that write's event arrives with exactly these bytes the cache takes
        `obj`, setting its resourceVersion, instead of decoding the value."""
        self._adopt[key] = (value, obj)

    def withdraw(self, key: bytes, value: bytes | None) -> None:
        """The write of `value` failed or its outcome is unknown: decode it if it comes
        (a no-op for a value never adopted, or None: a delete)."""
        held = self._adopt.get(key)
        if held is not None and held[0] is value:
            del self._adopt[key]

    # -- feeding ----------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"cache:{self.name}")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        for w in list(self.watchers):
            w.close()

    async def _run(self) -> None:
        """List once, then watch from the cache's revision on. A watch that breaks
        (endpoint failover, store restart) is resumed from where the cache is, so
        its watchers keep going; only a compacted revision, or a store that went
        back in time (restored from a backup), makes the cache list again."""
        backoff = 0.1
        relist = True
        while True:
            try:
                if relist:
                    await self._relist()
                    relist = False
                elif await self.storage.revision() < self.rev:
                    log.warning("cache %s: the store is behind the cache (restored?); "
                                "relisting", self.name)
                    await self._relist()
                backoff = 0.1
                async for events in self.storage.watch(self.prefix, self.rev + 1):
                    self.apply(events)
                log.info("cache %s: store watch ended; resuming at %d", self.name, self.rev + 1)
            except asyncio.CancelledError:
                raise
            except StorageCompacted:
                log.info("cache %s: watch compacted; relisting", self.name)
                relist = True
            except Exception as e:  # noqa: BLE001 - store unavailable, keep trying
                log.warning("cache %s: %s; resuming in %.1fs", self.name, e, backoff)
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 5.0)

    async def _relist(self) -> None:
        objects: dict[bytes, Entry] = {}
        start = None
        rev = 0
        while True:
            kvs, hrev, more = await self.storage.list(self.prefix, revision=rev, start=start,
                                                      limit=10000)
            rev = rev or hrev
            for kv in kvs:
                try:
                    objects[kv.key] = Entry(kv.key, self.decode(kv.value, kv.mod_revision),
                                            kv.mod_revision,
                                            kv.value if self._splice else None)
                except Exception as e:  # noqa: BLE001 - undecodable value: skip, say so
                    log.warning("cache %s: cannot decode %r: %s", self.name, kv.key, e)
            if not more or not kvs:
                break
            start = kvs[-1].key + b"\0"
        had = bool(self.ready.is_set())
        self._adopt.clear()         # writes before the list are in it, decoded
        self.objects = objects
        self._sorted = None
        self.history.clear()
        self.rev = rev
        self.oldest = rev
        if had:
            for w in list(self.watchers):
                w.close()
        self.ready.set()
        self._wake_waiters()

    def apply(self, events) -> None:
        for e in events:
            prev = self.objects.get(e.key)
            if e.type == "PUT":
                held = self._adopt.pop(e.key, None) if self._adopt else None
                if held is not None and held[0] == e.value:
                    obj = held[1]
                    obj["metadata"]["resourceVersion"] = str(e.mod_revision)
                else:
                    try:
                        obj = self.decode(e.value, e.mod_revision)
                    except Exception as ex:  # noqa: BLE001
                        log.warning("cache %s: cannot decode %r: %s", self.name, e.key, ex)
                        continue
                ent = Entry(e.key, obj, e.mod_revision, e.value if self._splice else None)
                if prev is None:
                    self._sorted = None
                self.objects[e.key] = ent
                ev = Event("ADDED" if prev is None else "MODIFIED", ent, prev, e.mod_revision)
            else:
                if prev is None:
                    continue
                del self.objects[e.key]
                self._sorted = None
                gone = self._deleted_entry(prev, e.mod_revision)
                ev = Event("DELETED", gone, prev, e.mod_revision)
            self.rev = e.mod_revision
            self.history.append(ev)
            if len(self.history) > self.capacity:
                self.oldest = self.history.popleft().rev
            for w in list(self.watchers):
                w.offer(ev)
            for fn in self.listeners:
                fn(ev)
        self._wake_waiters()

    def _deleted_entry(self, prev: Entry, rev: int) -> Entry:
        obj = dict(prev.obj)
        md = dict(obj.get("metadata") or {})
        md["resourceVersion"] = str(rev)
        obj["metadata"] = md
        return Entry(prev.key, obj, rev)

    def _wake_waiters(self) -> None:
        if not self._waiters:
            return
        keep = []
        for rev, fut in self._waiters:
            if self.rev >= rev:
                if not fut.done():
                    fut.set_result(None)
            else:
                keep.append((rev, fut))
        self._waiters = keep

    async def wait_for(self, rev: int, timeout: float = 3.0) -> bool:
        """Wait until the cache has applied rev; False on timeout."""
        if not self.ready.is_set():
            try:
                await asyncio.wait_for(self.ready.wait(), timeout)
            except TimeoutError:
                return False
        if self.rev >= rev:
            return True
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((rev, fut))
        try:
            await asyncio.wait_for(fut, timeout)
            return True
        except TimeoutError:
            return False

    # -- reading ----------------------------------------------------------------------
    def get(self, key: bytes) -> Entry | None:
        return self.objects.get(key)

    def sorted_keys(self) -> list[bytes]:
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def list(self, key_prefix: bytes | None = None, start: bytes | None = None) -> list[Entry]:
        """Entries in key order, optionally under a key prefix and from start."""
        import bisect
        keys = self.sorted_keys()
        lo = 0
        if key_prefix:
            lo = bisect.bisect_left(keys, key_prefix)
        if start and start > (keys[lo] if lo < len(keys) else b""):
            lo = bisect.bisect_left(keys, start)
        out = []
        objs = self.objects
        for i in range(lo, len(keys)):
            k = keys[i]
            if key_prefix and not k.startswith(key_prefix):
                break
            out.append(objs[k])
        return out

    def watch(self, from_rev: int | None, ns: str | None, pred: Callable | None,
              initial: bool) -> tuple[Watcher, list[Event]]:
        """Register a watcher. With `initial` the current objects come first as ADDED;
        else history after from_rev is replayed. Raises TooOld."""
        w = Watcher(self, ns, pred)
        backlog: list[Event] = []
        if initial:
            for ent in self.list():
                if (ns is None or ent.ns == ns) and (pred is None or pred(ent.obj)):
                    backlog.append(Event("ADDED", ent, None, ent.rev))
        else:
            rv = from_rev or 0
            if rv < self.oldest:
                raise TooOld(rv, self.oldest)
            if self.history and rv < self.history[-1].rev:
                for ev in self.history:
                    if ev.rev > rv:
                        tmp = Watcher(self, ns, pred)
                        tmp.offer(ev)
                        backlog.extend(tmp.items)
        self.watchers.add(w)
        return w, backlog
