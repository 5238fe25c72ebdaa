"""An async etcd v3 client with interchangeable transports.

One client surface (etcd's requests and responses as protobuf messages), two
transports behind it, as httpx does with its transports:
- `GrpcTransport`: any etcd v3 endpoint over gRPC (real etcd or `kcore etcd`),
  plaintext or TLS with client certificates, failing over between endpoints;
- `LocalTransport`: an EtcdServer in the same process (the API server's
  embedded store), with no serialization at all.

Errors come back as `kcore.store.errors.StoreError` subclasses either way, so
callers handle a compacted revision the same against real etcd and kcore.
"""
from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from kcore.store import errors
from kcore.store.cas import CasResult
from kcore.store.mvcc import iter_prefix_end
from kcore.store.rpc.pb import rpc_pb2 as pb

log = logging.getLogger(__name__)

prefix_end = iter_prefix_end


class Transport(Protocol):
    async def unary(self, method: str, request): ...
    def watch(self, create: pb.WatchCreateRequest) -> "WatchStream": ...
    async def close(self) -> None: ...


class WatchStream(Protocol):
    def __aiter__(self) -> AsyncIterator[pb.WatchResponse]: ...
    async def cancel(self) -> None: ...


def change_tuples(events) -> list[tuple[str, bytes, bytes, int]]:
    """(type, key, value, mod_revision) of watch events — protobuf Events or the hub's
    Change records, which have the same `type` (0 PUT) and `kv`."""
    return [("PUT", e.kv.key, e.kv.value, e.kv.mod_revision) if e.type == 0
            else ("DELETE", e.kv.key, b"", e.kv.mod_revision) for e in events]


class ChangeStream:
    """A WatchStream's events as (type, key, value, mod_revision) batches."""

    def __init__(self, stream: WatchStream):
        self.stream = stream

    def __aiter__(self):
        return self._iter()

    async def _iter(self):
        async for resp in self.stream:
            if resp.events:
                yield change_tuples(resp.events)

    async def cancel(self) -> None:
        await self.stream.cancel()


class Client:
    """etcd's KV, Lease, Watch and Maintenance calls over a transport."""

    def __init__(self, transport: Transport):
        self.transport = transport

    # -- KV --------------------------------------------------------------------------
    async def range(self, r: pb.RangeRequest) -> pb.RangeResponse:
        return await self.transport.unary("Range", r)

    async def put(self, r: pb.PutRequest) -> pb.PutResponse:
        return await self.transport.unary("Put", r)

    async def delete_range(self, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        return await self.transport.unary("DeleteRange", r)

    async def txn(self, r: pb.TxnRequest) -> pb.TxnResponse:
        return await self.transport.unary("Txn", r)

    async def cas_put(self, key: bytes, value: bytes, lease: int, mod_revision: int
                      ) -> CasResult:
        """The txn "if mod_revision(key) == mod_revision then put(key, value, lease)
        else range(key)" (kcore.store.cas): an in-process store takes it as its fields,
        any other endpoint as the Txn it is."""
        local = getattr(self.transport, "cas_put", None)
        if local is not None:
            return await local(key, value, lease, mod_revision)
        req = pb.TxnRequest()
        cmp = req.compare.add()
        cmp.key, cmp.target, cmp.result, cmp.mod_revision = key, pb.Compare.MOD, \
            pb.Compare.EQUAL, mod_revision
        put = req.success.add().request_put
        put.key, put.value = key, value
        if lease:
            put.lease = lease
        req.failure.add().request_range.key = key
        r = await self.txn(req)
        kv = None
        if not r.succeeded:
            kvs = r.responses[0].response_range.kvs
            kv = kvs[0] if kvs else None
        return CasResult(r.succeeded, r.header.revision, kv)

    async def compact(self, revision: int, physical: bool = False) -> pb.CompactionResponse:
        return await self.transport.unary(
            "Compact", pb.CompactionRequest(revision=revision, physical=physical))

    # -- conveniences ------------------------------------------------------------------
    async def get(self, key: bytes, revision: int = 0):
        """The KeyValue of key (or None) and the store revision of the read."""
        r = await self.range(pb.RangeRequest(key=key, revision=revision))
        return (r.kvs[0] if r.kvs else None), r.header.revision

    async def get_prefix(self, prefix: bytes, revision: int = 0, limit: int = 0,
                         keys_only: bool = False, count_only: bool = False) -> pb.RangeResponse:
        return await self.range(pb.RangeRequest(
            key=prefix, range_end=prefix_end(prefix), revision=revision, limit=limit,
            keys_only=keys_only, count_only=count_only))

    async def put_kv(self, key: bytes, value: bytes, lease: int = 0,
                     prev_kv: bool = False) -> pb.PutResponse:
        return await self.put(pb.PutRequest(key=key, value=value, lease=lease, prev_kv=prev_kv))

    async def delete(self, key: bytes, prev_kv: bool = False) -> pb.DeleteRangeResponse:
        return await self.delete_range(pb.DeleteRangeRequest(key=key, prev_kv=prev_kv))

    # -- leases ------------------------------------------------------------------------
    async def lease_grant(self, ttl: int, lease_id: int = 0) -> pb.LeaseGrantResponse:
        return await self.transport.unary("LeaseGrant", pb.LeaseGrantRequest(TTL=ttl, ID=lease_id))

    async def lease_revoke(self, lease_id: int) -> pb.LeaseRevokeResponse:
        return await self.transport.unary("LeaseRevoke", pb.LeaseRevokeRequest(ID=lease_id))

    async def lease_time_to_live(self, lease_id: int, keys: bool = False
                                 ) -> pb.LeaseTimeToLiveResponse:
        return await self.transport.unary(
            "LeaseTimeToLive", pb.LeaseTimeToLiveRequest(ID=lease_id, keys=keys))

    async def lease_keep_alive_once(self, lease_id: int) -> int:
        """Renew once; returns the TTL (0 when the lease is gone)."""
        return await self.transport.keep_alive_once(lease_id)

    # -- watch -------------------------------------------------------------------------
    def watch(self, key: bytes, range_end: bytes = b"", start_revision: int = 0,
              prev_kv: bool = False, progress_notify: bool = False,
              filters: tuple[int, ...] = ()) -> WatchStream:
        """An async iterator of WatchResponses for one watcher (the `created` response
        is consumed); a canceled response (e.g. compacted) ends it with errors.Compacted
        raised if compact_revision is set."""
        return self.transport.watch(pb.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision, prev_kv=prev_kv,
            progress_notify=progress_notify, filters=list(filters)))

    def watch_prefix(self, prefix: bytes, start_revision: int = 0, prev_kv: bool = False,
                     progress_notify: bool = False) -> WatchStream:
        return self.watch(prefix, prefix_end(prefix), start_revision, prev_kv, progress_notify)

    def watch_changes(self, prefix: bytes, start_revision: int = 0) -> ChangeStream:
        """The changes under a prefix as batches of `(type, key, value, mod_revision)`
        tuples (type "PUT" or "DELETE", value b"" for a delete) — what a cache needs,
        without WatchResponse messages where the transport can avoid them (in process,
        the store's own records are read, not copied into protobuf events)."""
        local = getattr(self.transport, "watch_changes", None)
        if local is not None:
            return local(prefix, prefix_end(prefix), start_revision)
        return ChangeStream(self.watch_prefix(prefix, start_revision))

    # -- maintenance -------------------------------------------------------------------
    async def status(self) -> pb.StatusResponse:
        return await self.transport.unary("Status", pb.StatusRequest())

    async def member_list(self) -> pb.MemberListResponse:
        return await self.transport.unary("MemberList", pb.MemberListRequest())

    def snapshot(self) -> AsyncIterator[pb.SnapshotResponse]:
        """The database as etcd streams it (chunks, the last one its sha256)."""
        return self.transport.snapshot()

    async def close(self) -> None:
        await self.transport.close()

    async def __aenter__(self) -> "Client":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


# ---------------------------------------------------------------------------- local --
_LOCAL = {
    "Range": "range", "Put": "put", "DeleteRange": "delete_range", "Txn": "txn",
    "Compact": "compact", "LeaseGrant": "lease_grant", "LeaseRevoke": "lease_revoke",
    "LeaseTimeToLive": "lease_time_to_live", "Status": "status", "MemberList": "member_list",
    "MemberAdd": "member_add", "MemberRemove": "member_remove",
}


class LocalTransport:
    """Calls an EtcdServer in this process; messages are passed, not encoded."""

    def __init__(self, server):
        self.server = server

    async def unary(self, method: str, request):
        return await getattr(self.server, _LOCAL[method])(request)

    def cas_put(self, key: bytes, value: bytes, lease: int, mod_revision: int):
        return self.server.cas_put_nowait(key, value, lease, mod_revision)

    async def keep_alive_once(self, lease_id: int) -> int:
        try:
            return await self.server.lease_renew(lease_id)
        except errors.LeaseNotFound:
            return 0

    def watch(self, create: pb.WatchCreateRequest) -> "LocalWatch":
        return LocalWatch(self.server, create)

    def watch_changes(self, key: bytes, range_end: bytes, start_revision: int
                      ) -> "LocalWatch":
        return LocalWatch(self.server, pb.WatchCreateRequest(
            key=key, range_end=range_end, start_revision=start_revision), changes=True)

    def snapshot(self):
        return self.server.snapshot()

    async def close(self) -> None:
        pass


class LocalWatch:
    """A watcher on the server's hub whose sink is an asyncio queue."""

    _ids = 0

    def __init__(self, server, create: pb.WatchCreateRequest, changes: bool = False):
        from kcore.store.watch import Watcher

        LocalWatch._ids += 1
        self.server = server
        # yield (type, key, value, mod_revision) batches (Client.watch_changes), fed
        # from the hub's Change records (deliver_changes) without protobuf events
        self.takes_changes = changes
        self.queue: asyncio.Queue = asyncio.Queue()
        filters = set(create.filters)
        self.watcher = Watcher(
            id=LocalWatch._ids, key=create.key, range_end=create.range_end,
            next_rev=create.start_revision, sink=self, prev_kv=create.prev_kv,
            no_put=pb.WatchCreateRequest.NOPUT in filters,
            no_delete=pb.WatchCreateRequest.NODELETE in filters,
            progress_notify=create.progress_notify)
        self._added = False
        self.closed = False

    # sink
    def has_room(self) -> bool:
        return self.queue.qsize() < 4096

    def deliver(self, w, events, rev: int) -> None:
        if self.takes_changes:
            self.queue.put_nowait(change_tuples(events))
            return
        resp = pb.WatchResponse(header=self.server.header(rev), watch_id=w.id)
        resp.events.extend(events)
        self.queue.put_nowait(resp)

    def deliver_changes(self, w, chs, rev: int) -> None:
        """What the hub calls instead of deliver() when `takes_changes`."""
        self.queue.put_nowait(change_tuples(chs))

    def compacted(self, w, compact_rev: int) -> None:
        self.queue.put_nowait(pb.WatchResponse(
            header=self.server.header(), watch_id=w.id, canceled=True,
            compact_revision=compact_rev))

    def progress(self, w, rev: int) -> None:
        self.queue.put_nowait(pb.WatchResponse(header=self.server.header(rev), watch_id=w.id))

    def request_progress(self) -> None:
        if self.server.hub.is_synced(self.watcher):
            self.progress(self.watcher, self.server.mvcc.rev)

    def __aiter__(self):
        return self._iter()

    async def _iter(self):
        if not self._added:
            self._added = True
            self.server.hub.add(self.watcher)
        try:
            while not self.closed:
                resp = await self.queue.get()
                if resp is None:
                    return
                if isinstance(resp, list):      # a batch of changes (takes_changes)
                    yield resp
                    continue
                if resp.canceled:
                    if resp.compact_revision:
                        raise _compacted(resp.compact_revision)
                    return
                if not self.takes_changes:      # (else a progress notice: no changes)
                    yield resp
        finally:
            self.server.hub.remove(self.watcher)

    async def cancel(self) -> None:
        self.closed = True
        self.server.hub.remove(self.watcher)
        self.queue.put_nowait(None)


def _compacted(rev: int) -> errors.StoreError:
    e = errors.Compacted()
    e.compact_revision = rev  # type: ignore[attr-defined]
    return e


# ----------------------------------------------------------------------------- gRPC --
@dataclass
class TLSConfig:
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


_SERVICE = {
    "Range": "KV", "Put": "KV", "DeleteRange": "KV", "Txn": "KV", "Compact": "KV",
    "LeaseGrant": "Lease", "LeaseRevoke": "Lease", "LeaseTimeToLive": "Lease",
    "Status": "Maintenance", "MemberList": "Cluster",
}
_RETRYABLE = None  # set lazily (grpc import)


_SERVER_BUSY = (errors.NoLeader, errors.LeaderChanged, errors.Timeout)


class GrpcTransport:
    """etcd v3 over gRPC to one of several endpoints ('host:port' or URLs)."""

    def __init__(self, endpoints: list[str], tls: TLSConfig | None = None,
                 timeout: float = 10.0):
        import grpc

        self.grpc = grpc
        self.endpoints = [e.split("://", 1)[-1] for e in endpoints]
        self.tls = tls if tls and (tls.ca_file or tls.cert_file) else None
        if any(e.startswith("https://") for e in endpoints) and self.tls is None:
            self.tls = TLSConfig()
        self.timeout = timeout
        self._current = 0
        self._channel = None
        self._calls: dict[str, object] = {}

    def _open(self):
        grpc = self.grpc
        target = self.endpoints[self._current % len(self.endpoints)]
        opts = [("grpc.max_receive_message_length", 2**31 - 1),
                ("grpc.max_send_message_length", 2 * 1024 * 1024),
                ("grpc.keepalive_time_ms", 30000)]
        if self.tls is None:
            self._channel = grpc.aio.insecure_channel(target, options=opts)
        else:
            def read(p):
                if not p:
                    return None
                with open(p, "rb") as fh:
                    return fh.read()
            creds = grpc.ssl_channel_credentials(
                root_certificates=read(self.tls.ca_file),
                private_key=read(self.tls.key_file), certificate_chain=read(self.tls.cert_file))
            self._channel = grpc.aio.secure_channel(target, creds, options=opts)
        self._calls = {}

    def _call(self, method: str):
        if self._channel is None:
            self._open()
        c = self._calls.get(method)
        if c is None:
            from kcore.store.rpc.pb import rpc_pb2 as m
            svc = _SERVICE[method]
            req_name = {"Compact": "CompactionRequest"}.get(method, method + "Request")
            resp_name = {"Compact": "CompactionResponse"}.get(method, method + "Response")
            c = self._channel.unary_unary(
                f"/etcdserverpb.{svc}/{method}",
                request_serializer=getattr(m, req_name).SerializeToString,
                response_deserializer=getattr(m, resp_name).FromString)
            self._calls[method] = c
        return c

    async def unary(self, method: str, request):
        grpc = self.grpc
        attempts = max(2, len(self.endpoints) * 2)
        for attempt in range(attempts):
            try:
                return await self._call(method)(request, timeout=self.timeout)
            except grpc.aio.AioRpcError as e:
                err = from_grpc_error(e)
                if e.code() == grpc.StatusCode.UNAVAILABLE and attempt + 1 < attempts:
                    if not isinstance(err, _SERVER_BUSY):
                        # the endpoint itself is unreachable; a member that answered
                        # "leader changed" or "no leader" is asked again
                        await self._failover()
                    await asyncio.sleep(min(0.05 * 2**attempt, 1.0))
                    continue
                raise err from None
        raise errors.Unhealthy()

    async def _failover(self) -> None:
        if len(self.endpoints) > 1:
            self._current += 1
            old, self._channel = self._channel, None
            if old is not None:
                await old.close()

    async def keep_alive_once(self, lease_id: int) -> int:
        if self._channel is None:
            self._open()
        call = self._channel.stream_stream(
            "/etcdserverpb.Lease/LeaseKeepAlive",
            request_serializer=pb.LeaseKeepAliveRequest.SerializeToString,
            response_deserializer=pb.LeaseKeepAliveResponse.FromString)
        stream = call()
        try:
            await stream.write(pb.LeaseKeepAliveRequest(ID=lease_id))
            resp = await asyncio.wait_for(stream.read(), self.timeout)
            return resp.TTL
        finally:
            stream.cancel()

    def watch(self, create: pb.WatchCreateRequest) -> "GrpcWatch":
        if self._channel is None:
            self._open()
        return GrpcWatch(self, create)

    async def snapshot(self):
        if self._channel is None:
            self._open()
        call = self._channel.unary_stream(
            "/etcdserverpb.Maintenance/Snapshot",
            request_serializer=pb.SnapshotRequest.SerializeToString,
            response_deserializer=pb.SnapshotResponse.FromString)
        try:
            async for resp in call(pb.SnapshotRequest()):
                yield resp
        except self.grpc.aio.AioRpcError as e:
            raise from_grpc_error(e) from None

    async def close(self) -> None:
        if self._channel is not None:
            await self._channel.close()
            self._channel = None


class GrpcWatch:
    def __init__(self, transport: GrpcTransport, create: pb.WatchCreateRequest):
        self.t = transport
        self.create = create
        self.stream = None

    def __aiter__(self):
        return self._iter()

    async def _iter(self):
        grpc = self.t.grpc
        if self.t._channel is None:
            self.t._open()
        call = self.t._channel.stream_stream(
            "/etcdserverpb.Watch/Watch",
            request_serializer=pb.WatchRequest.SerializeToString,
            response_deserializer=pb.WatchResponse.FromString)
        self.stream = call()
        try:
            await self._io(self.stream.write(pb.WatchRequest(create_request=self.create)))
            while True:
                resp = await self._io(self.stream.read())
                if resp is grpc.aio.EOF:
                    return
                if resp.created:
                    if resp.canceled:
                        raise errors.StoreError(resp.cancel_reason or "watch canceled")
                    continue
                if resp.canceled:
                    if resp.compact_revision:
                        raise _compacted(resp.compact_revision)
                    return
                yield resp
        finally:
            self.stream.cancel()

    async def _io(self, op):
        """One read or write of the stream, errors mapped: grpc.aio cancels the call
        when its channel is closed (failover to another endpoint) and the await then
        raises CancelledError; only a cancel of this task itself propagates as such."""
        grpc = self.t.grpc
        try:
            return await op
        except grpc.aio.AioRpcError as e:
            raise from_grpc_error(e) from None
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise
            raise errors.StreamClosed() from None

    async def request_progress(self) -> None:
        if self.stream is not None:
            await self.stream.write(pb.WatchRequest(progress_request=pb.WatchProgressRequest()))

    async def cancel(self) -> None:
        if self.stream is not None:
            self.stream.cancel()


_BY_MESSAGE: dict[str, type[errors.StoreError]] | None = None


def from_grpc_error_init() -> None:
    global _BY_MESSAGE
    _BY_MESSAGE = {}
    for v in vars(errors).values():
        if isinstance(v, type) and issubclass(v, errors.StoreError) and v is not errors.StoreError:
            _BY_MESSAGE[v.message] = v


def from_grpc_error(e) -> errors.StoreError:
    """Map a gRPC error from any etcd server back to the named StoreError."""
    if _BY_MESSAGE is None:
        from_grpc_error_init()
    msg = e.details() or ""
    cls = _BY_MESSAGE.get(msg)
    if cls is not None:
        return cls()
    err = errors.StoreError(msg or str(e.code()))
    err.code = e.code().value[0]
    return err


# ------------------------------------------------------------------------- pipeline --
class _PipeProtocol(asyncio.Protocol):
    def __init__(self, owner: "PipelineTransport"):
        self.owner = owner
        self.buf = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport) -> None:
        self.transport = transport

    def connection_lost(self, exc) -> None:
        self.transport = None
        self.owner._lost(self, exc)

    def data_received(self, data: bytes) -> None:
        from kcore.store.rpc.pipeline import HEAD, HEAD_SIZE
        buf = self.buf
        buf += data
        pos, n = 0, len(buf)
        waiting = self.owner.waiting
        while n - pos >= HEAD_SIZE:
            length, rid, status = HEAD.unpack_from(buf, pos)
            end = pos + 4 + length
            if end > n:
                break
            body = bytes(buf[pos + HEAD_SIZE:end])
            pos = end
            w = waiting.pop(rid, None)
            if w is None:
                continue
            fut, resp_type = w
            if fut.done():
                continue
            if status == 0:
                fut.set_result(resp_type.FromString(body))
            else:
                fut.set_exception(_error_from(status, body.decode(errors="replace")))
        del buf[:pos]


def _error_from(code: int, message: str) -> errors.StoreError:
    if _BY_MESSAGE is None:
        from_grpc_error_init()
    cls = _BY_MESSAGE.get(message)
    if cls is not None:
        return cls()
    e = errors.StoreError(message)
    e.code = code
    return e


class PipelineTransport:
    """kcore's pipelined TCP protocol (kcore etcd --listen-pipeline-urls): unary calls
    only, many in flight per connection; watches go through `watch_transport`
    (gRPC) when one is given."""

    def __init__(self, endpoints: list[str], connections: int = 1, timeout: float = 10.0,
                 watch_transport: "GrpcTransport | None" = None):
        self.endpoints = [e.split("://", 1)[-1] for e in endpoints]
        self.n_conns = connections
        self.timeout = timeout
        self.conns: list[_PipeProtocol] = []
        self.waiting: dict[int, tuple[asyncio.Future, type]] = {}
        self.next_id = 0
        self.rr = 0
        self.pending: dict[_PipeProtocol, list[bytes]] = {}
        self._flush_scheduled = False
        self._connecting: asyncio.Future | None = None
        self.watch_transport = watch_transport
        # per-call timeouts: one sweep over a deadline queue instead of a wait_for
        # (a timer, a future and two callbacks) per call
        self._deadlines: collections.deque = collections.deque()
        self._sweep_handle: asyncio.TimerHandle | None = None

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        last: Exception | None = None
        for i in range(len(self.endpoints)):
            host, _, port = self.endpoints[(self.rr + i) % len(self.endpoints)].rpartition(":")
            try:
                conns = []
                for _ in range(self.n_conns):
                    _, proto = await loop.create_connection(lambda: _PipeProtocol(self),
                                                            host, int(port))
                    conns.append(proto)
                self.conns = conns
                return
            except OSError as e:
                last = e
        raise errors.Unhealthy(f"cannot connect to {self.endpoints}: {last}")

    def _lost(self, proto: _PipeProtocol, exc) -> None:
        if proto in self.conns:
            self.conns.remove(proto)
        for fut, _ in list(self.waiting.values()):
            if not fut.done():
                fut.set_exception(errors.Unhealthy("connection lost"))
        self.waiting.clear()

    async def unary(self, method: str, request):
        from kcore.store.rpc import pipeline
        from kcore.store.rpc.pb import rpc_pb2 as m
        if not self.conns:
            if self._connecting is None:
                self._connecting = asyncio.ensure_future(self._connect())
            try:
                await self._connecting
            finally:
                self._connecting = None
        code = pipeline.NAME_CODE[method]
        resp_name = {"Compact": "CompactionResponse"}.get(method, method + "Response")
        self.next_id = rid = (self.next_id + 1) & 0xFFFFFFFF
        fut = asyncio.get_running_loop().create_future()
        self.waiting[rid] = (fut, getattr(m, resp_name))
        self.rr += 1
        conn = self.conns[self.rr % len(self.conns)]
        self.pending.setdefault(conn, []).append(pipeline.frame(rid, code,
                                                                request.SerializeToString()))
        loop = asyncio.get_running_loop()
        if not self._flush_scheduled:
            self._flush_scheduled = True
            loop.call_soon(self._flush)
        if self.timeout:
            self._deadlines.append((loop.time() + self.timeout, rid, fut))
            if self._sweep_handle is None:
                self._sweep_handle = loop.call_later(self.timeout, self._sweep)
        return await fut

    def _sweep(self) -> None:
        """Fail the calls past their deadline (TimeoutError, as wait_for raised)."""
        loop = asyncio.get_running_loop()
        now = loop.time()
        dq = self._deadlines
        while dq and (dq[0][2].done() or dq[0][0] <= now):
            _, rid, fut = dq.popleft()
            if not fut.done():
                self.waiting.pop(rid, None)
                fut.set_exception(TimeoutError(f"no answer within {self.timeout} s"))
        self._sweep_handle = (loop.call_later(max(dq[0][0] - now, 0.01), self._sweep)
                              if dq else None)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self.pending = self.pending, {}
        for conn, frames in pending.items():
            if conn.transport is not None:
                conn.transport.write(b"".join(frames))

    async def keep_alive_once(self, lease_id: int) -> int:
        if self.watch_transport is None:
            raise errors.NotCapable("keep-alive needs a gRPC transport")
        return await self.watch_transport.keep_alive_once(lease_id)

    def watch(self, create: pb.WatchCreateRequest):
        if self.watch_transport is None:
            raise errors.NotCapable("watch needs a gRPC transport")
        return self.watch_transport.watch(create)

    async def close(self) -> None:
        for c in self.conns:
            if c.transport is not None:
                c.transport.close()
        self.conns = []
        if self._sweep_handle is not None:
            self._sweep_handle.cancel()
            self._sweep_handle = None
        if self.watch_transport is not None:
            await self.watch_transport.close()


def connect_pipeline(endpoints: list[str] | str, connections: int = 1,
                     grpc_endpoints: list[str] | None = None, timeout: float = 10.0) -> Client:
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    wt = GrpcTransport(grpc_endpoints, None, timeout) if grpc_endpoints else None
    return Client(PipelineTransport(endpoints, connections, timeout, wt))


def connect(endpoints: list[str] | str, tls: TLSConfig | None = None,
            timeout: float = 10.0) -> Client:
    if isinstance(endpoints, str):
        endpoints = [e for e in endpoints.split(",") if e]
    return Client(GrpcTransport(endpoints, tls, timeout))


def local(server) -> Client:
    return Client(LocalTransport(server))
