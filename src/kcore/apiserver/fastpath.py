"""A lean HTTP/1.1 front for the API's plain request/response calls.

aiohttp costs ~45 µs of CPU per request here before our handler runs (request
and response objects, router, middleware chain, writer); the hot calls of a
busy cluster (create, get, update, binding, list) need far less framing than
that. This protocol parses the request head itself (request line, headers,
Content-Length body), runs the same middlewares and handlers as the aiohttp
application with a small request object (`FastRequest`), and writes the
`web.Response` back in one write.

Anything else is handed to aiohttp at a request boundary and stays there for the
rest of the connection: watches and other streams, upgrades (exec, attach,
port-forward), HEAD/OPTIONS, HTTP/1.0, chunked or `Expect` bodies, paths
outside the API, and any head this parser does not accept (aiohttp then gives
its own answer, a 400 for garbage). The handover replays the unconsumed bytes
into aiohttp's protocol on the same transport, so pipelined requests keep
their order.
"""
from __future__ import annotations

import asyncio
import email.utils
import functools
import logging
import time
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from urllib.parse import parse_qsl, unquote

from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy, MultiDict, MultiDictProxy

log = logging.getLogger(__name__)

FAST_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
# path heads served here besides /api and /apis (all plain responses)
FAST_NONRESOURCE = frozenset({"api", "apis", "healthz", "livez", "readyz", "version",
                              "openapi", "metrics"})
# subresources that stream or upgrade: aiohttp's
STREAMING = frozenset({"log", "exec", "attach", "portforward", "proxy"})
MAX_HEAD = 64 * 1024
IDLE_TIMEOUT = 75.0          # aiohttp's keep-alive default
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Head:
    """A parsed request head."""

    __slots__ = ("headers", "keep_alive", "length", "method", "target")

    def __init__(self, method: str, target: str, headers: list[tuple[str, str]],
                 length: int, keep_alive: bool):
        self.method, self.target, self.headers = method, target, headers
        self.length, self.keep_alive = length, keep_alive


_WS = " \t\n\r\x0b\x0c"      # what bytes.strip() strips: ASCII whitespace only


def parse_head_ref(head: bytes) -> Head | None:
    """The request line and headers (without the blank line), or None for anything
    this front does not serve itself (aiohttp then parses it, and judges it).
    The head is decoded once (latin-1, as HTTP field values are). `parse_head` is
    the native kernel (kcore._native.httphead) when built, with the same results."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or parts[2] != "HTTP/1.1" or not parts[1].startswith("/"):
        return None
    method, target = parts[0], parts[1]
    if method not in FAST_METHODS or not target.isascii():
        return None
    headers: list[tuple[str, str]] = []
    length = -1
    keep_alive = True
    for ln in lines[1:]:
        name, sep, value = ln.partition(":")
        if not sep or not name or name != name.strip(_WS) or ln[:1] in (" ", "\t"):
            return None                       # malformed or folded: aiohttp answers it
        v = value.strip(_WS)
        low = name.lower()
        if low == "content-length":
            if not (v.isascii() and v.isdigit()) or (length >= 0 and int(v) != length):
                return None
            length = int(v)
        elif low in ("transfer-encoding", "upgrade", "expect"):
            return None
        elif low == "connection":
            tokens = {t.strip().lower() for t in v.split(",")}
            if "upgrade" in tokens:
                return None
            if "close" in tokens:
                keep_alive = False
        headers.append((name, v))
    return Head(method, target, headers, max(length, 0), keep_alive)


try:
    from kcore._native.httphead import parse_head as _parse_head_native

    parse_head = functools.partial(_parse_head_native, make=Head)
except ImportError:  # not built: the reference has the same contract
    parse_head = parse_head_ref


def fast_route(method: str, path: str, query: MultiDictProxy):
    """The RequestInfo of a call the handlers answer with a plain web.Response (no
    stream), else None."""
    from kcore.apiserver.app import request_info
    if path.lstrip("/").split("/", 1)[0] not in FAST_NONRESOURCE:   # the first segment
        return None
    info = request_info(_RouteProbe(method, path, query))
    if info.verb == "watch" or info.subresource.split("/", 1)[0] in STREAMING:
        return None
    return info


class _RouteProbe:
    __slots__ = ("method", "path", "query")

    def __init__(self, method: str, path: str, query):
        self.method, self.path, self.query = method, path, query


class FastRequest:
    """What the middlewares and handlers read of a request (a web.Request subset)."""

    __slots__ = ("_body", "_state", "app", "headers", "method", "path", "path_qs", "query",
                 "transport")

    def __init__(self, app: web.Application, transport, method: str, path: str,
                 path_qs: str, query: MultiDictProxy, headers: CIMultiDictProxy, body: bytes):
        self.app, self.transport = app, transport
        self.method, self.path, self.path_qs, self.query = method, path, path_qs, query
        self.headers, self._body = headers, body
        self._state: dict = {}

    async def read(self) -> bytes:
        return self._body

    def get(self, key, default=None):
        return self._state.get(key, default)

    def __getitem__(self, key):
        return self._state[key]

    def __setitem__(self, key, value) -> None:
        self._state[key] = value

    def __contains__(self, key) -> bool:
        return key in self._state


_date = [0, b""]


def http_date() -> bytes:
    now = int(time.time())
    if _date[0] != now:
        _date[0], _date[1] = now, email.utils.formatdate(now, usegmt=True).encode()
    return _date[1]


def serialize(resp: web.StreamResponse, keep_alive: bool) -> bytes:
    """A web.Response as HTTP/1.1 bytes (status line, headers, body)."""
    if type(resp) is not web.Response:
        raise TypeError(f"the fast path cannot send a {type(resp).__name__}")
    body = resp.body
    if body is None:
        body = b""
    elif not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"the fast path sends bytes bodies, not {type(body).__name__}")
    status = resp.status
    out = [b"HTTP/1.1 %d %s\r\n" % (status, _REASONS.get(status, b"Unknown"))]
    for k, v in resp.headers.items():
        if k.lower() not in ("content-length", "transfer-encoding", "connection", "date"):
            out.append(f"{k}: {v}\r\n".encode("latin-1"))
    out.append(b"Content-Length: %d\r\nDate: %s\r\n" % (len(body), http_date()))
    if not keep_alive:
        out.append(b"Connection: close\r\n")
    out.append(b"\r\n")
    out.append(body)
    return b"".join(out)


Handler = Callable[[FastRequest], Awaitable[web.StreamResponse]]


class FastFront:
    """The protocol factory for one listening socket: fast connections plus aiohttp's
    server (`runner.server`) for what is handed over."""

    def __init__(self, app: web.Application, handler: Handler, aio: web.Server,
                 max_body: int):
        self.app, self.handler, self.aio, self.max_body = app, handler, aio, max_body
        self.conns: set[FastProtocol] = set()
        self._sweeper: asyncio.TimerHandle | None = None

    def __call__(self) -> FastProtocol:
        if self._sweeper is None:
            self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 3,
                                                                  self._sweep)
        return FastProtocol(self)

    def _sweep(self) -> None:
        now = time.monotonic()
        for c in list(self.conns):
            if not c.busy and now - c.last > IDLE_TIMEOUT:
                c.close()
        self._sweeper = asyncio.get_running_loop().call_later(IDLE_TIMEOUT / 3, self._sweep)

    def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for c in list(self.conns):
            c.close()


class FastProtocol(asyncio.Protocol):
    __slots__ = ("buf", "busy", "discard", "front", "last", "_drain", "_paused", "transport")

    def __init__(self, front: FastFront):
        self.front = front
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.busy = False
        self.discard = -1           # body bytes still to drop after a 413, then close
        self.last = time.monotonic()
        self._paused = False
        self._drain: asyncio.Future | None = None

    # -- asyncio.Protocol -------------------------------------------------------------
    def connection_made(self, transport) -> None:
        self.transport = transport
        self.front.conns.add(self)

    def connection_lost(self, exc) -> None:
        self.front.conns.discard(self)
        self.transport = None
        self._resume()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._resume()

    def _resume(self) -> None:
        d, self._drain = self._drain, None
        if d is not None and not d.done():
            d.set_result(None)

    def data_received(self, data: bytes) -> None:
        if self.discard >= 0:
            self.discard -= len(data)
            if self.discard <= 0:
                self.close()
            return
        self.buf += data
        if not self.busy:
            self._next()
        elif len(self.buf) > self.front.max_body + MAX_HEAD and self.transport is not None:
            self.transport.pause_reading()      # resumed when the request in flight ends

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    # -- requests ---------------------------------------------------------------------
    def _next(self) -> None:
        """Start the request at the head of the buffer, if it is complete."""
        t = self.transport
        if t is None or self.busy or not self.buf:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > MAX_HEAD:
                self._handover()                  # aiohttp answers an oversized head
            return
        head = parse_head(bytes(self.buf[:end]))
        if head is None:
            self._handover()
            return
        path_qs = head.target
        raw_path, _, qs = path_qs.partition("?")
        path = unquote(raw_path) if "%" in raw_path else raw_path
        query = MultiDictProxy(MultiDict(parse_qsl(qs, keep_blank_values=True))
                               if qs else MultiDict())
        info = fast_route(head.method, path, query)
        if info is None:
            self._handover()
            return
        if head.length > self.front.max_body:
            self._too_large(path, path_qs, query, head, len(self.buf) - end - 4)
            return
        start = end + 4
        if len(self.buf) < start + head.length:
            return                                # the body is still coming
        body = bytes(self.buf[start:start + head.length])
        del self.buf[:start + head.length]
        req = self._request(head, path, path_qs, query, body)
        req["info"] = info
        self.busy = True
        asyncio.get_running_loop().create_task(self._serve(req, head.keep_alive))

    def _request(self, head: Head, path: str, path_qs: str, query, body: bytes
                 ) -> FastRequest:
        return FastRequest(self.front.app, self.transport, head.method, path, path_qs, query,
                           CIMultiDictProxy(CIMultiDict(head.headers)), body)

    async def _serve(self, req: FastRequest, keep_alive: bool) -> None:
        try:
            resp = await self.front.handler(req)
            data = serialize(resp, keep_alive)
        except asyncio.CancelledError:
            self.close()
            raise
        except Exception:  # noqa: BLE001 - the middlewares answer errors; this is a bug
            log.exception("fast path: %s %s", req.method, req.path_qs)
            from kcore.api import errors as E
            from kcore.apiserver.app import status_response
            data = serialize(status_response(E.internal("internal error")), False)
            keep_alive = False
        t = self.transport
        if t is None:
            return
        t.write(data)
        self.last = time.monotonic()
        if not keep_alive:
            t.close()
            return
        if self._paused:
            self._drain = asyncio.get_running_loop().create_future()
            await self._drain
            if self.transport is None:
                return
        self.busy = False
        if len(self.buf) <= self.front.max_body + MAX_HEAD:
            try:
                t.resume_reading()
            except RuntimeError:
                pass
        self._next()

    def _too_large(self, path: str, path_qs: str, query, head: Head, have: int) -> None:
        """413 as the aiohttp path answers it (a Status body); the body is read and
        dropped, then the connection closed (closing with unread data would reset it
        before the client reads the answer)."""
        req = self._request(head, path, path_qs, query, b"")

        async def too_large(_request):
            raise web.HTTPRequestEntityTooLarge(max_size=self.front.max_body,
                                                actual_size=head.length)
        from kcore.apiserver.app import observe
        self.busy = True
        self.buf.clear()
        self.discard = max(head.length - have, 0)
        loop = asyncio.get_running_loop()
        loop.call_later(30.0, self.close)

        async def serve():
            resp = await observe(req, too_large)
            if self.transport is not None:
                self.transport.write(serialize(resp, False))
                if self.discard <= 0:
                    self.close()
        loop.create_task(serve())

    def _handover(self) -> None:
        """Give the connection, from the request at the head of the buffer on, to
        aiohttp's protocol."""
        t = self.transport
        if t is None:
            return
        self.front.conns.discard(self)
        self.transport = None
        proto = self.front.aio()
        t.set_protocol(proto)
        proto.connection_made(t)
        if self._paused:
            proto.pause_writing()
        try:
            t.resume_reading()
        except RuntimeError:
            pass
        data, self.buf = bytes(self.buf), bytearray()
        if data:
            proto.data_received(data)
