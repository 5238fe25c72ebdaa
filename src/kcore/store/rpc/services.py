"""etcd's v3 services (KV, Watch, Lease, Cluster, Maintenance, Auth) as a
Registry of handlers over an EtcdServer. Front ends serve the registry."""
from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from kcore.store import errors
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb.kv_pb2 import Event
from kcore.store.rpc.registry import BIDI_STREAM, SERVER_STREAM, UNARY, Registry
from kcore.store.watch import Watcher

log = logging.getLogger(__name__)

Send = Callable[[object], Awaitable[None]]
WATCH_QUEUE_LIMIT = 1024      # responses buffered per stream before watchers go unsynced


def build_registry(server) -> Registry:
    reg = Registry()
    kv = "etcdserverpb.KV"
    reg.add(kv, "Range", UNARY, pb.RangeRequest, pb.RangeResponse, server.range)
    reg.add(kv, "Put", UNARY, pb.PutRequest, pb.PutResponse, server.put,
            getattr(server, "put_nowait", None))
    reg.add(kv, "DeleteRange", UNARY, pb.DeleteRangeRequest, pb.DeleteRangeResponse,
            server.delete_range, getattr(server, "delete_range_nowait", None))
    reg.add(kv, "Txn", UNARY, pb.TxnRequest, pb.TxnResponse, server.txn,
            getattr(server, "txn_nowait", None))
    reg.add(kv, "Compact", UNARY, pb.CompactionRequest, pb.CompactionResponse, server.compact)

    async def watch(requests: AsyncIterator[pb.WatchRequest], send: Send) -> None:
        await WatchStream(server, send).run(requests)
    reg.add("etcdserverpb.Watch", "Watch", BIDI_STREAM, pb.WatchRequest, pb.WatchResponse, watch)

    lease = "etcdserverpb.Lease"
    reg.add(lease, "LeaseGrant", UNARY, pb.LeaseGrantRequest, pb.LeaseGrantResponse,
            server.lease_grant)
    reg.add(lease, "LeaseRevoke", UNARY, pb.LeaseRevokeRequest, pb.LeaseRevokeResponse,
            server.lease_revoke)

    async def keep_alive(requests: AsyncIterator[pb.LeaseKeepAliveRequest], send: Send) -> None:
        async for req in requests:
            try:
                ttl = await server.lease_renew(req.ID)
            except errors.LeaseNotFound:
                ttl = 0
            await send(server._fill(pb.LeaseKeepAliveResponse(ID=req.ID, TTL=ttl)))
    reg.add(lease, "LeaseKeepAlive", BIDI_STREAM, pb.LeaseKeepAliveRequest,
            pb.LeaseKeepAliveResponse, keep_alive)
    reg.add(lease, "LeaseTimeToLive", UNARY, pb.LeaseTimeToLiveRequest,
            pb.LeaseTimeToLiveResponse, server.lease_time_to_live)
    reg.add(lease, "LeaseLeases", UNARY, pb.LeaseLeasesRequest, pb.LeaseLeasesResponse,
            server.lease_leases)

    cl = "etcdserverpb.Cluster"
    reg.add(cl, "MemberList", UNARY, pb.MemberListRequest, pb.MemberListResponse,
            server.member_list)
    for name in ("MemberAdd", "MemberRemove", "MemberUpdate", "MemberPromote"):
        handler = getattr(server, _snake(name), None) or _not_capable
        reg.add(cl, name, UNARY, getattr(pb, name + "Request"), getattr(pb, name + "Response"),
                handler)

    mt = "etcdserverpb.Maintenance"
    reg.add(mt, "Alarm", UNARY, pb.AlarmRequest, pb.AlarmResponse, server.alarm)
    reg.add(mt, "Status", UNARY, pb.StatusRequest, pb.StatusResponse, server.status)
    reg.add(mt, "Defragment", UNARY, pb.DefragmentRequest, pb.DefragmentResponse,
            server.defragment)
    reg.add(mt, "Hash", UNARY, pb.HashRequest, pb.HashResponse, server.hash)
    reg.add(mt, "HashKV", UNARY, pb.HashKVRequest, pb.HashKVResponse, server.hash_kv)

    async def snapshot(request: pb.SnapshotRequest, send: Send) -> None:
        async for chunk in server.snapshot():
            await send(chunk)
    reg.add(mt, "Snapshot", SERVER_STREAM, pb.SnapshotRequest, pb.SnapshotResponse, snapshot)
    reg.add(mt, "MoveLeader", UNARY, pb.MoveLeaderRequest, pb.MoveLeaderResponse,
            getattr(server, "move_leader", None) or _not_capable)

    auth = "etcdserverpb.Auth"
    for name, req, resp in _AUTH_METHODS:
        reg.add(auth, name, UNARY, getattr(pb, req), getattr(pb, resp), _auth_not_enabled)
    return reg


async def _not_capable(request) -> None:
    raise errors.NotCapable()


async def _auth_not_enabled(request) -> None:
    raise errors.AuthNotEnabled()


def _snake(name: str) -> str:
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


_AUTH_METHODS = [
    ("AuthEnable", "AuthEnableRequest", "AuthEnableResponse"),
    ("AuthDisable", "AuthDisableRequest", "AuthDisableResponse"),
    ("Authenticate", "AuthenticateRequest", "AuthenticateResponse"),
    ("UserAdd", "AuthUserAddRequest", "AuthUserAddResponse"),
    ("UserGet", "AuthUserGetRequest", "AuthUserGetResponse"),
    ("UserList", "AuthUserListRequest", "AuthUserListResponse"),
    ("UserDelete", "AuthUserDeleteRequest", "AuthUserDeleteResponse"),
    ("UserChangePassword", "AuthUserChangePasswordRequest", "AuthUserChangePasswordResponse"),
    ("UserGrantRole", "AuthUserGrantRoleRequest", "AuthUserGrantRoleResponse"),
    ("UserRevokeRole", "AuthUserRevokeRoleRequest", "AuthUserRevokeRoleResponse"),
    ("RoleAdd", "AuthRoleAddRequest", "AuthRoleAddResponse"),
    ("RoleGet", "AuthRoleGetRequest", "AuthRoleGetResponse"),
    ("RoleList", "AuthRoleListRequest", "AuthRoleListResponse"),
    ("RoleDelete", "AuthRoleDeleteRequest", "AuthRoleDeleteResponse"),
    ("RoleGrantPermission", "AuthRoleGrantPermissionRequest",
     "AuthRoleGrantPermissionResponse"),
    ("RoleRevokePermission", "AuthRoleRevokePermissionRequest",
     "AuthRoleRevokePermissionResponse"),
]


class WatchStream:
    """One client's Watch stream: its watchers, ids and the responses to send.

    It is the watch hub's sink for its watchers: the hub hands it events; it
    queues WatchResponses, and a sender task writes them in order."""

    def __init__(self, server, send: Send):
        self.server = server
        self.hub = server.hub
        self.send = send
        self.watchers: dict[int, Watcher] = {}
        self.next_id = 0
        self.queue: asyncio.Queue = asyncio.Queue()
        self.max_bytes = server.cfg.max_request_bytes
        self.fragment: set[int] = set()

    # sink interface --------------------------------------------------------------
    def has_room(self) -> bool:
        return self.queue.qsize() < WATCH_QUEUE_LIMIT

    def deliver(self, w: Watcher, events: list[Event], rev: int) -> None:
        if w.id in self.fragment:
            for resp in self._fragments(w.id, events, rev):
                self.queue.put_nowait(resp)
            return
        resp = pb.WatchResponse(header=self.server.header(rev), watch_id=w.id)
        resp.events.extend(events)
        self.queue.put_nowait(resp)

    def _fragments(self, wid: int, events: list[Event], rev: int):
        chunk: list[Event] = []
        size = 0
        out = []
        for ev in events:
            n = ev.ByteSize()
            if chunk and size + n > self.max_bytes:
                out.append(chunk)
                chunk, size = [], 0
            chunk.append(ev)
            size += n
        out.append(chunk)
        resps = []
        for i, evs in enumerate(out):
            r = pb.WatchResponse(header=self.server.header(rev), watch_id=wid,
                                 fragment=i < len(out) - 1)
            r.events.extend(evs)
            resps.append(r)
        return resps

    def compacted(self, w: Watcher, compact_rev: int) -> None:
        self.watchers.pop(w.id, None)
        self.queue.put_nowait(pb.WatchResponse(
            header=self.server.header(), watch_id=w.id, canceled=True,
            compact_revision=compact_rev,
            cancel_reason="etcdserver: mvcc: required revision has been compacted"))

    def progress(self, w: Watcher, rev: int) -> None:
        self.queue.put_nowait(pb.WatchResponse(header=self.server.header(rev), watch_id=w.id))

    # stream ----------------------------------------------------------------------
    async def run(self, requests: AsyncIterator[pb.WatchRequest]) -> None:
        sender = asyncio.get_running_loop().create_task(self._send_loop())
        try:
            async for req in requests:
                kind = req.WhichOneof("request_union")
                if kind == "create_request":
                    self._create(req.create_request)
                elif kind == "cancel_request":
                    self._cancel(req.cancel_request.watch_id)
                elif kind == "progress_request":
                    self._progress_request()
                if sender.done():
                    break
        finally:
            for w in self.watchers.values():
                self.hub.remove(w)
            self.watchers.clear()
            if not sender.done():
                # let queued responses drain briefly, then stop
                self.queue.put_nowait(None)
                try:
                    await asyncio.wait_for(sender, 1.0)
                except (TimeoutError, asyncio.CancelledError):
                    sender.cancel()
            elif sender.exception() is not None:
                raise sender.exception()

    async def _send_loop(self) -> None:
        while True:
            resp = await self.queue.get()
            if resp is None:
                return
            await self.send(resp)

    def _create(self, c: pb.WatchCreateRequest) -> None:
        wid = c.watch_id
        if wid == 0 or wid in self.watchers:
            if wid != 0 and wid in self.watchers:
                self.queue.put_nowait(pb.WatchResponse(
                    header=self.server.header(), watch_id=-1, created=True, canceled=True,
                    cancel_reason="mvcc: duplicate watch ID provided on the WatchStream"))
                return
            while self.next_id in self.watchers:
                self.next_id += 1
            wid = self.next_id
            self.next_id += 1
        if not c.key:
            self.queue.put_nowait(pb.WatchResponse(
                header=self.server.header(), watch_id=-1, created=True, canceled=True,
                cancel_reason="etcdserver: key is not provided"))
            return
        filters = set(c.filters)
        w = Watcher(id=wid, key=c.key, range_end=c.range_end, next_rev=c.start_revision,
                    sink=self, prev_kv=c.prev_kv,
                    no_put=pb.WatchCreateRequest.NOPUT in filters,
                    no_delete=pb.WatchCreateRequest.NODELETE in filters,
                    progress_notify=c.progress_notify)
        if c.fragment:
            self.fragment.add(wid)
        self.watchers[wid] = w
        self.queue.put_nowait(pb.WatchResponse(header=self.server.header(), watch_id=wid,
                                               created=True))
        self.hub.add(w)

    def _cancel(self, wid: int) -> None:
        w = self.watchers.pop(wid, None)
        if w is None:
            return
        self.hub.remove(w)
        self.fragment.discard(wid)
        self.queue.put_nowait(pb.WatchResponse(header=self.server.header(), watch_id=wid,
                                               canceled=True))

    def _progress_request(self) -> None:
        # etcd answers only when every watcher of the stream is synced; id -1 = all
        if all(self.hub.is_synced(w) for w in self.watchers.values()):
            self.queue.put_nowait(pb.WatchResponse(header=self.server.header(), watch_id=-1))
