"""Informers: the reflector's list/watch/relist cycle against a scripted client (410,
dropped connections, resync), and against a real API server (events, indexes)."""
from __future__ import annotations

import asyncio

from kcore.client import (
    NODES,
    PODS,
    Client,
    Gone,
    SharedInformer,
    SharedInformerFactory,
    TransportError,
    WatchEvent,
)
from kcore.client.store import Indexer, index_by_node_name, split_key


def run(coro, timeout: float = 30):
    return asyncio.run(asyncio.wait_for(coro, timeout))


def pod(name: str, rv: int, node: str = "", ns: str = "default", labels=None) -> dict:
    return {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "resourceVersion": str(rv),
                         "uid": f"uid-{name}", "labels": labels or {}},
            "spec": {"nodeName": node} if node else {}}


class ScriptedClient:
    """Plays lists and watch streams in order; each watch script ends with an
    exception to raise or None (the server closed the stream)."""

    def __init__(self, lists, watches):
        self.lists, self.watches = list(lists), list(watches)
        self.watch_rvs: list[str] = []
        self.done = asyncio.Event()

    async def list_all(self, res, ns=None, **kw):
        items, rv = self.lists.pop(0)
        return [dict(i) for i in items], rv

    async def watch(self, res, ns=None, *, resource_version="", **kw):
        self.watch_rvs.append(resource_version)
        if not self.watches:
            self.done.set()
            await asyncio.Event().wait()
        events, end = self.watches.pop(0)
        for e in events:
            yield e
        if end is not None:
            raise end


def recorder(inf: SharedInformer) -> list:
    log: list = []
    inf.add_event_handler(
        on_add=lambda o: log.append(("add", o["metadata"]["name"])),
        on_update=lambda a, b: log.append(("update", b["metadata"]["name"],
                                           b["metadata"]["resourceVersion"])),
        on_delete=lambda o: log.append(("delete", o["metadata"]["name"])))
    return log


def test_indexer_indexes_follow_updates():
    ix = Indexer({"node": index_by_node_name})
    ix.add(pod("a", 1, "n1"))
    ix.add(pod("b", 2, "n1"))
    ix.add(pod("c", 3, "n2", ns="other"))
    assert sorted(o["metadata"]["name"] for o in ix.by_index("node", "n1")) == ["a", "b"]
    ix.update(pod("a", 4, "n2"))
    assert [o["metadata"]["name"] for o in ix.by_index("node", "n1")] == ["b"]
    assert len(ix.by_index("node", "n2")) == 2
    assert [o["metadata"]["name"] for o in ix.list("other")] == ["c"]
    ix.delete(pod("c", 5, ns="other"))
    assert ix.by_index("namespace", "other") == [] and "other/c" not in ix
    assert ix.get("default", "a")["metadata"]["resourceVersion"] == "4"
    ix.add_indexers({"label": lambda o: list((o["metadata"].get("labels") or {}).values())})
    ix.add(pod("d", 6, labels={"app": "web"}))
    assert [o["metadata"]["name"] for o in ix.by_index("label", "web")] == ["d"]
    assert split_key("ns/x") == ("ns", "x") and split_key("node1") == ("", "node1")


def test_watch_resumes_from_last_rv_and_relists_on_gone():
    async def main():
        c = ScriptedClient(
            lists=[([pod("a", 1), pod("b", 2)], "2"),
                   ([pod("a", 5), pod("c", 6)], "6")],     # after 410: b gone, a changed
            watches=[([WatchEvent("ADDED", pod("x", 3)),
                       WatchEvent("BOOKMARK", {"metadata": {"resourceVersion": "4"}})], None),
                     ([WatchEvent("DELETED", pod("x", 4))], TransportError("reset")),
                     ([], Gone("too old resource version"))])
        inf = SharedInformer(c, PODS, min_backoff=0.01)
        log = recorder(inf)
        inf.start()
        await asyncio.wait_for(c.done.wait(), 5)
        assert c.watch_rvs == ["2", "4", "4", "6"]   # resumes after the bookmark and reset
        assert log == [("add", "a"), ("add", "b"), ("add", "x"), ("delete", "x"),
                       ("delete", "b"), ("update", "a", "5"), ("add", "c")]
        assert sorted(inf.store.list_keys()) == ["default/a", "default/c"]
        assert inf.stats.relists_on_gone == 1 and inf.stats.lists == 2
        assert inf.last_sync_resource_version == "6"
        await inf.stop()
    run(main())


def test_resync_redelivers_cached_objects_as_updates():
    async def main():
        c = ScriptedClient(lists=[([pod("a", 1)], "1")], watches=[])
        inf = SharedInformer(c, PODS)
        seen = []
        inf.add_event_handler(on_update=lambda a, b: seen.append(a is b), resync_period=0.05)
        inf.start()
        await asyncio.sleep(0.3)
        assert len(seen) >= 2 and all(seen)
        late = []
        inf.add_event_handler(on_add=lambda o: late.append(o["metadata"]["name"]))
        assert late == ["a"]          # a late handler is told about the cache
        await inf.stop()
    run(main())


def test_a_failing_handler_does_not_stop_others():
    async def main():
        c = ScriptedClient(lists=[([pod("a", 1)], "1")], watches=[])
        inf = SharedInformer(c, PODS)
        got = []

        def bad(o):
            raise RuntimeError("boom")

        async def good(o):
            got.append(o["metadata"]["name"])
        inf.add_event_handler(on_add=bad)
        inf.add_event_handler(on_add=good)
        inf.start()
        assert await inf.wait_for_sync(2)
        await asyncio.sleep(0.05)
        assert got == ["a"]
        await inf.stop()
    run(main())


def test_shared_factory_against_a_real_server(apiserver):
    async def main():
        async with Client(apiserver.url) as c:
            f = SharedInformerFactory(c)
            pods = f.informer(PODS, namespace="default")
            assert f.informer(PODS, namespace="default") is pods       # shared
            nodes = f.informer(NODES)
            log = recorder(pods)
            f.start()
            assert await f.wait_for_cache_sync(10)
            await c.create(NODES, {"metadata": {"name": "inf-node"}})
            await c.create(PODS, {"metadata": {"name": "inf-p", "labels": {"a": "1"}},
                                  "spec": {"containers": [{"name": "c", "image": "i"}]}},
                           "default")
            await c.bind("default", "inf-p", "inf-node")
            for _ in range(100):
                if pods.store.by_index("node", "inf-node") and nodes.store.get("", "inf-node"):
                    break
                await asyncio.sleep(0.02)
            assert [p["metadata"]["name"] for p in pods.store.by_index("node", "inf-node")] \
                == ["inf-p"]
            await c.delete(PODS, "inf-p", "default", grace_period_seconds=0)
            for _ in range(100):
                if ("delete", "inf-p") in log:
                    break
                await asyncio.sleep(0.02)
            assert [e[0] for e in log if e[1] == "inf-p"] == ["add", "update", "delete"]
            assert pods.store.by_index("node", "inf-node") == []
            await f.shutdown()
    run(main())
