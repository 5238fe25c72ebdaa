"""The API server's write, one compare-and-put, without protobuf messages.

Every create and update of the API server is one txn of a fixed shape:

    if mod_revision(key) == M then put(key, value, lease) else range(key)

(M = 0: the key is absent). `encode_txn` gives that TxnRequest's wire bytes
directly (what goes into the raft log and the WAL, identical to
``TxnRequest.SerializeToString()`` of it: a member replaying the log or
following the leader applies it as any txn), and `Applier.cas_put` applies it
from these fields with the same outcome as `Applier.txn` — the generic path
is the reference, and the tests check they agree. What the caller gets back
is a `CasResult`, not a TxnResponse. `encode_txn` is the native kernel
(kcore._native.casenc) when built, else `encode_txn_ref`; they agree byte for byte
(tests/unit/test_cas_agree.py).
"""
from __future__ import annotations

_TARGET_MOD = b"\x10\x02"           # Compare.target = MOD (field 2)


def varint(n: int) -> bytes:
    """A protobuf varint; a negative int64 as its 64-bit two's complement."""
    if n < 0:
        n += 1 << 64
    if n < 0x80:
        return bytes((n,))
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: int, body: bytes) -> bytes:
    """A length-delimited field (tag already shifted, wire type 2)."""
    return bytes((tag,)) + varint(len(body)) + body


def encode_txn_ref(key: bytes, value: bytes, lease: int, mod_revision: int) -> bytes:
    """The TxnRequest {compare: [key MOD == mod_revision], success: [put key value
    lease], failure: [range key]} on the wire."""
    k = _field(0x1A, key)                                   # Compare.key (3)
    compare = _TARGET_MOD + k + b"\x30" + varint(mod_revision)   # mod_revision (6)
    put = _field(0x0A, key) + (_field(0x12, value) if value else b"")
    if lease:
        put += b"\x18" + varint(lease)                      # PutRequest.lease (3)
    success = _field(0x12, put)                             # RequestOp.request_put (2)
    failure = _field(0x0A, _field(0x0A, key))               # RequestOp.request_range (1)
    return _field(0x0A, compare) + _field(0x12, success) + _field(0x1A, failure)


try:
    from kcore._native.casenc import encode_txn
except ImportError:  # not built: the reference has the same contract
    encode_txn = encode_txn_ref


class CasResult:
    """What a compare-and-put did: `succeeded`, the store `revision` after it, and
    on failure the key's current KeyValue (None: absent)."""

    __slots__ = ("succeeded", "revision", "kv")

    def __init__(self, succeeded: bool, revision: int, kv=None):
        self.succeeded, self.revision, self.kv = succeeded, revision, kv

    def __repr__(self) -> str:
        return f"CasResult({self.succeeded}, {self.revision}, {self.kv!r})"
