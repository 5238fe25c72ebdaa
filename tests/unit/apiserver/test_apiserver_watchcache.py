"""The watch cache against an in-memory Storage: lists, replay, 410, selectors."""
from __future__ import annotations

import asyncio

import orjson
import pytest

from kcore.apiserver.registry import decode_value
from kcore.apiserver.storage import KV, WatchEvent
from kcore.apiserver.watchcache import TooOld, WatchCache


class FakeStorage:
    def __init__(self):
        self.kvs: dict[bytes, KV] = {}
        self.rev = 0
        self.queue: asyncio.Queue = asyncio.Queue()

    async def list(self, prefix, revision=0, start=None, limit=0):
        kvs = sorted((kv for k, kv in self.kvs.items() if k.startswith(prefix)),
                     key=lambda kv: kv.key)
        return kvs, self.rev, False

    async def watch(self, prefix, start_revision):
        while True:
            yield await self.queue.get()

    def put(self, name: str, labels: dict | None = None):
        self.rev += 1
        key = b"/registry/pods/ns/" + name.encode()
        val = orjson.dumps({"metadata": {"name": name, "namespace": "ns",
                                         "labels": labels or {}}})
        self.kvs[key] = KV(key, val, self.rev)
        self.queue.put_nowait([WatchEvent("PUT", key, val, self.rev)])

    def delete(self, name: str):
        self.rev += 1
        key = b"/registry/pods/ns/" + name.encode()
        self.kvs.pop(key)
        self.queue.put_nowait([WatchEvent("DELETE", key, b"", self.rev)])


def test_cache_list_watch_and_gone():
    async def main():
        st = FakeStorage()
        st.put("a")
        c = WatchCache(st, b"/registry/pods/", decode_value, capacity=3)
        c.start()
        await c.ready.wait()
        assert [e.name for e in c.list()] == ["a"] and c.rev == 1
        w, backlog = c.watch(c.rev, None, None, initial=False)
        assert backlog == []
        st.put("b", {"x": "1"})
        st.put("a", {"x": "1"})
        st.delete("b")
        assert await c.wait_for(4)
        batch = await w.next_batch(1)
        assert [(e.type, e.entry.name, e.rev) for e in batch] == [
            ("ADDED", "b", 2), ("MODIFIED", "a", 3), ("DELETED", "b", 4)]
        assert batch[2].entry.obj["metadata"]["resourceVersion"] == "4"
        # replay from a revision still in history, filtered by a selector
        pred = lambda o: o["metadata"]["labels"].get("x") == "1"
        w2, backlog = c.watch(1, None, pred, initial=False)
        assert [(e.type, e.entry.name) for e in backlog] == [("ADDED", "b"), ("ADDED", "a"),
                                                              ("DELETED", "b")]
        # label change out of the selector becomes DELETED for that watcher
        st.put("a", {"x": "2"})
        await c.wait_for(5)
        assert [(e.type, e.entry.name) for e in await w2.next_batch(1)] == [("DELETED", "a")]
        # capacity 3: revision 1 is gone from history now
        with pytest.raises(TooOld):
            c.watch(1, None, None, initial=False)
        w3, initial = c.watch(None, "ns", None, initial=True)
        assert [(e.type, e.entry.name) for e in initial] == [("ADDED", "a")]
        for x in (w, w2, w3):
            x.close()
        await c.stop()
    asyncio.run(main())
