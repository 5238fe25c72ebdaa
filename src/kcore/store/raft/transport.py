"""Peer transport: raft messages between members over TCP (optionally mutual TLS).

One outbound connection per peer carries batches of messages: whatever the
node sent since the last write goes out as one frame (pipelined, batched).
A connection starts with a hello naming the cluster and both members; a
member of another cluster (or a removed member) is refused. Snapshots travel
on a connection of their own: the raft message, then the database file.

Frames: 4-byte big-endian length, 1-byte kind, msgpack payload.
"""
from __future__ import annotations

import asyncio
import logging
import os
import ssl
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Protocol
from urllib.parse import urlsplit

import msgpack

from kcore.store.raft.messages import (
    MT_SNAP,
    Message,
    decode_message,
    encode_message,
)

log = logging.getLogger(__name__)

FRAME = struct.Struct(">IB")
HELLO, OK, ERR, MSGS, SNAP, SNAP_ACK, MEMBERS_REQ, MEMBERS = range(1, 9)
MAX_FRAME = 64 << 20
MAX_QUEUE = 8192
SNAP_CHUNK = 1 << 20


class PeerHandler(Protocol):
    def on_messages(self, msgs: list[Message]) -> None: ...
    def on_snapshot(self, msg: Message, db_path: str) -> None: ...
    def report_unreachable(self, peer: int) -> None: ...
    def report_snapshot(self, peer: int, ok: bool) -> None: ...
    def members_info(self) -> dict: ...
    def is_removed(self, member: int) -> bool: ...
    async def snapshot_db(self) -> str: ...
    def on_removed(self) -> None: ...


class PeerError(Exception):
    pass


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readexactly(FRAME.size)
    n, kind = FRAME.unpack(head)
    if n > MAX_FRAME:
        raise PeerError(f"frame of {n} bytes is too large")
    return kind, await reader.readexactly(n)


def _frame(kind: int, payload: bytes) -> bytes:
    return FRAME.pack(len(payload), kind) + payload


def _hostport(url: str) -> tuple[str, int, bool]:
    u = urlsplit(url)
    return u.hostname or "127.0.0.1", u.port or 2380, u.scheme == "https"


class _MsgsProtocol(asyncio.Protocol):
    """The receiving side of a peer's message connection once its hello is done:
    frames are cut out of each read and handed to the node at once (no reader
    Task to wake, no second loop turn per message)."""

    def __init__(self, handler: PeerHandler, peer: int, transport, done: asyncio.Future):
        self.handler = handler
        self.peer = peer
        self.transport = transport
        self.done = done
        self.buf = bytearray()

    @classmethod
    async def take_over(cls, handler: PeerHandler, peer: int, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter) -> None:
        """Switch the connection from the stream reader to this protocol; returns when
        the connection is closed."""
        transport = writer.transport
        done = asyncio.get_running_loop().create_future()
        proto = cls(handler, peer, transport, done)
        leftover = bytes(reader._buffer)   # read already, not yet consumed
        reader._buffer.clear()
        transport.set_protocol(proto)
        if leftover:
            proto.data_received(leftover)
        if not transport.is_closing():
            transport.resume_reading()      # the stream reader may have paused it
        await done

    def data_received(self, data: bytes) -> None:
        buf = self.buf
        buf += data
        pos, end, msgs = 0, len(buf), []
        try:
            while end - pos >= FRAME.size:
                n, kind = FRAME.unpack_from(buf, pos)
                if n > MAX_FRAME:
                    raise PeerError(f"frame of {n} bytes is too large")
                if kind != MSGS:
                    raise PeerError(f"unexpected frame kind {kind}")
                start = pos + FRAME.size
                if end - start < n:
                    break
                msgs.extend(decode_message(b) for b in msgpack.unpackb(buf[start:start + n]))
                pos = start + n
        except (PeerError, ValueError, msgpack.UnpackException) as e:
            log.warning("peer connection: %s", e)
            self.transport.close()
            return
        if pos:
            del buf[:pos]
        if msgs:
            if self.handler.is_removed(self.peer):
                self.transport.close()  # it reconnects, is refused, and learns why
                return
            self.handler.on_messages(msgs)

    def eof_received(self) -> None:
        return None                         # close

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


class _Peer:
    def __init__(self, transport: "PeerTransport", pid: int, urls: list[str]):
        self.t = transport
        self.id = pid
        self.urls = urls
        self.queue: list[Message] = []
        self.wake = asyncio.Event()
        self.writer: asyncio.StreamWriter | None = None
        self.task = asyncio.get_running_loop().create_task(self._run())
        self.last_unreachable = 0.0
        self.active = False

    def send(self, m: Message) -> None:
        if len(self.queue) >= MAX_QUEUE:
            del self.queue[: MAX_QUEUE // 2]  # raft tolerates loss; keep memory bounded
        self.queue.append(m)
        self.wake.set()

    def send_now(self, msgs: list[Message]) -> None:
        """Write at once when connected and nothing is queued (the common case: one
        frame per Ready, no task switch); otherwise queue for the writer task."""
        w = self.writer
        if w is not None and w.transport.is_closing():
            self._close()           # lost (TLS writes to a dead peer do not raise)
            w = None
        if (w is None or self.queue or any(m.type == MT_SNAP for m in msgs)
                or w.transport.get_write_buffer_size() > (1 << 20)):
            for m in msgs:
                self.send(m)
            return
        try:
            w.write(_frame(MSGS, msgpack.packb([encode_message(m) for m in msgs])))
        except (OSError, ConnectionError, RuntimeError):
            self._close()
            self._unreachable()

    async def _connect(self) -> None:
        last: Exception | None = None
        for url in self.urls:
            host, port, tls = _hostport(url)
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=self.t.client_ssl if tls else None,
                    server_hostname=host if tls else None), 1.0)
                await self.t._hello(reader, writer, self.id)
                self.writer = writer
                self.active = True
                asyncio.get_running_loop().create_task(self._drain_reader(reader, writer))
                return
            except PeerError as e:
                if "was removed" in str(e):
                    self.t.handler.on_removed()
                last = e
            except (TimeoutError, OSError, asyncio.IncompleteReadError, ssl.SSLError) as e:
                last = e
        raise PeerError(f"cannot reach member {self.id:x} at {self.urls}: {last}")

    async def _drain_reader(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        # the inbound side of an outbound connection only tells us it closed: then
        # drop the writer, so the next message reconnects instead of writing into a
        # dead connection
        try:
            while await reader.read(4096):
                pass
        except (OSError, ConnectionError, ssl.SSLError):
            pass
        if self.writer is writer:
            self._close()
            self._unreachable()

    def _unreachable(self) -> None:
        self.active = False
        now = time.monotonic()
        if now - self.last_unreachable > 0.5:
            self.last_unreachable = now
            self.t.handler.report_unreachable(self.id)

    async def _run(self) -> None:
        backoff = 0.05
        while True:
            await self.wake.wait()
            self.wake.clear()
            if not self.queue:
                continue
            if self.writer is not None and self.writer.transport.is_closing():
                self._close()
            if self.writer is None:
                try:
                    await self._connect()
                    backoff = 0.05
                except PeerError as e:
                    log.debug("%s", e)
                    self.queue.clear()
                    self._unreachable()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, 1.0)
                    continue
            msgs, self.queue = self.queue, []
            snaps = [m for m in msgs if m.type == MT_SNAP]
            if snaps:
                msgs = [m for m in msgs if m.type != MT_SNAP]
                for m in snaps:
                    asyncio.get_running_loop().create_task(self.t._send_snapshot(self, m))
            if not msgs:
                continue
            payload = msgpack.packb([encode_message(m) for m in msgs])
            try:
                self.writer.write(_frame(MSGS, payload))
                await self.writer.drain()
            except (OSError, ConnectionError, RuntimeError):
                self._close()
                self._unreachable()

    def _close(self) -> None:
        if self.writer is not None:
            try:
                self.writer.close()
            except Exception:  # noqa: BLE001
                pass
            self.writer = None

    def stop(self) -> None:
        self.task.cancel()
        self._close()


class PeerTransport:
    def __init__(self, member_id: int, cluster_id: int, handler: PeerHandler, snap_dir: str,
                 server_ssl: ssl.SSLContext | None = None,
                 client_ssl: ssl.SSLContext | None = None):
        self.id = member_id
        self.cluster_id = cluster_id
        self.handler = handler
        self.snap_dir = snap_dir
        self.server_ssl = server_ssl
        self.client_ssl = client_ssl
        self.peers: dict[int, _Peer] = {}
        self.servers: list[asyncio.AbstractServer] = []

    # ---------------------------------------------------------------- serving ---
    async def listen(self, url: str) -> int:
        host, port, tls = _hostport(url)
        if tls and self.server_ssl is None:
            raise PeerError(f"{url} needs --peer-cert-file and --peer-key-file")
        srv = await asyncio.start_server(self._serve, host, port,
                                         ssl=self.server_ssl if tls else None,
                                         reuse_address=True)
        self.servers.append(srv)
        return srv.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            kind, payload = await asyncio.wait_for(_read_frame(reader), 10)
            if kind == MEMBERS_REQ:
                writer.write(_frame(MEMBERS, msgpack.packb(self.handler.members_info())))
                await writer.drain()
                return
            if kind != HELLO:
                raise PeerError("expected hello")
            hello = msgpack.unpackb(payload)
            err = self._check_hello(hello)
            if err:
                writer.write(_frame(ERR, err.encode()))
                await writer.drain()
                log.warning("refused peer connection: %s", err)
                return
            writer.write(_frame(OK, b""))
            await writer.drain()
            handler = self.handler
            peer = hello.get("from", 0)
            while True:
                kind, payload = await _read_frame(reader)
                if handler.is_removed(peer):
                    return  # it reconnects, is refused, and learns it was removed
                if kind == MSGS:
                    handler.on_messages([decode_message(b) for b in msgpack.unpackb(payload)])
                    # a message connection: the rest is read by callbacks, a frame
                    # reaching the node in the same loop turn as its bytes
                    await _MsgsProtocol.take_over(handler, peer, reader, writer)
                    return
                elif kind == SNAP:
                    await self._receive_snapshot(reader, writer, payload)
                else:
                    raise PeerError(f"unexpected frame kind {kind}")
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError, OSError, asyncio.CancelledError):
            pass
        except (PeerError, ValueError, msgpack.UnpackException) as e:
            log.warning("peer connection: %s", e)
        finally:
            try:
                writer.close()
            except Exception:  # noqa: BLE001
                pass

    def _check_hello(self, hello: dict) -> str:
        if hello.get("cluster") != self.cluster_id:
            return (f"cluster ID mismatch (this member is in cluster {self.cluster_id:x}, "
                    f"the peer in {hello.get('cluster', 0):x})")
        if hello.get("to") != self.id:
            return f"member ID mismatch (this is {self.id:x}, not {hello.get('to', 0):x})"
        if self.handler.is_removed(hello.get("from", 0)):
            return f"member {hello.get('from', 0):x} was removed from the cluster"
        return ""

    async def _hello(self, reader, writer, to: int) -> None:
        writer.write(_frame(HELLO, msgpack.packb(
            {"cluster": self.cluster_id, "from": self.id, "to": to})))
        await writer.drain()
        kind, payload = await asyncio.wait_for(_read_frame(reader), 5)
        if kind != OK:
            writer.close()
            raise PeerError(payload.decode(errors="replace"))

    # ---------------------------------------------------------------- sending ---
    def set_peers(self, peers: dict[int, list[str]]) -> None:
        for pid in list(self.peers):
            if pid not in peers:
                self.peers.pop(pid).stop()
        for pid, urls in peers.items():
            if pid == self.id:
                continue
            p = self.peers.get(pid)
            if p is None:
                self.peers[pid] = _Peer(self, pid, urls)
            else:
                p.urls = urls

    def send(self, msgs) -> None:
        peers = self.peers
        by_peer: dict[int, list[Message]] = {}
        for m in msgs:
            if m.to in peers:
                by_peer.setdefault(m.to, []).append(m)
            elif m.type == MT_SNAP:
                self.handler.report_snapshot(m.to, False)
        for pid, ms in by_peer.items():
            peers[pid].send_now(ms)

    def is_active(self, pid: int) -> bool:
        p = self.peers.get(pid)
        return p is not None and p.active

    # ---------------------------------------------------------------- snapshots -
    async def _send_snapshot(self, peer: _Peer, m: Message) -> None:
        ok = False
        path = None
        try:
            path = await self.handler.snapshot_db()
            size = os.path.getsize(path)
            for url in peer.urls:
                host, port, tls = _hostport(url)
                try:
                    reader, writer = await asyncio.wait_for(asyncio.open_connection(
                        host, port, ssl=self.client_ssl if tls else None,
                        server_hostname=host if tls else None), 2.0)
                except (TimeoutError, OSError):
                    continue
                try:
                    await self._hello(reader, writer, peer.id)
                    writer.write(_frame(SNAP, msgpack.packb(
                        {"msg": encode_message(m), "size": size})))
                    with open(path, "rb") as fh:
                        while True:
                            chunk = fh.read(SNAP_CHUNK)
                            if not chunk:
                                break
                            writer.write(chunk)
                            await writer.drain()
                    kind, payload = await asyncio.wait_for(_read_frame(reader), 120)
                    ok = kind == SNAP_ACK and payload == b"ok"
                    log.info("sent snapshot at index %d (%d bytes) to %x: %s",
                             m.snapshot.index, size, peer.id, "ok" if ok else payload)
                finally:
                    writer.close()
                break
        except Exception as e:  # noqa: BLE001 - reported to raft as a failed snapshot
            log.warning("sending snapshot to %x failed: %s", peer.id, e)
        finally:
            if path and os.path.exists(path):
                os.unlink(path)
            self.handler.report_snapshot(peer.id, ok)

    async def _receive_snapshot(self, reader, writer, payload: bytes) -> None:
        head = msgpack.unpackb(payload)
        m = decode_message(head["msg"])
        size = int(head["size"])
        os.makedirs(self.snap_dir, exist_ok=True)
        path = os.path.join(self.snap_dir, f"{m.snapshot.index:016x}.snap.db")
        tmp = path + ".part"
        with open(tmp, "wb") as fh:
            left = size
            while left:
                chunk = await reader.read(min(left, SNAP_CHUNK))
                if not chunk:
                    raise asyncio.IncompleteReadError(b"", left)
                fh.write(chunk)
                left -= len(chunk)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        log.info("received snapshot at index %d (%d bytes) from %x", m.snapshot.index, size,
                 m.from_)
        self.handler.on_snapshot(m, path)
        writer.write(_frame(SNAP_ACK, b"ok"))
        await writer.drain()

    # ---------------------------------------------------------------- joining ---
    @staticmethod
    async def fetch_members(urls: list[str], client_ssl: ssl.SSLContext | None = None,
                            timeout: float = 2.0) -> dict:
        """Ask a running member for the cluster's identity and members."""
        last: Exception | None = None
        for url in urls:
            host, port, tls = _hostport(url)
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(
                    host, port, ssl=client_ssl if tls else None,
                    server_hostname=host if tls else None), timeout)
                try:
                    writer.write(_frame(MEMBERS_REQ, b""))
                    await writer.drain()
                    kind, payload = await asyncio.wait_for(_read_frame(reader), timeout)
                    if kind == MEMBERS:
                        return msgpack.unpackb(payload)
                finally:
                    writer.close()
            except (TimeoutError, OSError, asyncio.IncompleteReadError) as e:
                last = e
        raise PeerError(f"could not get the cluster's members from {urls}: {last}")

    async def stop(self) -> None:
        for p in self.peers.values():
            p.stop()
        self.peers.clear()
        for s in self.servers:
            s.close()
        for s in self.servers:
            try:
                await asyncio.wait_for(s.wait_closed(), 1.0)
            except TimeoutError:
                pass


PeerCallback = Callable[[int, bool], Awaitable[None]]
