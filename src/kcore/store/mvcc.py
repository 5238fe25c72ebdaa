"""Multi-version key-value state: revisions, ranges, writes, compaction.

Every write transaction gets the next store revision (main); each change in it
a sub-revision. A change is written to the backend's `key` bucket under its
revision (16 bytes: main, sub, big-endian; `t` appended for a tombstone) with
the serialized mvccpb.KeyValue as value; the in-memory KeyIndex maps keys to
their revisions. Reads at a past revision bisect the index and read the value
from disk. Compaction drops history below a revision, as etcd's does.

This module knows nothing of gRPC, leases' timing or watchers: writes return
the changes they made, and the caller (the applier) routes them.
"""
from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass, field

import lmdb

from kcore.store import errors
from kcore.store.backend import Backend
from kcore.store.keyindex import MAIN_SHIFT, MAX_SUB, KeyIndex, KeyRecord, pack
from kcore.store.rpc.pb.kv_pb2 import Event, KeyValue

_REV = struct.Struct(">QQ")
PUT, DELETE = Event.PUT, Event.DELETE

_META_REV = b"current_rev"
_META_COMPACT = b"compact_rev"
_META_SCHEDULED_COMPACT = b"scheduled_compact_rev"


def rev_bytes(p: int) -> bytes:
    """Backend key of a packed index revision."""
    b = _REV.pack(p >> MAIN_SHIFT, (p >> 1) & MAX_SUB)
    return b + b"t" if p & 1 else b


def rev_from_bytes(b: bytes) -> int:
    main, sub = _REV.unpack_from(b)
    return pack(main, sub, len(b) > 16 and b[16:17] == b"t")


def key_range(key: bytes, range_end: bytes) -> bytes | None:
    """etcd's range semantics: '' → the single key; '\\0' → every key >= key
    (returned as b'', no upper bound); otherwise [key, range_end)."""
    if not range_end:
        return None
    if range_end == b"\x00":
        return b""
    return range_end


@dataclass(slots=True)
class Change:
    """One change made by a write: an event for watchers plus what the applier
    needs (the lease the key had before)."""

    type: int                  # PUT or DELETE
    kv: KeyValue               # for DELETE: key and mod_revision only
    prev_rev: int | None       # packed revision of the previous version, if any
    prev_lease: int = 0


@dataclass(slots=True)
class RangeResult:
    kvs: list[KeyValue]
    count: int
    rev: int
    more: bool = False


@dataclass
class WriteResult:
    rev: int
    changes: list[Change] = field(default_factory=list)


class MVCC:
    def __init__(self, backend: Backend):
        self.backend = backend
        self.index = KeyIndex()
        self.rev = 0
        self.compact_rev = 0
        self._restore()

    # -- start-up -----------------------------------------------------------------
    def _restore(self) -> None:
        b = self.backend
        with b.env.begin() as txn:
            self.compact_rev = b.get_u64(txn, _META_COMPACT)
            # older data dirs recorded the revision in meta; now it is derived
            self.rev = max(b.get_u64(txn, _META_REV), self.compact_rev)
            scheduled = b.get_u64(txn, _META_SCHEDULED_COMPACT)
            cur = txn.cursor(db=b.key)
            idx = self.index
            last_live: dict[bytes, int] = {}
            for k, v in cur:
                p = rev_from_bytes(k)
                kv = KeyValue.FromString(v)
                rec = idx.records.get(kv.key)
                if rec is None:
                    rec = idx.records[kv.key] = KeyRecord()
                rec.revs.append(p)
                if not p & 1:
                    last_live[kv.key] = p
                    rec.create, rec.version, rec.lease = kv.create_revision, kv.version, kv.lease
                if (p >> MAIN_SHIFT) > self.rev:
                    self.rev = p >> MAIN_SHIFT
            idx.add_all(idx.records.keys())
        if scheduled > self.compact_rev:
            # a crash interrupted a compaction: finish it
            with b.env.begin(write=True) as txn:
                self._compact(txn, scheduled)

    # -- reads --------------------------------------------------------------------
    def check_rev(self, rev: int) -> int:
        if rev <= 0:
            return self.rev
        if rev > self.rev:
            raise errors.FutureRev()
        if rev < self.compact_rev:
            raise errors.Compacted()
        return rev

    def range(self, txn: lmdb.Transaction, key: bytes, range_end: bytes, rev: int = 0,
              limit: int = 0, count_only: bool = False) -> RangeResult:
        """Keys in the range as of `rev` (0 = now), in key order; count is the total
        number of live keys in the range, whatever the limit."""
        rev = self.check_rev(rev)
        end = key_range(key, range_end)
        records = self.index.records
        found: list[int] = []
        count = 0
        for k in self.index.keys_in(key, end):
            p = records[k].visible(rev)
            if p is None:
                continue
            count += 1
            if not count_only and (limit <= 0 or len(found) < limit):
                found.append(p)
        if count_only:
            return RangeResult([], count, rev)
        kbucket = self.backend.key
        kvs = [KeyValue.FromString(txn.get(rev_bytes(p), db=kbucket)) for p in found]
        return RangeResult(kvs, count, rev, more=limit > 0 and count > limit)

    def get_at(self, txn: lmdb.Transaction, p: int) -> KeyValue:
        return KeyValue.FromString(txn.get(rev_bytes(p), db=self.backend.key))

    def current(self, key: bytes) -> KeyRecord | None:
        rec = self.index.get(key)
        return rec if rec is not None and rec.alive else None

    # -- writes -------------------------------------------------------------------
    def begin(self, txn: lmdb.Transaction) -> "WriteTxn":
        return WriteTxn(self, txn)

    def compact(self, txn: lmdb.Transaction, rev: int) -> None:
        if rev <= self.compact_rev:
            raise errors.Compacted()
        if rev > self.rev:
            raise errors.FutureRev()
        self.backend.put_u64(txn, _META_SCHEDULED_COMPACT, rev)
        self._compact(txn, rev)

    def _compact(self, txn: lmdb.Transaction, rev: int) -> None:
        kbucket = self.backend.key
        gone: list[bytes] = []
        for k, rec in self.index.records.items():
            for p in rec.compact(rev):
                txn.delete(rev_bytes(p), db=kbucket)
            if not rec.revs:
                gone.append(k)
        for k in gone:
            self.index.remove(k)
        self.compact_rev = rev
        self.backend.put_u64(txn, _META_COMPACT, rev)

    # -- hashes -------------------------------------------------------------------
    def hash_kv(self, txn: lmdb.Transaction, rev: int = 0) -> tuple[int, int, int]:
        """(hash, revision hashed, compact revision) over every stored revision up to
        rev: equal on members with equal history."""
        rev = self.check_rev(rev)
        h = 0
        limit = _REV.pack(rev + 1, 0)
        cur = txn.cursor(db=self.backend.key)
        for k, v in cur:
            if k >= limit:
                break
            h = zlib.crc32(v, zlib.crc32(k, h))
        return h & 0xFFFFFFFF, rev, self.compact_rev


class WriteTxn:
    """The changes of one write transaction (one store revision).

    Reads inside it see its own earlier changes, as in etcd. `end()` publishes
    the revision if anything changed."""

    __slots__ = ("mvcc", "txn", "main", "changes")

    def __init__(self, mvcc: MVCC, txn: lmdb.Transaction):
        self.mvcc, self.txn = mvcc, txn
        self.main = mvcc.rev + 1
        self.changes: list[Change] = []

    @property
    def read_rev(self) -> int:
        return self.main if self.changes else self.main - 1

    def range(self, key: bytes, range_end: bytes, rev: int = 0, limit: int = 0,
              count_only: bool = False) -> RangeResult:
        m = self.mvcc
        saved = m.rev
        m.rev = self.read_rev
        try:
            return m.range(self.txn, key, range_end, rev, limit, count_only)
        finally:
            m.rev = saved

    def put(self, key: bytes, value: bytes, lease: int) -> Change:
        sub = len(self.changes)
        if sub > MAX_SUB:
            raise errors.TooManyOps()
        rec = self.mvcc.index.get_or_create(key)
        main = self.main
        prev = rec.revs[-1] if rec.revs and not rec.revs[-1] & 1 else None
        if prev is not None:
            create, version, prev_lease = rec.create, rec.version + 1, rec.lease
        else:
            create, version, prev_lease = main, 1, 0
        kv = KeyValue(key=key, create_revision=create, mod_revision=main, version=version,
                      value=value, lease=lease)
        p = pack(main, sub)
        self.txn.put(rev_bytes(p), kv.SerializeToString(), db=self.mvcc.backend.key)
        rec.revs.append(p)
        rec.create, rec.version, rec.lease = create, version, lease
        ch = Change(PUT, kv, prev, prev_lease)
        self.changes.append(ch)
        return ch

    def put_plain(self, key: bytes, value: bytes) -> Change:
        """`put` of a key with no lease, flattened: the common write, kept short."""
        changes = self.changes
        sub = len(changes)
        if sub > MAX_SUB:
            raise errors.TooManyOps()
        m = self.mvcc
        rec = m.index.records.get(key)
        if rec is None:
            rec = m.index.get_or_create(key)
        main = self.main
        revs = rec.revs
        if revs and not revs[-1] & 1:
            prev, create, version, prev_lease = revs[-1], rec.create, rec.version + 1, rec.lease
        else:
            prev, create, version, prev_lease = None, main, 1, 0
        kv = KeyValue(key=key, create_revision=create, mod_revision=main, version=version,
                      value=value)
        p = (main << MAIN_SHIFT) | (sub << 1)
        self.txn.put(_REV.pack(main, sub), kv.SerializeToString(), db=m.backend.key)
        revs.append(p)
        rec.create, rec.version, rec.lease = create, version, 0
        ch = Change(PUT, kv, prev, prev_lease)
        changes.append(ch)
        return ch

    def delete_range(self, key: bytes, range_end: bytes) -> list[Change]:
        m = self.mvcc
        end = key_range(key, range_end)
        records = m.index.records
        victims = [k for k in m.index.keys_in(key, end) if records[k].alive]
        out = []
        kbucket = m.backend.key
        main = self.main
        for k in victims:
            rec = records[k]
            sub = len(self.changes)
            if sub > MAX_SUB:
                raise errors.TooManyOps()
            p = pack(main, sub, True)
            prev = rec.revs[-1]
            self.txn.put(rev_bytes(p), KeyValue(key=k).SerializeToString(), db=kbucket)
            rec.revs.append(p)
            ch = Change(DELETE, KeyValue(key=k, mod_revision=main), prev, rec.lease)
            rec.create = rec.version = rec.lease = 0
            self.changes.append(ch)
            out.append(ch)
        return out

    def end(self) -> WriteResult:
        """Publish the revision. It needs no record of its own: on restart it is the
        newest revision in the key bucket (or the compacted revision, if newer)."""
        m = self.mvcc
        if self.changes:
            m.rev = self.main
        return WriteResult(m.rev, self.changes)


def events_from_history(mvcc: MVCC, txn: lmdb.Transaction, start_rev: int, max_events: int,
                        until_rev: int | None = None) -> tuple[list[tuple[int, Change]], int]:
    """Changes with main revision in [start_rev, until_rev] read from disk, at most
    max_events (never splitting a revision); returns them with the next revision to
    read. Used to replay history to watchers that start in the past or fell behind."""
    until = mvcc.rev if until_rev is None else until_rev
    out: list[tuple[int, Change]] = []
    if start_rev > until:
        return out, start_rev
    cur = txn.cursor(db=mvcc.backend.key)
    if not cur.set_range(_REV.pack(start_rev, 0)):
        return out, until + 1
    last_main = -1
    for k, v in cur:
        main = _REV.unpack_from(k)[0]
        if main > until:
            break
        if len(out) >= max_events and main != last_main:
            return out, main
        kv = KeyValue.FromString(v)
        if len(k) > 16:
            out.append((main, Change(DELETE, KeyValue(key=kv.key, mod_revision=main), None)))
        else:
            out.append((main, Change(PUT, kv, None)))
        last_main = main
    return out, until + 1


def prev_kv_of(mvcc: MVCC, txn: lmdb.Transaction, ch: Change) -> KeyValue | None:
    """The version of the key before this change (for prev_kv), read from disk;
    None if the key did not exist or its history was compacted."""
    if ch.prev_rev is not None:
        v = txn.get(rev_bytes(ch.prev_rev), db=mvcc.backend.key)
        return None if v is None else KeyValue.FromString(v)
    rec = mvcc.index.get(ch.kv.key)
    if rec is None:
        return None
    target = ch.kv.mod_revision - 1
    if target < mvcc.compact_rev:
        return None
    p = rec.visible(target)
    if p is None:
        return None
    v = txn.get(rev_bytes(p), db=mvcc.backend.key)
    return None if v is None else KeyValue.FromString(v)


def iter_prefix_end(prefix: bytes) -> bytes:
    """range_end for a prefix (etcdctl's --prefix): last byte < 0xff incremented."""
    b = bytearray(prefix)
    for i in range(len(b) - 1, -1, -1):
        if b[i] < 0xFF:
            b[i] += 1
            return bytes(b[: i + 1])
    return b"\x00"
