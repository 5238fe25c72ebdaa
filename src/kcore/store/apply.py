"""The applier: turns one committed request into state changes and a response.

Deterministic: the same requests applied in the same order on the same state
give the same state and responses on every member. Every request is checked
in full before it changes anything, so a request that fails leaves no trace.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import lmdb

from kcore.store import errors
from kcore.store.cas import CasResult
from kcore.store.keyindex import MAIN_SHIFT, KeyRecord
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC, Change, WriteTxn, key_range
from kcore.store.rpc.pb import rpc_pb2 as pb
from kcore.store.rpc.pb.internal_pb2 import InternalRequest
from kcore.store.rpc.pb.kv_pb2 import KeyValue

_EQ, _GT, _LT, _NE = (pb.Compare.EQUAL, pb.Compare.GREATER, pb.Compare.LESS,
                      pb.Compare.NOT_EQUAL)
_T_VERSION, _T_CREATE, _T_MOD, _T_VALUE, _T_LEASE = (
    pb.Compare.VERSION, pb.Compare.CREATE, pb.Compare.MOD, pb.Compare.VALUE, pb.Compare.LEASE)


@dataclass(slots=True)
class Applied:
    """What applying one request produced."""

    response: object = None
    error: errors.StoreError | None = None
    changes: list[Change] = field(default_factory=list)
    rev: int = 0


class Alarms:
    """Active alarms (NOSPACE, CORRUPT) per member, persisted in the backend."""

    def __init__(self, backend):
        self.backend = backend
        self.active: set[tuple[int, int]] = set()
        with backend.env.begin() as txn:
            for k, _ in txn.cursor(db=backend.alarm):
                self.active.add((int.from_bytes(k[:8], "big"), int.from_bytes(k[8:], "big")))

    def has(self, alarm: int) -> bool:
        return any(a == alarm for _, a in self.active)

    def apply(self, txn: lmdb.Transaction, req: pb.AlarmRequest) -> pb.AlarmResponse:
        resp = pb.AlarmResponse()
        key = (req.memberID, req.alarm)
        kb = req.memberID.to_bytes(8, "big") + int(req.alarm).to_bytes(8, "big")
        if req.action == pb.AlarmRequest.ACTIVATE:
            if req.alarm != pb.NONE and key not in self.active:
                self.active.add(key)
                txn.put(kb, b"", db=self.backend.alarm)
            resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
        elif req.action == pb.AlarmRequest.DEACTIVATE:
            if key in self.active:
                self.active.discard(key)
                txn.delete(kb, db=self.backend.alarm)
                resp.alarms.add(memberID=req.memberID, alarm=req.alarm)
        else:
            for m, a in sorted(self.active):
                if req.alarm in (pb.NONE, a):
                    resp.alarms.add(memberID=m, alarm=a)
        return resp


class Applier:
    def __init__(self, mvcc: MVCC, lessor: Lessor, alarms: Alarms):
        self.mvcc = mvcc
        self.lessor = lessor
        self.alarms = alarms

    # -- entry point ----------------------------------------------------------------
    def apply(self, txn: lmdb.Transaction, req: InternalRequest) -> Applied:
        for f, v in req.ListFields():
            if f.name != "ID":
                return self.apply_op(txn, f.name, v)
        return Applied(None, rev=self.mvcc.rev)  # no-op / barrier

    def apply_op(self, txn: lmdb.Transaction, kind: str, r) -> Applied:
        """Apply one request given as (InternalRequest field name, message)."""
        try:
            if kind == "put":
                if not _plain_put(r):
                    return self._write(txn, lambda wt: self.put(wt, r))
                return self._put_plain(txn, r)
            if kind == "delete_range":
                return self._write(txn, lambda wt: self.delete_range(wt, r))
            if kind == "cas":
                return self.cas_put(txn, *r)
            if kind == "txn":
                return self._write(txn, lambda wt: self.txn(wt, r))
            if kind == "compaction":
                self.mvcc.compact(txn, r.revision)
                return Applied(pb.CompactionResponse(), rev=self.mvcc.rev)
            if kind == "lease_grant":
                lease = self.lessor.grant(txn, r.ID, r.TTL)
                return Applied(pb.LeaseGrantResponse(ID=lease.id, TTL=lease.ttl), rev=self.mvcc.rev)
            if kind == "lease_revoke":
                return self._write(txn, lambda wt: self.lease_revoke(wt, r.ID))
            if kind == "alarm":
                return Applied(self.alarms.apply(txn, r), rev=self.mvcc.rev)
            return Applied(None, rev=self.mvcc.rev)  # no-op / barrier
        except errors.StoreError as e:
            return Applied(error=e, rev=self.mvcc.rev)

    def _put_plain(self, txn: lmdb.Transaction, r: pb.PutRequest) -> Applied:
        """The most common request, a put without lease or options, in one step."""
        if not r.key:
            raise errors.EmptyKey()
        wt = WriteTxn(self.mvcc, txn)
        resp = self.put(wt, r)
        rev = self.mvcc.rev = wt.main
        resp.header.revision = rev
        return Applied(resp, changes=wt.changes, rev=rev)

    def cas_put(self, txn: lmdb.Transaction, key: bytes, value: bytes, lease: int,
                mod_revision: int) -> Applied:
        """`txn` of the compare-and-put of kcore.store.cas, from its fields: the same
        checks, changes and outcome, as a CasResult. Raises StoreError as `txn`
        does (apply_op turns it into the Applied's error)."""
        mvcc = self.mvcc
        rec = mvcc.current(key)
        if (0 if rec is None else rec.revs[-1] >> MAIN_SHIFT) != mod_revision:
            # the failure branch: range(key) at the current revision
            kv = None if rec is None else mvcc.get_at(txn, rec.revs[-1])
            return Applied(CasResult(False, mvcc.rev, kv), rev=mvcc.rev)
        if lease and self.lessor.lookup(lease) is None:
            raise errors.LeaseNotFound()
        wt = WriteTxn(mvcc, txn)
        self._write_put(wt, key, value, lease)
        rev = mvcc.rev = wt.main
        return Applied(CasResult(True, rev), changes=wt.changes, rev=rev)

    def _write(self, txn: lmdb.Transaction, fn) -> Applied:
        wt = self.mvcc.begin(txn)
        resp = fn(wt)
        res = wt.end()
        resp.header.revision = res.rev
        return Applied(resp, changes=res.changes, rev=res.rev)

    # -- KV -------------------------------------------------------------------------
    def _check_put(self, r: pb.PutRequest) -> KeyRecord | None:
        if r.lease and self.lessor.lookup(r.lease) is None:
            raise errors.LeaseNotFound()
        rec = self.mvcc.current(r.key)
        if (r.ignore_value or r.ignore_lease) and rec is None:
            raise errors.KeyNotFound()
        return rec

    def put(self, wt: WriteTxn, r: pb.PutRequest,
            resp: pb.PutResponse | None = None) -> pb.PutResponse:
        """``resp``: fill this message (a txn's response op) instead of a new one."""
        if resp is None:
            resp = pb.PutResponse()
        if _plain_put(r):
            self._write_put(wt, r.key, r.value, 0)      # nothing to look up
            return resp
        rec = self._check_put(r)
        value, lease = r.value, r.lease
        prev = None
        if rec is not None and (r.prev_kv or r.ignore_value):
            prev = self.mvcc.get_at(wt.txn, rec.revs[-1])
        if r.ignore_value:
            value = prev.value
        if r.ignore_lease:
            lease = rec.lease
        self._write_put(wt, r.key, value, lease)
        if r.prev_kv and prev is not None:
            resp.prev_kv.CopyFrom(prev)
        return resp

    def _write_put(self, wt: WriteTxn, key: bytes, value: bytes, lease: int) -> None:
        """Write one put of a checked request and move the key between leases: off
        its old one, onto `lease` (0: none; the flattened `put_plain`)."""
        if not lease:
            ch = wt.put_plain(key, value)
            if ch.prev_lease:
                self.lessor.detach(ch.prev_lease, key)
            return
        ch = wt.put(key, value, lease)
        if ch.prev_lease and ch.prev_lease != lease:
            self.lessor.detach(ch.prev_lease, key)
        self.lessor.attach(lease, key)

    def delete_range(self, wt: WriteTxn, r: pb.DeleteRangeRequest) -> pb.DeleteRangeResponse:
        resp = pb.DeleteRangeResponse()
        changes = wt.delete_range(r.key, r.range_end)
        resp.deleted = len(changes)
        for ch in changes:
            if ch.prev_lease:
                self.lessor.detach(ch.prev_lease, ch.kv.key)
            if r.prev_kv:
                resp.prev_kvs.append(self.mvcc.get_at(wt.txn, ch.prev_rev))
        return resp

    def range_in(self, wt: WriteTxn, r: pb.RangeRequest) -> pb.RangeResponse:
        return range_response(lambda **kw: wt.range(**kw), r)

    # -- Txn ------------------------------------------------------------------------
    def txn(self, wt: WriteTxn, r: pb.TxnRequest) -> pb.TxnResponse:
        ok = self._compare_all(wt, r.compare)
        ops = r.success if ok else r.failure
        self._check_ops(wt, ops)
        resp = pb.TxnResponse(succeeded=ok)
        self._exec_ops(wt, ops, resp)
        return resp

    def _exec_ops(self, wt: WriteTxn, ops, resp: pb.TxnResponse) -> None:
        for op in ops:
            kind = op.WhichOneof("request")
            out = resp.responses.add()
            if kind == "request_range":
                rr = self.range_in(wt, op.request_range)
                rr.header.revision = wt.read_rev
                out.response_range.CopyFrom(rr)
            elif kind == "request_put":
                self.put(wt, op.request_put, out.response_put).header.revision = wt.main
            elif kind == "request_delete_range":
                dr = self.delete_range(wt, op.request_delete_range)
                dr.header.revision = wt.read_rev
                out.response_delete_range.CopyFrom(dr)
            elif kind == "request_txn":
                sub = op.request_txn
                ok = self._compare_all(wt, sub.compare)
                inner = pb.TxnResponse(succeeded=ok)
                self._exec_ops(wt, sub.success if ok else sub.failure, inner)
                inner.header.revision = wt.read_rev
                out.response_txn.CopyFrom(inner)

    def _check_ops(self, wt: WriteTxn, ops) -> None:
        """Validate the chosen branch (and the branches nested txns will take) before
        anything is written: leases of puts exist, ranges' revisions are readable."""
        for op in ops:
            kind = op.WhichOneof("request")
            if kind == "request_put":
                p = op.request_put
                if p.lease and self.lessor.lookup(p.lease) is None:
                    raise errors.LeaseNotFound()
                if (p.ignore_value or p.ignore_lease) and self.mvcc.current(p.key) is None:
                    raise errors.KeyNotFound()
            elif kind == "request_range":
                rev = op.request_range.revision
                if rev > 0:
                    self.mvcc.check_rev(rev)
            elif kind == "request_txn":
                sub = op.request_txn
                ok = self._compare_all(wt, sub.compare)
                self._check_ops(wt, sub.success if ok else sub.failure)

    def _compare_all(self, wt: WriteTxn, compares) -> bool:
        return all(self._compare(wt, c) for c in compares)

    def _compare(self, wt: WriteTxn, c: pb.Compare) -> bool:
        t = c.target
        if t != _T_VALUE and not c.range_end:
            # one key's revisions, version or lease: the key index has them (the value
            # need not be read and decoded; a kube write compares mod_revision)
            rec = self.mvcc.current(c.key)
            if rec is None:
                a = 0
            elif t == _T_MOD:
                a = rec.revs[-1] >> MAIN_SHIFT
            elif t == _T_CREATE:
                a = rec.create
            elif t == _T_VERSION:
                a = rec.version
            else:
                a = rec.lease
            return _holds(c, a, _target_of(c, t))
        return self._compare_read(wt, c)

    def _compare_read(self, wt: WriteTxn, c: pb.Compare) -> bool:
        """A compare evaluated on the stored KeyValues (a value target, a range)."""
        if c.range_end:
            kvs = wt.range(key=c.key, range_end=c.range_end).kvs
        else:
            rec = self.mvcc.current(c.key)
            kvs = [] if rec is None else [self.mvcc.get_at(wt.txn, rec.revs[-1])]
        if not kvs:
            if c.target == _T_VALUE:
                return False
            kvs = [KeyValue()]
        return all(_compare_kv(c, kv) for kv in kvs)

    # -- leases ---------------------------------------------------------------------
    def lease_revoke(self, wt: WriteTxn, lease_id: int) -> pb.LeaseRevokeResponse:
        lease = self.lessor.lookup(lease_id)
        if lease is None:
            raise errors.LeaseNotFound()
        for key in sorted(lease.keys):
            wt.delete_range(key, b"")
        self.lessor.revoke(wt.txn, lease_id)
        return pb.LeaseRevokeResponse()


def _target_of(c: pb.Compare, t: int):
    if t == _T_MOD:
        return c.mod_revision
    if t == _T_CREATE:
        return c.create_revision
    if t == _T_VERSION:
        return c.version
    if t == _T_VALUE:
        return c.value
    return c.lease


def _compare_kv(c: pb.Compare, kv: KeyValue) -> bool:
    t = c.target
    if t == _T_VALUE:
        a = kv.value
    elif t == _T_VERSION:
        a = kv.version
    elif t == _T_CREATE:
        a = kv.create_revision
    elif t == _T_MOD:
        a = kv.mod_revision
    else:
        a = kv.lease
    return _holds(c, a, _target_of(c, t))


def _holds(c: pb.Compare, a, b) -> bool:
    r = c.result
    if r == _EQ:
        return a == b
    if r == _NE:
        return a != b
    if r == _GT:
        return a > b
    return a < b


_SORT_FIELDS = {
    pb.RangeRequest.KEY: lambda kv: kv.key,
    pb.RangeRequest.VERSION: lambda kv: kv.version,
    pb.RangeRequest.CREATE: lambda kv: kv.create_revision,
    pb.RangeRequest.MOD: lambda kv: kv.mod_revision,
    pb.RangeRequest.VALUE: lambda kv: kv.value,
}


def range_response(do_range, r: pb.RangeRequest) -> pb.RangeResponse:
    """etcd's Range: filters, sorting, limit (+ `more`), keys_only, count_only.
    `do_range(key=, range_end=, rev=, limit=, count_only=)` reads the MVCC state."""
    if r.sort_order not in (0, 1, 2) or r.sort_target not in _SORT_FIELDS:
        raise errors.InvalidSortOption()
    filtered = (r.min_mod_revision or r.max_mod_revision or r.min_create_revision
                or r.max_create_revision)
    sort_order = r.sort_order
    if r.sort_target != pb.RangeRequest.KEY and sort_order == pb.RangeRequest.NONE:
        sort_order = pb.RangeRequest.ASCEND
    whole = bool(filtered) or sort_order != pb.RangeRequest.NONE
    limit = 0 if whole else r.limit
    res = do_range(key=r.key, range_end=r.range_end, rev=r.revision, limit=limit,
                   count_only=r.count_only)
    kvs = res.kvs
    if filtered:
        kvs = [kv for kv in kvs
               if not (r.max_mod_revision and kv.mod_revision > r.max_mod_revision)
               and not (r.min_mod_revision and kv.mod_revision < r.min_mod_revision)
               and not (r.max_create_revision and kv.create_revision > r.max_create_revision)
               and not (r.min_create_revision and kv.create_revision < r.min_create_revision)]
    if sort_order != pb.RangeRequest.NONE and not (
            sort_order == pb.RangeRequest.ASCEND and r.sort_target == pb.RangeRequest.KEY):
        kvs.sort(key=_SORT_FIELDS[r.sort_target],
                 reverse=sort_order == pb.RangeRequest.DESCEND)
    more = res.more
    if r.limit > 0 and len(kvs) > r.limit:
        kvs = kvs[: r.limit]
        more = True
    resp = pb.RangeResponse(count=res.count, more=more)
    if r.keys_only:
        for kv in kvs:
            kv.value = b""
    resp.kvs.extend(kvs)
    return resp


def _plain_put(r: pb.PutRequest) -> bool:
    """A put without lease or options (the usual one): written without looking up
    the key's current record."""
    return not (r.lease or r.prev_kv or r.ignore_value or r.ignore_lease)


def check_txn_request(r: pb.TxnRequest, max_ops: int) -> None:
    """etcd's static txn checks, done before a txn is proposed."""
    compare, success, failure = r.compare, r.success, r.failure
    if len(compare) > max_ops or len(success) > max_ops or len(failure) > max_ops:
        raise errors.TooManyOps()
    for c in compare:
        if not c.key:
            raise errors.EmptyKey()
    for branch in (success, failure):
        if not branch:
            continue
        if len(branch) == 1:          # the usual shape: one op, nothing to overlap
            op = branch[0]
            kind = op.WhichOneof("request")
            _check_request_op(op, max_ops, kind)
            if kind == "request_txn":
                _check_intervals(branch)
            continue
        for op in branch:
            _check_request_op(op, max_ops)
        _check_intervals(branch)


def _check_request_op(op: pb.RequestOp, max_ops: int, kind: str | None = None) -> None:
    if kind is None:
        kind = op.WhichOneof("request")
    if kind == "request_range":
        if not op.request_range.key:
            raise errors.EmptyKey()
    elif kind == "request_put":
        check_put_request(op.request_put)
    elif kind == "request_delete_range":
        if not op.request_delete_range.key:
            raise errors.EmptyKey()
    elif kind == "request_txn":
        check_txn_request(op.request_txn, max_ops)


def check_put_request(r: pb.PutRequest) -> None:
    if not r.key:
        raise errors.EmptyKey()
    if r.ignore_value and r.value:
        raise errors.ValueProvided()
    if r.ignore_lease and r.lease:
        raise errors.LeaseProvided()


class _Dels:
    """Delete ranges of a txn branch, for overlap checks against puts."""

    def __init__(self) -> None:
        self.ranges: list[tuple[bytes, bytes | None]] = []

    def add(self, key: bytes, range_end: bytes) -> None:
        self.ranges.append((key, key_range(key, range_end)))

    def hits(self, k: bytes) -> bool:
        for start, end in self.ranges:
            if end is None:
                if k == start:
                    return True
            elif k >= start and (end == b"" or k < end):
                return True
        return False


def _check_intervals(ops) -> tuple[set[bytes], _Dels]:
    dels = _Dels()
    for op in ops:
        if op.WhichOneof("request") == "request_delete_range":
            d = op.request_delete_range
            dels.add(d.key, d.range_end)
    puts: set[bytes] = set()
    for op in ops:
        if op.WhichOneof("request") != "request_txn":
            continue
        then_puts, then_dels = _check_intervals(op.request_txn.success)
        else_puts, else_dels = _check_intervals(op.request_txn.failure)
        for k in then_puts:
            if k in puts or dels.hits(k):
                raise errors.DuplicateKey()
            puts.add(k)
        for k in else_puts:
            if (k in puts and k not in then_puts) or dels.hits(k):
                raise errors.DuplicateKey()
            puts.add(k)
        dels.ranges.extend(then_dels.ranges)
        dels.ranges.extend(else_dels.ranges)
    for op in ops:
        if op.WhichOneof("request") != "request_put":
            continue
        k = op.request_put.key
        if k in puts or dels.hits(k):
            raise errors.DuplicateKey()
        puts.add(k)
    return puts, dels
