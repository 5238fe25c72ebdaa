"""The pipelined-protocol client: answers matched by request id, per-call timeouts."""
from __future__ import annotations

import asyncio
import time

import pytest

from kcore.store.client import PipelineTransport
from kcore.store.rpc import pipeline
from kcore.store.rpc.pb import rpc_pb2 as pb


async def _server(answer: bool):
    """A server that reads frames and answers Put with revision = request id (or never)."""
    async def handle(reader, writer):
        try:
            while True:
                head = await reader.readexactly(pipeline.HEAD_SIZE)
                length, rid, _code = pipeline.HEAD.unpack(head)
                await reader.readexactly(length - 5)
                if answer:
                    resp = pb.PutResponse()
                    resp.header.revision = rid
                    writer.write(pipeline.frame(rid, 0, resp.SerializeToString()))
        except asyncio.IncompleteReadError:
            pass
    srv = await asyncio.start_server(handle, "127.0.0.1", 0)
    return srv, srv.sockets[0].getsockname()[1]


def test_answers_reach_their_callers():
    async def main():
        srv, port = await _server(answer=True)
        t = PipelineTransport([f"127.0.0.1:{port}"], timeout=5.0)
        try:
            res = await asyncio.gather(*(t.unary("Put", pb.PutRequest(key=b"k%d" % i))
                                         for i in range(50)))
            assert [r.header.revision for r in res] == list(range(1, 51))
            assert not t.waiting
        finally:
            await t.close()
            srv.close()
    asyncio.run(main())


def test_a_call_without_answer_times_out_and_is_forgotten():
    async def main():
        srv, port = await _server(answer=False)
        t = PipelineTransport([f"127.0.0.1:{port}"], timeout=0.3)
        try:
            t0 = time.monotonic()
            with pytest.raises(TimeoutError):
                await t.unary("Put", pb.PutRequest(key=b"k"))
            assert 0.25 <= time.monotonic() - t0 < 2.0
            assert not t.waiting and not t._deadlines
        finally:
            await t.close()
            srv.close()
    asyncio.run(main())
