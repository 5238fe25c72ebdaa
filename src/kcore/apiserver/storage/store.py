"""`Storage` over kcore.store.client (embedded EtcdServer or any etcd v3 endpoint)."""
from __future__ import annotations

from collections.abc import AsyncIterator

from kcore.apiserver.storage.interface import (
    KV,
    Cond,
    Delete,
    Put,
    StorageCompacted,
    TxnResult,
    WatchEvent,
)
from kcore.store import errors as serr
from kcore.store.client import Client, prefix_end
from kcore.store.rpc.pb import rpc_pb2 as pb

_MOD, _EQUAL = pb.Compare.MOD, pb.Compare.EQUAL


def _kv(k) -> KV:
    return KV(k.key, k.value, k.mod_revision, k.create_revision, k.lease)


class StoreStorage:
    def __init__(self, client: Client):
        self.client = client

    async def get(self, key: bytes) -> tuple[KV | None, int]:
        r = await self.client.range(pb.RangeRequest(key=key))
        return (_kv(r.kvs[0]) if r.kvs else None), r.header.revision

    async def list(self, prefix: bytes, revision: int = 0, start: bytes | None = None,
                   limit: int = 0) -> tuple[list[KV], int, bool]:
        try:
            r = await self.client.range(pb.RangeRequest(
                key=start or prefix, range_end=prefix_end(prefix), revision=revision,
                limit=limit))
        except serr.Compacted as e:
            raise StorageCompacted(getattr(e, "compact_revision", 0)) from None
        return [_kv(k) for k in r.kvs], r.header.revision, r.more

    async def txn(self, conds: list[Cond], ops: list[Put | Delete]) -> TxnResult:
        if len(conds) == 1 and len(ops) == 1:
            c, op = conds[0], ops[0]
            if type(op) is Put and op.key == c.key:
                # a create or an update: the store's compare-and-put
                r = await self.client.cas_put(c.key, op.value, op.lease, c.mod_revision)
                res = TxnResult(r.succeeded, r.revision)
                if not r.succeeded:
                    res.current[c.key] = None if r.kv is None else _kv(r.kv)
                return res
        # built in place (add() and field sets): a third of the time of constructing
        # each message and appending (which copies) with upb
        req = pb.TxnRequest()
        for c in conds:
            cmp = req.compare.add()
            cmp.key, cmp.target, cmp.result, cmp.mod_revision = c.key, _MOD, _EQUAL, \
                c.mod_revision
        for op in ops:
            if isinstance(op, Put):
                put = req.success.add().request_put
                put.key, put.value = op.key, op.value
                if op.lease:
                    put.lease = op.lease
            else:
                req.success.add().request_delete_range.key = op.key
        for c in conds:
            req.failure.add().request_range.key = c.key
        r = await self.client.txn(req)
        res = TxnResult(r.succeeded, r.header.revision)
        if not r.succeeded:
            for c, resp in zip(conds, r.responses):
                kvs = resp.response_range.kvs
                res.current[c.key] = _kv(kvs[0]) if kvs else None
        return res

    async def watch(self, prefix: bytes, start_revision: int
                    ) -> AsyncIterator[list[WatchEvent]]:
        # no prev_kv: the watch cache holds every object's previous state itself, and
        # asking for it costs the store a read per event (and doubles a remote stream)
        w = self.client.watch_changes(prefix, start_revision=start_revision)
        make = WatchEvent._make
        try:
            async for batch in w:
                yield list(map(make, batch))
        except serr.Compacted as e:
            raise StorageCompacted(getattr(e, "compact_revision", 0)) from None
        finally:
            try:
                await w.cancel()
            except Exception:  # noqa: BLE001 - best effort on a dead stream
                pass

    async def revision(self) -> int:
        r = await self.client.range(pb.RangeRequest(key=b"\0", count_only=True))
        return r.header.revision

    async def grant_lease(self, ttl: int) -> int:
        return (await self.client.lease_grant(ttl)).ID

    async def compact(self, revision: int) -> None:
        try:
            await self.client.compact(revision)
        except serr.Compacted:
            pass

    async def health(self) -> None:
        await self.client.range(pb.RangeRequest(key=b"health"))

    async def close(self) -> None:
        await self.client.close()
