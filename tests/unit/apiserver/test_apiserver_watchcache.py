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


def test_adopted_objects():
    """A write's own object is taken on its event when the bytes match; a different
    value, a withdrawn write or a relist decode the stored bytes instead."""
    async def main():
        st = FakeStorage()
        c = WatchCache(st, b"/registry/pods/", decode_value)
        c.start()
        await c.ready.wait()
        key = b"/registry/pods/ns/a"
        obj = {"metadata": {"name": "a", "namespace": "ns", "labels": {}}}
        c.adopt(key, orjson.dumps(obj), obj)
        st.put("a")                                  # the same bytes
        assert await c.wait_for(1)
        assert c.get(key).obj is obj and obj["metadata"]["resourceVersion"] == "1"
        other = {"metadata": {"name": "a", "namespace": "ns", "labels": {"x": "1"}}}
        c.adopt(key, orjson.dumps({"metadata": {"name": "a"}}), other)
        st.put("a", {"x": "1"})                      # someone else's bytes won the race
        assert await c.wait_for(2)
        got = c.get(key).obj
        assert got is not other and got["metadata"]["labels"] == {"x": "1"}
        assert not c._adopt
        value = orjson.dumps({"metadata": {"name": "a", "namespace": "ns",
                                           "labels": {"y": "2"}}})
        mine = orjson.loads(value)
        c.adopt(key, value, mine)
        c.withdraw(key, value)                      # failed or unknown: decode if it comes
        st.put("a", {"y": "2"})
        assert await c.wait_for(3)
        assert c.get(key).obj is not mine and c.get(key).obj["metadata"]["resourceVersion"] == "3"
        c.adopt(key, b"never-written", {})
        await c._relist()
        assert not c._adopt
        await c.stop()
    asyncio.run(main())
