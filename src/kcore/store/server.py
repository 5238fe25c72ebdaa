"""One member of the store: disk, log, state machine and the API they serve.

`EtcdServer` wires the backend (LMDB), MVCC, lessor, watch hub and the log
(WAL-backed) together and offers etcd's API as coroutines taking and returning
the etcd protobuf messages. Front ends (gRPC, native, in-process) call these;
they never touch the state directly. Writes go through the log: proposed,
made durable, then applied, then answered. Reads are served from applied state,
which in a one-member cluster already holds every acknowledged write.
"""
from __future__ import annotations

import asyncio
import collections
import fcntl
import hashlib
import json
import logging
import os
import tempfile
import time
from typing import AsyncIterator

from kcore.durations import parse_duration
from kcore.store import errors, snapfile
from kcore.store.apply import (Alarms, Applied, Applier, check_put_request,
                               check_txn_request, range_response)
from kcore.store.backend import Backend
from kcore.store.config import ServerConfig, cluster_id, member_id
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC, Change
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb.internal_pb2 import InternalRequest
from kcore.store.sololog import SoloLog
from kcore.store.wal import WAL, Entry, WalSnapshot
from kcore.store.watch import WatchHub

log = logging.getLogger(__name__)

ETCD_VERSION = "3.4.23"          # the etcd API level kcore speaks
CLUSTER_VERSION = "3.4.0"
SNAPSHOT_CHUNK = 32 * 1024
_META_CONSISTENT_INDEX = b"consistent_index"
_META_CLUSTER_ID = b"cluster_id"
_META_MEMBER_ID = b"member_id"
REQUEST_TIMEOUT = 7.0


class IdGenerator:
    """etcd's idutil: member-id prefix, millisecond time and a counter — unique
    across members and restarts, increasing within a member."""

    def __init__(self, member: int, now_ms: int | None = None):
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        self.prefix = (member & 0xFFFF) << 48
        self.suffix = (now_ms & ((1 << 40) - 1)) << 8

    def next(self) -> int:
        self.suffix = (self.suffix + 1) & ((1 << 48) - 1)
        return self.prefix | self.suffix


class EtcdServer:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.member_id = 0
        self.cluster_id = 0
        self.term = 0
        self.applied_index = 0
        self.snapshot_index = 0
        self.started = asyncio.Event()
        self._inflight: dict[int, tuple[asyncio.Future, InternalRequest]] = {}
        self._deadlines: collections.deque = collections.deque()
        self._revoking: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self._lock_fd: int | None = None
        self._snapshotting = False
        self._db_in_use = 0
        self.log: SoloLog | None = None
        self.stopped = False

    # ------------------------------------------------------------------ lifecycle --
    async def start(self) -> None:
        cfg = self.cfg
        os.makedirs(cfg.member_dir, exist_ok=True)
        self._lock_data_dir()
        members = cfg.cluster_members()
        if len(members) > 1:
            raise SystemExit("kcore etcd: a multi-member --initial-cluster needs the raft "
                             "transport, which this build does not have yet")
        self.backend = Backend(cfg.snap_dir)
        self.mvcc = MVCC(self.backend)
        self.lessor = Lessor(self.backend, min_ttl=cfg.min_lease_ttl)
        self.alarms = Alarms(self.backend)
        self.applier = Applier(self.mvcc, self.lessor, self.alarms)
        self.hub = WatchHub(self.mvcc)
        for key, rec in self.mvcc.index.records.items():
            if rec.alive and rec.lease:
                self.lessor.attach(rec.lease, key)

        snap = snapfile.load_newest(cfg.snap_dir)
        wsnap = WalSnapshot(snap[1], snap[0]) if snap else WalSnapshot()
        if WAL.exists(cfg.wal_dir):
            wal = WAL.open(cfg.wal_dir, wsnap, segment_bytes=cfg.wal_segment_bytes)
            metadata, hs, entries = wal.read_all()
            meta = json.loads(metadata.decode())
            self.member_id, self.cluster_id = meta["member_id"], meta["cluster_id"]
            self.term = hs.term
        else:
            self.member_id = member_id(cfg.initial_advertise_peer_urls, cfg.initial_cluster_token)
            self.cluster_id = cluster_id([self.member_id])
            meta = {"member_id": self.member_id, "cluster_id": self.cluster_id}
            wal = WAL.create(cfg.wal_dir, json.dumps(meta).encode(),
                             segment_bytes=cfg.wal_segment_bytes)
            entries = []
            with self.backend.begin_write() as txn:
                self.backend.put_u64(txn, _META_CLUSTER_ID, self.cluster_id)
                self.backend.put_u64(txn, _META_MEMBER_ID, self.member_id)
        self._write_self_member(force=cfg.force_new_cluster)
        with self.backend.begin_read() as txn:
            consistent = self.backend.get_u64(txn, _META_CONSISTENT_INDEX)
        self.snapshot_index = wsnap.index
        replay = [e for e in entries if e.index > consistent]
        self.applied_index = consistent
        if replay:
            log.info("replaying %d WAL entries (%d..%d)", len(replay), replay[0].index,
                     replay[-1].index)
            self._apply_entries(replay)
        last_index = max([consistent, wsnap.index] + [e.index for e in entries])
        self.applied_index = max(self.applied_index, last_index)
        self.term += 1  # this start is a new term, as a one-member etcd elects itself
        self.log = SoloLog(wal, self.term, last_index, self.member_id, self._apply_entries)
        self.log.start()
        # a new leader's first entry: an empty one of its term (persists the term)
        self.log.propose(InternalRequest(noop=True).SerializeToString())
        self.lessor.promote()
        self._db_in_use = self.backend.size_in_use()
        self.idgen = IdGenerator(self.member_id)
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._lease_loop()),
                        loop.create_task(self._progress_loop()),
                        loop.create_task(self._timeout_loop())]
        comp = self._auto_compaction_task()
        if comp is not None:
            self._tasks.append(loop.create_task(comp))
        self.started.set()
        log.info("member %x of cluster %x serving at term %d, revision %d", self.member_id,
                 self.cluster_id, self.term, self.mvcc.rev)

    def _lock_data_dir(self) -> None:
        path = os.path.join(self.cfg.member_dir, ".lock")
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise SystemExit(f"kcore etcd: data dir {self.cfg.data_dir} is in use by "
                             "another process") from None
        self._lock_fd = fd

    def _write_self_member(self, force: bool) -> None:
        cfg = self.cfg
        m = pb.Member(ID=self.member_id, name=cfg.name,
                      peerURLs=cfg.initial_advertise_peer_urls,
                      clientURLs=cfg.advertise_client_urls)
        with self.backend.begin_write() as txn:
            if force:
                txn.drop(self.backend.members, delete=False)
            txn.put(self.member_id.to_bytes(8, "big"), m.SerializeToString(),
                    db=self.backend.members)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except (asyncio.CancelledError, Exception):  # noqa: BLE001
                pass
        if self.log is not None:
            await self.log.stop()
            self.log.wal.close()
        for fut, _ in self._inflight.values():
            if not fut.done():
                fut.set_exception(errors.Stopped())
        self.hub.close()
        self.backend.close()
        if self._lock_fd is not None:
            os.close(self._lock_fd)

    # ------------------------------------------------------------------ helpers ----
    def header(self, rev: int | None = None) -> pb.ResponseHeader:
        return pb.ResponseHeader(cluster_id=self.cluster_id, member_id=self.member_id,
                                 revision=self.mvcc.rev if rev is None else rev,
                                 raft_term=self.term)

    def _fill(self, resp, rev: int | None = None):
        h = resp.header
        h.cluster_id, h.member_id, h.raft_term = self.cluster_id, self.member_id, self.term
        h.revision = self.mvcc.rev if rev is None else rev
        return resp

    async def _propose(self, ireq: InternalRequest, size_hint: int = 0) -> Applied:
        if self.stopped or self.log is None:
            raise errors.Stopped()
        if self.log.fatal is not None:
            raise errors.Stopped()
        ireq.ID = self.idgen.next()
        data = ireq.SerializeToString()
        if len(data) > self.cfg.max_request_bytes:
            raise errors.RequestTooLarge()
        fut = asyncio.get_running_loop().create_future()
        index = self.log.propose(data)
        self._inflight[index] = (fut, ireq)
        self._deadlines.append((time.monotonic() + REQUEST_TIMEOUT, fut))
        applied = await fut
        if applied.error is not None:
            raise applied.error
        return applied

    async def _timeout_loop(self) -> None:
        """Fail proposals not applied within REQUEST_TIMEOUT (the log is stuck), as
        etcd answers 'request timed out'. One sweep instead of a timer per request."""
        dq = self._deadlines
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            while dq and (dq[0][1].done() or dq[0][0] <= now):
                _, fut = dq.popleft()
                if not fut.done():
                    fut.set_exception(errors.Timeout())

    def _apply_entries(self, entries: list[Entry]) -> None:
        """Apply committed entries in one backend transaction, then answer and notify."""
        results: list[tuple[asyncio.Future | None, Applied]] = []
        changes: list[Change] = []
        inflight = self._inflight
        with self.backend.begin_write() as txn:
            for e in entries:
                w = inflight.pop(e.index, None)
                ireq = w[1] if w is not None else InternalRequest.FromString(e.data)
                res = self.applier.apply(txn, ireq)
                if res.changes:
                    changes.extend(res.changes)
                results.append((w[0] if w is not None else None, res))
            self.applied_index = entries[-1].index
            self.backend.put_u64(txn, _META_CONSISTENT_INDEX, self.applied_index)
        rev = self.mvcc.rev
        if changes:
            self.hub.notify(changes, rev)
        for fut, res in results:
            if fut is not None and not fut.done():
                fut.set_result(res)
        self._db_in_use = self.backend.size_in_use()
        if (self.log is not None and not self._snapshotting
                and self.applied_index - self.snapshot_index >= self.cfg.snapshot_count):
            self._trigger_snapshot()

    def _trigger_snapshot(self) -> None:
        index, term = self.applied_index, self.term
        payload = self._members_payload()
        self._snapshotting = True
        wal, backend, snap_dir = self.log.wal, self.backend, self.cfg.snap_dir

        def work() -> None:
            backend.sync()   # the state up to `index` is on disk before the WAL forgets it
            snapfile.save(snap_dir, term, index, payload)
            wal.save_snapshot(WalSnapshot(index, term))
            wal.release_to(index)
            snapfile.purge(snap_dir, keep=5)

        fut = self.log.run_in_wal_thread(work)

        def done(f: asyncio.Future) -> None:
            self._snapshotting = False
            if f.exception() is None:
                self.snapshot_index = index
                log.info("saved snapshot at index %d", index)
            else:
                log.error("snapshot at index %d failed: %s", index, f.exception())

        fut.add_done_callback(done)

    def _members_payload(self) -> bytes:
        return json.dumps({"members": [
            {"id": m.ID, "name": m.name, "peerURLs": list(m.peerURLs),
             "clientURLs": list(m.clientURLs)} for m in self.members()]}).encode()

    def _check_space(self, size: int) -> None:
        if self.alarms.active and self.alarms.has(pb.NOSPACE):
            raise errors.NoSpace()
        if self._db_in_use + size > self.cfg.quota_backend_bytes:
            asyncio.get_running_loop().create_task(self._raise_nospace())
            raise errors.NoSpace()

    async def _raise_nospace(self) -> None:
        try:
            await self._propose(InternalRequest(alarm=pb.AlarmRequest(
                action=pb.AlarmRequest.ACTIVATE, memberID=self.member_id, alarm=pb.NOSPACE)))
        except errors.StoreError:
            pass

    # ------------------------------------------------------------------ KV ---------
    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        if not r.key:
            raise errors.EmptyKey()
        txn = self.backend.begin_read()
        try:
            resp = range_response(lambda **kw: self.mvcc.range(txn, **kw), r)
        finally:
            txn.abort()
        return self._fill(resp)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        check_put_request(r)
        self._check_space(len(r.key) + len(r.value))
        return self._fill((await self._propose(InternalRequest(put=r))).response,
                          None)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        if not r.key:
            raise errors.EmptyKey()
        applied = await self._propose(InternalRequest(delete_range=r))
        return self._fill(applied.response, applied.rev)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        check_txn_request(r, self.cfg.max_txn_ops)
        if _txn_has_put(r):
            self._check_space(r.ByteSize())
        applied = await self._propose(InternalRequest(txn=r))
        return self._fill(applied.response, applied.rev)

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        if r.revision <= self.mvcc.compact_rev:
            raise errors.Compacted()
        if r.revision > self.mvcc.rev:
            raise errors.FutureRev()
        applied = await self._propose(InternalRequest(compaction=r))
        return self._fill(applied.response, applied.rev)

    # ------------------------------------------------------------------ leases -----
    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        self._check_space(0)
        if r.ID == 0:
            r = pb.LeaseGrantRequest(TTL=r.TTL, ID=self.idgen.next() & ((1 << 63) - 1))
        applied = await self._propose(InternalRequest(lease_grant=r))
        return self._fill(applied.response)

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        if self.lessor.lookup(r.ID) is None:
            raise errors.LeaseNotFound()
        applied = await self._propose(InternalRequest(lease_revoke=r))
        return self._fill(applied.response, applied.rev)

    def lease_renew(self, lease_id: int) -> int:
        """Keep-alive; raises LeaseNotFound."""
        return self.lessor.renew(lease_id)

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest
                                 ) -> pb.LeaseTimeToLiveResponse:
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            return self._fill(pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1))
        resp = pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=self.lessor.remaining_ttl(lease),
                                          grantedTTL=lease.ttl)
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return self._fill(resp)

    async def lease_leases(self, r: pb.LeaseLeasesRequest) -> pb.LeaseLeasesResponse:
        resp = pb.LeaseLeasesResponse()
        for lid in sorted(self.lessor.leases):
            resp.leases.add(ID=lid)
        return self._fill(resp)

    async def _lease_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.lease_check_interval)
            for lid in self.lessor.expired():
                if lid in self._revoking:
                    continue
                self._revoking.add(lid)
                asyncio.get_running_loop().create_task(self._revoke_expired(lid))

    async def _revoke_expired(self, lid: int) -> None:
        try:
            await self._propose(InternalRequest(lease_revoke=pb.LeaseRevokeRequest(ID=lid)))
        except errors.StoreError as e:
            if not isinstance(e, errors.LeaseNotFound):
                log.warning("revoking expired lease %x: %s", lid, e.message)
        finally:
            self._revoking.discard(lid)

    # ------------------------------------------------------------------ watch ------
    async def _progress_loop(self) -> None:
        while True:
            await asyncio.sleep(self.cfg.progress_notify_interval)
            self.hub.progress_tick()

    # ------------------------------------------------------------------ cluster ----
    def members(self) -> list[pb.Member]:
        out = []
        with self.backend.begin_read() as txn:
            for _, v in txn.cursor(db=self.backend.members):
                out.append(pb.Member.FromString(v))
        return out

    async def member_list(self, r: pb.MemberListRequest) -> pb.MemberListResponse:
        resp = pb.MemberListResponse()
        resp.members.extend(self.members())
        return self._fill(resp)

    # ------------------------------------------------------------------ maintenance
    async def status(self, r: pb.StatusRequest) -> pb.StatusResponse:
        resp = pb.StatusResponse(
            version=ETCD_VERSION, dbSize=self.backend.size(), leader=self.member_id,
            raftIndex=self.log.last_index if self.log else 0, raftTerm=self.term,
            raftAppliedIndex=self.applied_index, dbSizeInUse=self._db_in_use)
        for m, a in sorted(self.alarms.active):
            resp.errors.append(f"memberID:{m} alarm:{pb.AlarmType.Name(a)} ")
        return self._fill(resp)

    async def alarm(self, r: pb.AlarmRequest) -> pb.AlarmResponse:
        if r.action == pb.AlarmRequest.GET:
            resp = self.alarms.apply(None, r)
            return self._fill(resp)
        applied = await self._propose(InternalRequest(alarm=r))
        return self._fill(applied.response)

    async def hash(self, r: pb.HashRequest) -> pb.HashResponse:
        txn = self.backend.begin_read()
        try:
            h, _, _ = self.mvcc.hash_kv(txn, 0)
        finally:
            txn.abort()
        return self._fill(pb.HashResponse(hash=h))

    async def hash_kv(self, r: pb.HashKVRequest) -> pb.HashKVResponse:
        txn = self.backend.begin_read()
        try:
            h, _, comp = self.mvcc.hash_kv(txn, r.revision)
        finally:
            txn.abort()
        return self._fill(pb.HashKVResponse(hash=h, compact_revision=comp))

    async def defragment(self, r: pb.DefragmentRequest) -> pb.DefragmentResponse:
        self.backend.defragment()
        self._db_in_use = self.backend.size_in_use()
        return self._fill(pb.DefragmentResponse())

    async def snapshot(self) -> AsyncIterator[pb.SnapshotResponse]:
        """The database as a stream of chunks, the last one being its sha256, as
        etcd sends it (etcdctl verifies nothing on save; restore checks the hash)."""
        fd, path = tempfile.mkstemp(prefix="kcore-snapshot-", dir=self.cfg.member_dir)
        os.close(fd)
        os.unlink(path)
        try:
            await asyncio.get_running_loop().run_in_executor(None, self.backend.copy_to, path)
            total = os.path.getsize(path)
            h = hashlib.sha256()
            sent = 0
            with open(path, "rb") as fh:
                while True:
                    blob = fh.read(SNAPSHOT_CHUNK)
                    if not blob:
                        break
                    h.update(blob)
                    sent += len(blob)
                    yield self._fill(pb.SnapshotResponse(remaining_bytes=total - sent,
                                                         blob=blob))
            yield self._fill(pb.SnapshotResponse(remaining_bytes=0, blob=h.digest()))
        finally:
            if os.path.exists(path):
                os.unlink(path)

    # ------------------------------------------------------------------ compaction -
    def _auto_compaction_task(self):
        mode, ret = self.cfg.auto_compaction_mode, self.cfg.auto_compaction_retention.strip()
        if ret in ("", "0"):
            return None
        if mode == "revision":
            keep = int(ret)

            async def by_revision() -> None:
                while True:
                    await asyncio.sleep(300)
                    target = self.mvcc.rev - keep
                    if target > self.mvcc.compact_rev:
                        await self._try_compact(target)
            return by_revision()
        period = parse_duration(ret) if not ret.isdigit() else int(ret) * 3600.0

        async def periodic() -> None:
            seen: list[tuple[float, int]] = []
            step = min(period, 3600.0) / 10 if period < 3600 else 360.0
            while True:
                await asyncio.sleep(step)
                now = time.monotonic()
                seen.append((now, self.mvcc.rev))
                old = [r for t, r in seen if now - t >= period]
                if old:
                    target = old[-1]
                    seen = [(t, r) for t, r in seen if now - t < period]
                    if target > self.mvcc.compact_rev:
                        await self._try_compact(target)
        return periodic()

    async def _try_compact(self, rev: int) -> None:
        try:
            await self.compact(pb.CompactionRequest(revision=rev))
            log.info("auto-compacted to revision %d", rev)
        except errors.StoreError as e:
            log.warning("auto-compaction to %d: %s", rev, e.message)


def _txn_has_put(r: pb.TxnRequest) -> bool:
    for branch in (r.success, r.failure):
        for op in branch:
            kind = op.WhichOneof("request")
            if kind == "request_put" or (kind == "request_txn" and _txn_has_put(op.request_txn)):
                return True
    return False
