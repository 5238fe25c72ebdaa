"""An in-process EtcdServer: snapshots and WAL release, restart, quota alarm,
lease expiry with an injected clock, watch semantics (filters, prev_kv,
progress, slow consumers catching up from history)."""
from __future__ import annotations

import asyncio
import glob
import os
import shutil
import tempfile

import pytest

from kcore.store import client as sc
from kcore.store import errors
from kcore.store.config import ServerConfig
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.server import EtcdServer
from kcore.store.watch import Watcher


@pytest.fixture
def data_dir():
    d = tempfile.mkdtemp(prefix="kcore-unit-")
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run(coro):
    return asyncio.run(coro)


def test_snapshot_count_writes_snap_and_releases_wal(data_dir):
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"), snapshot_count=200)

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        for i in range(1000):
            await c.put_kv(f"k{i:04d}".encode(), os.urandom(512))
        await asyncio.sleep(0.3)  # let the snapshot job finish on the WAL thread
        snaps = sorted(glob.glob(os.path.join(cfg.snap_dir, "*.snap")))
        assert snaps, "no snapshot file written"
        assert len(snaps) <= 5
        assert srv.snapshot_index >= 800
        rev = srv.mvcc.rev
        await srv.stop()
        srv2 = EtcdServer(cfg)
        await srv2.start()
        try:
            r = await sc.local(srv2).get_prefix(b"k")
            assert r.count == 1000 and srv2.mvcc.rev == rev
        finally:
            await srv2.stop()
    run(main())


def test_segments_are_released_after_snapshots(data_dir):
    from kcore.store.wal import parse_segment_name
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"), snapshot_count=100,
                       wal_segment_bytes=64 * 1024)

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        for _ in range(600):
            await c.put_kv(b"key", os.urandom(1024))
        await asyncio.sleep(0.3)
        segs = glob.glob(os.path.join(cfg.wal_dir, "*.wal"))
        await srv.stop()
        return segs
    segs = run(main())
    # ~600 KiB of records filled about ten 64 KiB segments; the old ones were released
    seqs = sorted(parse_segment_name(os.path.basename(s))[0] for s in segs)
    assert seqs[-1] >= 8, seqs
    assert len(segs) <= 3 and seqs[0] > 0, seqs


def test_quota_raises_nospace_alarm(data_dir):
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"),
                       quota_backend_bytes=256 * 1024)

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        try:
            with pytest.raises(errors.NoSpace):
                for i in range(1000):
                    await c.put_kv(f"k{i}".encode(), os.urandom(4096))
            await asyncio.sleep(0.1)
            alarms = await srv.alarm(pb.AlarmRequest(action=pb.AlarmRequest.GET))
            assert [a.alarm for a in alarms.alarms] == [pb.NOSPACE]
            # reads and deletes still work; puts are refused while the alarm is on
            assert (await c.get_prefix(b"k", count_only=True)).count > 0
            await c.delete_range(pb.DeleteRangeRequest(key=b"k", range_end=b"l"))
            with pytest.raises(errors.NoSpace):
                await c.put_kv(b"x", b"y")
            st = await srv.status(pb.StatusRequest())
            assert any("NOSPACE" in e for e in st.errors)
            await srv.alarm(pb.AlarmRequest(action=pb.AlarmRequest.DEACTIVATE,
                                            memberID=srv.member_id, alarm=pb.NOSPACE))
            await c.compact(srv.mvcc.rev)
            await srv.defragment(pb.DefragmentRequest())
            await c.put_kv(b"x", b"y")
        finally:
            await srv.stop()
    run(main())


def test_lease_expiry_with_injected_clock(data_dir):
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"), lease_check_interval=0.01)
    now = [1000.0]

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        srv.lessor.clock = lambda: now[0]
        srv.lessor.promote()
        c = sc.local(srv)
        try:
            g = await c.lease_grant(10)
            await c.put_kv(b"a", b"1", lease=g.ID)
            await c.put_kv(b"b", b"2", lease=g.ID)
            now[0] += 9
            assert await c.lease_keep_alive_once(g.ID) == 10
            now[0] += 9.5
            await asyncio.sleep(0.1)
            assert (await c.get(b"a"))[0] is not None
            ttl = await c.lease_time_to_live(g.ID, keys=True)
            assert ttl.TTL == 0 and sorted(ttl.keys) == [b"a", b"b"]
            now[0] += 1
            for _ in range(100):
                await asyncio.sleep(0.02)
                if (await c.get(b"a"))[0] is None:
                    break
            assert (await c.get(b"a"))[0] is None and (await c.get(b"b"))[0] is None
            assert (await c.lease_time_to_live(g.ID)).TTL == -1
            assert await c.lease_keep_alive_once(g.ID) == 0
            # minimum TTL as etcd rounds it (1.5 election timeouts, whole seconds)
            assert (await c.lease_grant(1)).TTL == 2
            with pytest.raises(errors.LeaseTTLTooLarge):
                await c.lease_grant(9_000_000_001)
        finally:
            await srv.stop()
    run(main())


class Sink:
    def __init__(self, room=True):
        self.got, self.compact, self.progressed, self.room = [], None, [], room

    def has_room(self):
        return self.room

    def deliver(self, w, events, rev):
        self.got += [(e.type, e.kv.key, e.kv.value, e.prev_kv.value) for e in events]

    def compacted(self, w, rev):
        self.compact = rev

    def progress(self, w, rev):
        self.progressed.append(rev)


def test_watch_filters_prev_kv_progress_and_slow_consumers(data_dir):
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"))

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        hub = srv.hub
        try:
            nodel, prev, slow, prog = Sink(), Sink(), Sink(room=False), Sink()
            hub.add(Watcher(1, b"p/", b"p0", 0, nodel, no_delete=True))
            hub.add(Watcher(2, b"p/a", b"", 0, prev, prev_kv=True))
            hub.add(Watcher(3, b"p/", b"p0", 0, slow))
            hub.add(Watcher(4, b"q", b"", 0, prog, progress_notify=True))
            await c.put_kv(b"p/a", b"1")
            await c.put_kv(b"p/a", b"2")
            await c.delete(b"p/a")
            await c.put_kv(b"p/b", b"3")
            assert nodel.got == [(0, b"p/a", b"1", b""), (0, b"p/a", b"2", b""),
                                 (0, b"p/b", b"3", b"")]
            assert prev.got == [(0, b"p/a", b"1", b""), (0, b"p/a", b"2", b"1"),
                                (1, b"p/a", b"", b"2")]
            assert slow.got == [] and not hub.is_synced(hub_watcher(hub, 3))
            slow.room = True
            for _ in range(50):
                await asyncio.sleep(0.02)
                if hub.is_synced(hub_watcher(hub, 3)):
                    break
            assert [g[:3] for g in slow.got] == [(0, b"p/a", b"1"), (0, b"p/a", b"2"),
                                                 (1, b"p/a", b""), (0, b"p/b", b"3")]
            await c.put_kv(b"p/c", b"4")
            assert slow.got[-1][:3] == (0, b"p/c", b"4")
            hub.progress_tick()
            assert prog.progressed == [srv.mvcc.rev]
            # a watcher starting before the compacted revision is told so
            await c.compact(srv.mvcc.rev - 1)
            late = Sink()
            hub.add(Watcher(5, b"p/", b"p0", 2, late))
            for _ in range(50):
                await asyncio.sleep(0.02)
                if late.compact:
                    break
            assert late.compact == srv.mvcc.compact_rev
        finally:
            await srv.stop()
    run(main())


def hub_watcher(hub, wid):
    for w in list(hub.ranged) + list(hub.unsynced) + [w for s in hub.by_key.values() for w in s]:
        if w.id == wid:
            return w
    raise KeyError(wid)


def test_watch_from_a_future_revision_gets_nothing_older(data_dir):
    """A watch created on a member that has not reached its start revision yet
    (a lagging follower) must not see the older changes as they are applied."""
    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"))

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        try:
            await c.put_kv(b"f/a", b"1")
            start = srv.mvcc.rev + 3
            sink = Sink()
            srv.hub.add(Watcher(1, b"f/", b"f0", start, sink))
            for i in range(5):
                await c.put_kv(b"f/a", str(i).encode())
            revs_seen = len(sink.got)
            assert revs_seen == 3, sink.got   # revisions start, start+1, start+2
            assert [g[2] for g in sink.got] == [b"2", b"3", b"4"]
        finally:
            await srv.stop()
    run(main())


class _PlainTransport:
    """The local transport without its watch_changes: the generic ChangeStream path."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "watch_changes":
            raise AttributeError(name)
        return getattr(self.inner, name)


def test_watch_changes_local_and_generic_agree(data_dir):
    """Client.watch_changes: in process from the hub's change records (no protobuf
    events), elsewhere converted from WatchResponses; the same batches either way,
    from history and live, and a compacted start revision raises Compacted."""
    async def main():
        srv = EtcdServer(ServerConfig(name="s", data_dir=os.path.join(data_dir, "d")))
        await srv.start()
        try:
            local = sc.local(srv)
            plain = sc.Client(_PlainTransport(sc.LocalTransport(srv)))
            await local.put_kv(b"/p/a", b"1")                 # history: rev 1
            await local.put_kv(b"/q/x", b"other prefix")

            async def take(client, n):
                got = []
                stream = client.watch_changes(b"/p/", start_revision=1)
                async for batch in stream:
                    got += batch
                    if len(got) >= n:
                        break
                await stream.cancel()
                return got
            t_local = asyncio.ensure_future(take(local, 3))
            t_plain = asyncio.ensure_future(take(plain, 3))
            await asyncio.sleep(0.1)
            await local.put_kv(b"/p/b", b"2")                 # live
            await local.delete_range(pb.DeleteRangeRequest(key=b"/p/a"))
            a, b = await asyncio.wait_for(asyncio.gather(t_local, t_plain), 5)
            assert a == b == [("PUT", b"/p/a", b"1", 1), ("PUT", b"/p/b", b"2", 3),
                              ("DELETE", b"/p/a", b"", 4)]
            await local.compact(3)
            for client in (local, plain):
                with pytest.raises(errors.Compacted):
                    async for _ in client.watch_changes(b"/p/", start_revision=2):
                        pass
        finally:
            await srv.stop()
    run(main())


def test_restart_after_a_crash_between_a_snapshot_file_and_its_wal_marker(data_dir):
    """A snapshot file is written before its WAL marker; a kill -9 between the two
    leaves a newer file the WAL has no marker for. Restart starts from the newest
    snapshot the WAL knows (as etcd does) and loses nothing."""
    from kcore.store import bootstrap
    from kcore.store.raft.messages import Snapshot

    cfg = ServerConfig(name="s", data_dir=os.path.join(data_dir, "d"), snapshot_count=100)

    async def main():
        srv = EtcdServer(cfg)
        await srv.start()
        c = sc.local(srv)
        for i in range(300):
            await c.put_kv(f"k{i:04d}".encode(), b"v%d" % i)
        await asyncio.sleep(0.3)
        assert srv.snapshot_index >= 200
        rev, term, last = srv.mvcc.rev, srv.term, srv.node.storage.last_index()
        await srv.stop()
        # the crash: a newer snapshot file, its marker never written
        bootstrap.save_snapshot(cfg.snap_dir, Snapshot(index=last, term=term,
                                                       conf_state=srv.conf_state, data=b""))
        srv2 = EtcdServer(cfg)
        await srv2.start()
        try:
            r = await sc.local(srv2).get_prefix(b"k")
            assert r.count == 300 and srv2.mvcc.rev == rev
            await sc.local(srv2).put_kv(b"after", b"x")      # and it goes on writing
        finally:
            await srv2.stop()
    run(main())
