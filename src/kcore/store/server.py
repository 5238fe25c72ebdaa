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
import ssl
import tempfile
import time
from collections.abc import AsyncIterator

from kcore.durations import parse_duration
from kcore.store import bootstrap, cas, errors, snapfile
from kcore.store.apply import (
    Alarms,
    Applied,
    Applier,
    check_put_request,
    check_txn_request,
    range_response,
)
from kcore.store.backend import DB_FILE, Backend
from kcore.store.cas import CasResult, varint
from kcore.store.config import ServerConfig, check_url, member_id
from kcore.store.disk import fsync_dir
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC, Change
from kcore.store.raft.messages import (
    ConfChange,
    ConfChangeType,
    ConfState,
    EntryType,
    Snapshot,
    SoftState,
)
from kcore.store.raft.node import NodeConfig, RaftNode
from kcore.store.raft.transport import PeerTransport
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb.internal_pb2 import InternalRequest
from kcore.store.wal import WAL, WalSnapshot
from kcore.store.watch import WatchHub
from kcore.tasks import cancel_all

log = logging.getLogger(__name__)

ETCD_VERSION = "3.4.23"          # the etcd API level kcore speaks
CLUSTER_VERSION = "3.4.0"
SNAPSHOT_CHUNK = 32 * 1024
_META_CONSISTENT_INDEX = b"consistent_index"
_META_CLUSTER_ID = b"cluster_id"
_META_MEMBER_ID = b"member_id"
REQUEST_TIMEOUT = 7.0
IN_USE_REFRESH_S = 0.1           # the size in use is re-read at least this often
IN_USE_MARGIN = 4                # ... and after every batch once in use + 4x the entry
                                 # bytes applied since + 1 MiB could pass the quota


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


class Pending(asyncio.Future):
    """The future of a submitted request. asyncio runs a future's done callbacks
    on the loop's next turn; a front end that answers from the response alone sets
    ``on_result`` instead, called as soon as the write is applied, and
    ``on_batch_end``, called once after the batch of entries applied with it (to
    write the batch's answers together). The done callbacks still run."""

    __slots__ = ("on_result", "on_batch_end")

    def __init__(self, *, loop) -> None:
        super().__init__(loop=loop)
        self.on_result = None
        self.on_batch_end = None


class EtcdServer:
    def __init__(self, cfg: ServerConfig):
        self.cfg = cfg
        self.member_id = 0
        self.cluster_id = 0
        self.applied_index = 0
        self.snapshot_index = 0
        self.started = asyncio.Event()
        # requests proposed here, by `_request_key` of their entry's data
        self._inflight: dict[bytes, tuple[asyncio.Future, str, object]] = {}
        self._deadlines: collections.deque = collections.deque()
        self._revoking: set[int] = set()
        self._tasks: list[asyncio.Task] = []
        self._lock_fd: int | None = None
        self._snapshotting = False
        self._db_in_use = 0
        self._in_use_at = 0.0           # when _db_in_use was last read (monotonic)
        self._applied_bytes = 0         # entry bytes applied since
        self.node: RaftNode | None = None
        self.transport: PeerTransport | None = None
        self.conf_state = ConfState()
        self.removed: set[int] = set()
        self.peer_ports: list[int] = []
        self._leader_client = None
        self.stopped = False
        self.removed_event = asyncio.Event()

    # ------------------------------------------------------------------ lifecycle --
    @property
    def term(self) -> int:
        return self.node.term if self.node is not None else 0

    @property
    def log(self):  # the old name, kept for callers that run work on the WAL thread
        return self.node

    async def start(self) -> None:
        cfg = self.cfg
        os.makedirs(cfg.member_dir, exist_ok=True)
        self._lock_data_dir()
        client_ssl, server_ssl = self._peer_ssl()
        if WAL.exists(cfg.wal_dir):
            boot = bootstrap.restart(cfg)
            self._finish_snapshot_install(boot.snapshot)
        elif cfg.initial_cluster_state == "existing":
            boot = await bootstrap.join_cluster(cfg, client_ssl)
        else:
            boot = bootstrap.new_cluster(cfg)
        self.member_id, self.cluster_id = boot.member_id, boot.cluster_id
        self._open_state()
        if boot.members:
            with self.backend.begin_write() as txn:
                for m in boot.members:
                    txn.put(m.ID.to_bytes(8, "big"), m.SerializeToString(),
                            db=self.backend.members)
                self.backend.put_u64(txn, _META_CLUSTER_ID, self.cluster_id)
                self.backend.put_u64(txn, _META_MEMBER_ID, self.member_id)
        self.removed = self._load_removed()
        self.snapshot_index = boot.snapshot.index
        self.conf_state = boot.snapshot.conf_state
        self.applied_index = self._consistent_index()
        if cfg.force_new_cluster and not boot.new:
            self._apply_committed_before_force(boot)
            boot = bootstrap.force_new_cluster(cfg, boot, self.applied_index)
            self.snapshot_index = boot.snapshot.index
            self.conf_state = boot.snapshot.conf_state
            with self.backend.begin_write() as txn:
                for m in self.members():
                    if m.ID != self.member_id:
                        txn.delete(m.ID.to_bytes(8, "big"), db=self.backend.members)
        self._refresh_self_member()

        self.transport = PeerTransport(self.member_id, self.cluster_id, self, cfg.snap_dir,
                                       server_ssl=server_ssl, client_ssl=client_ssl)
        for url in cfg.listen_peer_urls:
            self.peer_ports.append(await self.transport.listen(url))
        hb = cfg.heartbeat_interval_ms / 1000.0
        self.node = RaftNode(
            NodeConfig(id=self.member_id, heartbeat_s=hb,
                       election_ticks=max(2, cfg.election_timeout_ms // cfg.heartbeat_interval_ms)),
            boot.storage, boot.wal, self, self.transport, applied=boot.snapshot.index)
        if boot.bootstrap_peers:
            self.node.bootstrap(boot.bootstrap_peers)
        self.transport.set_peers(self._peer_urls())
        self._db_in_use = self.backend.size_in_use()
        self.idgen = IdGenerator(self.member_id)
        self.node.start()
        loop = asyncio.get_running_loop()
        self._tasks += [loop.create_task(self._lease_loop()),
                        loop.create_task(self._progress_loop()),
                        loop.create_task(self._timeout_loop()),
                        loop.create_task(self._publish_loop())]
        comp = self._auto_compaction_task()
        if comp is not None:
            self._tasks.append(loop.create_task(comp))
        self.started.set()
        log.info("member %x of cluster %x started (revision %d, applied index %d)",
                 self.member_id, self.cluster_id, self.mvcc.rev, self.applied_index)

    def _open_state(self) -> None:
        self.backend = Backend(self.cfg.snap_dir)
        self.mvcc = MVCC(self.backend)
        self.lessor = Lessor(self.backend, min_ttl=self.cfg.min_lease_ttl)
        self.alarms = Alarms(self.backend)
        self.applier = Applier(self.mvcc, self.lessor, self.alarms)
        if getattr(self, "hub", None) is None:
            self.hub = WatchHub(self.mvcc)
        for key, rec in self.mvcc.index.records.items():
            if rec.alive and rec.lease:
                self.lessor.attach(rec.lease, key)

    def _consistent_index(self) -> int:
        with self.backend.begin_read() as txn:
            return self.backend.get_u64(txn, _META_CONSISTENT_INDEX)

    def _finish_snapshot_install(self, snap: Snapshot) -> None:
        """A crash between receiving a snapshot and installing it leaves its database
        next to the old one: install it now."""
        path = os.path.join(self.cfg.snap_dir, f"{snap.index:016x}.snap.db")
        if snap.index and os.path.exists(path):
            b = Backend(self.cfg.snap_dir)
            try:
                with b.begin_read() as txn:
                    behind = b.get_u64(txn, _META_CONSISTENT_INDEX) < snap.index
            finally:
                b.close()
            if behind:
                _replace_db(self.cfg.snap_dir, path)
            else:
                os.unlink(path)

    def _apply_committed_before_force(self, boot) -> None:
        st = boot.storage
        commit = st.hard_state.commit
        lo = max(self.applied_index, boot.snapshot.index) + 1
        if commit >= lo:
            ents = [e for e in st.entries(lo, commit + 1) if e.type == EntryType.NORMAL]
            if ents:
                self.apply(ents)
            self.applied_index = commit

    def _peer_ssl(self):
        cfg = self.cfg
        if not (cfg.peer_cert_file and cfg.peer_key_file):
            return None, None
        srv = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        srv.load_cert_chain(cfg.peer_cert_file, cfg.peer_key_file)
        cli = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        cli.load_cert_chain(cfg.peer_cert_file, cfg.peer_key_file)
        if cfg.peer_trusted_ca_file:
            srv.load_verify_locations(cfg.peer_trusted_ca_file)
            cli.load_verify_locations(cfg.peer_trusted_ca_file)
        else:
            cli.load_default_certs()
        if cfg.peer_client_cert_auth:
            if not cfg.peer_trusted_ca_file:
                raise SystemExit("kcore etcd: --peer-client-cert-auth needs "
                                 "--peer-trusted-ca-file")
            srv.verify_mode = ssl.CERT_REQUIRED
        return cli, srv

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

    def _refresh_self_member(self) -> None:
        """This member's own attributes as given by the flags it started with."""
        cfg = self.cfg
        with self.backend.begin_write() as txn:
            raw = txn.get(self.member_id.to_bytes(8, "big"), db=self.backend.members)
            m = pb.Member.FromString(raw) if raw else pb.Member(
                ID=self.member_id, peerURLs=cfg.initial_advertise_peer_urls)
            self._wanted_attrs = (cfg.name, list(cfg.advertise_client_urls))
            if not m.name:
                m.name = cfg.name
                del m.clientURLs[:]
                m.clientURLs.extend(cfg.advertise_client_urls)
                txn.put(self.member_id.to_bytes(8, "big"), m.SerializeToString(),
                        db=self.backend.members)

    async def _publish_loop(self) -> None:
        """Make this member's name and client URLs known to the cluster through the
        log, as an etcd member publishes its attributes each time it starts."""
        name, urls = self._wanted_attrs
        m = pb.Member(ID=self.member_id, name=name, clientURLs=urls)
        while True:
            if self.node.leader:
                try:
                    await self._propose(InternalRequest(member_attr=m))
                    return
                except errors.StoreError:
                    pass
            await asyncio.sleep(0.2)

    async def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        await cancel_all(self._tasks)
        if self.transport is not None:
            await self.transport.stop()
        if self.node is not None:
            await self.node.stop()
            self.node.wal.close()
        if self._leader_client is not None:
            await self._leader_client.close()
        for w in self._inflight.values():
            if not w[0].done():
                w[0].set_exception(errors.Stopped())
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

    def _check_running(self) -> None:
        if self.stopped or self.node is None:
            raise errors.Stopped()
        if self.node.fatal is not None:
            raise errors.Stopped()
        if self.removed_event.is_set():
            raise errors.Stopped("etcdserver: the member has been permanently removed "
                                 "from the cluster")

    def submit(self, kind: str, msg) -> asyncio.Future:
        """Propose one request (`kind` names an InternalRequest field: "put", "txn",
        ...) and return a future for its response, header filled, or its StoreError.
        No coroutine and no Task per request: front ends chain a callback on it."""
        return self._submit_body(kind, msg.SerializeToString(), kind, msg)

    def _submit_body(self, field: str, body: bytes, kind: str, msg) -> asyncio.Future:
        """submit() of a request whose wire body (the InternalRequest `field`) is
        already encoded; `kind` and `msg` are what this member applies it from."""
        self._check_running()
        rid = self.idgen.next()
        data = encode_request(rid, field, body)
        if len(data) > self.cfg.max_request_bytes:
            raise errors.RequestTooLarge()
        fut = Pending(loop=asyncio.get_running_loop())
        self._inflight[_request_key(data)] = (fut, kind, msg)
        self._deadlines.append((time.monotonic() + REQUEST_TIMEOUT, fut))
        self.node.propose(data)
        return fut

    async def _propose(self, ireq: InternalRequest):
        """submit() for an InternalRequest built by hand (internal requests)."""
        kind = next(f.name for f, _ in ireq.ListFields() if f.name != "ID")
        return await self.submit(kind, getattr(ireq, kind))

    async def _linearizable(self) -> None:
        """Wait until this member has applied everything committed before now."""
        self._check_running()
        try:
            await asyncio.wait_for(self.node.read_barrier(), REQUEST_TIMEOUT)
        except TimeoutError:
            raise errors.Timeout() from None

    async def _timeout_loop(self) -> None:
        """Fail proposals not applied within REQUEST_TIMEOUT (no leader, partition), as
        etcd answers 'request timed out'. One sweep instead of a timer per request."""
        dq = self._deadlines
        while True:
            await asyncio.sleep(0.5)
            now = time.monotonic()
            while dq and (dq[0][1].done() or dq[0][0] <= now):
                _, fut = dq.popleft()
                if not fut.done():
                    fut.set_exception(errors.Timeout() if self.node.leader
                                      else errors.NoLeader())

    # ------------------------------------------------------------------ state machine
    def apply(self, entries) -> None:
        """Apply committed entries in one backend transaction, then answer and notify.
        Entries the backend already holds (index <= its consistent index) are skipped:
        a restart or a received snapshot may deliver them again."""
        results: list[tuple[asyncio.Future, Applied]] = []
        changes: list[Change] = []
        inflight = self._inflight
        applier = self.applier
        done = self.applied_index
        with self.backend.begin_write() as txn:
            for e in entries:
                if e.index <= done:
                    continue
                data = e.data
                if data:
                    w = inflight.pop(_request_key(data), None)
                    if w is not None:
                        kind, msg = w[1], w[2]
                    else:
                        ireq = InternalRequest.FromString(data)
                        kind = next((f.name for f, _ in ireq.ListFields() if f.name != "ID"),
                                    "noop")
                        msg = getattr(ireq, kind) if kind != "noop" else None
                    if kind == "member_attr":
                        self._apply_member_attr(txn, msg)
                        res = Applied(None, rev=self.mvcc.rev)
                    else:
                        res = applier.apply_op(txn, kind, msg)
                    if res.changes:
                        changes.extend(res.changes)
                    if w is not None:
                        results.append((w[0], res))
                done = e.index
            if done == self.applied_index:
                return
            self.applied_index = done
            self.backend.put_u64(txn, _META_CONSISTENT_INDEX, done)
            # answered before the backend transaction commits, as etcd answers from its
            # batch transaction: the entries are committed in the raft log already, and
            # nothing else runs before the commit below (a failed commit stops the member,
            # whose restart applies them again)
            self._answer(results)
        if changes:
            self.hub.notify(changes, self.mvcc.rev)
        self._refresh_in_use(entries)
        self._maybe_snapshot()

    def _answer(self, results) -> None:
        fill = self._fill
        batch_ends = None
        for fut, res in results:
            if fut.done():
                continue
            if res.error is not None:
                fut.set_exception(res.error)
            else:
                resp = res.response
                if resp is not None and type(resp) is not CasResult:
                    resp = fill(resp, res.rev)
                fut.set_result(resp)
                cb = fut.on_result
                if cb is not None:
                    try:
                        cb(resp)
                    except Exception:  # noqa: BLE001 - a front end's failure is its own
                        log.exception("answering an applied request failed")
                    if fut.on_batch_end is not None:
                        if batch_ends is None:
                            batch_ends = set()
                        batch_ends.add(fut.on_batch_end)
        if batch_ends:
            for end in batch_ends:
                end()

    def _refresh_in_use(self, entries) -> None:
        """Re-read the backend's size in use (~25 us: a stat per sub-database) at most
        every 100 ms, as etcd refreshes its size at each backend commit, unless the
        bytes applied since could bring it near the quota: then after every batch."""
        grown = self._applied_bytes + sum(len(e.data) for e in entries)
        now = time.monotonic()
        if (now - self._in_use_at >= IN_USE_REFRESH_S
                or self._db_in_use + IN_USE_MARGIN * grown + (1 << 20)
                > self.cfg.quota_backend_bytes):
            self._db_in_use = self.backend.size_in_use()
            self._in_use_at, self._applied_bytes = now, 0
        else:
            self._applied_bytes = grown

    def waits_for(self, entries) -> bool:
        """Whether every entry is a request made through this member (a client here
        waits for it)."""
        inflight = self._inflight
        return all(e.data and _request_key(e.data) in inflight for e in entries)

    def apply_conf_change(self, entry, cc: ConfChange, cs: ConfState) -> None:
        self.conf_state = cs
        key = cc.node_id.to_bytes(8, "big")
        with self.backend.begin_write() as txn:
            if cc.type == ConfChangeType.REMOVE_NODE:
                txn.delete(key, db=self.backend.members)
                self.removed.add(cc.node_id)
                self.backend.put_meta(txn, b"removed", json.dumps(sorted(self.removed)).encode())
            else:
                raw = txn.get(key, db=self.backend.members)
                m = pb.Member.FromString(raw) if raw else pb.Member(ID=cc.node_id)
                if cc.context:
                    ctx = json.loads(cc.context)
                    del m.peerURLs[:]
                    m.peerURLs.extend(ctx.get("peerURLs", []))
                m.isLearner = cc.type == ConfChangeType.ADD_LEARNER_NODE
                txn.put(key, m.SerializeToString(), db=self.backend.members)
            if entry.index > self.applied_index:
                self.applied_index = entry.index
                self.backend.put_u64(txn, _META_CONSISTENT_INDEX, entry.index)
        if cc.type == ConfChangeType.REMOVE_NODE and cc.node_id == self.member_id:
            log.warning("this member was removed from the cluster; shutting down")
            self.removed_event.set()
        self.transport.set_peers(self._peer_urls())

    def _apply_member_attr(self, txn, attr: pb.Member) -> None:
        key = attr.ID.to_bytes(8, "big")
        raw = txn.get(key, db=self.backend.members)
        if raw is None:
            return
        m = pb.Member.FromString(raw)
        m.name = attr.name
        del m.clientURLs[:]
        m.clientURLs.extend(attr.clientURLs)
        txn.put(key, m.SerializeToString(), db=self.backend.members)

    def restore(self, snap: Snapshot) -> None:
        """Install a snapshot received from the leader: its database replaces ours."""
        path = os.path.join(self.cfg.snap_dir, f"{snap.index:016x}.snap.db")
        if not os.path.exists(path):
            raise RuntimeError(f"snapshot database for index {snap.index} is missing")
        self.backend.close()
        _replace_db(self.cfg.snap_dir, path)
        self._open_state()
        self.hub.restore(self.mvcc)
        self.conf_state = snap.conf_state
        self.applied_index = max(self._consistent_index(), snap.index)
        self.snapshot_index = snap.index
        self.removed = self._load_removed()
        if self.node is not None and self.node.is_leader():
            self.lessor.promote()
        self.transport.set_peers(self._peer_urls())
        log.info("installed snapshot at index %d (revision %d)", snap.index, self.mvcc.rev)

    def save_snapshot_file(self, snap: Snapshot) -> None:
        bootstrap.save_snapshot(self.cfg.snap_dir, snap)

    def on_soft_state(self, ss: SoftState, term: int) -> None:
        if ss.leader == self.member_id:
            self.lessor.promote()
            log.info("%x became leader at term %d", self.member_id, term)
        else:
            if self.lessor.primary:
                self.lessor.demote()
            if ss.leader:
                log.info("%x elected leader %x at term %d", self.member_id, ss.leader, term)
            else:
                log.info("%x lost its leader at term %d", self.member_id, term)
        if self._leader_client is not None:
            asyncio.get_running_loop().create_task(self._leader_client.close())
            self._leader_client = None

    def _maybe_snapshot(self) -> None:
        if (self._snapshotting or self.node is None
                or self.applied_index - self.snapshot_index < self.cfg.snapshot_count):
            return
        index = self.node.applied if self.node.applied >= self.applied_index \
            else self.applied_index
        index = min(index, self.node.storage.last_index())
        if index <= self.snapshot_index:
            return
        storage = self.node.storage
        snap = storage.create_snapshot(index, self.conf_state, b"")
        compact_to = index - self.cfg.snapshot_catchup_entries
        if compact_to > storage.first_index():
            storage.compact(compact_to)
        self._snapshotting = True
        wal, backend, snap_dir = self.node.wal, self.backend, self.cfg.snap_dir

        def work() -> None:
            backend.sync()   # the state up to `index` is on disk before the WAL forgets it
            bootstrap.save_snapshot(snap_dir, snap)
            wal.save_snapshot(WalSnapshot(snap.index, snap.term))
            wal.release_to(snap.index)
            snapfile.purge(snap_dir, keep=5)

        fut = self.node.run_in_wal_thread(work)

        def done(f: asyncio.Future) -> None:
            self._snapshotting = False
            if f.exception() is None:
                self.snapshot_index = index
                log.info("saved snapshot at index %d", index)
            else:
                log.error("snapshot at index %d failed: %s", index, f.exception())

        fut.add_done_callback(done)

    # ------------------------------------------------------------------ peers ------
    def on_messages(self, msgs) -> None:
        node = self.node
        if node is None:
            return
        for m in msgs:
            try:
                node.step(m, kick=False)
            except ValueError as e:
                log.debug("dropped peer message: %s", e)
        node.kick()

    def on_snapshot(self, msg, db_path: str) -> None:
        self.on_messages([msg])

    def report_unreachable(self, peer: int) -> None:
        if self.node is not None:
            self.node.report_unreachable(peer)

    def report_snapshot(self, peer: int, ok: bool) -> None:
        if self.node is not None:
            self.node.report_snapshot(peer, ok)

    def members_info(self) -> dict:
        return {"cluster_id": self.cluster_id, "members": [
            {"id": m.ID, "name": m.name, "peerURLs": list(m.peerURLs),
             "clientURLs": list(m.clientURLs), "isLearner": m.isLearner}
            for m in self.members()]}

    def is_removed(self, member: int) -> bool:
        return member in self.removed

    def on_removed(self) -> None:
        """A peer refused us: this member was removed from the cluster."""
        if not self.removed_event.is_set():
            log.warning("the member has been permanently removed from the cluster")
            self.removed_event.set()

    async def snapshot_db(self) -> str:
        fd, path = tempfile.mkstemp(prefix="kcore-peer-snap-", dir=self.cfg.member_dir)
        os.close(fd)
        os.unlink(path)
        await asyncio.get_running_loop().run_in_executor(None, self.backend.copy_to, path)
        return path

    def _peer_urls(self) -> dict[int, list[str]]:
        return {m.ID: list(m.peerURLs) for m in self.members() if m.ID != self.member_id}

    def _load_removed(self) -> set[int]:
        with self.backend.begin_read() as txn:
            raw = self.backend.get_meta(txn, b"removed")
        return set(json.loads(raw)) if raw else set()

    def _member(self, mid: int) -> pb.Member | None:
        with self.backend.begin_read() as txn:
            raw = txn.get(mid.to_bytes(8, "big"), db=self.backend.members)
        return pb.Member.FromString(raw) if raw else None

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
        if not r.serializable:
            await self._linearizable()
        txn = self.backend.begin_read()
        try:
            resp = range_response(lambda **kw: self.mvcc.range(txn, **kw), r)
        finally:
            txn.abort()
        return self._fill(resp)

    # Writes: `*_nowait` check the request and return a future (front ends chain a
    # callback on it); the coroutines are the same for in-process callers.
    def put_nowait(self, r: pb.PutRequest) -> asyncio.Future:
        check_put_request(r)
        self._check_space(len(r.key) + len(r.value))
        return self.submit("put", r)

    def delete_range_nowait(self, r: pb.DeleteRangeRequest) -> asyncio.Future:
        if not r.key:
            raise errors.EmptyKey()
        return self.submit("delete_range", r)

    def txn_nowait(self, r: pb.TxnRequest) -> asyncio.Future:
        check_txn_request(r, self.cfg.max_txn_ops)
        size = _txn_put_bytes(r)
        if size:
            self._check_space(size)
        return self.submit("txn", r)

    def cas_put_nowait(self, key: bytes, value: bytes, lease: int, mod_revision: int
                       ) -> asyncio.Future:
        """`txn_nowait` of the txn "if mod_revision(key) == mod_revision then put(key,
        value, lease) else range(key)" (see kcore.store.cas), given as its fields:
        the same request in the log, the same checks and outcome; the future's
        result is a CasResult."""
        if not key:
            raise errors.EmptyKey()
        self._check_space(len(key) + len(value) + 1)
        return self._submit_body("txn", cas.encode_txn(key, value, lease, mod_revision),
                                 "cas", (key, value, lease, mod_revision))

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return await self.put_nowait(r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return await self.delete_range_nowait(r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        return await self.txn_nowait(r)

    async def compact(self, r: pb.CompactionRequest) -> pb.CompactionResponse:
        if r.revision <= self.mvcc.compact_rev:
            raise errors.Compacted()
        if r.revision > self.mvcc.rev:
            raise errors.FutureRev()
        return await self.submit("compaction", r)

    # ------------------------------------------------------------------ leases -----
    async def lease_grant(self, r: pb.LeaseGrantRequest) -> pb.LeaseGrantResponse:
        self._check_space(0)
        if r.ID == 0:
            r = pb.LeaseGrantRequest(TTL=r.TTL, ID=self.idgen.next() & ((1 << 63) - 1))
        return await self.submit("lease_grant", r)

    async def lease_revoke(self, r: pb.LeaseRevokeRequest) -> pb.LeaseRevokeResponse:
        if self.lessor.lookup(r.ID) is None:
            raise errors.LeaseNotFound()
        return await self.submit("lease_revoke", r)

    async def lease_renew(self, lease_id: int) -> int:
        """Keep-alive; raises LeaseNotFound. Deadlines live on the leader: a follower
        forwards the renewal to it."""
        if self.node.is_leader():
            return self.lessor.renew(lease_id)
        c = await self._leader()
        return await c.lease_keep_alive_once(lease_id)

    async def lease_time_to_live(self, r: pb.LeaseTimeToLiveRequest
                                 ) -> pb.LeaseTimeToLiveResponse:
        if not self.node.is_leader():
            resp = await (await self._leader()).lease_time_to_live(r.ID, r.keys)
            return self._fill(resp)
        lease = self.lessor.lookup(r.ID)
        if lease is None:
            return self._fill(pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=-1))
        resp = pb.LeaseTimeToLiveResponse(ID=r.ID, TTL=self.lessor.remaining_ttl(lease),
                                          grantedTTL=lease.ttl)
        if r.keys:
            resp.keys.extend(sorted(lease.keys))
        return self._fill(resp)

    async def _leader(self):
        """A client to the leader's client URLs (for what only the leader knows)."""
        from kcore.store import client as store_client

        deadline = time.monotonic() + REQUEST_TIMEOUT
        while not self.node.leader:
            if time.monotonic() > deadline:
                raise errors.NoLeader()
            await asyncio.sleep(0.05)
        if self._leader_client is None:
            m = self._member(self.node.leader)
            if m is None or not m.clientURLs:
                raise errors.NoLeader()
            tls = None
            if any(u.startswith("https://") for u in m.clientURLs):
                tls = store_client.TLSConfig(self.cfg.trusted_ca_file, self.cfg.cert_file,
                                             self.cfg.key_file)
            self._leader_client = store_client.connect(list(m.clientURLs), tls)
        return self._leader_client

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

    async def member_add(self, r: pb.MemberAddRequest) -> pb.MemberAddResponse:
        urls = list(r.peerURLs)
        try:
            for u in urls:
                check_url(u)
        except ValueError:
            raise errors.MemberBadURLs() from None
        if not urls:
            raise errors.MemberBadURLs()
        for m in self.members():
            if set(m.peerURLs) & set(urls):
                raise errors.PeerURLExists()
        if not r.isLearner:
            self._check_quorum_after_add()
        mid = member_id(urls, self.cfg.initial_cluster_token, int(time.time()))
        ctx = json.dumps({"peerURLs": urls}).encode()
        cc = ConfChange(ConfChangeType.ADD_LEARNER_NODE if r.isLearner
                        else ConfChangeType.ADD_NODE, mid, ctx)
        await self._conf_change(cc)
        resp = pb.MemberAddResponse()
        resp.member.CopyFrom(self._member(mid) or pb.Member(ID=mid, peerURLs=urls))
        resp.members.extend(self.members())
        return self._fill(resp)

    async def member_remove(self, r: pb.MemberRemoveRequest) -> pb.MemberRemoveResponse:
        if self._member(r.ID) is None:
            raise errors.MemberNotFound()
        if r.ID == self.member_id and self.node.is_leader():
            await self._hand_over_leadership()
        await self._conf_change(ConfChange(ConfChangeType.REMOVE_NODE, r.ID))
        resp = pb.MemberRemoveResponse()
        resp.members.extend(self.members())
        return self._fill(resp)

    async def member_update(self, r: pb.MemberUpdateRequest) -> pb.MemberUpdateResponse:
        if self._member(r.ID) is None:
            raise errors.MemberNotFound()
        ctx = json.dumps({"peerURLs": list(r.peerURLs)}).encode()
        m = self._member(r.ID)
        kind = ConfChangeType.ADD_LEARNER_NODE if m.isLearner else ConfChangeType.ADD_NODE
        await self._conf_change(ConfChange(kind, r.ID, ctx))
        resp = pb.MemberUpdateResponse()
        resp.members.extend(self.members())
        return self._fill(resp)

    async def member_promote(self, r: pb.MemberPromoteRequest) -> pb.MemberPromoteResponse:
        m = self._member(r.ID)
        if m is None:
            raise errors.MemberNotFound()
        if not m.isLearner:
            raise errors.MemberNotLearner()
        if self.node.is_leader():
            pr = self.node.status().progress.get(r.ID)
            if pr is None or pr.match < self.node.storage.last_index() * 9 // 10:
                raise errors.LearnerNotReady()
        await self._conf_change(ConfChange(ConfChangeType.ADD_NODE, r.ID))
        resp = pb.MemberPromoteResponse()
        resp.members.extend(self.members())
        return self._fill(resp)

    async def move_leader(self, r: pb.MoveLeaderRequest) -> pb.MoveLeaderResponse:
        if not self.node.is_leader():
            raise errors.NotLeader()
        if r.targetID not in self.conf_state.voters:
            raise errors.BadLeaderTransferee()
        self.node.transfer_leader(r.targetID)
        deadline = time.monotonic() + REQUEST_TIMEOUT
        while self.node.leader != r.targetID:
            if time.monotonic() > deadline:
                raise errors.Timeout()
            await asyncio.sleep(0.05)
        return self._fill(pb.MoveLeaderResponse())

    async def _hand_over_leadership(self) -> None:
        """Before the leader removes itself, make the most up-to-date other voter
        leader, so the cluster does not sit an election timeout without one."""
        prs = self.node.status().progress
        others = [(pr.match, pid) for pid, pr in prs.items()
                  if pid != self.member_id and pid in self.conf_state.voters]
        if not others:
            return
        target = max(others)[1]
        self.node.transfer_leader(target)
        deadline = time.monotonic() + 3.0
        while self.node.leader == self.member_id and time.monotonic() < deadline:
            await asyncio.sleep(0.02)

    def _check_quorum_after_add(self) -> None:
        """etcd's strict reconfiguration check: refuse a voting member add that would
        leave fewer started (published) members than a quorum of the new size, except
        the restore case of growing a one-member cluster."""
        voters = set(self.conf_state.voters)
        members = {m.ID: m for m in self.members()}
        nmembers = len(voters) + 1
        nstarted = sum(1 for v in voters if v in members and members[v].name)
        if nstarted == 1 and nmembers == 2:
            return
        if nstarted < nmembers // 2 + 1:
            raise errors.MemberNotEnoughStarted()

    async def _conf_change(self, cc: ConfChange) -> None:
        self._check_running()
        try:
            await asyncio.wait_for(self.node.propose_conf_change(cc), REQUEST_TIMEOUT)
        except TimeoutError:
            raise errors.Timeout() from None
        except Exception as e:  # noqa: BLE001 - the core refused it (no leader, pending change)
            if isinstance(e, errors.StoreError):
                raise
            raise errors.StoreError(f"etcdserver: {e or 'membership change refused'}") from None

    async def status(self, r: pb.StatusRequest) -> pb.StatusResponse:
        node = self.node
        me = self._member(self.member_id)
        resp = pb.StatusResponse(
            version=ETCD_VERSION, dbSize=self.backend.size(), leader=node.leader,
            raftIndex=node.storage.last_index(), raftTerm=node.term,
            raftAppliedIndex=self.applied_index, dbSizeInUse=self._db_in_use,
            isLearner=bool(me and me.isLearner))
        for m, a in sorted(self.alarms.active):
            resp.errors.append(f"memberID:{m} alarm:{pb.AlarmType.Name(a)} ")
        return self._fill(resp)

    async def alarm(self, r: pb.AlarmRequest) -> pb.AlarmResponse:
        if r.action == pb.AlarmRequest.GET:
            resp = self.alarms.apply(None, r)
            return self._fill(resp)
        return await self.submit("alarm", r)

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
        if not self.node.is_leader():
            return
        try:
            await self.compact(pb.CompactionRequest(revision=rev))
            log.info("auto-compacted to revision %d", rev)
        except errors.StoreError as e:
            log.warning("auto-compaction to %d: %s", rev, e.message)


def _txn_put_bytes(r: pb.TxnRequest) -> int:
    """Key and value bytes the txn's puts (either branch, nested too) would add: what
    the space quota is checked against (0: the txn writes nothing new)."""
    n = 0
    for branch in (r.success, r.failure):
        for op in branch:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                p = op.request_put
                n += len(p.key) + len(p.value) + 1
            elif kind == "request_txn":
                n += _txn_put_bytes(op.request_txn)
    return n


_FIELD_TAG = {f.name: bytes([(f.number << 3) | 2]) if f.number < 16 else
              bytes([((f.number << 3) | 2) & 0x7F | 0x80, (f.number << 3) >> 7])
              for f in InternalRequest.DESCRIPTOR.fields if f.message_type is not None}


def encode_request_ref(rid: int, tag: bytes, body: bytes) -> bytes:
    """An InternalRequest's wire bytes from its request field's key (`tag`) and
    encoded body: field 1 (ID) then the one request field; no copy of the message
    into a new object. kcore._native.casenc.encode_request when built."""
    return b"\x08" + varint(rid) + tag + varint(len(body)) + body


try:
    from kcore._native.casenc import encode_request as _encode_request
except ImportError:  # not built: the reference has the same contract
    _encode_request = encode_request_ref


def encode_request(rid: int, field: str, body: bytes) -> bytes:
    """The InternalRequest with ID `rid` and `body` as its request field `field`."""
    return _encode_request(rid, _FIELD_TAG[field], body)


def _request_key(data: bytes) -> bytes:
    """What identifies a proposed request's entry: the ten bytes after its first
    (field 1, the ID, comes first: its varint and whatever follows it, the same
    for the same entry). A varint is prefix-free and IDs are unique, so two
    entries never share them; slicing costs a fraction of decoding the varint.
    b"" (no proposal's key) for data that does not start with an ID."""
    return data[1:11] if data[:1] == b"\x08" else b""


def _replace_db(snap_dir: str, path: str) -> None:
    db = os.path.join(snap_dir, DB_FILE)
    os.replace(path, db)
    lock = db + "-lock"
    if os.path.exists(lock):
        os.unlink(lock)
    fsync_dir(snap_dir)
