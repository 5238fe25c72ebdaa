"""Crash safety of `kcore etcd`: kill -9 under load loses no acknowledged write;
a torn WAL tail is repaired at start; a flipped bit stops start-up, named."""
from __future__ import annotations

import asyncio
import glob
import os
import subprocess

import grpc
from store_harness import Member

from kcore.store import walcodec_ref
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb import rpc_pb2_grpc as rpc
from kcore.store.wal import Entry

WRITERS = 64


async def _writers(endpoint: str, acked: dict, stop_after: float) -> None:
    """64 concurrent writers putting until the server dies; record each acknowledged put."""
    async with grpc.aio.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)

        async def writer(w: int) -> None:
            n = 0
            while True:
                key = f"crash/{w:02d}/{n:06d}".encode()
                val = os.urandom(16).hex().encode()
                try:
                    await kv.Put(pb.PutRequest(key=key, value=val), timeout=5)
                except grpc.aio.AioRpcError:
                    return
                acked[key] = val
                n += 1
        tasks = [asyncio.create_task(writer(w)) for w in range(WRITERS)]
        await asyncio.wait(tasks, timeout=stop_after + 10)
        for t in tasks:
            t.cancel()


def _load_and_kill(m: Member, acked: dict, delay: float) -> None:
    async def main() -> None:
        loop = asyncio.get_running_loop()
        loop.call_later(delay, m.kill9)
        await _writers(m.endpoint, acked, delay)
    asyncio.run(main())


def _read_all(endpoint: str) -> dict[bytes, bytes]:
    with grpc.insecure_channel(endpoint) as ch:
        kv = rpc.KVStub(ch)
        r = kv.Range(pb.RangeRequest(key=b"crash/", range_end=b"crash0"), timeout=30)
        return {x.key: x.value for x in r.kvs}


def test_kill9_under_load_loses_no_acknowledged_write(tmpdir_path):
    m = Member(os.path.join(tmpdir_path, "data"))
    acked: dict[bytes, bytes] = {}
    try:
        for round_, delay in enumerate([0.7, 1.3, 2.1]):
            m.start()
            before = len(acked)
            _load_and_kill(m, acked, delay)
            assert len(acked) > before, "no write was acknowledged before the kill"
            m.start()
            stored = _read_all(m.endpoint)
            lost = [k for k, v in acked.items() if stored.get(k) != v]
            assert not lost, f"round {round_}: {len(lost)} acknowledged writes lost, e.g. {lost[:3]}"
            m.stop()
    finally:
        m.stop()


def _wal_files(data_dir: str) -> list[str]:
    return sorted(glob.glob(os.path.join(data_dir, "member", "wal", "*.wal")))


def _put_some(m: Member, n: int, prefix: str = "crash/t/") -> None:
    with grpc.insecure_channel(m.endpoint) as ch:
        kv = rpc.KVStub(ch)
        for i in range(n):
            kv.Put(pb.PutRequest(key=f"{prefix}{i:04d}".encode(), value=b"v"), timeout=10)


def test_torn_tail_is_repaired(tmpdir_path):
    m = Member(os.path.join(tmpdir_path, "data"))
    m.start()
    try:
        _put_some(m, 100)
        m.kill9()
        # a crash in the middle of writing the next batch leaves a prefix of it
        wal = _wal_files(m.data_dir)[-1]
        with open(wal, "rb") as fh:
            data = fh.read()
        end = len(data.rstrip(b"\0"))
        end += (-end) % 8
        batch = walcodec_ref.encode_batch([Entry(10**6, 99, os.urandom(300))], None)
        with open(wal, "r+b") as fh:
            fh.seek(end)
            fh.write(batch[: len(batch) // 2])
        m.start()
        assert len(_read_all(m.endpoint)) == 100
        _put_some(m, 10, "crash/after/")
        assert len(_read_all(m.endpoint)) == 110
    finally:
        m.stop()


def test_bit_flip_stops_startup_naming_file_and_offset(tmpdir_path):
    m = Member(os.path.join(tmpdir_path, "data"))
    m.start()
    try:
        _put_some(m, 200)
    finally:
        m.kill9()
    wal = _wal_files(m.data_dir)[-1]
    size = len(open(wal, "rb").read().rstrip(b"\0"))
    off = size // 3
    with open(wal, "r+b") as fh:
        fh.seek(off)
        b = fh.read(1)
        fh.seek(off)
        fh.write(bytes([b[0] ^ 0x10]))
    p = subprocess.run(m.args(), capture_output=True, text=True, timeout=30)
    assert p.returncode != 0
    err = p.stdout + p.stderr
    assert os.path.basename(wal) in err and "offset" in err, err[-2000:]
