"""The compare-and-put fast path (kcore.store.cas, Applier.cas_put) against its
reference, the generic txn: the request bytes are those of the TxnRequest, and
random sequences applied both ways give the same results, errors, stored
revisions, key index and lease attachments."""
from __future__ import annotations

import shutil
import tempfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kcore.store.apply import Alarms, Applier
from kcore.store.backend import Backend
from kcore.store.cas import encode_txn, encode_txn_ref
from kcore.store.keyindex import MAIN_SHIFT
from kcore.store.lease import Lessor
from kcore.store.mvcc import MVCC
from kcore.store.rpc.pb import rpc_pb2 as pb

KEYS = [b"/registry/pods/a", b"/registry/pods/b", b"/registry/pods/c"]
LEASES = [0, 0, 7, 8, 9]          # 7 and 8 are granted, 9 is not


def reference_request(key: bytes, value: bytes, lease: int, mod: int) -> pb.TxnRequest:
    req = pb.TxnRequest()
    cmp = req.compare.add()
    cmp.key, cmp.target, cmp.result, cmp.mod_revision = key, pb.Compare.MOD, \
        pb.Compare.EQUAL, mod
    put = req.success.add().request_put
    put.key, put.value = key, value
    if lease:
        put.lease = lease
    req.failure.add().request_range.key = key
    return req


@settings(max_examples=300, deadline=None)
@given(key=st.binary(min_size=1, max_size=300), value=st.binary(max_size=3000),
       lease=st.integers(-(1 << 63), (1 << 63) - 1),
       mod=st.integers(-(1 << 63), (1 << 63) - 1))
def test_encoding_is_the_txn_requests(key, value, lease, mod):
    want = reference_request(key, value, lease, mod).SerializeToString()
    assert encode_txn_ref(key, value, lease, mod) == want
    assert encode_txn(key, value, lease, mod) == want      # the native kernel when built


@settings(max_examples=300, deadline=None)
@given(rid=st.integers(0, (1 << 64) - 1), body=st.binary(max_size=3000),
       field=st.sampled_from(["put", "txn", "delete_range", "lease_grant", "compaction"]))
def test_request_encoding_native_and_reference_agree(rid, body, field):
    from kcore.store.rpc.pb import internal_pb2
    from kcore.store.server import _FIELD_TAG, encode_request, encode_request_ref
    native = pytest.importorskip("kcore._native.casenc")
    tag = _FIELD_TAG[field]
    ref = encode_request_ref(rid, tag, body)
    assert native.encode_request(rid, tag, body) == ref == encode_request(rid, field, body)
    if field == "txn":          # what the store decodes it as
        txn = encode_txn(b"k", body, 3, 0)
        req = internal_pb2.InternalRequest.FromString(encode_request(rid, field, txn))
        assert req.ID == rid and req.txn.success[0].request_put.value == body


def test_native_encoders_refuse_what_they_cannot_encode():
    native = pytest.importorskip("kcore._native.casenc")
    with pytest.raises(OverflowError):
        native.encode_txn(b"k", b"v", 1 << 63, 0)
    with pytest.raises(TypeError):
        native.encode_txn(None, b"v", 0, 0)
    with pytest.raises(OverflowError):
        native.encode_request(-1, b"\x12", b"")


class Store:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="kcore-cas-")
        self.backend = Backend(self.dir)
        self.mvcc = MVCC(self.backend)
        self.lessor = Lessor(self.backend)
        self.applier = Applier(self.mvcc, self.lessor, Alarms(self.backend))
        with self.backend.begin_write() as txn:
            for lid in (7, 8):
                self.lessor.grant(txn, lid, 60)

    def close(self) -> None:
        self.backend.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def state(self):
        with self.backend.begin_read() as txn:
            stored = list(txn.cursor(db=self.backend.key))
        index = {k: (tuple(r.revs), r.create, r.version, r.lease)
                 for k, r in self.mvcc.index.records.items()}
        leases = {lid: sorted(lease.keys) for lid, lease in self.lessor.leases.items()}
        return self.mvcc.rev, stored, index, leases

    def mod_of(self, key: bytes) -> int:
        rec = self.mvcc.current(key)
        return 0 if rec is None else rec.revs[-1] >> MAIN_SHIFT


op = st.tuples(st.sampled_from(KEYS), st.binary(max_size=40), st.sampled_from(LEASES),
               st.sampled_from(["current", "zero", "stale", "future"]),
               st.booleans())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=st.lists(op, min_size=1, max_size=40))
def test_fast_path_agrees_with_the_generic_txn(ops):
    fast, ref = Store(), Store()
    try:
        for key, value, lease, which, delete_first in ops:
            if delete_first and which == "zero":
                for s in (fast, ref):   # the key absent again: a create after a delete
                    with s.backend.begin_write() as txn:
                        s.applier.apply_op(txn, "delete_range",
                                           pb.DeleteRangeRequest(key=key))
            cur = ref.mod_of(key)
            assert cur == fast.mod_of(key)
            mod = {"current": cur, "zero": 0, "stale": max(cur - 1, 1),
                   "future": cur + 5}[which]
            with fast.backend.begin_write() as txn:
                a = fast.applier.apply_op(txn, "cas", (key, value, lease, mod))
            req = pb.TxnRequest.FromString(encode_txn(key, value, lease, mod))
            with ref.backend.begin_write() as txn:
                b = ref.applier.apply_op(txn, "txn", req)
            assert type(a.error) is type(b.error)
            assert a.rev == b.rev
            if b.error is None:
                r = b.response
                assert a.response.succeeded == r.succeeded
                assert a.response.revision == b.rev
                if not r.succeeded:
                    kvs = r.responses[0].response_range.kvs
                    assert a.response.kv == (kvs[0] if kvs else None)
                else:
                    assert a.response.kv is None
            assert [(c.type, c.kv, c.prev_rev, c.prev_lease) for c in a.changes] == \
                [(c.type, c.kv, c.prev_rev, c.prev_lease) for c in b.changes]
            assert fast.state() == ref.state()
    finally:
        fast.close()
        ref.close()
