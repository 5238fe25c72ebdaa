"""kcore.store.client against three stores with one scenario: an in-process
EtcdServer (LocalTransport), `kcore etcd` over gRPC, and real etcd over gRPC."""
from __future__ import annotations

import asyncio
import os
import subprocess

import pytest
from store_harness import ETCD, Member, free_port, wait_port

from kcore.store import client as sc
from kcore.store import errors
from kcore.store.config import ServerConfig
from kcore.store.rpc.pb import rpc_pb2 as pb


async def scenario(c: sc.Client) -> None:
    await c.put_kv(b"/s/a", b"1")
    kv, rev = await c.get(b"/s/a")
    assert kv.value == b"1" and kv.version == 1 and rev >= kv.mod_revision
    # create-if-absent and compare-and-swap, as the API server does them
    create = pb.TxnRequest(
        compare=[pb.Compare(key=b"/s/b", target=pb.Compare.MOD, result=pb.Compare.EQUAL,
                            mod_revision=0)],
        success=[pb.RequestOp(request_put=pb.PutRequest(key=b"/s/b", value=b"x"))],
        failure=[pb.RequestOp(request_range=pb.RangeRequest(key=b"/s/b"))])
    r1 = await c.txn(create)
    r2 = await c.txn(create)
    assert r1.succeeded and not r2.succeeded
    assert r2.responses[0].response_range.kvs[0].value == b"x"
    # watch from a revision: history, then live events
    w = c.watch_prefix(b"/s/", start_revision=kv.mod_revision, prev_kv=True)
    it = w.__aiter__()
    got = []
    while len(got) < 2:
        resp = await asyncio.wait_for(it.__anext__(), 5)
        got += [(e.type, e.kv.key) for e in resp.events]
    assert got == [(0, b"/s/a"), (0, b"/s/b")]
    await c.delete(b"/s/a")
    resp = await asyncio.wait_for(it.__anext__(), 5)
    ev = resp.events[0]
    assert ev.type == 1 and ev.kv.key == b"/s/a" and ev.prev_kv.value == b"1"
    await w.cancel()
    # compaction: reads and watches from before it fail with Compacted
    cur = (await c.get_prefix(b"/s/")).header.revision
    await c.compact(cur)
    with pytest.raises(errors.Compacted):
        await c.get(b"/s/a", revision=kv.mod_revision)
    with pytest.raises(errors.Compacted):
        async for _ in c.watch_prefix(b"/s/", start_revision=kv.mod_revision):
            pass
    # leases
    g = await c.lease_grant(30)
    await c.put_kv(b"/s/l", b"v", lease=g.ID)
    ttl = await c.lease_time_to_live(g.ID, keys=True)
    assert ttl.grantedTTL == 30 and list(ttl.keys) == [b"/s/l"]
    assert await c.lease_keep_alive_once(g.ID) == 30
    await c.lease_revoke(g.ID)
    assert (await c.get(b"/s/l"))[0] is None
    with pytest.raises(errors.LeaseNotFound):
        await c.lease_revoke(g.ID)
    with pytest.raises(errors.EmptyKey):
        await c.put_kv(b"", b"v")
    st = await c.status()
    assert st.version.startswith("3.4")


def test_local_transport(tmpdir_path):
    from kcore.store.server import EtcdServer

    async def main():
        srv = EtcdServer(ServerConfig(name="local", data_dir=os.path.join(tmpdir_path, "d")))
        await srv.start()
        try:
            await scenario(sc.local(srv))
        finally:
            await srv.stop()
    asyncio.run(main())


def test_grpc_transport_kcore(member):
    async def main():
        async with sc.connect([member.endpoint]) as c:
            await scenario(c)
    asyncio.run(main())


@pytest.mark.skipif(ETCD is None, reason="etcd-server not installed")
def test_grpc_transport_real_etcd(tmpdir_path):
    port, peer = free_port(), free_port()
    p = subprocess.Popen([ETCD, "--data-dir", os.path.join(tmpdir_path, "etcd"),
                          "--listen-client-urls", f"http://127.0.0.1:{port}",
                          "--advertise-client-urls", f"http://127.0.0.1:{port}",
                          "--listen-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-advertise-peer-urls", f"http://127.0.0.1:{peer}",
                          "--initial-cluster", f"default=http://127.0.0.1:{peer}"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_port(port, p)

        async def main():
            async with sc.connect([f"127.0.0.1:{port}"]) as c:
                for _ in range(50):
                    try:
                        await c.status()
                        break
                    except errors.StoreError:
                        await asyncio.sleep(0.1)
                await scenario(c)
        asyncio.run(main())
    finally:
        p.terminate()
        p.wait(10)


del Member


def test_watch_survives_channel_failover(member):
    """grpc.aio cancels a channel's streams when the client closes it to fail over to
    another endpoint: the watch ends with StreamClosed (not a silent CancelledError),
    and the API server's watch cache resumes from its revision, watchers kept."""
    import orjson

    from kcore.apiserver.storage.store import StoreStorage
    from kcore.apiserver.watchcache import WatchCache

    async def main():
        async with sc.connect([member.endpoint, member.endpoint]) as c:
            await c.put_kv(b"/f/x", b"1")
            w = c.watch_prefix(b"/f/")
            it = w.__aiter__()
            pending = asyncio.ensure_future(it.__anext__())
            await asyncio.sleep(0.3)
            await c.transport._failover()
            with pytest.raises(errors.StreamClosed):
                await asyncio.wait_for(pending, 5)

            cache = WatchCache(StoreStorage(c), b"/g/",
                               lambda raw, rev: {"metadata": {"name": orjson.loads(raw)["n"]}})
            cache.start()
            await asyncio.wait_for(cache.ready.wait(), 5)
            watcher, _ = cache.watch(cache.rev, None, None, initial=False)
            await c.put_kv(b"/g/a", orjson.dumps({"n": "a"}))
            assert [e.entry.name for e in await asyncio.wait_for(watcher.next_batch(1), 5)] \
                == ["a"]
            await c.transport._failover()          # the cache's watch stream is cancelled
            r = await c.put_kv(b"/g/b", orjson.dumps({"n": "b"}))
            assert await cache.wait_for(r.header.revision, 5.0)
            assert [e.entry.name for e in await asyncio.wait_for(watcher.next_batch(1), 5)] \
                == ["b"]                           # the same watcher: no relist
            watcher.close()
            await cache.stop()
    asyncio.run(main())
