"""The etcd v3 API as a transport-neutral table of methods.

One registry, several front ends: the stock grpc.aio server (`grpc_server.py`)
and the native HTTP/2 server (`native_server.py`) both serve exactly the
methods listed here, so behaviour cannot drift between them.

Handler contracts (all coroutines; errors are `kcore.store.errors.StoreError`):
- unary:          `async def h(request) -> response`; optionally also
                  `submit(request) -> asyncio.Future` (raising StoreError at once for a
                  request refused before it runs), which front ends may use instead
                  to avoid a coroutine and a Task per call
- server_stream:  `async def h(request, send) -> None`      (send: `async (response) -> None`)
- bidi_stream:    `async def h(requests, send) -> None`     (requests: async iterator)
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

UNARY, SERVER_STREAM, BIDI_STREAM = "unary", "server_stream", "bidi_stream"


@dataclass(frozen=True)
class Method:
    path: str                 # "/etcdserverpb.KV/Put"
    kind: str                 # UNARY | SERVER_STREAM | BIDI_STREAM
    request_type: type        # protobuf message class of requests
    response_type: type       # protobuf message class of responses
    handler: Callable[..., Any]
    submit: Callable[..., Any] | None = None   # unary only: request -> Future (no coroutine)

    @property
    def service(self) -> str:
        return self.path.split("/")[1]

    @property
    def name(self) -> str:
        return self.path.split("/")[2]


class Registry:
    def __init__(self) -> None:
        self.methods: dict[str, Method] = {}

    def add(self, service: str, name: str, kind: str, request_type: type,
            response_type: type, handler: Callable[..., Any],
            submit: Callable[..., Any] | None = None) -> None:
        path = f"/{service}/{name}"
        self.methods[path] = Method(path, kind, request_type, response_type, handler, submit)

    def get(self, path: str) -> Method | None:
        return self.methods.get(path)

    def services(self) -> dict[str, list[Method]]:
        out: dict[str, list[Method]] = {}
        for m in self.methods.values():
            out.setdefault(m.service, []).append(m)
        return out
