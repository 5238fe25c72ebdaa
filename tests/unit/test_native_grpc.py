"""The native gRPC front end driven by the grpcio Python client.

A toy registry (in-memory KV, a Watch that echoes puts as events, a
LeaseKeepAlive echo, a multi-MB Snapshot stream) is served by
NativeGrpcServer on a loop in a background thread; the tests talk to it
with grpcio's generated stubs, as an etcd Python client would.

Run as a script (`python tests/unit/test_native_grpc.py [--tls DIR
[--client-certs]]`) it serves the same toy in a process of its own, prints
the port and runs until stdin closes; the integration tests drive that with
real etcdctl.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import hashlib
import ipaddress
import os
import queue
import ssl
import sys
import threading
import time
from pathlib import Path

import grpc
import pytest

from kcore.store import errors
from kcore.store.rpc.pb import kv_pb2
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb import rpc_pb2_grpc as stubs
from kcore.store.rpc.registry import BIDI_STREAM, SERVER_STREAM, UNARY, Registry

# ---- the toy service ------------------------------------------------------------------------


class Toy:
    """Just enough etcd for a front end to be judged by real clients."""

    def __init__(self, snapshot_bytes: int = 4 * 1024 * 1024):
        self.kv: dict[bytes, kv_pb2.KeyValue] = {}
        self.rev = 1
        self.watchers: set[asyncio.Queue] = set()
        self.cancelled: list[str] = []
        self.snapshot_bytes = snapshot_bytes
        self.snapshot_sent = 0
        self.release = asyncio.Event

    def header(self) -> pb.ResponseHeader:
        return pb.ResponseHeader(cluster_id=0x1000, member_id=0x2000, revision=self.rev,
                                 raft_term=2)

    async def put(self, req: pb.PutRequest) -> pb.PutResponse:
        if not req.key:
            raise errors.EmptyKey()
        if req.key == b"boom":
            raise RuntimeError("kaboom: handler bug")
        if req.key.startswith(b"slow"):
            try:
                await asyncio.sleep(float(req.value or b"10"))
            except asyncio.CancelledError:
                self.cancelled.append("put")
                raise
        elif req.key.startswith(b"yield"):
            await asyncio.sleep(0.001)
        elif req.key.startswith(b"waitfor"):   # what the store's proposals do
            fut = asyncio.get_running_loop().create_future()
            asyncio.get_running_loop().call_soon(fut.set_result, None)
            await asyncio.wait_for(asyncio.shield(fut), 5.0)
        self.rev += 1
        prev = self.kv.get(req.key)
        kv = kv_pb2.KeyValue(key=req.key, value=req.value, mod_revision=self.rev,
                             create_revision=prev.create_revision if prev else self.rev,
                             version=prev.version + 1 if prev else 1)
        self.kv[req.key] = kv
        for q in list(self.watchers):
            q.put_nowait(kv_pb2.Event(type=kv_pb2.Event.PUT, kv=kv))
        resp = pb.PutResponse(header=self.header())
        if req.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def _keys(self, key: bytes, end: bytes) -> list[bytes]:
        if not end:
            return [key] if key in self.kv else []
        return sorted(k for k in self.kv if k >= key and (end == b"\0" or k < end))

    async def range(self, req: pb.RangeRequest) -> pb.RangeResponse:
        keys = self._keys(req.key, req.range_end)
        kvs = [kv_pb2.KeyValue(key=k, mod_revision=self.kv[k].mod_revision) if req.keys_only
               else self.kv[k] for k in keys]
        return pb.RangeResponse(header=self.header(), kvs=kvs, count=len(keys))

    def txn_submit(self, req: pb.TxnRequest) -> asyncio.Future:
        """What the store's writes are: a future answered when applied, no coroutine."""
        key = req.success[0].request_put.key if req.success else b""
        if not key:
            raise errors.EmptyKey()
        loop = asyncio.get_running_loop()
        fut = loop.create_future()
        if key == b"now":
            fut.set_result(pb.TxnResponse(header=self.header(), succeeded=True))
        elif key.startswith(b"slow"):
            fut.add_done_callback(lambda f: f.cancelled() and self.cancelled.append("txn"))
        else:
            def apply() -> None:
                self.rev += 1
                if not fut.done():
                    fut.set_result(pb.TxnResponse(header=self.header(), succeeded=True))
            loop.call_soon(apply)
        return fut

    async def txn(self, req: pb.TxnRequest) -> pb.TxnResponse:
        return await self.txn_submit(req)

    async def delete_range(self, req: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        keys = self._keys(req.key, req.range_end)
        for k in keys:
            del self.kv[k]
            for q in list(self.watchers):
                q.put_nowait(kv_pb2.Event(type=kv_pb2.Event.DELETE,
                                          kv=kv_pb2.KeyValue(key=k, mod_revision=self.rev + 1)))
        if keys:
            self.rev += 1
        return pb.DeleteRangeResponse(header=self.header(), deleted=len(keys))

    async def watch(self, requests, send) -> None:
        events: asyncio.Queue = asyncio.Queue()
        self.watchers.add(events)

        async def read_requests() -> None:
            async for r in requests:
                if r.HasField("create_request"):
                    if r.create_request.key.startswith(b"stall"):   # stop reading requests
                        await asyncio.sleep(3600)
                    await send(pb.WatchResponse(header=self.header(), watch_id=0, created=True))
                elif r.HasField("cancel_request"):
                    await send(pb.WatchResponse(header=self.header(), canceled=True,
                                                watch_id=r.cancel_request.watch_id))
        reader = asyncio.ensure_future(read_requests())
        try:
            while True:
                ev = await events.get()
                await send(pb.WatchResponse(header=self.header(), watch_id=0, events=[ev]))
        except asyncio.CancelledError:
            self.cancelled.append("watch")
            raise
        finally:
            reader.cancel()
            self.watchers.discard(events)

    async def keep_alive(self, requests, send) -> None:
        async for r in requests:
            if r.ID < 0:
                raise errors.LeaseNotFound()
            await send(pb.LeaseKeepAliveResponse(header=self.header(), ID=r.ID, TTL=60))

    async def snapshot(self, req: pb.SnapshotRequest, send) -> None:
        """etcd's format: the database bytes, then their SHA-256, in 32 KiB blobs."""
        block = bytes(range(256)) * 128
        digest = hashlib.sha256()
        self.snapshot_sent = 0
        total = self.snapshot_bytes + 32
        try:
            while self.snapshot_sent < total:
                if self.snapshot_sent < self.snapshot_bytes:
                    blob = block[: self.snapshot_bytes - self.snapshot_sent]
                    digest.update(blob)
                else:
                    blob = digest.digest()
                self.snapshot_sent += len(blob)
                await send(pb.SnapshotResponse(header=self.header(), blob=blob,
                                               remaining_bytes=total - self.snapshot_sent))
        except asyncio.CancelledError:
            self.cancelled.append("snapshot")
            raise


def toy_registry(toy: Toy) -> Registry:
    reg = Registry()
    kv = "etcdserverpb.KV"
    reg.add(kv, "Put", UNARY, pb.PutRequest, pb.PutResponse, toy.put)
    reg.add(kv, "Range", UNARY, pb.RangeRequest, pb.RangeResponse, toy.range)
    reg.add(kv, "DeleteRange", UNARY, pb.DeleteRangeRequest, pb.DeleteRangeResponse,
            toy.delete_range)
    reg.add(kv, "Txn", UNARY, pb.TxnRequest, pb.TxnResponse, toy.txn, toy.txn_submit)
    reg.add("etcdserverpb.Watch", "Watch", BIDI_STREAM, pb.WatchRequest, pb.WatchResponse,
            toy.watch)
    reg.add("etcdserverpb.Lease", "LeaseKeepAlive", BIDI_STREAM, pb.LeaseKeepAliveRequest,
            pb.LeaseKeepAliveResponse, toy.keep_alive)
    reg.add("etcdserverpb.Maintenance", "Snapshot", SERVER_STREAM, pb.SnapshotRequest,
            pb.SnapshotResponse, toy.snapshot)
    return reg


# ---- test certificates ----------------------------------------------------------------------

def make_certs(directory: Path) -> dict[str, Path]:
    """A CA, a server cert for 127.0.0.1/localhost and a client cert, as PEM files."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write_key(key, path: Path) -> None:
        path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))

    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(name("kcore test CA")).issuer_name(name("kcore test CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1))
          .not_valid_after(now + datetime.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                       content_commitment=False, key_encipherment=False,
                                       data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    out = {"ca": directory / "ca.pem"}
    out["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    for role, usage in (("server", ExtendedKeyUsageOID.SERVER_AUTH),
                        ("client", ExtendedKeyUsageOID.CLIENT_AUTH)):
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(name(f"kcore test {role}"))
                   .issuer_name(ca.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(hours=1))
                   .not_valid_after(now + datetime.timedelta(days=1))
                   .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if role == "server":
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        out[role] = directory / f"{role}.pem"
        out[role].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[role + "_key"] = directory / f"{role}-key.pem"
        write_key(key, out[role + "_key"])
    return out


def server_ssl_context(certs: dict[str, Path], client_certs: bool) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs["server"], certs["server_key"])
    if client_certs:
        ctx.load_verify_locations(certs["ca"])
        ctx.verify_mode = ssl.CERT_REQUIRED
    return ctx


# ---- an in-process server on a background loop ----------------------------------------------

class Served:
    """NativeGrpcServer with the toy registry, running on its own thread's loop."""

    def __init__(self, toy: Toy | None = None, *, use_uvloop: bool = True,
                 ssl_context: ssl.SSLContext | None = None, **kw):
        from kcore.store.rpc.native_server import NativeGrpcServer

        self.toy = toy or Toy()
        if use_uvloop:
            import uvloop
            self.loop = uvloop.new_event_loop()
        else:
            self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server = NativeGrpcServer(toy_registry(self.toy), ssl_context=ssl_context, **kw)
        self.port = self.call(self.server.start("127.0.0.1", 0))

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop_async(self, grace: float | None):
        return asyncio.run_coroutine_threadsafe(self.server.stop(grace), self.loop)

    def close(self) -> None:
        try:
            self.call(self.server.stop(None))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(params=["uvloop", "asyncio"])
def served(request):
    s = Served(use_uvloop=request.param == "uvloop")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def channel(served):
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    try:
        yield ch
    finally:
        ch.close()


def wait_for(predicate, timeout: float = 5.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# ---- unary --------------------------------------------------------------------------------------

def test_put_range_delete(channel):
    kv = stubs.KVStub(channel)
    r = kv.Put(pb.PutRequest(key=b"a", value=b"1"))
    assert r.header.revision == 2 and r.header.member_id == 0x2000
    kv.Put(pb.PutRequest(key=b"ab", value=b"2"))
    r = kv.Put(pb.PutRequest(key=b"a", value=b"3", prev_kv=True))
    assert r.prev_kv.value == b"1"
    got = kv.Range(pb.RangeRequest(key=b"a", range_end=b"b"))
    assert [(x.key, x.value) for x in got.kvs] == [(b"a", b"3"), (b"ab", b"2")]
    assert kv.DeleteRange(pb.DeleteRangeRequest(key=b"a", range_end=b"b")).deleted == 2
    assert kv.Range(pb.RangeRequest(key=b"a")).count == 0


def test_handler_that_suspends(channel):
    kv = stubs.KVStub(channel)
    assert kv.Put(pb.PutRequest(key=b"yield", value=b"x")).header.revision == 2
    assert kv.Put(pb.PutRequest(key=b"waitfor", value=b"x")).header.revision == 3


def test_many_concurrent_calls_on_one_connection(channel):
    kv = stubs.KVStub(channel)
    futures = [kv.Put.future(pb.PutRequest(key=b"k%d" % i if i % 3 else b"yield%d" % i,
                                           value=b"v"))
               for i in range(300)]
    revs = sorted(f.result(timeout=30).header.revision for f in futures)
    assert revs == list(range(2, 302))


def test_large_request_near_the_limit(channel):
    kv = stubs.KVStub(channel)
    value = os.urandom(2 * 1024 * 1024)
    kv.Put(pb.PutRequest(key=b"big", value=value))
    assert kv.Range(pb.RangeRequest(key=b"big")).kvs[0].value == value


def test_store_error_maps_to_its_code(channel):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b""))
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert err.value.details() == "etcdserver: key is not provided"


def test_other_exception_is_unknown(channel, caplog):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b"boom"))
    assert err.value.code() == grpc.StatusCode.UNKNOWN
    assert err.value.details() == "kaboom: handler bug"


def test_unknown_method_and_service(channel):
    with pytest.raises(grpc.RpcError) as err:
        stubs.KVStub(channel).Compact(pb.CompactionRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == "unknown method Compact for service etcdserverpb.KV"
    with pytest.raises(grpc.RpcError) as err:
        stubs.ClusterStub(channel).MemberList(pb.MemberListRequest())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert err.value.details() == "unknown service etcdserverpb.Cluster"


def test_oversized_message(channel):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b"big", value=b"x" * (3 << 20)))
    assert err.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert err.value.details() == "grpc: received message larger than max (3145738 vs. 2621440)"
    assert kv.Put(pb.PutRequest(key=b"after", value=b"ok")).header.revision == 2


def test_compressed_message_is_unimplemented(channel):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b"k", value=b"v" * 1000), compression=grpc.Compression.Gzip)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_error_message_is_percent_encoded(channel, served):
    async def fail(req):
        raise errors.StoreError("bad: 100% \u00fcber\nline")
    served.server._table[b"/etcdserverpb.KV/Compact"] = (
        1, pb.CompactionRequest.FromString, fail, None)
    with pytest.raises(grpc.RpcError) as err:
        stubs.KVStub(channel).Compact(pb.CompactionRequest())
    assert err.value.details() == "bad: 100% \u00fcber\nline"


def test_deadline_cancels_the_handler(channel, served):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Put(pb.PutRequest(key=b"slow"), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(lambda: served.toy.cancelled == ["put"])


def _txn_put(key: bytes) -> pb.TxnRequest:
    return pb.TxnRequest(success=[pb.RequestOp(request_put=pb.PutRequest(key=key))])


def test_submitted_calls_are_answered_from_their_futures(channel):
    kv = stubs.KVStub(channel)
    assert kv.Txn(_txn_put(b"a")).header.revision == 2
    assert kv.Txn(_txn_put(b"now")).succeeded            # a future done at once
    futures = [kv.Txn.future(_txn_put(b"k%d" % i)) for i in range(100)]
    assert sorted(f.result(timeout=30).header.revision for f in futures) == \
        list(range(3, 103))
    with pytest.raises(grpc.RpcError) as err:              # refused before submitting
        kv.Txn(pb.TxnRequest())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_deadline_or_cancel_of_a_submitted_call_cancels_its_future(channel, served):
    kv = stubs.KVStub(channel)
    with pytest.raises(grpc.RpcError) as err:
        kv.Txn(_txn_put(b"slow"), timeout=0.3)
    assert err.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert wait_for(lambda: served.toy.cancelled == ["txn"])
    fut = kv.Txn.future(_txn_put(b"slow2"))
    time.sleep(0.2)
    fut.cancel()
    assert wait_for(lambda: served.toy.cancelled == ["txn", "txn"])


def test_client_cancel_of_a_unary_call(channel, served):
    fut = stubs.KVStub(channel).Put.future(pb.PutRequest(key=b"slow"))
    time.sleep(0.2)
    fut.cancel()
    assert wait_for(lambda: served.toy.cancelled == ["put"])


# ---- streams ------------------------------------------------------------------------------------

class Requests:
    """A request iterator the test feeds by hand (None ends it)."""

    def __init__(self):
        self.q: queue.Queue = queue.Queue()

    def __iter__(self):
        while True:
            item = self.q.get()
            if item is None:
                return
            yield item


def test_watch_bidi_stream_and_client_cancel(channel, served):
    reqs = Requests()
    call = stubs.WatchStub(channel).Watch(iter(reqs))
    reqs.q.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w")))
    assert next(call).created
    kv = stubs.KVStub(channel)
    kv.Put(pb.PutRequest(key=b"w", value=b"1"))
    kv.Put(pb.PutRequest(key=b"w", value=b"2"))
    got = [next(call).events[0].kv.value for _ in range(2)]
    assert got == [b"1", b"2"]
    call.cancel()
    assert wait_for(lambda: served.toy.cancelled == ["watch"])
    reqs.q.put(None)


def test_bidi_requests_are_flow_controlled(channel):
    """A handler that stops reading holds the client back (HTTP/2 flow
    control), instead of the server buffering whatever the client sends."""
    produced = []

    def requests():
        for i in range(200):
            produced.append(i)
            key = b"stall" if i == 0 else b"k" * 65536
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=key))

    call = stubs.WatchStub(channel).Watch(requests())
    time.sleep(1.5)
    assert 1 < len(produced) < 100, len(produced)
    call.cancel()


def test_stalled_streams_do_not_block_the_connection(channel):
    """Held-back stream windows do not hold the connection window: with more
    stalled streams than the 16 MiB connection window covers, unary calls on
    the same connection still go through."""
    def requests():
        yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"stall"))
        for _ in range(40):
            yield pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"k" * 65536))

    calls = [stubs.WatchStub(channel).Watch(requests()) for _ in range(20)]
    try:
        time.sleep(2.0)
        kv = stubs.KVStub(channel)
        assert kv.Put(pb.PutRequest(key=b"a", value=b"1"), timeout=5).header.revision == 2
    finally:
        for c in calls:
            c.cancel()


def test_lease_keepalive_bidi(channel):
    reqs = [pb.LeaseKeepAliveRequest(ID=i) for i in range(1, 51)]
    got = [r.ID for r in stubs.LeaseStub(channel).LeaseKeepAlive(iter(reqs))]
    assert got == list(range(1, 51))


def test_bidi_handler_error_ends_the_stream(channel):
    reqs = [pb.LeaseKeepAliveRequest(ID=1), pb.LeaseKeepAliveRequest(ID=-1)]
    call = stubs.LeaseStub(channel).LeaseKeepAlive(iter(reqs))
    assert next(call).ID == 1
    with pytest.raises(grpc.RpcError) as err:
        next(call)
    assert err.value.code() == grpc.StatusCode.NOT_FOUND
    assert err.value.details() == "etcdserver: requested lease not found"


def test_snapshot_server_stream(channel):
    blobs = [r.blob for r in stubs.MaintenanceStub(channel).Snapshot(pb.SnapshotRequest())]
    data = b"".join(blobs)
    assert len(data) == 4 * 1024 * 1024 + 32
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]


def test_snapshot_respects_flow_control(served):
    """A client that stops reading stops the sender: the handler is held at
    send() long before it could push the whole (64 MiB) snapshot."""
    served.toy.snapshot_bytes = 64 * 1024 * 1024
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    try:
        call = stubs.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest())
        next(call)
        time.sleep(1.0)
        held_at = served.toy.snapshot_sent
        assert held_at < 24 * 1024 * 1024, held_at
        total = 32 * 1024 + sum(len(r.blob) for r in call)
        assert total == 64 * 1024 * 1024 + 32
    finally:
        ch.close()


def test_snapshot_cancel_cancels_the_handler(served):
    served.toy.snapshot_bytes = 64 * 1024 * 1024
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    try:
        call = stubs.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest())
        next(call)
        call.cancel()
        assert wait_for(lambda: served.toy.cancelled == ["snapshot"])
    finally:
        ch.close()


def test_connection_loss_cancels_streams(served):
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    reqs = Requests()
    call = stubs.WatchStub(ch).Watch(iter(reqs))
    reqs.q.put(pb.WatchRequest(create_request=pb.WatchCreateRequest(key=b"w")))
    assert next(call).created
    ch.close()
    reqs.q.put(None)
    assert wait_for(lambda: served.toy.cancelled == ["watch"])


# ---- TLS ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("client_certs", [False, True])
@pytest.mark.parametrize("use_uvloop", [True, False])
def test_tls(tmp_path, client_certs, use_uvloop):
    certs = make_certs(tmp_path)
    s = Served(use_uvloop=use_uvloop, ssl_context=server_ssl_context(certs, client_certs))
    try:
        ca = certs["ca"].read_bytes()
        if client_certs:
            creds = grpc.ssl_channel_credentials(ca, certs["client_key"].read_bytes(),
                                                 certs["client"].read_bytes())
        else:
            creds = grpc.ssl_channel_credentials(ca)
        with grpc.secure_channel(f"127.0.0.1:{s.port}", creds) as ch:
            kv = stubs.KVStub(ch)
            assert kv.Put(pb.PutRequest(key=b"t", value=b"1"), timeout=10).header.revision == 2
            size = sum(len(r.blob) for r in stubs.MaintenanceStub(ch).Snapshot(
                pb.SnapshotRequest(), timeout=30))
            assert size == 4 * 1024 * 1024 + 32
        if client_certs:
            with grpc.secure_channel(f"127.0.0.1:{s.port}", grpc.ssl_channel_credentials(ca)) as ch:
                with pytest.raises(grpc.RpcError) as err:
                    stubs.KVStub(ch).Put(pb.PutRequest(key=b"t", value=b"2"), timeout=5)
                assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        s.close()


# ---- shutdown -------------------------------------------------------------------------------------

def test_stop_lets_calls_finish_within_grace(served):
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    try:
        kv = stubs.KVStub(ch)
        kv.Put(pb.PutRequest(key=b"warm"))
        inflight = kv.Put.future(pb.PutRequest(key=b"slow", value=b"0.3"))
        time.sleep(0.1)
        stopping = served.stop_async(5.0)
        assert inflight.result(timeout=5).header.revision == 3
        stopping.result(timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            kv.Put(pb.PutRequest(key=b"late"), timeout=2)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE,
                                    grpc.StatusCode.DEADLINE_EXCEEDED)
    finally:
        ch.close()


def test_stop_without_grace_cancels_calls(served):
    ch = grpc.insecure_channel(f"127.0.0.1:{served.port}")
    try:
        kv = stubs.KVStub(ch)
        inflight = kv.Put.future(pb.PutRequest(key=b"slow", value=b"5"))
        time.sleep(0.1)
        served.stop_async(None).result(timeout=10)
        with pytest.raises(grpc.RpcError) as err:
            inflight.result(timeout=5)
        assert err.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                                    grpc.StatusCode.INTERNAL)
        assert wait_for(lambda: served.toy.cancelled == ["put"])
    finally:
        ch.close()


# ---- small pieces -------------------------------------------------------------------------------

def test_percent_encode():
    from kcore._native.h2grpc import percent_encode
    assert percent_encode("plain text") == b"plain text"
    assert percent_encode("100%") == b"100%25"
    assert percent_encode("a\nb") == b"a%0Ab"
    assert percent_encode("\u00fc") == b"%C3%BC"


def test_resume_continues_a_started_coroutine():
    """A coroutine driven by hand until it suspends, then finished by a Task,
    sees the same values and exceptions as if the Task had run it all along."""
    from kcore.store.rpc.native_server import _resume

    async def handler(fut, log):
        log.append("start")
        v = await fut
        log.append(v)
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            log.append("cancelled")
            return "done"

    async def main():
        loop = asyncio.get_running_loop()
        fut, log = loop.create_future(), []
        coro = handler(fut, log)
        pending = coro.send(None)
        assert pending is fut and log == ["start"]
        task = loop.create_task(_resume_wrapper(_resume, coro, pending))
        loop.call_later(0.01, fut.set_result, 42)
        await asyncio.sleep(0.05)
        task.cancel()
        assert await task == "done"
        assert log == ["start", 42, "cancelled"]

    async def _resume_wrapper(resume, coro, pending):
        return await resume(coro, pending)

    asyncio.run(main())


def test_unknown_path_messages():
    from kcore.store.rpc.native_server import NativeGrpcServer
    s = NativeGrpcServer(toy_registry(Toy()))
    assert s.unknown_path(b"/etcdserverpb.KV/Nope") == "unknown method Nope for service etcdserverpb.KV"
    assert s.unknown_path(b"/x.Y/Z") == "unknown service x.Y"
    assert s.unknown_path(b"nonsense").startswith("malformed method name")


# ---- a toy server process for the integration tests -----------------------------------------

async def _serve_main(args) -> None:
    from kcore.store.rpc.native_server import NativeGrpcServer

    ctx = None
    if args.tls:
        d = Path(args.tls)
        certs = {"server": d / "server.pem", "server_key": d / "server-key.pem", "ca": d / "ca.pem"}
        ctx = server_ssl_context(certs, args.client_certs)
    server = NativeGrpcServer(toy_registry(Toy()), ssl_context=ctx)
    print(await server.start("127.0.0.1", 0), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)   # until EOF
    await server.stop(1.0)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--tls")
    ap.add_argument("--client-certs", action="store_true")
    import uvloop
    uvloop.run(_serve_main(ap.parse_args()))


# ---- agreement with the stock grpc.aio front end ------------------------------------------------

def _exchange(ch) -> list:
    """What a client sees from a fixed script of calls: responses and statuses."""
    kv, lease = stubs.KVStub(ch), stubs.LeaseStub(ch)
    seen: list = []

    def call(fn, *args):
        try:
            seen.append(fn(*args, timeout=10))
        except grpc.RpcError as e:
            seen.append((e.code(), e.details()))

    call(kv.Put, pb.PutRequest(key=b"a", value=b"1"))
    call(kv.Put, pb.PutRequest(key=b"a", value=b"2", prev_kv=True))
    call(kv.Put, pb.PutRequest(key=b"yield-b", value=b"3"))
    call(kv.Put, pb.PutRequest(key=b""))
    call(kv.Range, pb.RangeRequest(key=b"a", range_end=b"z"))
    call(kv.DeleteRange, pb.DeleteRangeRequest(key=b"a"))
    seen.append(list(lease.LeaseKeepAlive(iter([pb.LeaseKeepAliveRequest(ID=i)
                                                for i in (5, 6, 7)]))))
    blobs = [r.blob for r in stubs.MaintenanceStub(ch).Snapshot(pb.SnapshotRequest())]
    seen.append(hashlib.sha256(b"".join(blobs)).hexdigest())
    return seen


def test_agrees_with_grpc_aio_front_end():
    """The native server is checked against the reference front end
    (kcore.store.rpc.grpc_server) on the same registry and the same calls."""
    grpc_server = pytest.importorskip("kcore.store.rpc.grpc_server")

    native = Served()
    try:
        with grpc.insecure_channel(f"127.0.0.1:{native.port}") as ch:
            got = _exchange(ch)
    finally:
        native.close()

    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    async def start():   # grpc.aio binds a server to the loop it is made on
        server = grpc_server.GrpcAioServer(toy_registry(Toy()), max_recv_bytes=2 * 1024 * 1024)
        return server, await server.start("127.0.0.1", 0)

    ref = None
    try:
        ref, port = asyncio.run_coroutine_threadsafe(start(), loop).result(30)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:
            want = _exchange(ch)
    finally:
        if ref is not None:
            asyncio.run_coroutine_threadsafe(ref.stop(None), loop).result(30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    assert got == want
