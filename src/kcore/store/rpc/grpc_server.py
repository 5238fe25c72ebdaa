"""The stock grpc.aio front end: serves a Registry over gRPC (TLS optional)."""
from __future__ import annotations

import logging
from typing import Any

import grpc

from kcore.store import errors
from kcore.store.rpc.registry import BIDI_STREAM, SERVER_STREAM, UNARY, Method, Registry

log = logging.getLogger(__name__)


def _abort_code(code: int) -> grpc.StatusCode:
    for sc in grpc.StatusCode:
        if sc.value[0] == code:
            return sc
    return grpc.StatusCode.UNKNOWN


def _wrap(m: Method):
    h = m.handler
    if m.kind == UNARY:
        async def unary(request, context):
            try:
                return await h(request)
            except errors.StoreError as e:
                await context.abort(_abort_code(e.code), e.message)
        return grpc.unary_unary_rpc_method_handler(
            unary, request_deserializer=m.request_type.FromString,
            response_serializer=m.response_type.SerializeToString)
    if m.kind == SERVER_STREAM:
        async def sstream(request, context):
            try:
                await h(request, context.write)
            except errors.StoreError as e:
                await context.abort(_abort_code(e.code), e.message)
        return grpc.unary_stream_rpc_method_handler(
            sstream, request_deserializer=m.request_type.FromString,
            response_serializer=m.response_type.SerializeToString)
    if m.kind == BIDI_STREAM:
        async def bidi(request_iterator, context):
            try:
                await h(request_iterator, context.write)
            except errors.StoreError as e:
                await context.abort(_abort_code(e.code), e.message)
        return grpc.stream_stream_rpc_method_handler(
            bidi, request_deserializer=m.request_type.FromString,
            response_serializer=m.response_type.SerializeToString)
    raise ValueError(m.kind)


class GrpcAioServer:
    """Same surface as NativeGrpcServer: start(host, port) → port, stop(grace)."""

    def __init__(self, registry: Registry, *, max_recv_bytes: int,
                 credentials: grpc.ServerCredentials | None = None):
        self.registry = registry
        self.credentials = credentials
        self.server = grpc.aio.server(options=[
            ("grpc.max_receive_message_length", max_recv_bytes),
            ("grpc.max_send_message_length", 2**31 - 1),
            ("grpc.keepalive_permit_without_calls", 1),
            ("grpc.http2.min_ping_interval_without_data_ms", 5000),
            ("grpc.so_reuseport", 0),
        ])
        handlers: list[Any] = []
        for service, methods in registry.services().items():
            handlers.append(grpc.method_handlers_generic_handler(
                service, {m.name: _wrap(m) for m in methods}))
        self.server.add_generic_rpc_handlers(handlers)

    async def start(self, host: str, port: int) -> int:
        addr = f"{host}:{port}"
        if self.credentials is None:
            bound = self.server.add_insecure_port(addr)
        else:
            bound = self.server.add_secure_port(addr, self.credentials)
        if bound == 0:
            raise OSError(f"cannot listen on {addr}")
        await self.server.start()
        return bound

    async def stop(self, grace: float | None = None) -> None:
        await self.server.stop(grace)
