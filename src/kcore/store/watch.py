"""Watchers and the fan-out of changes to them.

A watcher covers one key, a range or everything from a key on, and wants every
change from `next_rev` on. Synced watchers get changes as they are applied;
unsynced ones (started in the past, or too slow to keep up) are fed from the
history on disk until they reach the present, then join the synced set — the
shape of etcd's watchableStore. Delivery goes to a sink (a gRPC stream, or an
in-process consumer such as the API server's watch cache).
"""
from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Protocol

from kcore.store.mvcc import MVCC, Change, events_from_history, key_range, prev_kv_of
from kcore.store.rpc.pb.kv_pb2 import Event

log = logging.getLogger(__name__)

HISTORY_CHUNK = 1000       # events read from disk per catch-up step
PUT, DELETE = Event.PUT, Event.DELETE


class Sink(Protocol):
    def has_room(self) -> bool: ...
    def deliver(self, w: "Watcher", events: list[Event], rev: int) -> None: ...
    def compacted(self, w: "Watcher", compact_rev: int) -> None: ...
    def progress(self, w: "Watcher", rev: int) -> None: ...


@dataclass(eq=False)
class Watcher:
    id: int
    key: bytes
    range_end: bytes
    next_rev: int                  # first revision not yet delivered (kept while unsynced)
    sink: Sink
    prev_kv: bool = False
    no_put: bool = False
    no_delete: bool = False
    progress_notify: bool = False
    end: bytes | None = field(init=False)
    idle: bool = True              # no events since the last progress tick

    def __post_init__(self) -> None:
        self.end = key_range(self.key, self.range_end)

    def matches(self, k: bytes) -> bool:
        end = self.end
        if end is None:
            return k == self.key
        return k >= self.key and (end == b"" or k < end)

    def wants(self, ch: Change) -> bool:
        return not (self.no_put if ch.type == PUT else self.no_delete)


class WatchHub:
    def __init__(self, mvcc: MVCC):
        self.mvcc = mvcc
        self.by_key: dict[bytes, set[Watcher]] = {}
        self.ranged: set[Watcher] = set()
        self._spans: list[tuple[Watcher, bytes, bytes]] | None = None  # of `ranged`
        self.unsynced: set[Watcher] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task | None = None

    # -- registration ---------------------------------------------------------------
    def add(self, w: Watcher) -> None:
        rev = self.mvcc.rev
        if w.next_rev <= 0 or w.next_rev > rev:
            w.next_rev = max(w.next_rev, rev + 1)
            self._sync(w)
            return
        self.unsynced.add(w)
        self._kick()

    def remove(self, w: Watcher) -> None:
        self.unsynced.discard(w)
        if w in self.ranged:
            self.ranged.discard(w)
            self._spans = None
        s = self.by_key.get(w.key)
        if s is not None:
            s.discard(w)
            if not s:
                del self.by_key[w.key]

    def _sync(self, w: Watcher) -> None:
        self.unsynced.discard(w)
        if w.end is None:
            self.by_key.setdefault(w.key, set()).add(w)
        else:
            self.ranged.add(w)
            self._spans = None

    def _unsync(self, w: Watcher) -> None:
        self.remove(w)
        self.unsynced.add(w)
        self._kick()

    @property
    def count(self) -> int:
        return sum(len(s) for s in self.by_key.values()) + len(self.ranged) + len(self.unsynced)

    # -- fan-out of applied changes -------------------------------------------------
    def notify(self, changes: list[Change], rev: int) -> None:
        """Called after a batch of writes is applied (revisions up to `rev`)."""
        if not changes:
            return
        per: dict[Watcher, list[Change]] = {}
        by_key = self.by_key
        spans = self._spans
        if spans is None:       # Watcher.matches, unrolled: (watcher, key, end) each
            spans = self._spans = [(w, w.key, w.end) for w in self.ranged]
        for ch in changes:
            k = ch.kv.key
            ws = by_key.get(k)
            if ws:
                for w in ws:
                    if w.wants(ch):
                        per.setdefault(w, []).append(ch)
            for w, start, end in spans:
                if k >= start and (not end or k < end) and w.wants(ch):
                    per.setdefault(w, []).append(ch)
        if not per:
            return
        txn = None
        try:
            for w, chs in per.items():
                if chs[0].kv.mod_revision < w.next_rev:
                    # created with a start revision this member had not reached yet
                    chs = [c for c in chs if c.kv.mod_revision >= w.next_rev]
                    if not chs:
                        continue
                if not w.sink.has_room():
                    # too slow: feed it from history, starting with this batch
                    w.next_rev = chs[0].kv.mod_revision
                    self._unsync(w)
                    continue
                if w.prev_kv and txn is None:
                    txn = self.mvcc.backend.begin_read()
                if not w.prev_kv and getattr(w.sink, "takes_changes", False):
                    w.sink.deliver_changes(w, chs, rev)
                else:
                    w.sink.deliver(w, self._events(w, chs, txn), rev)
                w.next_rev = rev + 1
                w.idle = False
        finally:
            if txn is not None:
                txn.abort()

    def _events(self, w: Watcher, chs: list[Change], txn) -> list[Event]:
        out = []
        for ch in chs:
            ev = Event(type=ch.type, kv=ch.kv)
            if w.prev_kv:
                prev = prev_kv_of(self.mvcc, txn, ch)
                if prev is not None:
                    ev.prev_kv.CopyFrom(prev)
            out.append(ev)
        return out

    # -- catching up from history ---------------------------------------------------
    def _kick(self) -> None:
        self._wake.set()
        if self._task is None or self._task.done():
            try:
                self._task = asyncio.get_running_loop().create_task(self._catch_up_loop())
            except RuntimeError:
                self._task = None  # no loop (tests driving the hub by hand): call catch_up()

    async def _catch_up_loop(self) -> None:
        while self.unsynced:
            self._wake.clear()
            progressed = self.catch_up()
            if self.unsynced:
                if progressed:
                    await asyncio.sleep(0)
                else:
                    try:
                        await asyncio.wait_for(self._wake.wait(), 0.05)
                    except TimeoutError:
                        pass

    def catch_up(self) -> bool:
        """One step for every unsynced watcher with room; True if any progressed."""
        progressed = False
        mvcc = self.mvcc
        txn = mvcc.backend.begin_read()
        try:
            for w in list(self.unsynced):
                if w.next_rev < mvcc.compact_rev:
                    self.unsynced.discard(w)
                    w.sink.compacted(w, mvcc.compact_rev)
                    progressed = True
                    continue
                if not w.sink.has_room():
                    continue
                hist, nxt = events_from_history(mvcc, txn, w.next_rev, HISTORY_CHUNK)
                chs = [ch for _, ch in hist if w.matches(ch.kv.key) and w.wants(ch)]
                if chs:
                    w.sink.deliver(w, self._events(w, chs, txn), mvcc.rev)
                    w.idle = False
                w.next_rev = nxt
                progressed = True
                if nxt > mvcc.rev:
                    self._sync(w)
        finally:
            txn.abort()
        return progressed

    # -- progress -------------------------------------------------------------------
    def progress_tick(self) -> None:
        """Periodic progress notification for idle synced watchers that asked for it."""
        rev = self.mvcc.rev
        for ws in list(self.by_key.values()) + [self.ranged]:
            for w in list(ws):
                if w.progress_notify and w.idle and w.sink.has_room():
                    w.sink.progress(w, rev)
                w.idle = True

    def restore(self, mvcc: MVCC) -> None:
        """The state was replaced (a snapshot from the leader): every watcher catches
        up from the new history, from where it was."""
        nxt = self.mvcc.rev + 1
        for ws in list(self.by_key.values()) + [self.ranged]:
            for w in list(ws):
                w.next_rev = max(w.next_rev, nxt)
                self.remove(w)
                self.unsynced.add(w)
        self.mvcc = mvcc
        self._kick()

    def is_synced(self, w: Watcher) -> bool:
        return w not in self.unsynced

    def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
