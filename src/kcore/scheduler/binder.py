"""The binder: POST pods/binding for each decision, many in flight at once.

Binding is the scheduler's only write per pod and, end to end, the bottleneck
(the API server does a read-modify-write of the pod). The scheduling loop must
not wait for it: decisions are handed over with ``submit`` and ``parallelism``
workers POST them concurrently over keep-alive connections. The outcome goes
to ``on_done(item, error_or_None, seconds)``, called on the event loop; the
driver confirms (``done``) or forgets the assumption and requeues.

Each worker binds through a *transport*: anything with kcore.client's
``bind(namespace, name, node, uid)`` — the ``Client`` itself, or
``DirectBinding``: the same request on one plain keep-alive HTTP/1.1
connection per worker, built from the client's configuration (server, TLS,
credentials) with errors mapped by the client's ``error_from_status``. It
exists because a profile said so: the aiohttp client costs ~150 µs of
scheduler CPU per binding, the direct connection ~25 µs (bench/scheduler/e2e.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from kcore.client import errors as E

__all__ = ["BindRequest", "Binder", "DirectBinding"]


@dataclass(eq=False, slots=True)
class BindRequest:
    namespace: str
    name: str
    uid: str | None
    node: str
    token: object           # the driver's (its QueuedPod)
    submitted: float = 0.0


class Binder:
    def __init__(self, client, on_done: Callable[[BindRequest, Exception | None, float], None],
                 parallelism: int = 128, transport: Callable[[], object] | None = None
                 ) -> None:
        """``transport()`` makes one worker's transport (default: the shared client)."""
        self.client = client
        self.transport = transport
        self.on_done = on_done
        self.parallelism = max(1, parallelism)
        self._pending: deque[BindRequest] = deque()
        self._wake = asyncio.Event()
        self._workers: list[asyncio.Task] = []
        self.in_flight = 0
        self.bound = 0
        self.failed = 0

    def __len__(self) -> int:
        return len(self._pending) + self.in_flight

    def start(self) -> None:
        if not self._workers:
            loop = asyncio.get_running_loop()
            self._workers = [loop.create_task(self._worker()) for _ in range(self.parallelism)]

    async def stop(self) -> None:
        for t in self._workers:
            t.cancel()
        for t in self._workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self._workers = []

    def submit(self, req: BindRequest) -> None:
        req.submitted = time.perf_counter()
        self._pending.append(req)
        self._wake.set()

    async def _worker(self) -> None:
        pending = self._pending
        tr = self.transport() if self.transport is not None else self.client
        try:
            await self._work(tr, pending)
        finally:
            close = getattr(tr, "close_now", None)
            if close is not None:
                close()

    async def _work(self, tr, pending: deque[BindRequest]) -> None:
        while True:
            if not pending:
                self._wake.clear()
                await self._wake.wait()
                continue
            req = pending.popleft()
            self.in_flight += 1
            t0 = time.perf_counter()
            err: Exception | None = None
            try:
                await tr.bind(req.namespace, req.name, req.node, req.uid)
                self.bound += 1
            except asyncio.CancelledError:
                raise
            except E.ApiError as e:
                err = e
                self.failed += 1
            except Exception as e:  # noqa: BLE001 - reported to the driver as a failure
                err = e
                self.failed += 1
            finally:
                self.in_flight -= 1
            self.on_done(req, err, time.perf_counter() - t0)


class DirectBinding:
    """``bind()`` over one keep-alive HTTP/1.1 connection (opened on first use,
    reopened once if the server closed it). Same request, same answers, same
    exceptions as ``Client.bind``."""

    def __init__(self, config) -> None:
        from urllib.parse import urlsplit
        u = urlsplit(config.server)
        self.host = u.hostname or "127.0.0.1"
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.ssl = config.ssl_context()
        self.server_hostname = (config.tls_server_name or self.host) if self.ssl else None
        hdrs = {k: v for k, v in config.headers().items()
                if k.lower() not in ("content-type", "content-length", "host")}
        self.head = "".join(f"{k}: {v}\r\n" for k, v in hdrs.items())
        self.timeout = config.timeout
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def bind(self, namespace: str, name: str, node: str, uid: str | None = None
                   ) -> dict:
        md: dict = {"name": name, "namespace": namespace}
        if uid:
            md["uid"] = uid
        body = orjson.dumps({"apiVersion": "v1", "kind": "Binding", "metadata": md,
                             "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
        path = f"{self.prefix}/api/v1/namespaces/{namespace}/pods/{name}/binding"
        req = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n{self.head}"
               f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
               ).encode() + body
        for attempt in (1, 2):
            fresh = self.w is None
            try:
                if fresh:
                    self.r, self.w = await asyncio.wait_for(asyncio.open_connection(
                        self.host, self.port, ssl=self.ssl,
                        server_hostname=self.server_hostname), 10)
                self.w.write(req)
                status, raw = await asyncio.wait_for(self._response(), self.timeout)
                break
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                    TimeoutError, ValueError) as e:
                self.close_now()
                # a kept-alive connection the server closed: reopen once (the request
                # did not reach it: the server answers every request it reads)
                if fresh or attempt == 2 or not isinstance(
                        e, (ConnectionError, asyncio.IncompleteReadError)):
                    raise E.TransportError(f"POST {path}: {type(e).__name__}: {e}") from e
        if 200 <= status < 300:
            return orjson.loads(raw) if raw else {}
        try:
            decoded = orjson.loads(raw) if raw else ""
        except orjson.JSONDecodeError:
            decoded = raw.decode(errors="replace")
        raise E.error_from_status(status, decoded)

    async def _response(self) -> tuple[int, bytes]:
        assert self.r is not None
        head = await self.r.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        low = head.lower()
        i = low.find(b"\r\ncontent-length:")
        if i >= 0:
            n = int(low[i + 17:low.index(b"\r\n", i + 2)])
            raw = await self.r.readexactly(n) if n else b""
        elif b"transfer-encoding: chunked" in low:
            parts = []
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0], 16)
                parts.append(await self.r.readexactly(size + 2))
                if size == 0:
                    break
            raw = b"".join(p[:-2] for p in parts)
        else:
            raw = await self.r.read()
            self.close_now()
        if b"\r\nconnection: close" in low:
            self.close_now()
        return status, raw

    def close_now(self) -> None:
        if self.w is not None:
            self.w.close()
        self.r = self.w = None
