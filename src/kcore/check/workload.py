"""Client processes that record histories for the linearizability checker,
and a watcher that records what a resumable watch delivered.

Each client does random put / get / compare-and-swap on a few keys against
random members over etcd's gRPC API and writes every operation, with the
monotonic clock times it was sent and answered, to a JSON-lines file. An
operation whose answer never came is recorded with ret = null. Values are
unique per client and sequence number, so every write is distinguishable.
"""
from __future__ import annotations

import asyncio
import json
import random
import time

from kcore.check.linearizability import Op


async def _client(cid: int, endpoints: list[str], keys: list[bytes], stop_at: float,
                  seed: int, out: list[dict], timeout: float) -> None:
    import grpc

    from kcore.store.rpc.pb import rpc_pb2 as pb
    from kcore.store.rpc.pb import rpc_pb2_grpc as rpc

    rng = random.Random(seed)
    seq = 0
    ch = None
    kv = None

    async def reconnect():
        nonlocal ch, kv
        if ch is not None:
            await ch.close()
        ch = grpc.aio.insecure_channel(rng.choice(endpoints))
        kv = rpc.KVStub(ch)

    await reconnect()
    while time.monotonic() < stop_at:
        key = rng.choice(keys)
        r = rng.random()
        seq += 1
        rec = {"client": cid, "key": key.hex()}
        try:
            if r < 0.4:
                val = f"c{cid}-{seq}"
                rec.update(kind="put", value=val, call=time.monotonic())
                await kv.Put(pb.PutRequest(key=key, value=val.encode()), timeout=timeout)
            elif r < 0.8:
                rec.update(kind="get", call=time.monotonic())
                resp = await kv.Range(pb.RangeRequest(key=key), timeout=timeout)
                rec["result"] = resp.kvs[0].value.decode() if resp.kvs else None
            else:
                old = rng.choice([None] + [f"c{rng.randrange(4)}-{rng.randrange(seq + 1)}"])
                new = f"c{cid}-{seq}"
                if old is None:
                    cmp = pb.Compare(key=key, target=pb.Compare.VERSION,
                                     result=pb.Compare.EQUAL, version=0)
                else:
                    cmp = pb.Compare(key=key, target=pb.Compare.VALUE,
                                     result=pb.Compare.EQUAL, value=old.encode())
                rec.update(kind="cas", value=[old, new], call=time.monotonic())
                resp = await kv.Txn(pb.TxnRequest(compare=[cmp], success=[pb.RequestOp(
                    request_put=pb.PutRequest(key=key, value=new.encode()))]), timeout=timeout)
                rec["result"] = resp.succeeded
            rec["ret"] = time.monotonic()
        except grpc.aio.AioRpcError as e:
            # a definite failure before anything happened (refused write) could be
            # recorded as absent; an unknown outcome must stay unknown
            rec["ret"] = None
            rec["error"] = e.code().name
            if rec["kind"] == "get":
                rec["drop"] = True   # a failed read constrains nothing
            await reconnect()
            await asyncio.sleep(0.05)
        if not rec.get("drop"):
            out.append(rec)
    if ch is not None:
        await ch.close()


def client_process(cid: int, endpoints: list[str], keys: list[bytes], duration: float,
                   seed: int, path: str, concurrency: int = 4, timeout: float = 2.0) -> None:
    """Entry point of one client process: `concurrency` logical clients."""
    out: list[dict] = []

    async def main():
        stop_at = time.monotonic() + duration
        await asyncio.gather(*(
            _client(cid * 100 + i, endpoints, keys, stop_at, seed * 1000 + i, out, timeout)
            for i in range(concurrency)))
    asyncio.run(main())
    with open(path, "w") as fh:
        for rec in out:
            fh.write(json.dumps(rec) + "\n")


def load_history(paths: list[str]) -> list[Op]:
    ops = []
    for p in paths:
        with open(p) as fh:
            for line in fh:
                r = json.loads(line)
                val = r.get("value")
                if r["kind"] == "cas":
                    val = tuple(val)
                ops.append(Op(r["client"], bytes.fromhex(r["key"]), r["kind"], r["call"],
                              r.get("ret"), val, r.get("result")))
    return ops


async def resumable_watch(endpoints: list[str], prefix: bytes, stop_at: float,
                          seen: list[tuple[int, int, bytes, bytes]],
                          switch_every: float = 2.0) -> int:
    """Watch `prefix` from revision 1, reconnecting to another member on any error
    (and on purpose every `switch_every` seconds) and resuming from the revision
    after the last event seen. Returns the number of reconnects."""
    from kcore.store import client as sc
    from kcore.store import errors
    rng = random.Random(7)
    next_rev = 1
    reconnects = 0
    while time.monotonic() < stop_at:
        c = sc.connect([rng.choice(endpoints)], timeout=2.0)
        try:
            w = c.watch_prefix(prefix, start_revision=next_rev)
            it = w.__aiter__()
            until = min(stop_at, time.monotonic() + switch_every)
            while time.monotonic() < until:
                try:
                    resp = await asyncio.wait_for(it.__anext__(), max(0.1, until - time.monotonic()))
                except TimeoutError:
                    reconnects += 1
                    break
                for ev in resp.events:
                    seen.append((ev.kv.mod_revision, ev.type, ev.kv.key, ev.kv.value))
                    next_rev = ev.kv.mod_revision + 1
        except (errors.StoreError, StopAsyncIteration, OSError):
            reconnects += 1
            await asyncio.sleep(0.1)
        finally:
            await c.close()
    return reconnects
